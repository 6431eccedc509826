#!/usr/bin/env python3
"""Benchmark: moving a claw between two sandbox Minis with the pre-copy method (rsync while the gateway runs, stop,
delta, start) against the archive method (stop, archive to R2, restore, start - the design's path), in one run, on
the same claw with a home of --size-mib (default 1 GiB). Prints downtime (gateway stopped on the source -> healthy
on the target) and total time of each, and their ratios (archive / pre-copy).

    .venv/bin/python bench/migrate_bench.py [--size-mib 1024] [--rounds 1] [--workdir /var/tmp/clawfarm-bench]

Also measures the baseline the downtime goal is set against: a bare warm restart of the same runtime's gateway on
the Mini (bench/bare_gateway_start.py ... restart), and gives bench/run_all.py its figure (``rows``).

Needs root (sandbox Minis). Uses the same stand-ins as the end-to-end tests: moto for R2 on the first Mini's host
side, the Cloudflare API stand-in on loopback. Not a test: nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _farm import REPO, load, sandbox_farm  # noqa: E402

MINIS = ("bm1", "bm2")
REPORT = re.compile(r"moved from (\S+) \(port \d+\) to (\S+) \(port \d+\) by (\w+): downtime ([\d.]+) s .*? total ([\d.]+) s; "
                    r"bytes moved: (.*?)'")
GOAL_DOWNTIME_S = 10.0
GOAL_RESTART_RATIO = 1.3


def migrate(farm, claw_id: str, target: str, method: str) -> dict:
    out, _ = farm.playbook("migrate", "-e", f"claw_id={claw_id}", "-e", f"target={target}", "-e", f"method={method}")
    match = REPORT.search(" ".join(out.split()))
    if not match:
        sys.exit(f"no migration report in the output:\n{out[-3000:]}")
    return {"method": match.group(3), "downtime_s": float(match.group(4)), "total_s": float(match.group(5)), "bytes": match.group(6)}


def measure(size_mib: int, workdir: Path, rounds: int = 1) -> dict:
    """Migrate one claw with a ``size_mib`` home back and forth ``rounds`` times by pre-copy (and once by archive).

    Returns ``{"precopy": [row], "archive": row, "bare_restart": [s]}``; a row is
    ``{"method", "downtime_s", "total_s", "bytes"}``.
    """
    archive_bench = load("archive_bench", REPO / "bench/archive_bench.py")
    home_src = workdir / f"home-{size_mib}"
    print(f"==> building a {size_mib} MiB claw home (cached in {home_src})", flush=True)
    archive_bench.build_home(home_src, size_mib)
    result = {"precopy": [], "bare_restart": []}
    with sandbox_farm(MINIS, workdir) as farm:
        claw_id = str(uuid.uuid4())
        user = f"claw-{claw_id[:8]}"
        farm.playbook("provision", "-e", f"claw_id={claw_id}", "-e", f"mini={MINIS[0]}")
        farm.exec(MINIS[0], f"cp -a {home_src} /Users/{user}/.openclaw/workspace/data && "
                            f"chown -R {user} /Users/{user}/.openclaw/workspace/data")
        print(f"==> migrating a claw with a {size_mib} MiB home by pre-copy ({rounds} round(s)), then by archive", flush=True)
        here = 0
        for _ in range(rounds):
            result["bare_restart"].append(farm.bare_gateway_start(MINIS[here], user, restart=True))
            here = 1 - here
            result["precopy"].append(migrate(farm, claw_id, MINIS[here], "rsync"))
        result["archive"] = migrate(farm, claw_id, MINIS[1 - here], "archive")
    return result


def rows(quick: bool, workdir: Path = Path("/var/tmp/clawfarm-bench")) -> list:
    """The issue's figure: ``[{figure, now, baseline, ratio, goal, ok}]`` (pre-copy downtime vs a bare restart)."""
    result = measure(64 if quick else 1024, workdir, rounds=1 if quick else 3)
    downtime = statistics.median(row["downtime_s"] for row in result["precopy"])
    restart = statistics.median(result["bare_restart"])
    size = "64 MiB" if quick else "1 GiB"
    return [{"figure": f"migration downtime, {size} home, pre-copy ÷ bare gateway restart", "now": f"{downtime:.1f} s",
             "baseline": f"{restart:.1f} s", "ratio": downtime / restart,
             "goal": f"≤ {GOAL_DOWNTIME_S:.0f} s and ≤ {GOAL_RESTART_RATIO}×",
             "ok": downtime <= GOAL_DOWNTIME_S and downtime / restart <= GOAL_RESTART_RATIO}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1, help="pre-copy migrations back and forth (medians)")
    parser.add_argument("--workdir", default="/var/tmp/clawfarm-bench")
    args = parser.parse_args()
    result = measure(args.size_mib, Path(args.workdir), args.rounds)
    precopy = {"method": "rsync", **{k: statistics.median(r[k] for r in result["precopy"]) for k in ("downtime_s", "total_s")},
               "bytes": result["precopy"][-1]["bytes"]}
    archive = result["archive"]
    restart = statistics.median(result["bare_restart"])
    print(f"\n{'method':<10} {'downtime s':>11} {'total s':>9}  bytes moved")
    for row in (precopy, archive):
        print(f"{row['method']:<10} {row['downtime_s']:>11.2f} {row['total_s']:>9.2f}  {row['bytes']}")
    print("pre-copy downtime per move (s): " + ", ".join(f"{row['downtime_s']:.2f}" for row in result["precopy"]))
    print(f"bare gateway restart (baseline): {restart:.2f} s")
    print(f"\nratios: pre-copy downtime / bare restart {precopy['downtime_s'] / restart:.2f}x (goal <= {GOAL_RESTART_RATIO}x, "
          f"and <= {GOAL_DOWNTIME_S:.0f} s); archive / pre-copy: downtime {archive['downtime_s'] / max(precopy['downtime_s'], 0.01):.2f}x, "
          f"total {archive['total_s'] / max(precopy['total_s'], 0.01):.2f}x")


if __name__ == "__main__":
    main()
