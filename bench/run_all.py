#!/usr/bin/env python3
"""Run every benchmark and print issue 19's figures in one table, each beside its baseline from the same run.

    sudo .venv/bin/python bench/run_all.py [--quick] [--only provision,migrate,archive,api] [--markdown]

``--quick`` (a few minutes per bench: smaller homes, fewer rounds) is for checking that the benches work; the full
run (medians of at least 3 rounds, 1 GiB homes) gives the README's numbers. Each bench module exposes
``rows(quick) -> [{"figure", "now", "baseline", "ratio", "goal", "ok"}]``; a bench that fails is reported as such
and the others still run. ``--markdown`` prints the table as README's Benchmark section shows it (with the date and
the commit measured). Needs root (the provision and migration benches boot sandbox Minis). Not a test: nothing here
asserts on time; the exit status is 1 when a figure misses its goal or a bench failed.
"""
from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _farm import REPO, load  # noqa: E402

BENCHES = {  # name -> file; run in this order (the longest last)
    "api": "api_load.py",
    "archive": "archive_bench.py",
    "provision": "provision_bench.py",
    "migrate": "migrate_bench.py",
}


def run(names, quick: bool) -> list:
    """``[(bench, rows or None, seconds, error or None)]`` for the benches ``names``, run one after another."""
    results = []
    for name in names:
        print(f"\n######## {name} ({'quick' if quick else 'full'})", flush=True)
        started = time.monotonic()
        try:
            module = load(f"bench_{name}", REPO / "bench" / BENCHES[name])
            if not hasattr(module, "rows"):
                raise RuntimeError(f"bench/{BENCHES[name]} has no rows(quick)")
            results.append((name, module.rows(quick), time.monotonic() - started, None))
        except (Exception, SystemExit) as error:  # one failing bench must not hide the others' figures
            traceback.print_exc()
            results.append((name, None, time.monotonic() - started, str(error)[:300] or type(error).__name__))
    return results


def table(results, markdown: bool) -> str:
    """The figures as text (or a Markdown table)."""
    lines = []
    if markdown:
        lines += ["| Figure | Now | Baseline (same run) | Ratio | Goal | Met |", "|---|---|---|---|---|---|"]
    for name, rows, seconds, error in results:
        if rows is None:
            lines.append(f"| {name} | failed: {error} | | | | no |" if markdown else f"{name}: FAILED after {seconds:.0f} s: {error}")
            continue
        for row in rows:
            cells = [row["figure"], row["now"], row["baseline"], f"{row['ratio']:.2f}×", row["goal"], "yes" if row["ok"] else "**no**"]
            lines.append("| " + " | ".join(cells) + " |" if markdown else
                         f"{row['figure'][:62]:<62} {row['now']:>12} {row['baseline']:>12} {row['ratio']:>6.2f}x  {row['goal']:<22} "
                         f"{'ok' if row['ok'] else 'MISSED'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ", ".join(BENCHES))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        sys.exit(f"unknown bench(es) {', '.join(unknown)}: choose from {', '.join(BENCHES)}")
    started = time.monotonic()
    results = run(names, args.quick)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"\n==== figures ({'quick' if args.quick else 'full'} run, {datetime.date.today()}, commit {commit or 'unknown'}, "
          f"{time.monotonic() - started:.0f} s)")
    print(table(results, args.markdown))
    failed = any(rows is None or not all(r["ok"] for r in rows) for _, rows, _, _ in results)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
