#!/usr/bin/env python3
"""Load benchmark of the API service against a bare FastAPI app started in the same run (issue 19), and one SQLite
replica against two PostgreSQL replicas (issue 15).

    .venv/bin/python bench/api_load.py [--quick] [--rounds 3] [--clients 200] [--seconds 10] [--jobs 4]
                                       [--mode sqlite-one | postgresql-two | compare]

Each round starts, on loopback only, a bare FastAPI app (one ``async`` route ``/healthz``, served by uvicorn with
the same options as the service) and the service (``python -m api``), then measures one after the other, with the
same wrk-style closed loop (``--clients`` keep-alive HTTP/1.1 connections, each sending its next request when the
answer arrives, for ``--seconds``): the bare ``GET /healthz``, then the service's ``GET /v1/claws/{id}`` (bearer
token, claws with a record, a health sample and jobs, as a backend's pollers see them) while provision jobs run.
The load generator is this process (asyncio streams, uvloop when installed); nothing leaves 127.0.0.1 and every
run is bounded in requests' time. ``POST /v1/claws`` -> first playbook event is timed for ``--jobs`` provisions.

Without ``--inventory`` the service's only Mini is unreachable (127.0.0.1 port 9): the provision playbooks start,
emit events and fail at the first connection, so the load on the service (job threads, event writes) is real and
nothing is provisioned.

The figures are medians over ``--rounds`` rounds; each ratio is taken inside one round (the bare app and the
service measured minutes apart on a shared 2-core machine would not compare). ``rows(quick)`` gives them to
``bench/run_all.py``. Not a test.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
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
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
TOKEN = "bench-token-" + uuid.uuid4().hex
GOAL_RATIO, GOAL_P99, GOAL_FIRST_EVENT = 0.6, 1.5, 1.0
SEEDED_CLAWS = 50


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ---- the bare baseline --------------------------------------------------------------------------------------------

def bare_app():
    """A bare FastAPI app: one ``async`` route, no middleware, no database."""
    from fastapi import FastAPI

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    return app


def serve_bare(port: int) -> None:
    import uvicorn

    from api.__main__ import UVICORN_OPTIONS

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="warning", **UVICORN_OPTIONS)


# ---- the load generator -------------------------------------------------------------------------------------------

async def _closed_loop(port: int, requests: list[bytes], deadline: float, offset: int, latencies: list, errors: list) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        errors.append("connect")
        return
    i = offset
    try:
        while time.monotonic() < deadline:
            request = requests[i % len(requests)]
            i += 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if head[9:12] != b"200":
                errors.append(head[9:12].decode())
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        errors.append(type(exc).__name__)
    finally:
        writer.close()


def hammer(ports: list[int], paths: list[str], clients: int, seconds: float, auth: bool) -> dict:
    """``clients`` keep-alive connections (spread over ``ports``) in a closed loop on ``paths`` for ``seconds``."""
    header = f"Authorization: Bearer {TOKEN}\r\n" if auth else ""
    requests = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: clawfarm-bench\r\n{header}\r\n".encode() for p in paths]
    latencies, errors = [], []

    async def run():
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_closed_loop(ports[n % len(ports)], requests, deadline, n, latencies, errors) for n in range(clients)))

    started = time.monotonic()
    with _event_loop() as runner:
        runner.run(run())
    elapsed = time.monotonic() - started
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "errors": len(errors)}


@contextlib.contextmanager
def _event_loop():
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        yield runner


# ---- the service --------------------------------------------------------------------------------------------------

def wait_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url + "/healthz", timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_replicas(work: Path, inventory: Path, farm_vars: str | None, database_url: str | None, count: int) -> tuple[list, list[int]]:
    from clawfarm_testlib import free_port

    procs, ports = [], []
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
        ports.append(port)
        wait_up(f"http://127.0.0.1:{port}")
    return procs, ports


def seed(database_url: str, mini: str, count: int) -> list[str]:
    """``count`` claws as the service knows them after their provision: a record, a health sample and a job each."""
    from datetime import UTC, datetime

    from api.db import Claw, Job, make_sessionmaker
    from api.monitor import Sample

    Session = make_sessionmaker(database_url)
    claw_ids = [str(uuid.uuid4()) for _ in range(count)]
    with Session() as s:
        for n, claw_id in enumerate(claw_ids):
            record = {"claw_id": claw_id, "mini": mini, "mac_username": f"claw-{claw_id[:8]}", "local_port": 8100 + n,
                      "label": f"com.mirascope.claw.{claw_id}", "tunnel_hostname": f"{claw_id}.claws.example.com",
                      "provisioned_at": "2026-12-06T00:00:00Z"}
            s.add(Claw(claw_id=claw_id, mini=mini, record=record, present=1))
            s.add(Job(id=str(uuid.uuid4()), kind="provision", state="succeeded", claw_id=claw_id, mini=mini, params={"restore": False},
                      result={"claw": record, "rc": 0}, started_at=datetime.now(UTC), finished_at=datetime.now(UTC)))
            s.add(Sample(mini=mini, claw_id=claw_id, sampled_at=time.time(), data={"health": "ok", "rss_bytes": 250_000_000, "runs": 1}))
        s.commit()
    Session.kw["bind"].dispose()
    return claw_ids


def first_event_latency(port: int, jobs: int) -> list[float]:
    """Seconds from each ``POST /v1/claws`` to its job's first stored playbook event (polled every 10 ms)."""
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    out = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for _ in range(jobs):
            started = time.monotonic()
            job = client.post("/v1/claws", json={"claw_id": str(uuid.uuid4())}).json()
            while not client.get(f"/v1/jobs/{job['id']}/events", params={"limit": 1}).json():
                time.sleep(0.01)
            out.append(time.monotonic() - started)
            while client.get(f"/v1/jobs/{job['id']}").json()["state"] not in ("succeeded", "failed", "canceled", "interrupted"):
                time.sleep(0.05)  # one at a time: the next POST does not wait behind this job on the Mini
    return out


