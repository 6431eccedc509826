#!/usr/bin/env python3
"""Benchmark (issue 19, issue 17): the design's backup (``tar czf`` to /tmp, then upload the file) against r2_archive
(tar | zstd streamed into a multipart upload), the design's restore (download, then ``tar xzf``) against r2_archive's
streamed restore, and r2_archive with client-side encryption against r2_archive without, on the same claw homes, in
one run, against a moto S3 server on loopback.  Every method runs in its own Python process (its peak RSS, children
such as tar included, is its own); the methods of a size are interleaved round by round (the order alternates), and
each figure is the median of the rounds.

    .venv/bin/python bench/archive_bench.py [--quick] [--sizes 32,256,1024,4096] [--rounds 3] [--workdir DIR]
        [--methods r2-backup,r2enc-backup] [--thin]

``--quick`` (a few minutes): 32 and 256 MiB homes, 3 rounds.  The full run (the README's numbers): 32, 256 and
1024 MiB with 3 rounds each, then 4096 MiB with ``--big-rounds`` rounds (default 1: the ratio is what counts, and a
4 GiB round takes minutes on two shared cores).  Goals (issue 19): backup at least 2x faster than the design at the
largest size up to 1 GiB, r2_archive's peak RSS at most 150 MiB at every size, restore at least 1.5x faster at every
size; encryption costs at most 15 % throughput (issue 17).  ``rows(quick)`` returns the figures for bench/run_all.py.
``--methods``: a subset of the methods (a restore needs its backup); the figures that need the others are left out.
``--thin``: homes with the member count of their size but a fraction of its bytes (:func:`build_home`): a backup's
memory grows with its members, not its bytes, so ``--sizes 4096 --thin --methods r2-backup,r2enc-backup`` shows the
4 GiB home's peak RSS in a few minutes (202,000 members, 102 MiB of archive).

The claw homes are built once (cached in the work dir): text and JSON (session logs, memory), SQLite databases,
already-compressed blobs (media, .gz), and many small files (workspace notes).

Fairness: the restores are timed from the first request to the last byte on disk, both through the same boto3
client (process start and imports are not timed for either); run by root, ``tar`` restores the members' owners, so
r2_archive is given the home's owner too (as on a Mini).  The restored trees are moved aside and deleted only at the
end of the run (free disk: about 3 x rounds x the sizes): on a filesystem without a journal, ext4 skips every
recently deleted inode when it allocates one, so a method run right after another one's deletion paid for it
(creating a file cost 0.6 ms instead of 25 us) and the method that followed a deletion more often lost.
Not a test: nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
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


def build_home(root: Path, size_mib: int, seed: int = 42, thin: bool = False) -> None:
    """About ``size_mib`` MiB: 35% text/JSON, 25% SQLite, 25% compressed blobs, 15% many small files.

    ``thin``: the same tree (about the same member count: the files the full home would have) with a fraction of its
    bytes: 2 of a session's 200 lines, 1/64 of the SQLite, 256 KiB of each 4 MiB blob, at most 600 characters of a
    note.  Each file counts for what the full home's would weigh, so the loops make as many files as they would."""
    rng = random.Random(seed)
    marker = root / ".bench-complete"
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("size_mib") == size_mib and done.get("thin", False) == thin:
            return
    shutil.rmtree(root, ignore_errors=True)
    (root / ".openclaw" / "sessions").mkdir(parents=True)
    budget = size_mib * MIB

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n // 6))

    word = sum(len(w) + 1 for w in WORDS) / len(WORDS)  # a thin file counts as text(n) would: (n // 6) words
    written = 0
    i = 0
    while written < budget * 0.35:  # session logs (JSONL) and memory notes
        count = 2 if thin else 200
        lines = [json.dumps({"ts": 1700000000 + j, "role": rng.choice(["user", "assistant"]), "text": text(400)}) for j in range(count)]
        data = "\n".join(lines).encode()
        (root / ".openclaw" / "sessions" / f"session-{i:05d}.jsonl").write_bytes(data)
        written += len(data) * (200 // count)
        i += 1
    db_dir = root / ".openclaw" / "db"
    db_dir.mkdir()
    for n in range(4):  # SQLite
        con = sqlite3.connect(db_dir / f"memory-{n}.sqlite")
        con.execute("create table items (id integer primary key, body text, blob blob)")
        target = budget * 0.25 / 4 / (64 if thin else 1)
        size = 0
        while size < target:
            rows = [(text(300), rng.randbytes(256)) for _ in range(500)]
            con.executemany("insert into items (body, blob) values (?, ?)", rows)
            con.commit()
            size = (db_dir / f"memory-{n}.sqlite").stat().st_size
        con.close()
        written += size * (64 if thin else 1)
    media = root / "media"
    media.mkdir()
    n = 0
    while written < budget * 0.85:  # already-compressed blobs
        blob = rng.randbytes(MIB // 4 if thin else 4 * MIB)
        (media / f"upload-{n:04d}.jpg.gz").write_bytes(gzip.compress(blob, 1)[: len(blob)])
        written += 4 * MIB
        n += 1
    small = root / ".openclaw" / "workspace"
    small.mkdir()
    n = 0
    while written < budget:  # many small files
        d = small / f"dir-{n // 500:03d}"
        d.mkdir(exist_ok=True)
        chars = rng.randrange(200, 6000)
        data = text(min(chars, 600) if thin else chars).encode()
        (d / f"note-{n:06d}.md").write_bytes(data)
        written += round(chars // 6 * word) if thin else len(data)
        n += 1
    (root / ".cache").mkdir()
    marker.write_text(json.dumps({"size_mib": size_mib, "thin": thin}))


def peak_rss_mib() -> float:
    """The peak RSS of this process or of a child it waited for (tar), in MiB.

    A process's own ``ru_maxrss`` starts at its parent's peak (Linux keeps, at exec, the peak of the address space
    exec replaced: with vfork, the parent's), so the bench's own peak (it walks the homes, perhaps builds them) would
    show up as every method's, and did (158 MiB for a 115 MiB backup of a 200,000-member home).  Where /proc has it,
    this process's own is ``VmHWM``: the peak of its address space since exec only."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open("/proc/self/status") as status:
            own = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))  # KiB, as ru_maxrss on Linux
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


BUCKET = "claw-backup-bench"
METHODS = ("design-backup", "r2-backup", "r2enc-backup", "design-restore", "r2-restore", "r2enc-restore")
GOAL_BACKUP, GOAL_RSS, GOAL_RESTORE, GOAL_ENC_COST = 2.0, 150.0, 1.5, 0.15


def run_method(args) -> dict:
    """Child process: one method, one direction, timed from its first request to its last byte on disk or in the
    bucket (the process start and imports are not timed).  Prints a JSON result line."""
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2

    client = _r2.make_s3_client(args.endpoint, "bench", "bench-secret", "auto")
    home, work = Path(args.home), Path(args.workdir)
    tmp = work / "tmp" / "claw.tar.gz"
    tmp.parent.mkdir(exist_ok=True)
    dest = work / ("restore-design" if args.method == "design-restore" else "restore-r2")
    shutil.rmtree(dest, ignore_errors=True)
    if args.method == "design-restore":
        dest.mkdir()
    # tar run by root restores the members' owners (a fchown per file): r2_archive sets the owner too, as it does on a
    # Mini (the home's own ids here); without root neither does
    owner = (home.stat().st_uid, home.stat().st_gid) if os.geteuid() == 0 else (None, None)
    extra_disk = 0
    started = time.monotonic()
    if args.method == "design-backup":
        subprocess.run(["tar", "czf", str(tmp), "-C", str(home), "."], check=True)
        extra_disk = tmp.stat().st_size
        client.upload_file(str(tmp), BUCKET, "design/claw.tar.gz")
        size = extra_disk
        tmp.unlink()
    elif args.method in ("r2-backup", "r2enc-backup"):
        encryption = ("kbench", BENCH_KEY) if args.method == "r2enc-backup" else None
        result = _r2.archive_and_verify(client, BUCKET, KEYS[args.method], str(home), "bench", "backup",
                                        excludes=(), encryption=encryption)
        size = result["size"]
    elif args.method == "design-restore":
        client.download_file(BUCKET, "design/claw.tar.gz", str(tmp))
        extra_disk = tmp.stat().st_size
        subprocess.run(["tar", "xzf", str(tmp), "-C", str(dest)], check=True)
        size = extra_disk
    else:  # r2-restore, r2enc-restore
        result = _r2.restore_archive(client, BUCKET, KEYS[args.method], str(dest), *owner, keys={"kbench": BENCH_KEY})
        size = result["size"]
    seconds = time.monotonic() - started
    rss = peak_rss_mib()
    tmp.unlink(missing_ok=True)
    if dest.exists():  # kept until the end of the run (see measure)
        trash = work / "trash"
        trash.mkdir(exist_ok=True)
        dest.rename(trash / f"{args.method}-{time.time_ns()}")
    return {"method": args.method, "seconds": round(seconds, 3), "object_mib": round(size / MIB, 1),
            "peak_rss_mib": rss, "extra_disk_mib": round(extra_disk / MIB, 1)}


def content_bytes(home: Path) -> int:
    return sum(f.stat().st_size for f in home.rglob("*") if f.is_file() and not f.is_symlink())


def measure_size(server, work: Path, size_mib: int, rounds: int, log=print, methods=METHODS, thin=False) -> dict:
    """Every method (of ``methods``) on a ``size_mib`` home (``thin``: see :func:`build_home`), ``rounds`` times
    interleaved; ``{method: median result}`` (throughput in MiB/s of home content, peak RSS the largest of the rounds)."""
    home = work / (f"claw-home-{size_mib}-thin" if thin else f"claw-home-{size_mib}")
    log(f"building a {size_mib} MiB{' thin' if thin else ''} claw home in {home} (cached) ...")
    build_home(home, size_mib, thin=thin)
    content = content_bytes(home)
    runs = {m: [] for m in METHODS if m in methods}
    for n in range(rounds):
        order = METHODS if n % 2 == 0 else METHODS[2::-1] + METHODS[:2:-1]  # alternate the order
        for method in (m for m in order if m in runs):
            out = subprocess.run([sys.executable, __file__, "--method", method, "--endpoint", server.endpoint_url,
                                  "--home", str(home), "--workdir", str(work)], capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"{method} failed: {out.stderr[-2000:]}")
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
        log(f"  {size_mib} MiB round {n + 1}/{rounds}: " + "  ".join(f"{m} {runs[m][-1]['seconds']:.2f}s" for m in runs))
    results = {}
    for method, rs in runs.items():
        seconds = statistics.median(r["seconds"] for r in rs)
        results[method] = {"method": method, "seconds": round(seconds, 3), "rounds": len(rs),
                           "throughput_mib_s": round(content / MIB / seconds, 1), "object_mib": rs[-1]["object_mib"],
                           "peak_rss_mib": max(r["peak_rss_mib"] for r in rs), "extra_disk_mib": rs[-1]["extra_disk_mib"]}
    return results


def measure(sizes, rounds: int, big_rounds: int, workdir: str, log=print, methods=METHODS, thin=False) -> dict:
    """``{size_mib: {method: result}}`` for every size (sizes above 1 GiB get ``big_rounds`` rounds)."""
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2
    from clawfarm_testlib import S3StandIn

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "trash", ignore_errors=True)  # a run that was killed
    server = S3StandIn("127.0.0.1", work)
    server.start()
    try:
        _r2.ensure_bucket(server.client(), BUCKET, "auto")
        return {size: measure_size(server, work, size, big_rounds if size > 1024 else rounds, log, methods, thin)
                for size in sizes}
    finally:
        server.stop()
        for name in ("restore-design", "restore-r2", "tmp", "trash"):
            shutil.rmtree(work / name, ignore_errors=True)


def figure_rows(results: dict) -> list[dict]:
    """The figures of issues 19 and 17 from :func:`measure`'s results."""
    rows = []
    sizes = sorted(results)
    ran = set(results[sizes[0]])  # the methods measured (--methods), the same at every size
    backup_size = max((s for s in sizes if s <= 1024), default=sizes[0])
    if {"design-backup", "r2-backup"} <= ran:
        d, r = results[backup_size]["design-backup"], results[backup_size]["r2-backup"]
        ratio = d["seconds"] / r["seconds"]
        rows.append({"figure": f"Backup vs the design's tar czf + upload, {backup_size} MiB home (archive_bench)",
                     "now": f"{r['seconds']:.2f} s", "baseline": f"{d['seconds']:.2f} s", "ratio": round(ratio, 2),
                     "goal": f"≥ {GOAL_BACKUP:g}×", "ok": ratio >= GOAL_BACKUP})
    ours = [m for m in ("r2-backup", "r2enc-backup") if m in ran]
    if ours:
        peak = max(results[s][m]["peak_rss_mib"] for s in sizes for m in ours)
        design_peak = max((results[s]["design-backup"]["peak_rss_mib"] for s in sizes if "design-backup" in ran), default=0)
        rows.append({"figure": f"Backup peak RSS, largest over {', '.join(map(str, sizes))} MiB, "
                               + ("encrypted or not" if len(ours) == 2 else ours[0]),
                     "now": f"{peak:.0f} MiB", "baseline": f"{design_peak:.0f} MiB" if design_peak else "-",
                     "ratio": round(peak / design_peak, 2) if design_peak else "-",
                     "goal": f"≤ {GOAL_RSS:.0f} MiB", "ok": peak <= GOAL_RSS})
    for size in sizes if {"design-restore", "r2-restore"} <= ran else ():
        d, r = results[size]["design-restore"], results[size]["r2-restore"]
        ratio = d["seconds"] / r["seconds"]
        rounds = r["rounds"]
        rows.append({"figure": f"Restore vs the design's download + tar xzf, {size} MiB home"
                               + (f" ({rounds} round{'s' if rounds > 1 else ''})" if rounds < 3 else ""),
                     "now": f"{r['seconds']:.2f} s", "baseline": f"{d['seconds']:.2f} s", "ratio": round(ratio, 2),
                     "goal": f"≥ {GOAL_RESTORE:g}×", "ok": ratio >= GOAL_RESTORE})
    enc_size = backup_size
    for kind in ("backup", "restore"):
        if not {f"r2-{kind}", f"r2enc-{kind}"} <= ran:
            continue
        plain, enc = results[enc_size][f"r2-{kind}"], results[enc_size][f"r2enc-{kind}"]
        ratio = enc["throughput_mib_s"] / plain["throughput_mib_s"]
        rows.append({"figure": f"Encrypted vs unencrypted {kind} throughput (peak RSS), {enc_size} MiB home",
                     "now": f"{enc['throughput_mib_s']:.0f} MiB/s ({enc['peak_rss_mib']:.0f} MiB)",
                     "baseline": f"{plain['throughput_mib_s']:.0f} MiB/s ({plain['peak_rss_mib']:.0f} MiB)",
                     "ratio": round(ratio, 2), "goal": f"≥ {1 - GOAL_ENC_COST:.2f}× (cost ≤ {GOAL_ENC_COST:.0%})",
                     "ok": ratio >= 1 - GOAL_ENC_COST})
    return rows


QUICK_SIZES, FULL_SIZES = (32, 256), (32, 256, 1024, 4096)


def rows(quick: bool) -> list[dict]:
    """The figures for bench/run_all.py: ``--quick`` sizes and rounds, or the full run."""
    results = measure(QUICK_SIZES if quick else FULL_SIZES, 3, 1, "/var/tmp/clawfarm-bench", log=lambda *a: None)
    return figure_rows(results)


def print_results(results: dict) -> None:
    print(f"\n{'size MiB':>8} {'method':15} {'rounds':>6} {'seconds':>8} {'MiB/s':>7} {'object MiB':>10} {'peak RSS MiB':>12} {'extra disk MiB':>14}")
    for size, per in results.items():
        for r in per.values():
            print(f"{size:>8} {r['method']:15} {r['rounds']:>6} {r['seconds']:>8.2f} {r['throughput_mib_s']:>7} {r['object_mib']:>10} "
                  f"{r['peak_rss_mib']:>12} {r['extra_disk_mib']:>14}")
    print("\nencryption (r2_archive encrypted vs unencrypted, same home):")
    print(f"{'size MiB':>8} {'':8} {'MiB/s plain':>12} {'MiB/s enc':>10} {'cost':>7} {'RSS MiB plain':>14} {'RSS MiB enc':>12}")
    for size, per in results.items():
        for kind in ("backup", "restore"):
            if f"r2-{kind}" not in per or f"r2enc-{kind}" not in per:
                continue
            plain, enc = per[f"r2-{kind}"], per[f"r2enc-{kind}"]
            cost = 1 - enc["throughput_mib_s"] / plain["throughput_mib_s"]
            print(f"{size:>8} {kind:8} {plain['throughput_mib_s']:>12} {enc['throughput_mib_s']:>10} {cost:>7.1%} "
                  f"{plain['peak_rss_mib']:>14} {enc['peak_rss_mib']:>12}")
    print()
    print(f"{'figure':78} {'now':>22} {'baseline':>22} {'ratio':>6} {'goal':>22}")
    for row in figure_rows(results):
        print(f"{row['figure']:78} {row['now']:>22} {row['baseline']:>22} {row['ratio']:>5}× {row['goal']:>22} "
              f"{'ok' if row['ok'] else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} MiB, 3 rounds (a few minutes)")
    parser.add_argument("--sizes", help=f"comma-separated home sizes in MiB (default {FULL_SIZES})")
    parser.add_argument("--size-mib", type=int, help="one size (as --sizes N)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-rounds", type=int, default=1, help="rounds for sizes above 1 GiB")
    parser.add_argument("--workdir", default="/var/tmp/clawfarm-bench")
    parser.add_argument("--methods", help=f"comma-separated subset of {','.join(METHODS)} (a restore needs its backup)")
    parser.add_argument("--thin", action="store_true",
                        help="homes with the member count of their size but a fraction of its bytes (peak RSS by members)")
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(json.dumps(run_method(args)))
        return
    if args.size_mib:
        sizes = (args.size_mib,)
    elif args.sizes:
        sizes = tuple(int(x) for x in args.sizes.split(","))
    else:
        sizes = QUICK_SIZES if args.quick else FULL_SIZES
    methods = tuple(args.methods.split(",")) if args.methods else METHODS
    unknown = set(methods) - set(METHODS)
    missing = {m.replace("restore", "backup") for m in methods if m.endswith("restore")} - set(methods)
    if unknown or missing:
        parser.error(f"--methods: unknown {sorted(unknown)}" if unknown else f"--methods: a restore needs {sorted(missing)}")
    started = time.monotonic()
    results = measure(sizes, args.rounds, args.big_rounds, args.workdir, log=lambda *a: print(*a, flush=True),
                      methods=methods, thin=args.thin)
    print_results(results)
    print(f"\n({time.monotonic() - started:.0f} s; commit {_commit()})")


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
