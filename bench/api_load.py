#!/usr/bin/env python3
"""Load benchmark of the API service: while provision jobs run, N concurrent clients poll ``GET /v1/jobs/{id}`` and
``GET /v1/claws/{id}`` for a fixed time; prints throughput, p50/p99 latency, and the overhead between a ``POST``
and the playbook's first event (measured for every provision, by polling its events).

    .venv/bin/python bench/api_load.py [--clients 200] [--seconds 30] [--jobs 4] [--inventory FILE]

The service runs as a separate process on loopback (``python -m api``). Without ``--inventory`` its only Mini is
unreachable (127.0.0.1 port 9), so the provision playbooks start, emit events and fail at the first connection:
the load on the service (job threads, event writes, SQLite) is real, nothing is provisioned. Point
``--inventory`` (and ``--farm-vars``) at sandbox Minis to load it with real provisions. Baseline in the same run:
``GET /healthz`` under the same concurrency, which touches neither the database nor auth. Not a test.
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
TOKEN = "bench-token-" + uuid.uuid4().hex


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def hammer(url: str, paths: list[str], clients: int, seconds: float, auth: bool) -> dict:
    latencies, errors = [], 0
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        async def worker(n: int):
            nonlocal errors
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--inventory")
    parser.add_argument("--farm-vars")
    args = parser.parse_args()
    from clawfarm_testlib import free_port

    work = Path(tempfile.mkdtemp(prefix="clawfarm-api-bench-"))
    inventory = Path(args.inventory) if args.inventory else work / "hosts.yml"
    if not args.inventory:
        inventory.write_text("minis:\n  hosts:\n    bench:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n"
                             "      ansible_ssh_common_args: -o ConnectTimeout=2\n      claw_max_per_mini: 1000\n")
    port = free_port()
    env = dict(os.environ, CLAWFARM_API_TOKENS=TOKEN, CLAWFARM_API_STATE_DIR=str(work / "state"), CLAWFARM_API_INVENTORY=str(inventory),
               CLAWFARM_API_HEALTH_INTERVAL="0", CLAWFARM_API_BACKUP_SCHEDULE="off")
    if args.farm_vars:
        env["CLAWFARM_API_FARM_VARS"] = args.farm_vars
    log = open(work / "service.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        print(f"service on {url}; measuring POST -> first playbook event over {args.jobs} provisions ...", flush=True)
        overheads, job_ids, claw_ids = first_event_overhead(url, args.jobs)
        # Keep provisions running during the load: queue more in the background.
        for _ in range(args.jobs):
            httpx.post(f"{url}/v1/claws", json={"claw_id": str(uuid.uuid4())}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        paths = [f"/v1/jobs/{j}" for j in job_ids] + [f"/v1/claws/{c}" for c in claw_ids]
        print(f"baseline: {args.clients} clients on GET /healthz for {args.seconds:.0f} s ...", flush=True)
        base = asyncio.run(hammer(url, ["/healthz"], args.clients, args.seconds, auth=False))
        print(f"load: {args.clients} clients on GET /v1/jobs/{{id}} and /v1/claws/{{id}} for {args.seconds:.0f} s ...", flush=True)
        load = asyncio.run(hammer(url, paths, args.clients, args.seconds, auth=True))
    finally:
        proc.terminate()
        proc.wait(60)
    print(f"\n{'':10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'5xx/err':>8}")
    for name, r in (("baseline", base), ("jobs+claws", load)):
        print(f"{name:10} {r['requests']:>9} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>8}")
    print(f"\nratios vs baseline: throughput {load['rps'] / base['rps']:.2f}x, p50 {load['p50_ms'] / base['p50_ms']:.2f}x, "
          f"p99 {load['p99_ms'] / base['p99_ms']:.2f}x")
    print(f"POST -> first playbook event: median {statistics.median(overheads):.2f} s, max {max(overheads):.2f} s "
          f"(ansible-runner start + ansible-playbook start)")


if __name__ == "__main__":
    main()
