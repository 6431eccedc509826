"""r2_archive against a real S3 server (moto in server mode, over HTTP and over TLS), with the R2 client settings."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2

MIB = 1024 * 1024


def make_home(root) -> None:
    """A small claw home with the shapes a real one has: text, JSON, binary, nested dirs, modes, links, caches."""
    root.mkdir(mode=0o700)
    (root / ".openclaw" / "workspace").mkdir(parents=True)
    (root / ".openclaw" / "openclaw.json").write_text(json.dumps({"gateway": {"port": 8100}}))
    (root / ".openclaw" / ".env").write_text("CLAW_GATEWAY_TOKEN=secret\n")
    os.chmod(root / ".openclaw" / ".env", 0o600)
    (root / ".openclaw" / "workspace" / "notes.md").write_text("# notes\n" * 1000)
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "bin" / "tool", 0o750)
    (root / "data.bin").write_bytes(os.urandom(12 * MIB + 12345))  # incompressible: forces several 5 MiB parts
    (root / "empty").mkdir()
    os.symlink(".openclaw/workspace/notes.md", root / "notes-link")
    (root / ".cache").mkdir()
    (root / ".cache" / "big").write_bytes(b"x" * 1000)
    (root / "node_modules" / "pkg").mkdir(parents=True)
    (root / "node_modules" / "pkg" / "index.js").write_text("module.exports = 1\n")


def tree(root) -> dict:
    """Relative path -> (type, mode, content hash or link target)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
            else:
                out[rel] = ("file", oct(st.st_mode & 0o7777), hashlib.sha256(open(path, "rb").read()).hexdigest())
    return out


def bucket() -> str:
    return f"claw-backup-{uuid.uuid4()}"


def test_round_trip_is_byte_identical_with_modes(s3_server, run_module, tmp_path):
    home = tmp_path / "claw-home"
    make_home(home)
    name = bucket()
    archived = run_module("r2_archive", {"bucket": name, "src": str(home), "claw_id": "c", "part_size": 5,
                                         "excludes": [".cache", "node_modules"], **s3_server.module_args()})
    assert archived["changed"] and archived["verified"] and archived["bucket_created"], archived
    assert archived["parts"] == 3 and archived["files"] == 5
    assert not any(archived["skipped"].values()) and archived["skipped_paths"] == [], archived
    assert s3_server.secret_access_key not in json.dumps(archived)

    client = s3_server.client()
    head = client.head_object(Bucket=name, Key=archived["key"])
    assert head["Metadata"]["clawfarm-sha256"] == archived["sha256"] and head["Metadata"]["clawfarm-files"] == "5"
    manifest = json.loads(client.get_object(Bucket=name, Key=archived["key"] + ".manifest.json")["Body"].read())
    assert (manifest["size"], manifest["sha256"], manifest["files"]) == (archived["size"], archived["sha256"], 5)

    dest = tmp_path / "restored"
    dest.mkdir()
    (dest / "stale.txt").write_text("replaced by the restore")
    preview = run_module("r2_archive", {"state": "restored", "bucket": name, "dest": str(dest), **s3_server.module_args()}, check=True)
    assert preview["changed"] and sorted(os.listdir(dest)) == ["stale.txt"], preview
    restored = run_module("r2_archive", {"state": "restored", "bucket": name, "dest": str(dest), "owner": "0", "group": "0",
                                         **s3_server.module_args()})
    assert restored["changed"] and restored["key"] == archived["key"], restored
    expected = {k: v for k, v in tree(home).items() if not k.startswith((".cache", "node_modules"))}
    assert tree(dest) == expected
    assert oct(os.stat(dest).st_mode & 0o777) == "0o700"
    assert not any(p.name.startswith((".restored.restore", "restored.pre-restore")) for p in tmp_path.iterdir())

    listing = run_module("r2_archive_info", {"bucket": name, **s3_server.module_args()})
    assert listing["latest"]["key"] == archived["key"] and listing["latest"]["sha256"] == archived["sha256"]
    assert listing["archives"][0]["complete"] is True and listing["archives"][0]["skipped"] == archived["skipped"]


