#!/usr/bin/env python3
"""Benchmark: provisioning a claw against the gateway's own start, on one bootstrapped sandbox Mini, in one run.

Each round measures, on the same Mini and runtime:
  - **bare start**: the installed gateway started by hand as a claw's user with a fresh state dir, until its
    token-checked health call answers (bench/bare_gateway_start.py: no Ansible, no launchd) - the baseline;
  - **provision**: ``provision.yml`` of a new claw (placement included), wall time;
  - **no-op**: ``provision.yml`` again for the same claw (nothing to change).
Prints each round, the medians, the ratios provision / bare start (goal <= 1.3) and no-op / provision (goal <= 0.15),
and per-phase tables of the median provision and no-op from per-task times (bench/callback_plugins/task_timer.py).

    .venv/bin/python bench/provision_bench.py [--rounds 3] [--workdir /var/tmp/clawfarm-bench-provision]

Needs root (sandbox Minis). ``rows(quick)`` gives bench/run_all.py the figures. Not a test: nothing asserts on time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _farm import REPO, sandbox_farm  # noqa: E402

MINI = "bp1"
GOAL_PROVISION = 1.3
GOAL_NOOP = 0.15


def phase_of(row: dict) -> str:
    """The phase a task (a task_timer row) belongs to in a provision."""
    task = row["task"]
    if row["play"] != "Provision a claw":
        return "settings and placement"
    if "health call" in task:
        return "gateway start (health wait)"
    if "launchd" in task and "Run the gateway" in task:
        return "launchd load"
    if any(word in task for word in ("route", "DNS", "connector", "Record", "Show")):
        return "route, DNS, record"
    return "user, dirs, config, secrets, pf"


def phases(times_file: Path) -> dict:
    """``{phase: seconds}`` summed over the task_timer rows of one run (tasks of one phase run one after another)."""
    totals: dict = {}
    for line in times_file.read_text().splitlines():
        row = json.loads(line)
        totals[phase_of(row)] = totals.get(phase_of(row), 0.0) + row["seconds"]
    return totals


def measure(rounds: int, workdir: Path) -> dict:
    """Run the rounds; returns ``{"bare": [s], "provision": [s], "noop": [s], "phases": {phase: median s}}``."""
    runs = {"bare": [], "provision": [], "noop": []}
    phase_runs, noop_phase_runs = [], []
    timer_env = {"ANSIBLE_CALLBACK_PLUGINS": str(REPO / "bench/callback_plugins"), "ANSIBLE_CALLBACKS_ENABLED": "mirascope.clawfarm.gc_freeze,task_timer"}
    with sandbox_farm((MINI,), workdir) as farm:
        # A claw whose user runs the bare starts (a port outside the Mini's port plan, unused).
        first = str(uuid.uuid4())
        farm.playbook("provision", "-e", f"claw_id={first}")
        for n in range(rounds):
            runs["bare"].append(farm.bare_gateway_start(MINI, f"claw-{first[:8]}"))
            claw_id = str(uuid.uuid4())
            times = workdir / f"provision-{n}.jsonl"
            times.unlink(missing_ok=True)
            _, seconds = farm.playbook("provision", "-e", f"claw_id={claw_id}", env=dict(timer_env, CLAWFARM_TASK_TIMES=str(times)))
            runs["provision"].append(seconds)
            phase_runs.append(phases(times))
            noop_times = workdir / f"noop-{n}.jsonl"
            noop_times.unlink(missing_ok=True)
            _, seconds = farm.playbook("provision", "-e", f"claw_id={claw_id}", env=dict(timer_env, CLAWFARM_TASK_TIMES=str(noop_times)))
            runs["noop"].append(seconds)
            noop_phase_runs.append(phases(noop_times))
            print(f"round {n + 1}: bare start {runs['bare'][-1]:.1f} s, provision {runs['provision'][-1]:.1f} s, "
                  f"no-op {runs['noop'][-1]:.1f} s", flush=True)
    def medians(per_run):
        names = sorted({p for run in per_run for p in run})
        return {p: statistics.median(run.get(p, 0.0) for run in per_run) for p in names}
    return {**runs, "phases": medians(phase_runs), "noop_phases": medians(noop_phase_runs)}


def rows(quick: bool, workdir: Path = Path("/var/tmp/clawfarm-bench-provision")) -> list:
    """The issue's figures: ``[{figure, now, baseline, ratio, goal, ok}]`` (medians; 3 rounds, or 2 when quick)."""
    result = measure(2 if quick else 3, workdir)
    print_phases(result["phases"])
    print_phases(result["noop_phases"], "no-op re-provision")
    bare, prov, noop = (statistics.median(result[k]) for k in ("bare", "provision", "noop"))
    return [
        {"figure": "provision of a new claw ÷ bare gateway first start", "now": f"{prov:.1f} s",
         "baseline": f"{bare:.1f} s", "ratio": prov / bare, "goal": f"≤ {GOAL_PROVISION}×", "ok": prov / bare <= GOAL_PROVISION},
        {"figure": "no-op re-provision ÷ first provision", "now": f"{noop:.1f} s", "baseline": f"{prov:.1f} s",
         "ratio": noop / prov, "goal": f"≤ {GOAL_NOOP}×", "ok": noop / prov <= GOAL_NOOP},
    ]


def print_phases(phase_seconds: dict, what: str = "provision") -> None:
    """Print the median run's seconds per phase, longest first."""
    print(f"\n{what} by phase (median s):")
    for phase, seconds in sorted(phase_seconds.items(), key=lambda item: -item[1]):
        print(f"  {phase:<34} {seconds:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", default="/var/tmp/clawfarm-bench-provision")
    args = parser.parse_args()
    result = measure(args.rounds, Path(args.workdir))
    bare, prov, noop = (statistics.median(result[k]) for k in ("bare", "provision", "noop"))
    print(f"\nmedians of {args.rounds} rounds: bare start {bare:.1f} s, provision {prov:.1f} s, no-op {noop:.1f} s")
    print(f"provision / bare start: {prov / bare:.2f}x (goal <= {GOAL_PROVISION}x)")
    print(f"no-op / provision:      {noop / prov:.2f}x (goal <= {GOAL_NOOP}x)")
    print_phases(result["phases"])
    print_phases(result["noop_phases"], "no-op re-provision")


if __name__ == "__main__":
    main()
