"""Issue 12: hostile archives on restore and a hostile tenant racing the backup writer.

Every archive trick is refused with nothing written, chmod'ed or chowned outside a temp root: each test builds an
``outside`` tree beside the staging directory and compares a full snapshot of it (type, mode, owner, content, link
target, mtime) before and after.  The writer tests swap entries under the writer through its ``hook`` (called after
an entry is listed and before it is opened), deterministically.  Runs under CPython 3.9 too (test_py39.py).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from datetime import datetime, timezone

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2

TENANT = 4321  # a uid/gid that is not root's (tests run as root in the dev container)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


# ---- helpers --------------------------------------------------------------------------------------------------

def snapshot(root) -> dict:
    """Everything observable about a tree, links never followed."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [""] + dirs + files:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    extra = hashlib.sha256(handle.read()).hexdigest()
            else:
                extra = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, extra)
    return out


@pytest.fixture
def box(tmp_path):
    """``tmp_path/outside`` (a victim tree: a root-only secret, a directory, a file) and ``tmp_path/staging``."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "x").write_text("victim")
    (outside / "secret").write_text("root only")
    os.chmod(outside / "secret", 0o600)
    os.chmod(outside / "dir", 0o755)

    class Box:
        root = tmp_path
        staging = str(tmp_path / "stage" / "staging")
        before = None

        def check_untouched(self):
            assert snapshot(outside) == self.before
            assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "stage"]

    (tmp_path / "stage").mkdir()
    b = Box()
    b.before = snapshot(outside)
    return b


def member(name, kind=tarfile.REGTYPE, linkname="", mode=0o644, data=None, **pax):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.mtime = 1_700_000_000
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def archive(*entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def refused(box, data, match, limits=None):
    with pytest.raises(r2.ArchiveError, match=match):
        r2.extract_stream(io.BytesIO(data), box.staging, limits)
    box.check_untouched()


F = tarfile.REGTYPE
D = tarfile.DIRTYPE
L = tarfile.SYMTYPE
H = tarfile.LNKTYPE


# ---- link tricks ------------------------------------------------------------------------------------------------

def test_link_chain_through_a_parent_link_is_refused(box):
    # d1/b -> ..  then  f -> d1/b/../../outside/x, then a regular f written through it
    data = archive(member("d1", D, mode=0o755), member("d1/b", L, ".."), member("f", L, "d1/b/../../outside/x"),
                   member("f", data=b"owned"))
    refused(box, data, "appears twice")


def test_link_chain_without_dotdot_cannot_point_up(box):
    # every link may only point down, so even a chain of them stays inside; a member written "through" one is refused
    data = archive(member("d1", D), member("d1/b", L, "c"), member("f", L, "d1/b"), member("f/x", data=b"owned"))
    refused(box, data, "under 'f', which is a symlink")


def test_deferred_link_then_member_through_it_is_refused(box):
    data = archive(member("l", L, "sub"), member("sub", D), member("l/x", data=b"owned"))
    refused(box, data, "under 'l', which is a symlink")


def test_regular_member_over_an_earlier_symlink_is_refused(box):
    data = archive(member("inside", data=b"keep"), member("l", L, "inside"), member("l", data=b"replaced"))
    refused(box, data, "appears twice")


def test_directory_member_over_a_link_never_chmods_its_target(box):
    data = archive(member("inside", D, mode=0o700), member("l", L, "inside"), member("l", D, mode=0o777))
    refused(box, data, "appears twice")


@pytest.mark.parametrize("entries, match", [
    ([member("a", data=b"1"), member("a", data=b"2")], "appears twice"),
    ([member("./a", data=b"1"), member("a", data=b"2")], "appears twice"),
    ([member("a//b", data=b"1"), member("a/./b", data=b"2")], "appears twice"),
    ([member("d", D), member("d", D)], "appears twice"),
    ([member(".", D), member("./", D)], "appears twice"),
    ([member("d", D), member("d", data=b"x")], "appears twice"),
    ([member("f", data=b"x"), member("f/g", data=b"y")], "under 'f', which is a file"),
])
def test_duplicate_names_are_refused(box, entries, match):
    refused(box, archive(*entries), match)


@pytest.mark.parametrize("target", ["", "a\nb", "a\x7fb", "x" * 4097])
def test_empty_control_character_and_overlong_link_targets_are_refused(box, target):
    refused(box, archive(member("l", L, target)), "symlink")


@pytest.mark.parametrize("target", ["/etc", "/", "//x", "../outside", "a/../../outside", "..", "a/.."])
def test_absolute_and_dotdot_link_targets_are_kept_verbatim_and_never_followed(box, target):
    """A venv's absolute python3 link and npm's ../pkg links are data: restored as links, nothing written through
    them, and a member under or over them is still refused."""
    r2.extract_stream(io.BytesIO(archive(member("l", L, target))), box.staging)
    assert os.readlink(os.path.join(box.staging, "l")) == target
    box.check_untouched()
    shutil.rmtree(box.staging)
    refused(box, archive(member("l", L, target), member("l/x", data=b"owned")), "under 'l', which is a symlink")
    shutil.rmtree(box.staging, ignore_errors=True)
    refused(box, archive(member("l", L, target), member("l", data=b"owned")), "appears twice")


def test_members_under_a_link_are_refused_even_if_the_check_lets_a_bad_link_through(box, monkeypatch):
    """Defence in depth: with check_member broken to allow an absolute link, the extractor itself still never writes,
    chmods or creates anything through it."""
    real = r2.check_member
    monkeypatch.setattr(r2, "check_member", lambda m, staging="": [p for p in m.name.split("/") if p not in ("", ".")]
                        if m.issym() else real(m))
    outside = str(box.root / "outside")
    for entries in ([member("l", L, outside), member("l/x", data=b"owned")],
                    [member("l", L, outside), member("l/dir", D, mode=0o777)],
                    [member("l", L, outside + "/x"), member("l", data=b"owned")],
                    [member("l", L, outside + "/dir"), member("l", D, mode=0o777)],
                    [member("l", L, outside), member("l/new/deeper", data=b"owned")]):
        with pytest.raises(r2.ArchiveError):
            r2.extract_stream(io.BytesIO(archive(*entries)), box.staging)
        box.check_untouched()
        shutil.rmtree(box.staging)


def test_hard_link_to_an_earlier_regular_member_works(box):
    data = archive(member("d", D), member("d/a", data=b"shared", mode=0o640), member("b", H, "d/a"),
                   member("c", H, "./d/a"))
    counts = r2.extract_stream(io.BytesIO(data), box.staging)
    assert counts["entries"] == 4 and counts["files"] == 1
    a, b = os.lstat(os.path.join(box.staging, "d/a")), os.lstat(os.path.join(box.staging, "b"))
    assert (a.st_ino, a.st_nlink, stat.S_IMODE(a.st_mode)) == (b.st_ino, 3, 0o640)


@pytest.mark.parametrize("entries, match", [
    ([member("h", H, "/etc/passwd")], "hard link outside"),
    ([member("h", H, "../outside/x")], "hard link outside"),
    ([member("h", H, ".")], "hard link outside"),
    ([member("h", H, "later"), member("later", data=b"x")], "not an earlier regular file"),
    ([member("l", L, "x"), member("x", data=b"x"), member("h", H, "l")], "not an earlier regular file"),
    ([member("d", D), member("h", H, "d")], "not an earlier regular file"),
    ([member("h", H, "missing")], "not an earlier regular file"),
])
def test_hard_links_only_to_earlier_regular_members(box, entries, match):
    refused(box, archive(*entries), match)


# ---- special members, names, modes ------------------------------------------------------------------------------

def test_sparse_member_declaring_10_gib_is_refused(box):
    # PAX 0.1 sparse: 5 bytes of data that tarfile would expand to a 10 GiB file
    data = archive(member("big", data=b"hello", **{"GNU.sparse.map": "0,5", "GNU.sparse.size": str(10 * 1024 ** 3)}))
    refused(box, data, "sparse")


def test_gnu_sparse_type_is_refused(box):
    refused(box, archive(member("big", tarfile.GNUTYPE_SPARSE), fmt=tarfile.GNU_FORMAT), "sparse")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_and_fifos_are_refused(box, kind):
    refused(box, archive(member("dev", kind)), "device, FIFO")


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "tab\there", "esc\x1b[31m", "del\x7f", "d/\x01x"])
def test_names_with_control_characters_are_refused(box, name):
    refused(box, archive(member(name, data=b"x")), "control characters")


def test_setuid_setgid_never_survive_and_staging_stays_0700(box):
    data = archive(member(".", D, mode=0o4777), member("d", D, mode=0o2775), member("d/run", mode=0o6755, data=b"#!"),
                   member("t", D, mode=0o1777))
    counts = r2.extract_stream(io.BytesIO(data), box.staging)
    mode = lambda p: stat.S_IMODE(os.lstat(os.path.join(box.staging, p)).st_mode)  # noqa: E731
    assert (mode("."), mode("d"), mode("d/run"), mode("t")) == (0o700, 0o775, 0o755, 0o1777)
    assert counts["root_mode"] == 0o777  # applied by the caller at the swap, never while extracting


# ---- bombs and space ----------------------------------------------------------------------------------------------

def test_too_many_entries_is_refused(box):
    data = archive(*[member(f"f{i}", data=b"") for i in range(50)])
    refused(box, data, "more than the 10 entries", limits={"entries": 10, "bytes": 1000})


def test_too_many_bytes_is_refused_before_writing_them(box):
    data = archive(member("small", data=b"x" * 10), member("big", data=b"y" * 5000))
    refused(box, data, "more than the 100 content bytes", limits={"entries": 10, "bytes": 100})
    assert not os.path.exists(os.path.join(box.staging, "big"))


def test_limits_come_from_the_manifest_and_free_space():
    assert r2.archive_limits({"entries": 5, "content_bytes": 100}, free_bytes=10 ** 9) == {"entries": 5, "bytes": 100}
    with pytest.raises(r2.ArchiveError, match="MiB free"):
        r2.archive_limits({"entries": 5, "content_bytes": 10 ** 9}, free_bytes=10 ** 6)
    # a manifest from before entries/content_bytes were recorded: generous count, bytes bounded by the free space
    assert r2.archive_limits({}, free_bytes=12345) == {"entries": r2.DEFAULT_MAX_ENTRIES, "bytes": 12345}
    for bad in ({"entries": -1, "content_bytes": 0}, {"entries": "5", "content_bytes": 0}, {"entries": 1, "content_bytes": True}):
        with pytest.raises(r2.ArchiveError, match="invalid"):
            r2.archive_limits(bad, free_bytes=10 ** 9)


# ---- the whole restore ------------------------------------------------------------------------------------------

class FakeClient:
    """get_object for one archive and its manifest (restore_archive needs nothing else)."""

    def __init__(self, key, body: bytes, **manifest):
        zstandard = pytest.importorskip("zstandard")  # not in the 3.9 unit-test venv

        self.objects = {key: zstandard.ZstdCompressor().compress(body)}
        obj = self.objects[key]
        doc = {"format": r2.MANIFEST_FORMAT, "key": key, "size": len(obj), "sha256": hashlib.sha256(obj).hexdigest()}
        doc.update(manifest)
        self.objects[r2.manifest_key(key)] = json.dumps(doc).encode()

    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's names
        return {"Body": io.BytesIO(self.objects[Key])}


KEY = "backups/20261122T020000Z.tar.zst"


def test_restore_refuses_a_hostile_archive_and_leaves_dest_and_outside_untouched(box):
    dest = box.root / "stage" / "home"
    dest.mkdir(mode=0o700)
    (dest / "current").write_text("live data")
    before = snapshot(dest)
    data = archive(member("d1", D), member("d1/b", L, ".."), member("f", L, "d1/b/../../outside/x"), member("f", data=b"x"))
    with pytest.raises(r2.ArchiveError, match="appears twice"):
        r2.restore_archive(FakeClient(KEY, data), "b", KEY, str(dest), TENANT, TENANT)
    assert snapshot(dest) == before
    assert sorted(os.listdir(box.root / "stage")) == ["home"]
    box.check_untouched()


def test_restore_refuses_more_than_the_manifest_records(box):
    data = archive(member(".", D, mode=0o700), *[member(f"f{i}", data=b"abc") for i in range(5)])
    dest = str(box.root / "stage" / "home")
    with pytest.raises(r2.ArchiveError, match="entries its manifest records"):
        r2.restore_archive(FakeClient(KEY, data, entries=3, content_bytes=15), "b", KEY, dest, None, None)
    with pytest.raises(r2.ArchiveError, match="content bytes its manifest records"):
        r2.restore_archive(FakeClient(KEY, data, entries=6, content_bytes=5), "b", KEY, dest, None, None)
    assert os.listdir(box.root / "stage") == []
    box.check_untouched()


def test_restore_refuses_when_the_disk_is_too_small(box, monkeypatch):
    monkeypatch.setattr(r2, "free_space", lambda path: 10 * r2.MIB)
    data = archive(member(".", D), member("f", data=b"x"))
    with pytest.raises(r2.ArchiveError, match="MiB free"):
        r2.restore_archive(FakeClient(KEY, data, entries=2, content_bytes=50 * r2.MIB), "b", KEY,
                           str(box.root / "stage" / "home"), None, None)
    assert os.listdir(box.root / "stage") == []


def test_restore_refuses_a_staging_path_that_already_exists(box):
    dest = box.root / "stage" / "home"
    now = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)  # noqa: UP017 - runs under 3.9 too
    planted = box.root / "stage" / ".home.restore-20261122T020000Z"
    planted.mkdir()
    (planted / "keep").write_text("not ours to delete")
    with pytest.raises(r2.ArchiveError, match="already exists"):
        r2.restore_archive(FakeClient(KEY, archive(member(".", D))), "b", KEY, str(dest), None, None, now=now)
    assert (planted / "keep").read_text() == "not ours to delete"


@needs_root
def test_restore_chowns_links_not_targets_and_hands_over_the_top_last(box, monkeypatch):
    dest = box.root / "stage" / "home"
    data = archive(member(".", D, mode=0o750), member("d", D, mode=0o755), member("d/f", data=b"x"),
                   member("l", L, "d/f"), member("h", H, "d/f"), member("e", D))
    order = []
    real_fchown = os.fchown
    monkeypatch.setattr(os, "fchown", lambda fd, u, g: (order.append(os.fstat(fd).st_ino), real_fchown(fd, u, g)))
    result = r2.restore_archive(FakeClient(KEY, data, entries=6, content_bytes=1), "b", KEY, str(dest), TENANT, TENANT)
    assert result["entries"] == 6 and result["files"] == 1
    snap = snapshot(dest)
    assert {(v[2], v[3]) for v in snap.values()} == {(TENANT, TENANT)}
    assert stat.S_IMODE(os.lstat(dest).st_mode) == 0o750
    assert order[-1] == os.lstat(dest).st_ino  # the top directory changes owner after everything under it
    box.check_untouched()


@needs_root
def test_extract_gives_every_entry_its_owner_as_made_never_through_a_link_and_keeps_the_top_root_only(box):
    """Issue 19: with ``owner`` the entries get their owner as they are made (no second walk); links themselves, never
    their targets; parents without their own member, large and small files, hard links; the staging directory stays
    root's 0700 for the caller to hand over last."""
    outside = box.root / "outside"
    big = os.urandom(r2.SMALL_FILE + 1)
    data = archive(member(".", D, mode=0o750), member("a/b/small", data=b"s", mode=0o640), member("a/big", data=big),
                   member("a/abs", L, str(outside / "secret")), member("a/up", L, "../../outside/dir"),
                   member("a/dir", L, str(outside / "dir")), member("a/hard", H, "a/b/small"), member("e", D, mode=0o711))
    counts = r2.extract_stream(io.BytesIO(data), box.staging, None, (TENANT, TENANT))
    assert counts["root_mode"] == 0o750
    top = os.lstat(box.staging)
    assert (top.st_uid, stat.S_IMODE(top.st_mode)) == (0, 0o700)
    snap = snapshot(box.staging)
    del snap["."]
    assert {(v[2], v[3]) for v in snap.values()} == {(TENANT, TENANT)}
    assert snap["a/b/small"][1] == 0o640 and snap["e"][1] == 0o711 and snap["a"][1] == 0o700  # "a" made as a parent
    assert (box.root / "stage" / "staging" / "a" / "big").read_bytes() == big
    box.check_untouched()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0])
