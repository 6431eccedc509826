#!/usr/bin/env python3
"""Benchmark: the design's backup (tar czf to /tmp, then upload the file) against r2_archive (tar | zstd streamed
into a multipart upload), and the same for restore, on the same claw home, in one run, against a moto S3 server
on loopback. Prints wall time, throughput, peak RSS and extra disk for each, and the ratios (design / r2_archive);
then r2_archive with client-side encryption (issue 17) against r2_archive without, side by side: throughput and peak
RSS of each, and the throughput cost of encryption (the issue allows at most 15 % at 1 GiB).

    .venv/bin/python bench/archive_bench.py [--size-mib 1024] [--workdir /var/tmp/clawfarm-bench]

The claw home is built once (cached in the work dir): text and JSON (session logs, memory), SQLite databases,
already-compressed blobs (media, .gz), and many small files (workspace notes, node caches left out by excludes).
Each method runs in its own Python process so peak RSS (self + children such as tar) is its own.
Not a test: nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".collections"))
sys.path.insert(0, str(REPO / "tests"))

MIB = 1024 * 1024
BENCH_KEY = hashlib.sha256(b"clawfarm archive bench: a throwaway key").digest()
KEYS = {"r2-backup": "backups/20261122T020000Z.tar.zst", "r2-restore": "backups/20261122T020000Z.tar.zst",
        "r2enc-backup": "backups/20261123T020000Z.tar.zst", "r2enc-restore": "backups/20261123T020000Z.tar.zst"}
WORDS = ("claw gateway session agent memory tool result user assistant message context token model reply "
         "schedule reminder browser page summary file note task plan").split()


def build_home(root: Path, size_mib: int, seed: int = 42) -> None:
    """About ``size_mib`` MiB: 35% text/JSON, 25% SQLite, 25% compressed blobs, 15% many small files."""
    rng = random.Random(seed)
    marker = root / ".bench-complete"
    if marker.exists() and json.loads(marker.read_text()).get("size_mib") == size_mib:
        return
    shutil.rmtree(root, ignore_errors=True)
    (root / ".openclaw" / "sessions").mkdir(parents=True)
    budget = size_mib * MIB

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n // 6))

    written = 0
    i = 0
    while written < budget * 0.35:  # session logs (JSONL) and memory notes
        lines = [json.dumps({"ts": 1700000000 + j, "role": rng.choice(["user", "assistant"]), "text": text(400)}) for j in range(200)]
        data = "\n".join(lines).encode()
        (root / ".openclaw" / "sessions" / f"session-{i:05d}.jsonl").write_bytes(data)
        written += len(data)
        i += 1
    db_dir = root / ".openclaw" / "db"
    db_dir.mkdir()
    for n in range(4):  # SQLite
        con = sqlite3.connect(db_dir / f"memory-{n}.sqlite")
        con.execute("create table items (id integer primary key, body text, blob blob)")
        target = budget * 0.25 / 4
        size = 0
        while size < target:
            rows = [(text(300), rng.randbytes(256)) for _ in range(500)]
            con.executemany("insert into items (body, blob) values (?, ?)", rows)
            con.commit()
            size = (db_dir / f"memory-{n}.sqlite").stat().st_size
        con.close()
        written += size
    media = root / "media"
    media.mkdir()
    n = 0
    while written < budget * 0.85:  # already-compressed blobs
        blob = rng.randbytes(4 * MIB)
        (media / f"upload-{n:04d}.jpg.gz").write_bytes(gzip.compress(blob, 1)[: 4 * MIB])
        written += 4 * MIB
        n += 1
    small = root / ".openclaw" / "workspace"
    small.mkdir()
    n = 0
    while written < budget:  # many small files
        d = small / f"dir-{n // 500:03d}"
        d.mkdir(exist_ok=True)
        data = text(rng.randrange(200, 6000)).encode()
        (d / f"note-{n:06d}.md").write_bytes(data)
        written += len(data)
        n += 1
    (root / ".cache").mkdir()
    marker.write_text(json.dumps({"size_mib": size_mib}))


def peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def run_method(args) -> dict:
    """Child process: one method, one direction. Prints a JSON result line."""
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2

    client = _r2.make_s3_client(args.endpoint, "bench", "bench-secret", "auto")
    bucket = "claw-backup-bench"
    home, work = Path(args.home), Path(args.workdir)
    started = time.monotonic()
    extra_disk = 0
    if args.method == "design-backup":
        tmp = work / "tmp" / "claw.tar.gz"
        tmp.parent.mkdir(exist_ok=True)
        subprocess.run(["tar", "czf", str(tmp), "-C", str(home), "."], check=True)
        extra_disk = tmp.stat().st_size
        client.upload_file(str(tmp), bucket, "design/claw.tar.gz")
        size = extra_disk
        tmp.unlink()
    elif args.method in ("r2-backup", "r2enc-backup"):
        encryption = ("kbench", BENCH_KEY) if args.method == "r2enc-backup" else None
        result = _r2.archive_and_verify(client, bucket, KEYS[args.method], str(home), "bench", "backup",
                                        excludes=(), part_size=64 * MIB, encryption=encryption)
        size = result["size"]
    elif args.method == "design-restore":
        tmp = work / "tmp" / "claw.tar.gz"
        client.download_file(bucket, "design/claw.tar.gz", str(tmp))
        extra_disk = tmp.stat().st_size
        dest = work / "restore-design"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        subprocess.run(["tar", "xzf", str(tmp), "-C", str(dest)], check=True)
        size = extra_disk
        tmp.unlink()
    else:  # r2-restore, r2enc-restore
        dest = work / "restore-r2"
        shutil.rmtree(dest, ignore_errors=True)
        result = _r2.restore_archive(client, bucket, KEYS[args.method], str(dest), None, None, keys={"kbench": BENCH_KEY})
        size = result["size"]
    seconds = time.monotonic() - started
    content = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
    return {"method": args.method, "seconds": round(seconds, 2), "object_mib": round(size / MIB, 1),
            "throughput_mib_s": round(content / MIB / seconds, 1), "peak_rss_mib": peak_rss_mib(),
            "extra_disk_mib": round(extra_disk / MIB, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--workdir", default="/var/tmp/clawfarm-bench")
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(json.dumps(run_method(args)))
        return
    from clawfarm_testlib import S3StandIn

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    home = work / "claw-home"
    print(f"building a {args.size_mib} MiB claw home in {home} (cached) ...", flush=True)
    build_home(home, args.size_mib)
    server = S3StandIn("127.0.0.1", work)
    server.start()
    try:
        from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2

        _r2.ensure_bucket(server.client(), "claw-backup-bench", "auto")
        results = {}
        for method in ("design-backup", "r2-backup", "r2enc-backup", "design-restore", "r2-restore", "r2enc-restore"):
            print(f"running {method} ...", flush=True)
            out = subprocess.run([sys.executable, __file__, "--method", method, "--endpoint", server.endpoint_url, "--home", str(home),
                                  "--workdir", str(work)], capture_output=True, text=True, check=True).stdout
            results[method] = json.loads(out.strip().splitlines()[-1])
    finally:
        server.stop()
        shutil.rmtree(work / "restore-design", ignore_errors=True)
        shutil.rmtree(work / "restore-r2", ignore_errors=True)
        shutil.rmtree(work / "tmp", ignore_errors=True)
    print(f"\n{'method':16} {'seconds':>8} {'MiB/s':>8} {'object MiB':>11} {'peak RSS MiB':>13} {'extra disk MiB':>15}")
    for r in results.values():
        print(f"{r['method']:16} {r['seconds']:>8} {r['throughput_mib_s']:>8} {r['object_mib']:>11} {r['peak_rss_mib']:>13} {r['extra_disk_mib']:>15}")
    print("\nratios (design / r2_archive; > 1 means r2_archive is better):")
    for kind in ("backup", "restore"):
        d, r = results[f"design-{kind}"], results[f"r2-{kind}"]
        print(f"  {kind:8} wall time {d['seconds'] / r['seconds']:.2f}x   peak RSS {d['peak_rss_mib'] / r['peak_rss_mib']:.2f}x   "
              f"extra disk {d['extra_disk_mib']:.0f} MiB vs {r['extra_disk_mib']:.0f} MiB   object size {d['object_mib'] / r['object_mib']:.2f}x")

    print("\nencryption (r2_archive encrypted vs unencrypted, same home):")
    print(f"  {'':8} {'MiB/s plain':>12} {'MiB/s enc':>10} {'cost':>7} {'RSS MiB plain':>14} {'RSS MiB enc':>12}")
    for kind in ("backup", "restore"):
        plain, enc = results[f"r2-{kind}"], results[f"r2enc-{kind}"]
        cost = 1 - enc["throughput_mib_s"] / plain["throughput_mib_s"]
        print(f"  {kind:8} {plain['throughput_mib_s']:>12} {enc['throughput_mib_s']:>10} {cost:>7.1%} "
              f"{plain['peak_rss_mib']:>14} {enc['peak_rss_mib']:>12}")


if __name__ == "__main__":
    main()