def test_what_the_restore_would_refuse_is_left_out_and_reported_so_the_backup_restores(s3_server, run_module, tmp_path):
    """Issue 12: a FIFO and a name with a newline are left out and reported; a venv's absolute python3 link and a
    '..' link are kept as links (the restore never follows one), so nothing of the tenant's is lost."""
    home = tmp_path / "home"
    (home / "venv" / "bin").mkdir(parents=True)
    os.symlink("/usr/bin/python3", home / "venv" / "bin" / "python3")
    os.symlink("../../etc", home / "up")
    os.mkfifo(home / "pipe")
    (home / "bad\nname").write_text("x")
    (home / "kept.txt").write_text("kept")
    name = bucket()
    archived = run_module("r2_archive", {"bucket": name, "src": str(home), **s3_server.module_args()})
    assert archived["skipped"] == {"changed": 0, "special": 1, "unsafe_name": 1, "unsafe_link": 0, "foreign": 0}
    assert "pipe (special)" in archived["skipped_paths"], archived
    manifest = json.loads(s3_server.client().get_object(Bucket=name, Key=archived["key"] + ".manifest.json")["Body"].read())
    assert manifest["skipped"] == archived["skipped"] and manifest["entries"] == archived["entries"] == 6

    dest = tmp_path / "restored"
    restored = run_module("r2_archive", {"state": "restored", "bucket": name, "dest": str(dest), **s3_server.module_args()})
    assert restored["changed"] and restored["entries"] == 6, restored
    assert sorted(os.listdir(dest)) == ["kept.txt", "up", "venv"] and (dest / "kept.txt").read_text() == "kept"
    assert os.readlink(dest / "venv" / "bin" / "python3") == "/usr/bin/python3" and os.readlink(dest / "up") == "../../etc"


def test_corrupted_object_is_refused_and_dest_is_untouched(s3_server, run_module, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "a.txt").write_text("original archive content " * 100)
    name = bucket()
    archived = run_module("r2_archive", {"bucket": name, "src": str(home), **s3_server.module_args()})
    client = s3_server.client()
    body = bytearray(client.get_object(Bucket=name, Key=archived["key"])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=name, Key=archived["key"], Body=bytes(body))

    dest = tmp_path / "live"
    dest.mkdir()
    (dest / "current.txt").write_text("the claw's current data")
    before = tree(dest)
    result = run_module("r2_archive", {"state": "restored", "bucket": name, "dest": str(dest), **s3_server.module_args()})
    assert result.get("failed") and ("corrupt" in result["msg"] or "does not match" in result["msg"]), result
    assert tree(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "live"]


def test_archive_without_manifest_is_never_restored(s3_server, run_module, tmp_path):
    name = bucket()
    client = s3_server.client()
    r2.ensure_bucket(client, name, "auto")
    key = "backups/20261101T020000Z.tar.zst"
    client.put_object(Bucket=name, Key=key, Body=b"half an upload")
    dest = tmp_path / "live"
    dest.mkdir()
    result = run_module("r2_archive", {"state": "restored", "bucket": name, "dest": str(dest), "key": key, **s3_server.module_args()})
    assert result.get("failed") and "no readable manifest" in result["msg"]
    latest = run_module("r2_archive", {"state": "restored", "bucket": name, "dest": str(dest), **s3_server.module_args()})
    assert latest.get("failed") and "no complete archive" in latest["msg"]