def test_files_get_their_whole_mode_whatever_the_umask(box, umask):
    data = archive(member("f", data=b"x", mode=0o666), member("g", data=os.urandom(r2.SMALL_FILE + 1), mode=0o754),
                   member("h", data=b"", mode=0o400), member("s", data=b"x", mode=0o6755))
    old = os.umask(umask)
    try:
        r2.extract_stream(io.BytesIO(data), box.staging)
    finally:
        os.umask(old)
    modes = {name: stat.S_IMODE(os.lstat(os.path.join(box.staging, name)).st_mode) for name in "fghs"}
    assert modes == {"f": 0o666, "g": 0o754, "h": 0o400, "s": 0o755}
    box.check_untouched()


@needs_root
def test_chown_tree_never_follows_a_link(box):
    top = box.root / "stage" / "t"
    (top / "sub").mkdir(parents=True)
    os.symlink(str(box.root / "outside" / "secret"), top / "link")
    os.symlink(str(box.root / "outside" / "dir"), top / "sub" / "dirlink")
    r2.chown_tree(str(top), TENANT, TENANT)
    assert os.lstat(top / "link").st_uid == TENANT and os.lstat(top / "sub" / "dirlink").st_uid == TENANT
    box.check_untouched()


# ---- the backup writer under a racing tenant ------------------------------------------------------------------------

