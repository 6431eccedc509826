#!/usr/bin/env python3
"""Load benchmark of the API service: while provision jobs run, N concurrent clients poll ``GET /v1/jobs/{id}`` and
``GET /v1/claws/{id}`` for a fixed time; prints throughput, p50/p99 latency, and the overhead between a ``POST``
and the playbook's first event (measured for every provision, by polling its events).

    .venv/bin/python bench/api_load.py [--clients 200] [--seconds 30] [--jobs 4] [--inventory FILE]
                                       [--mode sqlite-one | postgresql-two | compare]

The service runs as a separate process on loopback (``python -m api``). Without ``--inventory`` its only Mini is
unreachable (127.0.0.1 port 9), so the provision playbooks start, emit events and fail at the first connection:
the load on the service (job threads, event writes, SQLite) is real, nothing is provisioned. Point
``--inventory`` (and ``--farm-vars``) at sandbox Minis to load it with real provisions. Baseline in the same run:
``GET /healthz`` under the same concurrency, which touches neither the database nor auth. Not a test.

Modes: ``sqlite-one`` (default: one replica on its SQLite file), ``postgresql-two`` (two replicas sharing a
throwaway PostgreSQL cluster, tests/integration/pgcluster.py; the clients are spread over both), ``compare`` (both,
then p50/p99 side by side).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
TOKEN = "bench-token-" + uuid.uuid4().hex


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def hammer(urls: list[str], paths: list[str], clients: int, seconds: float, auth: bool) -> dict:
    latencies, errors = [], 0
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
    per_url = max(1, clients // len(urls) + 1)
    limits = httpx.Limits(max_connections=per_url, max_keepalive_connections=per_url)
    sessions = [httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) for url in urls]
    try:
        async def worker(n: int):
            nonlocal errors
            client = sessions[n % len(sessions)]
            i = n
            while time.monotonic() < deadline:
                path = paths[i % len(paths)]
                i += 1
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    if response.status_code >= 500:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - started)
        await asyncio.gather(*(worker(n) for n in range(clients)))
    finally:
        for session in sessions:
            await session.aclose()
    return {"requests": len(latencies), "rps": len(latencies) / seconds, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "errors": errors}


def first_event_overhead(url: str, jobs: int) -> tuple[list[float], list[str], list[str]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    overheads, job_ids, claw_ids = [], [], []
    for _ in range(jobs):
        claw_id = str(uuid.uuid4())
        started = time.monotonic()
        job = httpx.post(f"{url}/v1/claws", json={"claw_id": claw_id}, headers=headers, timeout=30).json()
        while not httpx.get(f"{url}/v1/jobs/{job['id']}/events", params={"limit": 1}, headers=headers, timeout=30).json():
            time.sleep(0.02)
        overheads.append(time.monotonic() - started)
        job_ids.append(job["id"])
        claw_ids.append(claw_id)
    return overheads, job_ids, claw_ids


def start_replicas(work: Path, inventory: Path, farm_vars: str | None, database_url: str | None, count: int) -> tuple[list, list[str]]:
    from clawfarm_testlib import free_port

    procs, urls = [], []
    for n in range(count):
        port = free_port()
        env = dict(os.environ, CLAWFARM_API_TOKENS=TOKEN, CLAWFARM_API_STATE_DIR=str(work / f"state{n}"), CLAWFARM_API_INVENTORY=str(inventory),
                   CLAWFARM_API_HEALTH_INTERVAL="0", CLAWFARM_API_BACKUP_SCHEDULE="off")
        if database_url:
            env["CLAWFARM_API_DATABASE_URL"] = database_url
        if farm_vars:
            env["CLAWFARM_API_FARM_VARS"] = farm_vars
        log = open(work / f"service{n}.log", "wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env,
                                      stdout=log, stderr=log))
        urls.append(f"http://127.0.0.1:{port}")
        for _ in range(150):
            try:
                httpx.get(urls[-1] + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
    return procs, urls


def measure(args, mode: str) -> dict:
    """One mode's run: ``{"base", "load", "overheads"}``."""
    import contextlib

    work = Path(tempfile.mkdtemp(prefix="clawfarm-api-bench-"))
    inventory = Path(args.inventory) if args.inventory else work / "hosts.yml"
    if not args.inventory:
        inventory.write_text("minis:\n  hosts:\n    bench:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n"
                             "      ansible_ssh_common_args: -o ConnectTimeout=2\n      claw_max_per_mini: 1000\n")
    with contextlib.ExitStack() as stack:
        database_url = None
        if mode == "postgresql-two":
            from pgcluster import cluster
            database_url = stack.enter_context(cluster())
        procs, urls = start_replicas(work, inventory, args.farm_vars, database_url, 2 if mode == "postgresql-two" else 1)
        try:
            print(f"[{mode}] service on {', '.join(urls)}; measuring POST -> first playbook event over {args.jobs} provisions ...", flush=True)
            overheads, job_ids, claw_ids = first_event_overhead(urls[0], args.jobs)
            # Keep provisions running during the load: queue more in the background.
            for _ in range(args.jobs):
                httpx.post(f"{urls[-1]}/v1/claws", json={"claw_id": str(uuid.uuid4())}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            paths = [f"/v1/jobs/{j}" for j in job_ids] + [f"/v1/claws/{c}" for c in claw_ids]
            print(f"[{mode}] baseline: {args.clients} clients on GET /healthz for {args.seconds:.0f} s ...", flush=True)
            base = asyncio.run(hammer(urls, ["/healthz"], args.clients, args.seconds, auth=False))
            print(f"[{mode}] load: {args.clients} clients on GET /v1/jobs/{{id}} and /v1/claws/{{id}} for {args.seconds:.0f} s ...", flush=True)
            load = asyncio.run(hammer(urls, paths, args.clients, args.seconds, auth=True))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(60)
    return {"base": base, "load": load, "overheads": overheads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--inventory")
    parser.add_argument("--farm-vars")
    parser.add_argument("--mode", choices=("sqlite-one", "postgresql-two", "compare"), default="sqlite-one")
    args = parser.parse_args()
    modes = ("sqlite-one", "postgresql-two") if args.mode == "compare" else (args.mode,)
    results = {mode: measure(args, mode) for mode in modes}
    for mode, r in results.items():
        base, load, overheads = r["base"], r["load"], r["overheads"]
        print(f"\n[{mode}]\n{'':10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'5xx/err':>8}")
        for name, row in (("baseline", base), ("jobs+claws", load)):
            print(f"{name:10} {row['requests']:>9} {row['rps']:>8.1f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['errors']:>8}")
        print(f"ratios vs baseline: throughput {load['rps'] / base['rps']:.2f}x, p50 {load['p50_ms'] / base['p50_ms']:.2f}x, "
              f"p99 {load['p99_ms'] / base['p99_ms']:.2f}x")
        print(f"POST -> first playbook event: median {statistics.median(overheads):.2f} s, max {max(overheads):.2f} s "
              f"(ansible-runner start + ansible-playbook start)")
    if len(results) > 1:
        print(f"\nside by side at {args.clients} pollers (GET /v1/jobs/{{id}}, /v1/claws/{{id}}):")
        print(f"{'mode':16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for mode, r in results.items():
            print(f"{mode:16} {r['load']['rps']:>8.1f} {r['load']['p50_ms']:>8.1f} {r['load']['p99_ms']:>8.1f}")


if __name__ == "__main__":
    main()
