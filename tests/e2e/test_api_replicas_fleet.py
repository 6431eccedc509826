"""Two API replicas on one PostgreSQL over the three sandbox Minis (fleet fl1..fl3), the real playbooks:

- the Minis are registered through ``POST /v1/minis`` (address, tunnel id; no bootstrap: the fleet is bootstrapped),
  the service's inventory file holding only their connection settings (``host_vars``) and the farm's group vars;
- a claw per Mini is provisioned, then 20 jobs (start and restart) go to both replicas alternately;
- replica A is killed with SIGKILL while one of its jobs runs: that job ends ``interrupted`` once its lease
  expires (not before), B takes every queued job, no job runs twice (one ``playbook_on_start`` per job), no two jobs
  overlap on a Mini (their start/end times);
- the nightly backup schedule (a Mini-local time a little after the start) fires once per Mini across both replicas.

PostgreSQL comes from Debian's package through tests/integration/pgcluster.py (a private Unix socket).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from clawfarm_testlib import free_port, wait_http
from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "integration"))
from pgcluster import cluster  # noqa: E402

from api.db import TERMINAL  # noqa: E402

TOKEN = "replica-fleet-token-0123456789abcdef"
H = {"Authorization": f"Bearer {TOKEN}"}
LEASE = 10


def wait_for(predicate, what: str, timeout: float = 900, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def replicas(fleet, tmp_path):
    """``start(name)`` starts a replica (``python -m api``) on the shared PostgreSQL; yields (start, db, backup_at)."""
    from sqlalchemy import create_engine

    directory = tmp_path / "inventory"
    (directory / "host_vars").mkdir(parents=True)
    (directory / "hosts.yml").write_text(json.dumps({"all": {"children": {"minis": {"hosts": {}, "vars": fleet.group_vars}}}}))
    for name in fleet.names:  # connection settings only: address and tunnel come from the registration
        own = {k: v for k, v in fleet.hosts[name].items() if k not in ("ansible_host", "cf_tunnel_id")}
        (directory / "host_vars" / f"{name}.yml").write_text(json.dumps(own))
    backup_at = (datetime.now(UTC) + timedelta(minutes=6)).strftime("%H:%M")
    procs = []
    with cluster() as url:
        def start(name: str):
            port = free_port()
            env = dict(os.environ, CLAWFARM_API_TOKENS=TOKEN, CLAWFARM_API_DATABASE_URL=url, CLAWFARM_API_STATE_DIR=str(tmp_path / name),
                       CLAWFARM_API_INVENTORY=str(directory / "hosts.yml"), CLAWFARM_API_WORKERS="2",
                       CLAWFARM_API_LEASE_SECONDS=str(LEASE), CLAWFARM_API_HEALTH_INTERVAL="3600",
                       CLAWFARM_API_BACKUP_SCHEDULE=backup_at)
            out = open(tmp_path / f"{name}.log", "ab")
            proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env,
                                    stdout=out, stderr=out)
            procs.append(proc)
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/healthz", timeout=60)
            return proc, base

        yield start, create_engine(url), backup_at
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(120)


def test_two_replicas_over_three_minis(fleet, replicas):
    from sqlalchemy import text

    start, db, backup_at = replicas

    def rows(sql, **params):
        with db.connect() as conn:
            return conn.execute(text(sql), params).all()

    proc_a, url_a = start("a")
    proc_b, url_b = start("b")
    for name in fleet.names:
        answer = httpx.post(f"{url_a}/v1/minis", headers=H, timeout=60, json={
            "name": name, "address": fleet.hosts[name]["ansible_host"], "tunnel_id": fleet.hosts[name]["cf_tunnel_id"], "bootstrap": False})
        assert answer.status_code == 201, answer.text
    listed = {m["name"]: m for m in httpx.get(f"{url_b}/v1/minis", headers=H, timeout=60).json()}
    assert sorted(listed) == sorted(fleet.names) and {m["source"] for m in listed.values()} == {"api"}

    claws = {name: str(uuid.uuid4()) for name in fleet.names}
    provisions = [httpx.post(f"{url_b}/v1/claws", headers=H, timeout=60, json={"claw_id": claw_id, "mini": name}).json()["id"]
                  for name, claw_id in claws.items()]
    wait_for(lambda: all(s in TERMINAL for (s,) in rows("SELECT state FROM jobs WHERE id = ANY(:ids)", ids=provisions)), "provisions")
    assert rows("SELECT state FROM jobs WHERE id = ANY(:ids)", ids=provisions) == [("succeeded",)] * 3

    jobs = []
    for i in range(20):  # start (the claw runs: a check) and restart, to both replicas alternately
        name, kind = fleet.names[i % 3], ("start", "restart")[i % 2]
        answer = httpx.post(f"{(url_a, url_b)[i % 2]}/v1/claws/{claws[name]}/{kind}", headers=H, timeout=60, json={})
        assert answer.status_code == 202, answer.text
        jobs.append(answer.json()["id"])

    def a_running():
        return rows("SELECT id FROM jobs WHERE state = 'running' AND owner LIKE :a AND kind IN ('start', 'restart')", a=f"%:{proc_a.pid}:%")
    (victim,), = wait_for(a_running, "a job of replica A running")[:1]
    os.kill(proc_a.pid, signal.SIGKILL)
    killed_at = datetime.now(UTC)
    proc_a.wait(30)
    held = {job_id for (job_id,) in rows("SELECT id FROM jobs WHERE state = 'running' AND owner LIKE :a", a=f"%:{proc_a.pid}:%")}
    assert victim in held
    # Not reaped while the lease holds.
    time.sleep(LEASE / 3)
    assert rows("SELECT state FROM jobs WHERE id = :v", v=victim) == [("running",)]
    wait_for(lambda: all(s in TERMINAL for (s,) in rows("SELECT state FROM jobs WHERE id = ANY(:ids)", ids=jobs)), "the 20 jobs")

    final = {job_id: (state, owner, mini, started, finished, error) for job_id, state, owner, mini, started, finished, error in
             rows("SELECT id, state, owner, mini, started_at, finished_at, error FROM jobs WHERE id = ANY(:ids)", ids=jobs)}
    for job_id in held:
        assert final[job_id][0] == "interrupted" and "lease expired" in final[job_id][5], final[job_id]
        assert final[job_id][4] >= killed_at + timedelta(seconds=LEASE * 0.6)  # only once the lease ran out (renewed every third)
    assert {j: f for j, f in final.items() if j not in held and f[0] != "succeeded"} == {}
    for job_id, (_, owner, _, started, _, _) in final.items():  # the survivor took what was still queued
        if started is not None and started > killed_at + timedelta(seconds=1):
            assert f":{proc_b.pid}:" in owner, (job_id, owner)
    # No job twice: one playbook start per job.
    starts = dict(rows("SELECT job_id, count(*) FROM job_events WHERE event = 'playbook_on_start' AND job_id = ANY(:ids) GROUP BY job_id",
                       ids=jobs))
    assert max(starts.values()) == 1, starts
    # No overlap on a Mini (every job of the test, provisions included).
    every = rows("SELECT mini, started_at, finished_at, id FROM jobs WHERE mini IS NOT NULL AND started_at IS NOT NULL ORDER BY started_at")
    for name in fleet.names:
        spans = [(s, f, i) for m, s, f, i in every if m == name]
        for (_, f1, i1), (s2, _, i2) in zip(spans, spans[1:], strict=False):
            assert f1 is not None and f1 <= s2, f"{i1} and {i2} overlap on {name}"

    # The nightly backup schedule fires once per Mini across the replicas (B leads now).
    fire = datetime.now(UTC).replace(hour=int(backup_at[:2]), minute=int(backup_at[3:]), second=0, microsecond=0)
    if fire < datetime.now(UTC) - timedelta(hours=12):
        fire += timedelta(days=1)
    wait_for(lambda: len(rows("SELECT id FROM jobs WHERE kind = 'backup' AND claw_id IS NULL")) >= 3 and
             all(s in TERMINAL for (s,) in rows("SELECT state FROM jobs WHERE kind = 'backup' AND claw_id IS NULL")),
             "the nightly backups", timeout=max(60, (fire - datetime.now(UTC)).total_seconds()) + 900)
    time.sleep(10)
    backups = rows("SELECT mini, state, id FROM jobs WHERE kind = 'backup' AND claw_id IS NULL ORDER BY mini")
    assert [b[0] for b in backups] == sorted(fleet.names), backups  # once per Mini, whichever replica led
    # (one the killed replica was running ends interrupted, like any of its jobs; it is not fired again)
    assert all(state == "succeeded" or (state == "interrupted" and job_id in held) for _, state, job_id in backups), backups
    # Every lock is gone once nothing runs (a scheduled backup may hold one while the 20 jobs end).
    assert rows("SELECT count(*) FROM job_locks") == [(0,)]

    # Forget the Minis again: DELETE is refused while a claw is on one.
    refused = httpx.delete(f"{url_b}/v1/minis/{fleet.names[0]}", headers=H, timeout=60)
    assert refused.status_code == 409 and "not empty" in refused.text
    for claw_id in claws.values():
        done = httpx.delete(f"{url_b}/v1/claws/{claw_id}", params={"archive": "false"}, headers=H, timeout=60).json()["id"]
        wait_for(lambda: rows("SELECT state FROM jobs WHERE id = :i", i=done)[0][0] in TERMINAL, "deprovision")  # noqa: B023
    assert httpx.delete(f"{url_b}/v1/minis/{fleet.names[0]}", headers=H, timeout=60).status_code == 204