def read_archive(data: bytes) -> dict:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: (m.type, m.linkname, tar.extractfile(m).read() if m.isreg() else None) for m in tar}


def write(src, hook=None, excludes=()) -> tuple:
    buf = io.BytesIO()
    counters = {}
    r2.write_tar(str(src), buf, list(excludes), counters, hook=hook)
    return read_archive(buf.getvalue()), counters, buf.getvalue()


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    (home / "notes").write_text("mine")
    (home / "sub" / "deep").write_text("deep")
    secret = tmp_path / "secret"
    secret.write_text("ROOT-ONLY-CONTENT")
    os.chmod(secret, 0o600)
    return home


def test_a_file_swapped_for_a_symlink_after_listing_is_skipped(home):
    secret = home.parent / "secret"

    def swap(rel):
        if rel == "notes":
            os.unlink(home / "notes")
            os.symlink(str(secret), home / "notes")

    members, counters, raw = write(home, swap)
    assert "./notes" not in members and b"ROOT-ONLY" not in raw
    assert counters["skipped"]["changed"] == 1 and counters["skipped_paths"] == ["notes (changed)"]


def test_a_file_swapped_for_a_hard_link_after_listing_is_skipped(home):
    secret = home.parent / "secret"

    def swap(rel):
        if rel == "notes":
            os.unlink(home / "notes")
            os.link(secret, home / "notes")

    members, counters, raw = write(home, swap)
    assert b"ROOT-ONLY" not in raw and counters["skipped"]["changed"] == 1


