"""The fast paths of r2_archive (issue 19): the tar reader against tarfile, the small-file writer threads, the read-ahead
of a restore, and parallel part uploads that keep every part but the last at exactly the part size.

No timing here: benches measure speed (bench/archive_bench.py)."""
from __future__ import annotations

import hashlib
import io
import os
import random
import stat
import tarfile
import threading
import time

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2


def entry(name, kind=tarfile.REGTYPE, data=b"", linkname="", mode=0o644, uid=501, mtime=1700000000.25, **pax):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.uid, info.gid, info.mtime = kind, linkname, mode, uid, 20, mtime
    info.uname, info.gname = "claw", "staff"
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.pax_headers = dict(pax)
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def build(entries, fmt) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, data)
    return out.getvalue()


def members(reader_entries):
    return [(m.name, m.type, m.size, m.linkname, m.mode, m.uid, m.gid, int(m.mtime), m.uname, m.gname, data)
            for m, data in reader_entries]


def with_tarfile(raw: bytes):
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as tar:
        for m in tar:
            out.append((m, tar.extractfile(m).read() if m.isreg() else None))
    return out


def with_reader(raw: bytes):
    reader, out = r2._TarReader(io.BytesIO(raw)), []
    for m in reader:
        out.append((m, reader.read(m.size) if m.isreg() else None))
    return out


LONG = "d" * 90 + "/" + "e" * 120 + "/ünïcødé-" + "f" * 150
BLOB = os.urandom(1536)


def sample():
    return [
        entry(".", tarfile.DIRTYPE, mode=0o700),
        entry("./dir", tarfile.DIRTYPE, mode=0o755),
        entry("./dir/a.txt", data=b"hello\n" * 1000),
        entry("./dir/empty"),
        entry("./" + LONG, data=BLOB),
        entry("./link", tarfile.SYMTYPE, linkname="../" + "x" * 200),
        entry("./hard", tarfile.LNKTYPE, linkname="./dir/a.txt"),
        entry("./exact", data=b"z" * 512),
    ]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_the_reader_gives_what_tarfile_gives(fmt):
    raw = build(sample(), fmt)
    assert members(with_reader(raw)) == members(with_tarfile(raw))


def test_the_reader_gives_what_tarfile_gives_for_ustar_prefixes_and_big_numbers():
    raw = build([entry("p" * 80 + "/" + "q" * 90, data=b"x"), entry("n", data=b"y", uid=0o7777777)], tarfile.USTAR_FORMAT)
    assert members(with_reader(raw)) == members(with_tarfile(raw))
    gnu = build([entry("big-uid", data=b"y", uid=2 ** 40)], tarfile.GNU_FORMAT)  # base-256 number field
    assert members(with_reader(gnu)) == members(with_tarfile(gnu))
    pax = build([entry("p", data=b"y", mtime=1700000000.5, **{"comment": "kept"})], tarfile.PAX_FORMAT)
    (m, _), = with_reader(pax)
    assert m.mtime == 1700000000.5 and m.pax_headers["comment"] == "kept"


@pytest.mark.parametrize("damage, match", [
    (lambda raw: raw[:512 * 3 + 100], "ends inside"),  # cut in the middle of a member
    (lambda raw: raw[:1536] + bytes([raw[1536] ^ 1]) + raw[1537:], "checksum"),  # a later header altered
    (lambda raw: b"", "empty"),
])
def test_the_reader_refuses_damaged_streams(damage, match):
    raw = build([entry("a", data=b"a" * 600), entry("b", data=b"b" * 10), entry("c", data=b"c")], tarfile.USTAR_FORMAT)
    with pytest.raises(r2.ArchiveError, match=match):
        with_reader(damage(raw))