def one_round(args, mode: str) -> dict:
    """One round of ``mode``: ``{"bare", "claws", "first_event"}``, the bare app and the service measured back to back."""
    from clawfarm_testlib import free_port

    work = Path(tempfile.mkdtemp(prefix="clawfarm-api-bench-"))
    inventory = Path(args.inventory) if args.inventory else work / "hosts.yml"
    if not args.inventory:
        inventory.write_text("minis:\n  hosts:\n    bench:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n"
                             "      ansible_ssh_common_args: -o ConnectTimeout=2\n      claw_max_per_mini: 1000\n")
    with contextlib.ExitStack() as stack:
        if mode == "postgresql-two":
            from pgcluster import cluster
            database_url = stack.enter_context(cluster())
        else:
            (work / "state0").mkdir(mode=0o700)
            database_url = f"sqlite:///{work / 'state0' / 'clawfarm-api.sqlite'}"
        claw_ids = seed(database_url, args.mini or "bench", SEEDED_CLAWS)
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(bare_port)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=open(work / "bare.log", "wb"))
        stack.callback(lambda: (bare.terminate(), bare.wait(30)))
        wait_up(f"http://127.0.0.1:{bare_port}")
        procs, ports = start_replicas(work, inventory, args.farm_vars, database_url, 2 if mode == "postgresql-two" else 1)
        for proc in procs:
            stack.callback(lambda p=proc: (p.terminate(), p.wait(60)))
        first = first_event_latency(ports[0], args.jobs)
        for _ in range(args.background):  # provisions keep running while the pollers poll
            httpx.post(f"http://127.0.0.1:{ports[-1]}/v1/claws", json={"claw_id": str(uuid.uuid4())},
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        paths = [f"/v1/claws/{c}" for c in claw_ids]
        hammer([bare_port], ["/healthz"], min(args.clients, 20), 1, auth=False)  # warm-up, both
        hammer(ports, paths, min(args.clients, 20), 1, auth=True)
        base = hammer([bare_port], ["/healthz"], args.clients, args.seconds, auth=False)
        claws = hammer(ports, paths, args.clients, args.seconds, auth=True)
    return {"bare": base, "claws": claws, "first_event": statistics.median(first)}


def measure(args, mode: str) -> dict:
    """``--rounds`` rounds of ``mode``; the medians of the figures and of the per-round ratios."""
    rounds = []
    for n in range(args.rounds):
        r = one_round(args, mode)
        r["ratio"] = r["claws"]["rps"] / r["bare"]["rps"]
        r["p99_ratio"] = r["claws"]["p99_ms"] / r["bare"]["p99_ms"]
        rounds.append(r)
        print(f"[{mode}] round {n + 1}: bare {r['bare']['rps']:.0f} req/s p99 {r['bare']['p99_ms']:.0f} ms; GET /v1/claws/{{id}} "
              f"{r['claws']['rps']:.0f} req/s p50 {r['claws']['p50_ms']:.0f} ms p99 {r['claws']['p99_ms']:.0f} ms "
              f"({r['claws']['errors']} errors); ratio {r['ratio']:.2f}x, p99 {r['p99_ratio']:.2f}x; POST -> first event {r['first_event']:.2f} s",
              flush=True)

    def med(get):
        return statistics.median(get(r) for r in rounds)

    return {"rounds": rounds, "ratio": med(lambda r: r["ratio"]), "p99_ratio": med(lambda r: r["p99_ratio"]),
            "bare_rps": med(lambda r: r["bare"]["rps"]), "bare_p50": med(lambda r: r["bare"]["p50_ms"]), "bare_p99": med(lambda r: r["bare"]["p99_ms"]),
            "rps": med(lambda r: r["claws"]["rps"]), "p50": med(lambda r: r["claws"]["p50_ms"]), "p99": med(lambda r: r["claws"]["p99_ms"]),
            "errors": sum(r["claws"]["errors"] for r in rounds), "first_event": med(lambda r: r["first_event"])}


def figure_rows(m: dict, clients: int) -> list[dict]:
    return [
        {"figure": f"GET /v1/claws/{{id}} throughput ÷ bare FastAPI /healthz ({clients} connections)",
         "now": f"{m['rps']:.0f} req/s", "baseline": f"{m['bare_rps']:.0f} req/s", "ratio": round(m["ratio"], 2),
         "goal": f"≥ {GOAL_RATIO}×", "ok": m["ratio"] >= GOAL_RATIO and m["errors"] == 0},
        {"figure": "GET /v1/claws/{id} p99 ÷ bare FastAPI /healthz p99", "now": f"{m['p99']:.0f} ms", "baseline": f"{m['bare_p99']:.0f} ms",
         "ratio": round(m["p99_ratio"], 2), "goal": f"≤ {GOAL_P99}×", "ok": m["p99_ratio"] <= GOAL_P99},
        {"figure": "POST /v1/claws → first playbook event", "now": f"{m['first_event']:.2f} s", "baseline": None, "ratio": None,
         "goal": f"< {GOAL_FIRST_EVENT:.0f} s", "ok": m["first_event"] < GOAL_FIRST_EVENT},
    ]


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s, 2 timed provisions (about a minute per mode)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--jobs", type=int, default=4, help="provisions timed POST -> first event")
    parser.add_argument("--background", type=int, default=4, help="provisions queued to run during the load")
    parser.add_argument("--inventory")
    parser.add_argument("--mini", help="the inventory's Mini to seed claws on (default: bench, the unreachable one)")
    parser.add_argument("--farm-vars")
    parser.add_argument("--mode", choices=("sqlite-one", "postgresql-two", "compare"), default="compare")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.jobs, args.background = min(args.seconds, 3), min(args.jobs, 2), min(args.background, 2)
    return args


def rows(quick: bool) -> list[dict]:
    """The figures of issue 19 (one SQLite replica against the bare app), medians of the rounds, for bench/run_all.py."""
    args = options(["--mode", "sqlite-one"] + (["--quick"] if quick else []))
    return figure_rows(measure(args, "sqlite-one"), args.clients)


def main() -> None:
    args = options()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    modes = ("sqlite-one", "postgresql-two") if args.mode == "compare" else (args.mode,)
    results = {mode: measure(args, mode) for mode in modes}
    print(f"\nmedians of {args.rounds} rounds, {args.clients} connections, {args.seconds:.0f} s each:")
    print(f"{'mode':16} {'bare req/s':>10} {'bare p50':>9} {'bare p99':>9} "
          f"{'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} {'p99 ×':>6} {'errors':>6} {'POST→event':>10}")
    for mode, m in results.items():
        print(f"{mode:16} {m['bare_rps']:>10.0f} {m['bare_p50']:>9.0f} {m['bare_p99']:>9.0f} "
              f"{m['rps']:>8.0f} {m['p50']:>7.0f} {m['p99']:>7.0f} {m['ratio']:>6.2f} "
              f"{m['p99_ratio']:>6.2f} {m['errors']:>6} {m['first_event']:>9.2f}s")
    if "sqlite-one" in results:
        print()
        for row in figure_rows(results["sqlite-one"], args.clients):
            ratio = f"{row['ratio']}×" if row["ratio"] is not None else ""
            print(f"{row['figure']:70} {row['now']:>12} {row['baseline'] or '':>12} {ratio:>7} {row['goal']:>7} {'ok' if row['ok'] else 'MISSED'}")


if __name__ == "__main__":
    main()