def test_a_directory_swapped_for_a_symlink_cannot_redirect_the_walk(home):
    def swap(rel):
        if rel == "sub":
            os.rename(home / "sub", home / "moved")
            os.symlink(str(home.parent), home / "sub")

    members, counters, raw = write(home, swap)
    assert b"ROOT-ONLY" not in raw and not any("secret" in name for name in members)
    assert counters["skipped"]["changed"] == 1 and "sub/ (changed)" in counters["skipped_paths"]


def test_a_file_swapped_for_a_fifo_does_not_block_and_is_skipped(home):
    def swap(rel):
        if rel == "notes":
            os.unlink(home / "notes")
            os.mkfifo(home / "notes")

    members, counters, _ = write(home, swap)
    assert "./notes" not in members and counters["skipped"]["changed"] == 1


def test_a_file_that_shrinks_while_read_keeps_the_stream_valid(home, monkeypatch):
    (home / "notes").write_text("x" * 10000)
    ino = os.lstat(home / "notes").st_ino
    real_fstat = os.fstat

    def fstat_then_shrink(fd):
        result = real_fstat(fd)
        if result.st_ino == ino:
            os.truncate(home / "notes", 10)  # after the header's size was taken
        return result

    monkeypatch.setattr(os, "fstat", fstat_then_shrink)
    members, counters, _ = write(home)
    assert members["./notes"][2] == b"x" * 10 + b"\0" * 9990 and counters["skipped"]["changed"] == 1