def test_prune_keeps_exactly_the_policy(s3_server, run_module, tmp_path):
    src = tmp_path / "tiny"
    src.mkdir()
    (src / "f").write_text("x")
    name = bucket()
    client = s3_server.client()
    r2.ensure_bucket(client, name, "auto")
    start = datetime(2026, 8, 1, 2, 0, tzinfo=UTC)
    times = [start + timedelta(days=d) for d in range(0, 100, 2)]  # every other day for 100 days
    for moment in times:
        r2.archive_and_verify(client, name, r2.archive_key("backups/", moment), str(src), None, "backup", part_size=5 * MIB)
    r2.archive_and_verify(client, name, r2.archive_key("archives/", start), str(src), None, "archive", part_size=5 * MIB)
    expected_keep = {r2.archive_key("backups/", m) for m in r2.select_retention(times, 7, 4, 3)}

    preview = run_module("r2_archive", {"state": "pruned", "bucket": name, **s3_server.module_args()}, check=True)
    assert set(preview["kept"]) == expected_keep and len(preview["deleted"]) == len(times) - len(expected_keep)
    assert len(r2.list_keys(client, name, "backups/")) == 2 * len(times)

    pruned = run_module("r2_archive", {"state": "pruned", "bucket": name, **s3_server.module_args()})
    assert pruned["changed"] and set(pruned["kept"]) == expected_keep
    remaining = set(r2.list_keys(client, name, "backups/"))
    assert remaining == expected_keep | {k + ".manifest.json" for k in expected_keep}
    assert r2.list_keys(client, name, "archives/"), "deprovision archives are never pruned"
    assert not run_module("r2_archive", {"state": "pruned", "bucket": name, **s3_server.module_args()})["changed"]

    gone = run_module("r2_archive", {"state": "absent", "bucket": name, "key": sorted(expected_keep)[0], **s3_server.module_args()})
    assert gone["changed"] and sorted(expected_keep)[0] not in r2.list_keys(client, name, "backups/")
    assert not run_module("r2_archive", {"state": "absent", "bucket": name, "key": sorted(expected_keep)[0], **s3_server.module_args()})["changed"]


def record_requests(client) -> list:
    sent = []

    def before_send(request, **_):
        sent.append((request.method, request.url, dict(request.headers)))

    client.meta.events.register("before-send.s3", before_send)
    return sent


@pytest.mark.parametrize("server_fixture", ["s3_server", "s3_tls_server"])
def test_r2_rules_equal_parts_no_trailers_no_tagging_no_batch_delete(request, server_fixture, tmp_path):
    """Over HTTPS botocore would send aws-chunked trailers unless told when_required; parts must all be equal."""
    server = request.getfixturevalue(server_fixture)
    src = tmp_path / "src"
    src.mkdir()
    (src / "blob").write_bytes(os.urandom(17 * MIB + 1))
    client = server.client()
    sent = record_requests(client)
    name = bucket()
    r2.ensure_bucket(client, name, "auto")
    key = r2.archive_key("backups/", datetime(2026, 11, 1, 2, tzinfo=UTC))
    result = r2.archive_and_verify(client, name, key, str(src), "c", "backup", part_size=5 * MIB)
    parts = [int(h.get("Content-Length", 0)) for m, u, h in sent if m == "PUT" and "partNumber=" in u]
    assert len(parts) == result["parts"] == 4
    assert all(size == 5 * MIB for size in parts[:-1]) and 0 < parts[-1] <= 5 * MIB
    for _method, url, headers in sent:
        lowered = {k.lower(): str(v) for k, v in headers.items()}
        assert "aws-chunked" not in lowered.get("content-encoding", ""), url
        assert "x-amz-trailer" not in lowered, url
        assert not any(k.startswith("x-amz-checksum") for k in lowered), (url, lowered)
        assert "x-amz-tagging" not in lowered and "tagging" not in url.split("?")[-1], url
        assert "STREAMING" not in lowered.get("x-amz-content-sha256", ""), url
    sent.clear()
    r2.delete_archive(client, name, key)
    assert not any("delete" in url.split("?")[-1] and method == "POST" for method, url, _ in sent), "DeleteObjects must not be used"
    assert [m for m, _, _ in sent].count("DELETE") == 2
    if server.tls:
        assert server.endpoint_url.startswith("https://")


def test_unreachable_endpoint_fails_clearly(run_module, tmp_path):
    src = tmp_path / "s"
    src.mkdir()
    from clawfarm_testlib import free_port

    result = run_module("r2_archive", {"bucket": bucket(), "src": str(src), "endpoint_url": f"http://127.0.0.1:{free_port()}",
                                       "access_key_id": "a", "secret_access_key": "super-secret-value"})
    assert result.get("failed") and "unreachable" in result["msg"] or "Could not connect" in result["msg"], result
    assert "super-secret-value" not in json.dumps(result)
