"""r2_archive logic without a server: retention, member checks on restore, manifests, exact part reads, excludes.

Hostile archives and the backup read race: test_r2_hostile.py."""
from __future__ import annotations

import io
import json
import os
import random
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2

UTC = timezone.utc  # noqa: UP017 - these tests run under 3.9 too (test_py39.py)


def t(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def daily(start: str, days: int, hour: int = 2) -> list:
    first = t(start) + timedelta(hours=hour)
    return [first + timedelta(days=i) for i in range(days)]


# ---- retention ------------------------------------------------------------------------------------------------

def test_retention_on_a_long_daily_series():
    times = daily("2026-01-01 00:00", 200)  # 2026-01-01 .. 2026-07-19
    keep = sorted(r2.select_retention(times, 7, 4, 3))
    newest = max(times)
    assert newest in keep
    days = {k.date() for k in keep if newest - k < timedelta(days=7)}
    assert len(days) == 7  # last 7 days
    # weekly: newest of each of the 4 most recent ISO weeks; monthly: newest of the 3 most recent months
    months = {(k.year, k.month) for k in keep}
    assert {(2026, 7), (2026, 6), (2026, 5)} <= months and (2026, 4) not in months
    assert t("2026-06-30 02:00") in keep and t("2026-05-31 02:00") in keep
    assert len(keep) <= 7 + 4 + 3


def test_retention_counts_months_across_a_year_boundary():
    times = daily("2025-10-15 00:00", 100)  # into January 2026
    keep = r2.select_retention(times, 7, 4, 3)
    months = sorted({(k.year, k.month) for k in keep})
    assert months[-3:] == [(2025, 11), (2025, 12), (2026, 1)]
    assert t("2025-12-31 02:00") in keep and t("2025-11-30 02:00") in keep
    assert not any(k.month == 10 for k in keep)


def test_retention_uses_iso_weeks_across_a_year_boundary():
    # 2026-01-01 is a Thursday of ISO week 2026-W01; 2025-12-28 (Sunday) ends 2025-W52.
    times = [t("2025-12-28 02:00"), t("2025-12-29 02:00"), t("2026-01-04 02:00"), t("2026-01-05 02:00")]
    keep = r2.select_retention(times, keep_daily=0, keep_weekly=2, keep_monthly=0)
    assert keep == {t("2026-01-05 02:00"), t("2026-01-04 02:00")}


def test_retention_with_gaps_keeps_the_most_recent_days_that_have_backups():
    times = [t("2026-03-01 02:00"), t("2026-03-10 02:00"), t("2026-03-20 02:00")]
    assert r2.select_retention(times, 7, 0, 0) == set(times)


def test_retention_with_fewer_backups_than_slots_keeps_all():
    times = daily("2026-03-01 00:00", 3)
    assert r2.select_retention(times, 7, 4, 3) == set(times)
    assert r2.select_retention([], 7, 4, 3) == set()


def test_retention_keeps_the_newest_of_a_day_with_several_backups():
    times = [t("2026-03-05 02:00"), t("2026-03-05 14:00"), t("2026-03-04 02:00")]
    keep = r2.select_retention(times, 7, 0, 0)
    assert keep == {t("2026-03-05 14:00"), t("2026-03-04 02:00")}


def test_retention_zero_policy_still_keeps_the_newest():
    times = daily("2026-03-01 00:00", 5)
    assert r2.select_retention(times, 0, 0, 0) == {max(times)}


def test_retention_on_random_sets_is_consistent():
    rng = random.Random(7)
    for _ in range(50):
        start = t("2024-01-01 00:00")
        times = {start + timedelta(hours=rng.randrange(0, 24 * 500)) for _ in range(rng.randrange(1, 120))}
        keep = r2.select_retention(times, 7, 4, 3)
        assert keep <= times and max(times) in keep and len(keep) <= 7 + 4 + 3
        assert r2.select_retention(keep, 7, 4, 3) == keep  # pruning twice deletes nothing more


def test_plan_prune_handles_incomplete_and_foreign_keys():
    keys = [r2.archive_key("backups/", m) for m in daily("2026-03-01 00:00", 10)]
    incomplete_old = keys[3]
    incomplete_new = r2.archive_key("backups/", t("2026-03-11 03:00"))
    complete = set(keys) - {incomplete_old}
    kept, deleted = r2.plan_prune(keys + [incomplete_new, "backups/README.txt"], 7, 0, 0, complete)
    assert incomplete_old in deleted and incomplete_new in kept
    assert "backups/README.txt" not in kept + deleted
    assert set(kept) == set(sorted(complete)[-7:]) | {incomplete_new}  # the 7 newest complete days


def test_key_names():
    key = r2.archive_key("backups/", t("2026-11-22 02:00"))
    assert key == "backups/20261122T020000Z.tar.zst"
    assert r2.key_time(key) == t("2026-11-22 02:00")
    assert r2.key_time("backups/20261122T020000Z.tar.zst.manifest.json") is None
    assert r2.bucket_name("claw-backup-", "1A2B3C4D-0000-4000-8000-000000000001") == "claw-backup-1a2b3c4d-0000-4000-8000-000000000001"
    with pytest.raises(r2.ArchiveError):
        r2.bucket_name("claw_backup_", "x")


# ---- exact reads (R2's equal part sizes) ------------------------------------------------------------------------------

class ShortReader:
    """Returns at most a few random bytes per read, like a pipe or a compressor."""

    def __init__(self, data: bytes, seed: int = 1):
        self.data, self.pos, self.rng = data, 0, random.Random(seed)

    def read(self, n):
        take = min(n, self.rng.randrange(1, 4096))
        chunk = self.data[self.pos:self.pos + take]
        self.pos += len(chunk)
        return chunk


def test_read_exact_never_returns_a_short_part_before_the_end():
    data = os.urandom(1_000_000)
    stream = ShortReader(data)
    parts = []
    while chunk := r2.read_exact(stream, 65536):
        parts.append(chunk)
    assert b"".join(parts) == data
    assert all(len(p) == 65536 for p in parts[:-1]) and len(parts[-1]) <= 65536


def test_multipart_etag():
    import hashlib

    md5s = [hashlib.md5(b"a").digest(), hashlib.md5(b"b").digest()]
    assert r2.multipart_etag(md5s) == hashlib.md5(md5s[0] + md5s[1]).hexdigest() + "-2"


# ---- excludes ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ("node_modules", True), ("a/b/node_modules/x.js", True), (".cache/x", True),
    ("Library/Chrome/Default/Code Cache/js/1", True), ("Default/Service Worker/CacheStorage/abc", True),
    ("run/gateway.sock", True), (".openclaw/workspace/notes.md", False), ("cache-notes.txt", False),
    ("Service Worker/Database", False),
    (".openclaw/tmp/node-compile-cache/openclaw/2026.9.6/1-2/v24.19.0-arm64-cf738c9d-601/4cf2f03e", True),
])
def test_excludes(path, expected):
    """The farm's list (the claw role's claw_backup_excludes, its one copy) leaves out what it should."""
    import yaml

    defaults = Path(__file__).resolve().parents[2] / "roles/claw/defaults/main.yml"
    assert r2.excluded(path, yaml.safe_load(defaults.read_text())["claw_backup_excludes"]) is expected