@needs_root
def test_files_the_tenant_neither_owns_nor_could_read_are_skipped(home):
    os.chown(home, TENANT, TENANT)
    os.link(home.parent / "secret", home / "stolen")  # as if the tenant had linked a root-only file
    replaced = home.parent / "shadow"
    replaced.write_text("ROOT-ONLY-OLD-VERSION")
    os.chmod(replaced, 0o600)
    os.link(replaced, home / "kept-old")
    os.unlink(replaced)  # root replaced it by a rename: the tenant's link is now the only one (st_nlink 1)
    public = home.parent / "public"
    public.write_text("world readable")
    os.chmod(public, 0o644)
    os.link(public, home / "public")
    (home / "own").write_text("own")
    os.chown(home / "own", TENANT, TENANT)
    os.link(home / "own", home / "own2")
    members, counters, raw = write(home)
    assert b"ROOT-ONLY" not in raw and counters["skipped"]["foreign"] == 2
    assert sorted(counters["skipped_paths"]) == ["kept-old (foreign)", "stolen (foreign)"]
    assert members["./own2"][:2] == (H, "./own") and members["./public"][2] == b"world readable"


def test_specials_and_unsafe_names_are_skipped_links_kept_so_the_backup_stays_restorable(home, tmp_path):
    os.mkfifo(home / "fifo")
    (home / "bad\nname").write_text("x")
    os.symlink("/usr/bin/python3", home / "abs")
    os.symlink("../secret", home / "up")
    os.symlink("sub/deep", home / "ok")
    os.symlink("bad\ttarget", home / "tab")
    members, counters, raw = write(home)
    assert counters["skipped"] == {"changed": 0, "special": 1, "unsafe_name": 1, "unsafe_link": 1, "foreign": 0}
    assert set(members) == {".", "./notes", "./sub", "./ok", "./sub/deep", "./abs", "./up"}
    counts = r2.extract_stream(io.BytesIO(raw), str(tmp_path / "restored"))
    assert counts["entries"] == counters["entries"] == 7 and counts["bytes"] == counters["bytes"]
    assert os.readlink(tmp_path / "restored" / "ok") == "sub/deep"
    assert os.readlink(tmp_path / "restored" / "abs") == "/usr/bin/python3"
    assert os.readlink(tmp_path / "restored" / "up") == "../secret"