def test_small_files_written_by_the_writer_threads_keep_content_modes_times_and_links(tmp_path):
    rng = random.Random(7)
    entries = [entry(".", tarfile.DIRTYPE, mode=0o750)]
    expected = {}
    for d in range(5):
        entries.append(entry(f"./d{d}", tarfile.DIRTYPE, mode=0o711))
        for n in range(60):
            data = rng.randbytes(rng.randrange(0, 3000)) if n % 7 else rng.randbytes(r2.SMALL_FILE + 10)  # some large
            entries.append(entry(f"./d{d}/f{n}", data=data, mode=0o640 if n % 2 else 0o604, mtime=1600000000 + n))
            expected[f"d{d}/f{n}"] = (data, 0o640 if n % 2 else 0o604, 1600000000 + n)
    entries.append(entry("./d0/hard", tarfile.LNKTYPE, linkname="./d0/f1"))
    counts = r2.extract_stream(io.BytesIO(build(entries, tarfile.PAX_FORMAT)), str(tmp_path / "s"))
    assert counts["files"] == len(expected) and counts["root_mode"] == 0o750
    for rel, (data, mode, mtime) in expected.items():
        st = os.stat(tmp_path / "s" / rel)
        assert (tmp_path / "s" / rel).read_bytes() == data
        assert (stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (mode, mtime)
    assert os.path.samefile(tmp_path / "s/d0/hard", tmp_path / "s/d0/f1")
    assert stat.S_IMODE(os.stat(tmp_path / "s/d3").st_mode) == 0o711


def test_a_writer_failure_fails_the_extraction_and_stops_the_threads(tmp_path, monkeypatch):
    real = r2._create_file

    def failing(parent_fd, leaf, data, mode, mtime, name, **made):
        if leaf == "f30":
            raise r2.ArchiveError(f"cannot write {name}")
        real(parent_fd, leaf, data, mode, mtime, name, **made)

    monkeypatch.setattr(r2, "_create_file", failing)
    before = threading.active_count()
    data = build([entry(f"f{n}", data=b"x") for n in range(200)], tarfile.PAX_FORMAT)
    with pytest.raises(r2.ArchiveError, match="cannot write f30"):
        r2.extract_stream(io.BytesIO(data), str(tmp_path / "s"))
    assert threading.active_count() == before


def test_the_read_ahead_passes_everything_and_raises_what_its_source_raised():
    payload = os.urandom(3 * r2.MIB + 5)
    ahead = r2._Prefetch(io.BytesIO(payload), chunk=64 * 1024, depth=2)
    assert r2.read_exact(ahead, len(payload) + 1) == payload
    ahead.stop()

    class Broken:
        def __init__(self):
            self.calls = 0

        def read(self, size):
            self.calls += 1
            if self.calls > 2:
                raise ValueError("the connection broke")
            return b"x" * size

    ahead = r2._Prefetch(Broken(), chunk=10)
    assert ahead.read(20) == b"x" * 10
    with pytest.raises(ValueError, match="broke"):
        r2.read_exact(ahead, 100)
    ahead.stop()


class Bucket:
    """A fake S3 client for upload_directory: records the parts and how many went up at once."""

    def __init__(self):
        self.parts, self.live, self.most, self.lock = {}, 0, 0, threading.Lock()
        self.completed = None

    def create_multipart_upload(self, **kw):
        return {"UploadId": "u1"}

    def upload_part(self, Body, PartNumber, **kw):  # noqa: N803 - boto3's argument names
        with self.lock:
            self.live += 1
            self.most = max(self.most, self.live)
        time.sleep(0.01)
        with self.lock:
            self.live -= 1
        self.parts[PartNumber] = bytes(Body)  # the caller reuses its buffers once the call returned
        return {"ETag": hashlib.md5(Body).hexdigest()}

    def complete_multipart_upload(self, MultipartUpload, **kw):  # noqa: N803
        self.completed = MultipartUpload["Parts"]

    def abort_multipart_upload(self, **kw):
        raise AssertionError("nothing failed")


def test_parallel_part_uploads_keep_every_part_but_the_last_at_the_part_size(tmp_path):
    src = tmp_path / "home"
    src.mkdir()
    for n in range(4):  # incompressible: about 24 MiB of zstd output, several 5 MiB parts
        (src / f"blob{n}").write_bytes(random.Random(n).randbytes(6 * r2.MIB))
    client = Bucket()
    result = r2.upload_directory(client, "b", "backups/x.tar.zst", str(src), part_size=5 * r2.MIB)
    sizes = [len(client.parts[n]) for n in sorted(client.parts)]
    assert len(sizes) >= 4 and set(sizes[:-1]) == {5 * r2.MIB} and 0 < sizes[-1] <= 5 * r2.MIB
    assert [p["PartNumber"] for p in client.completed] == list(range(1, len(sizes) + 1))
    assert client.most <= r2.UPLOADERS
    assert result["size"] == sum(sizes) and result["parts"] == len(sizes)
    assert result["sha256"] == hashlib.sha256(b"".join(client.parts[n] for n in sorted(client.parts))).hexdigest()


class _Discard:
    def write(self, data) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def test_the_tar_writer_keeps_nothing_per_member(tmp_path):
    # issue 19: a backup's memory must not grow with the home's member count (tarfile keeps every TarInfo it wrote:
    # about 450 bytes a member, 90 MiB more for a 200,000-file home)
    import tracemalloc

    def peak(count: int) -> int:
        src = tmp_path / f"home-{count}"
        for n in range(count):
            folder = src / f"d{n // 100:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"note-{n:05d}.md").write_bytes(b"x")
        counters = {}
        tracemalloc.start()
        try:
            r2.write_tar(str(src), _Discard(), (), counters)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert counters["files"] == count

    few, many = peak(300), peak(3000)
    assert many - few < 150 * 1024, (few, many)  # was about 1 MB more