def test_nothing_is_excluded_by_default():
    assert not r2.excluded("node_modules", ())


# ---- member checks on restore ---------------------------------------------------------------------------------------

def member(name, kind=tarfile.REGTYPE, linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info


@pytest.mark.parametrize("info, reason", [
    (member("/etc/passwd"), "absolute path"),
    (member("../outside"), "contains '..'"),
    (member("a/../../outside"), "contains '..'"),
    (member("./a/../../b"), "contains '..'"),
    (member("link", tarfile.SYMTYPE, ""), "empty, overlong or control-character target"),
    (member("link", tarfile.SYMTYPE, "a\x1bb"), "empty, overlong or control-character target"),
    (member("hard", tarfile.LNKTYPE, "/etc/passwd"), "hard link outside"),
    (member("hard", tarfile.LNKTYPE, "../x"), "hard link outside"),
    (member("dev", tarfile.CHRTYPE), "device"),
    (member("blk", tarfile.BLKTYPE), "device"),
    (member("fifo", tarfile.FIFOTYPE), "FIFO"),
    (member("C:/x"), "absolute path"),
    (member("a/b\nc"), "control characters"),
    (member("sparse", tarfile.GNUTYPE_SPARSE), "sparse"),
])
def test_traversal_tricks_are_refused(tmp_path, info, reason):
    with pytest.raises(r2.ArchiveError, match=reason):
        r2.check_member(info, str(tmp_path))


def test_plain_members_pass(tmp_path):
    for info in (member(".", tarfile.DIRTYPE), member("./a"), member("a/b/c.txt"), member("d", tarfile.DIRTYPE),
                 member("a/link", tarfile.SYMTYPE, "b/c.txt"), member("a/side", tarfile.SYMTYPE, "x"),
                 member("h", tarfile.LNKTYPE, "a/b/c.txt"),
                 # link targets are inert data (the extractor never follows a link): kept verbatim
                 member("venv/python3", tarfile.SYMTYPE, "/usr/bin/python3"),
                 member("node_modules/.bin/x", tarfile.SYMTYPE, "../pkg/cli.js")):
        r2.check_member(info, str(tmp_path))


def tar_bytes(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def test_extract_stream_refuses_a_malicious_archive_and_writes_nothing_outside(tmp_path):
    data = tar_bytes([(member("ok.txt"), b"fine"), (member("link", tarfile.SYMTYPE, str(tmp_path / "victim")), None),
                      (member("link/owned"), b"x")])
    with pytest.raises(r2.ArchiveError):
        r2.extract_stream(io.BytesIO(data), str(tmp_path / "staging"))
    assert not (tmp_path / "victim").exists()


def test_extract_stream_strips_setuid_and_keeps_modes(tmp_path):
    data = tar_bytes([(member(".", tarfile.DIRTYPE, mode=0o700), None), (member("run", mode=0o4755), b"#!/bin/sh\n"),
                      (member("secret", mode=0o600), b"s")])
    counts = r2.extract_stream(io.BytesIO(data), str(tmp_path / "s"))
    assert counts == {"entries": 3, "files": 2, "bytes": 11, "root_mode": 0o700}
    assert oct(os.stat(tmp_path / "s" / "run").st_mode & 0o7777) == oct(0o755)
    assert oct(os.stat(tmp_path / "s" / "secret").st_mode & 0o7777) == oct(0o600)
    assert oct(os.stat(tmp_path / "s").st_mode & 0o7777) == oct(0o700)


# ---- manifests -----------------------------------------------------------------------------------------------------

def manifest(**overrides):
    result = {"size": 10, "sha256": "a" * 64, "etag": "e", "parts": 1, "part_size": 5 * r2.MIB, "files": 1, "entries": 2, "content_bytes": 5}
    doc = r2.build_manifest("b", "backups/20261122T020000Z.tar.zst", result, "c", "backup", "/Users/x", [".cache"], 3, t("2026-11-22 02:00"))
    doc.update(overrides)
    return json.dumps(doc)


def test_manifest_round_trip():
    doc = r2.parse_manifest(manifest(), "backups/20261122T020000Z.tar.zst")
    assert doc["size"] == 10 and doc["created"] == "2026-11-22T02:00:00Z" and doc["excludes"] == [".cache"]


@pytest.mark.parametrize("text, reason", [
    ("not json", "not JSON"),
    (manifest(format="other/1"), "unknown format"),
    (manifest(key="backups/other.tar.zst"), "another key"),
    (manifest(size="10"), "no valid size"),
    (manifest(size=-1), "no valid size"),
    (manifest(sha256="xyz"), "no valid sha256"),
    (manifest(sha256=None), "no valid sha256"),
])
def test_bad_manifests_are_refused(text, reason):
    with pytest.raises(r2.ArchiveError, match=reason):
        r2.parse_manifest(text, "backups/20261122T020000Z.tar.zst")


def test_object_metadata_has_no_tags_and_only_strings():
    meta = r2.object_metadata({"size": 1, "sha256": "a" * 64, "files": 2}, "c", "backup")
    assert all(isinstance(v, str) for v in meta.values()) and meta["clawfarm-files"] == "2"


# ---- module input ------------------------------------------------------------------------------------------------

def test_module_validation():
    from ansible_collections.mirascope.clawfarm.plugins.modules import r2_archive as module

    base = dict(state="present", prefix=None, key=None, part_size=64, compression_level=3, keep_daily=7, keep_weekly=4, keep_monthly=3,
                src="/Users/x", dest=None)
    module.validate(base)
    for overrides, reason in [(dict(prefix="/abs"), "relative key prefix"), (dict(prefix="a/../b"), "relative"),
                              (dict(key="backups/x.tar"), "not an archive key"), (dict(part_size=4), "part_size"),
                              (dict(compression_level=30), "compression_level"),
                              (dict(state="restored", dest="/"), "dest"), (dict(state="restored", dest="/Users"), "dest"),
                              (dict(keep_daily=-1), "negative"),
                              (dict(encryption_keys={"k1": "x"}, encryption_key_id="k2"), "must name one of"),
                              (dict(encryption_keys={"../k": "x"}, encryption_key_id="../k"), "key id")]:
        with pytest.raises(r2.ArchiveError, match=reason):
            module.validate({**base, **overrides})