def test_writer_round_trip_keeps_links_hard_links_and_modes(home, tmp_path):
    os.link(home / "notes", home / "sub" / "notes-again")
    os.chmod(home / "sub", 0o750)
    os.symlink("notes", home / "link")
    members, counters, raw = write(home)
    assert members["./sub/notes-again"][:2] == (H, "./notes")
    r2.extract_stream(io.BytesIO(raw), str(tmp_path / "restored"))
    restored = tmp_path / "restored"
    assert os.lstat(restored / "notes").st_ino == os.lstat(restored / "sub" / "notes-again").st_ino
    assert stat.S_IMODE(os.lstat(restored / "sub").st_mode) == 0o750
    assert (restored / "sub" / "deep").read_text() == "deep" and os.readlink(restored / "link") == "notes"


def test_a_huge_pax_header_is_cut_off_by_the_stream_limit(box):
    data = archive(member("f", data=b"x", comment="A" * 3_000_000))  # 3 MB of PAX header for a 1-byte file
    limits = {"entries": 1, "bytes": 1}
    assert r2.tar_stream_limit(limits) < len(data)
    with pytest.raises(r2.ArchiveError, match="tar stream exceeds"):
        r2.extract_stream(r2.CappedReader(io.BytesIO(data), r2.tar_stream_limit(limits)), box.staging, limits)
    box.check_untouched()


def test_sockets_are_left_out_silently(home):
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(home / "gateway"))
        members, counters, _ = write(home)
    assert "./gateway" not in members and not any(counters["skipped"].values())


def test_check_restore_reads_the_manifest_and_checks_the_destination(box, monkeypatch):
    client = FakeClient(KEY, archive(member(".", D)), entries=1, content_bytes=0)
    manifest, limits = r2.check_restore(client, "b", KEY, str(box.root / "stage" / "home"))
    assert manifest["entries"] == 1 and limits == {"entries": 1, "bytes": 0}
    with pytest.raises(r2.ArchiveError, match="parent directory .* is not usable"):
        r2.check_restore(client, "b", KEY, str(box.root / "missing" / "home"))
    monkeypatch.setattr(r2, "free_space", lambda path: 0)
    with pytest.raises(r2.ArchiveError, match="MiB free"):
        r2.check_restore(FakeClient(KEY, b"", entries=1, content_bytes=10 * r2.MIB), "b", KEY, str(box.root / "stage" / "h"))


def test_an_open_failing_for_another_reason_fails_the_backup_and_names_the_path(home, monkeypatch):
    import errno

    real_open = os.open

    def emfile(path, flags, mode=0o777, *, dir_fd=None):
        if path == "sub":
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", emfile)
    with pytest.raises(r2.ArchiveError, match="reading sub failed: Too many open files"):
        write(home)


def test_a_replaced_home_that_cannot_be_deleted_is_kept_and_reported(box, monkeypatch):
    dest = box.root / "stage" / "home"
    dest.mkdir()
    (dest / "old").write_text("old")

    def refuse(path, *args, **kwargs):
        raise PermissionError(1, "Operation not permitted", path)

    monkeypatch.setattr(r2, "remove_tree", refuse)
    result = r2.restore_archive(FakeClient(KEY, archive(member(".", D), member("new", data=b"n"))), "b", KEY, str(dest),
                                None, None)
    assert (dest / "new").read_text() == "n" and os.path.basename(result["previous"]).startswith("home.pre-restore-")
    assert "deleting it failed" in result["cleanup_error"] and (box.root / "stage" / os.path.basename(result["previous"])).is_dir()


# ---- a tenant's very deep tree (EMFILE) --------------------------------------------------------------------------

DEEP = r"""
import io, os, resource, sys, tarfile
sys.path[:0] = sys.argv[3].split(os.pathsep)
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2

root, depth = sys.argv[1], int(sys.argv[2])
home = os.path.join(root, "home")
os.mkdir(home, 0o750)
fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
for level in range(depth):  # d/d/d/... built by fds: the path is longer than PATH_MAX
    if level % 500 == 0:  # a sibling at some levels: the walk must climb back and re-open a closed ancestor
        side = os.open("f", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
        os.write(side, b"level %d" % level)
        os.close(side)
        os.mkdir("z", 0o700, dir_fd=fd)
    os.mkdir("d", 0o755, dir_fd=fd)
    nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = nxt
bottom = os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
os.write(bottom, b"the deepest file")
os.close(bottom)
os.symlink("../../d", "link", dir_fd=fd)
os.close(fd)

limit = int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
sys.setrecursionlimit(500)  # the walks are iterative: no depth of the tree reaches Python's recursion limit

def members(data):  # a link's own mtime is not restored (no lutimes), nor the top's (the caller's swap)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [(m.name, m.type, m.mode, m.linkname, m.size, None if m.name == "." or m.issym() else int(m.mtime),
                 tar.extractfile(m).read() if m.isreg() else None) for m in tar]

out, counters = io.BytesIO(), {}
r2.write_tar(home, out, [], counters)
backup = members(out.getvalue())
staging = os.path.join(root, "restored")
counts = r2.extract_stream(io.BytesIO(out.getvalue()), staging, {"entries": counters["entries"], "bytes": counters["bytes"]})
r2.chown_tree(staging, os.getuid(), os.getgid(), counts["root_mode"])
again, counters2 = io.BytesIO(), {}
r2.write_tar(staging, again, [], counters2)
assert members(again.getvalue()) == backup, "restored tree differs"
r2.remove_tree(home)
assert not os.path.lexists(home)
r2.remove_tree(staging)
print(counters["entries"], counters["files"], sum(counters["skipped"].values()))
"""


def test_a_2000_deep_directory_chain_backs_up_and_restores_with_few_file_descriptors(tmp_path):
    """Review finding: a tenant's ~300-deep chain made the walker hold one fd per level (EMFILE), failing every backup
    (and with it deprovision archive=true).  Under RLIMIT_NOFILE 32 (in a subprocess) a 2000-deep chain with side
    files backs up, restores identically, is chowned, and both trees are removed (no recursion either)."""
    import subprocess
    import sys

    depth = 2000
    proc = subprocess.run([sys.executable, "-c", DEEP, str(tmp_path), str(depth), os.pathsep.join(sys.path), "32"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries, files, skipped = map(int, proc.stdout.split())
    # ".", depth "d" dirs, 4 "f" + 4 "z" siblings, "bottom", "link"
    assert (entries, files, skipped) == (1 + depth + 8 + 2, 5, 0)
