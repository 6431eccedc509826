"""Several API replicas on one PostgreSQL: each job is claimed by exactly one replica, never two jobs at once on one
Mini across replicas, a killed replica's running job ends ``interrupted`` once its lease expires (not before, and
the survivor never touches it while the lease holds), the survivor runs what was queued, and the fleet-wide
health schedule fires once across the replicas and a change of leader.

Two real service processes (``python -m api``) share a throwaway PostgreSQL cluster (tests/integration/
pgcluster.py). Their playbook directory (``CLAWFARM_API_PLAYBOOK_DIR``) holds one stub playbook for every job
kind: it runs on the control node and appends ``start``/``end`` lines (Mini, claw) to a log through a small
recorder, so the test reads what ran, where and in which order.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from clawfarm_testlib import REPO, free_port, wait_http
from pgcluster import postgres_url  # noqa: F401 - fixture
from sqlalchemy import create_engine, text

TOKEN = "replica-test-token-0123456789abcdef"
H = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("succeeded", "failed", "canceled", "interrupted")
RECORDER = '''
import os, sys, time
log, mini, claw, seconds = sys.argv[1], sys.argv[2] or "-", sys.argv[3] or "-", float(sys.argv[4])
def note(what):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{what} {mini} {claw}\\n".encode())
    os.close(fd)
note("start")
time.sleep(seconds)
note("end")
'''
PLAYBOOK = '''
- name: Stub job (records what ran)
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Record start and end of the job
      ansible.builtin.command:
        argv: ["{{ recorder_python }}", "{{ recorder }}", "{{ record_log }}", "{{ mini | default('') }}", "{{ claw_id | default('') }}",
               "{{ record_seconds }}"]
      changed_when: false
'''


def wait_for(predicate, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def farm(tmp_path, postgres_url):  # noqa: F811 - fixture
    from api.jobs import PLAYBOOKS

    books = tmp_path / "playbooks"
    books.mkdir()
    for name in set(PLAYBOOKS.values()):
        (books / name).write_text(PLAYBOOK)
    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / "ran.log"
    farm_vars = tmp_path / "farm.yml"
    farm_vars.write_text(f"recorder_python: {sys.executable}\nrecorder: {tmp_path / 'recorder.py'}\nrecord_log: {log}\nrecord_seconds: 1.5\n")
    farm_vars.chmod(0o600)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("minis:\n  hosts:\n" + "".join(f"    m{i}:\n      ansible_connection: local\n" for i in (1, 2, 3)))
    procs = {}

    def start(name: str, database_url: str = postgres_url) -> tuple[subprocess.Popen, str]:
        port = free_port()
        env = dict(os.environ, CLAWFARM_API_TOKENS=TOKEN, CLAWFARM_API_DATABASE_URL=database_url,
                   CLAWFARM_API_STATE_DIR=str(tmp_path / name), CLAWFARM_API_INVENTORY=str(inventory),
                   CLAWFARM_API_PLAYBOOK_DIR=str(books), CLAWFARM_API_FARM_VARS=str(farm_vars), CLAWFARM_API_WORKERS="2",
                   CLAWFARM_API_LEASE_SECONDS="5", CLAWFARM_API_HEALTH_INTERVAL="3600", CLAWFARM_API_BACKUP_SCHEDULE="off")
        out = open(tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env,
                                stdout=out, stderr=out)
        procs[f"{name}-{len(procs)}"] = proc
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", timeout=60)
        return proc, url

    yield start, log, create_engine(postgres_url)
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def test_two_replicas_share_the_queue_and_survive_a_kill(farm):
    start, log, db = farm
    proc_a, url_a = start("a")
    proc_b, url_b = start("b")

    def rows(sql, **params):
        with db.connect() as conn:
            return conn.execute(text(sql), params).all()

    # 15 jobs over three Minis, sent alternately to both replicas; one with secrets, bound to the replica that got it.
    claws = {str(uuid.uuid4()): f"m{i % 3 + 1}" for i in range(15)}
    for i, (claw_id, mini) in enumerate(claws.items()):
        answer = httpx.post(f"{(url_a, url_b)[i % 2]}/v1/claws/{claw_id}/start", json={"mini": mini}, headers=H, timeout=30)
        assert answer.status_code == 202, answer.text
    secret_claw = str(uuid.uuid4())
    answer = httpx.post(f"{url_b}/v1/claws", json={"claw_id": secret_claw, "mini": "m1", "env": {"API_KEY": "sk-replica-secret-value"}},
                        headers=H, timeout=30)
    assert answer.status_code == 202, answer.text
    claws[secret_claw] = "m1"

    # Kill A with -9 while one of its jobs is in its playbook.
    def a_mid_job():
        ran = log.read_text().split("\n") if log.exists() else []
        for job_id, claw_id in rows("SELECT id, claw_id FROM jobs WHERE state = 'running' AND owner LIKE :a", a=f"%:{proc_a.pid}:%"):
            if any(line.startswith("start ") and line.endswith(f" {claw_id}") for line in ran) and \
                    not any(line.startswith("end ") and line.endswith(f" {claw_id}") for line in ran):
                return job_id, claw_id
        return None
    victim, victim_claw = wait_for(a_mid_job, "a job of replica A in its playbook")
    os.kill(proc_a.pid, signal.SIGKILL)
    proc_a.wait(30)
    # A ran up to two jobs (CLAWFARM_API_WORKERS=2): every job it held at its death ends interrupted, no other.
    # (It may have run the fleet's health job too: that one ends interrupted and is not run again either.)
    dead = {claw_id for (claw_id,) in rows("SELECT claw_id FROM jobs WHERE state = 'running' AND kind <> 'health' AND owner LIKE :a",
                                           a=f"%:{proc_a.pid}:%")}
    assert victim_claw in dead

    def all_done():
        states = rows("SELECT state FROM jobs WHERE kind <> 'health'")
        return len(states) == len(claws) and all(state in TERMINAL for (state,) in states)
    wait_for(all_done, "every job to end")

    jobs = {claw_id: (job_id, state, owner, error) for job_id, claw_id, state, owner, error in
            rows("SELECT id, claw_id, state, owner, error FROM jobs WHERE kind <> 'health'")}
    for claw_id in dead:
        assert jobs[claw_id][1] == "interrupted" and "lease expired" in jobs[claw_id][3], jobs[claw_id]
    others = {claw_id: job for claw_id, job in jobs.items() if claw_id not in dead}
    assert {claw_id: job for claw_id, job in others.items() if job[1] != "succeeded"} == {}
    assert jobs[secret_claw][2].split(":")[1] == str(proc_b.pid)  # only the replica holding the secrets ran it
    assert {job[2] for job in others.values()} >= {jobs[secret_claw][2]}

    # What ran: every job once (the victim once, never again), and per Mini one job at a time, in log order.
    lines = [line.split() for line in log.read_text().splitlines()]
    for claw_id in claws:
        starts = [line for line in lines if line[0] == "start" and line[2] == claw_id]
        assert len(starts) == 1 or (claw_id in dead and claw_id != victim_claw and not starts), (claw_id, starts)
    for mini in ("m1", "m2", "m3"):
        holder = None
        for what, where, claw_id in lines:
            if where != mini:
                continue
            if what == "start":
                assert holder is None or holder in dead, f"{claw_id} started on {mini} while {holder} ran there"
                holder = claw_id
            elif claw_id == holder:
                holder = None
    assert rows("SELECT count(*) FROM job_locks") == [(0,)]

    # The fleet schedule fired once, though both replicas ran it in turn (B leads once A's lease is gone).
    wait_for(lambda: rows("SELECT holder FROM leases WHERE name = 'scheduler' AND holder LIKE :b", b=f"%:{proc_b.pid}:%"), "B to lead")
    assert [state for (state,) in rows("SELECT state FROM jobs WHERE kind = 'health'")] in (["succeeded"], ["interrupted"])
    assert httpx.get(f"{url_b}/v1/jobs/{jobs[victim_claw][0]}", headers=H, timeout=10).json()["state"] == "interrupted"


def test_one_replica_on_sqlite_restarted_after_a_kill_interrupts_its_job_at_once(farm, tmp_path):
    """SQLite is one replica: a job still marked running when it starts belongs to a dead process (no lease wait)."""
    start, log, _ = farm
    url_db = f"sqlite:///{tmp_path / 'one.sqlite'}"
    proc, url = start("one", url_db)
    claws = [str(uuid.uuid4()) for _ in range(3)]
    ids = [httpx.post(f"{url}/v1/claws/{c}/start", json={"mini": "m1"}, headers=H, timeout=30).json()["id"] for c in claws]
    wait_for(lambda: log.exists() and f"start m1 {claws[0]}" in log.read_text(), "the first job in its playbook")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    _, url = start("one", url_db)
    first = httpx.get(f"{url}/v1/jobs/{ids[0]}", headers=H, timeout=10).json()
    assert first["state"] == "interrupted" and "retry" in first["error"]
    wait_for(lambda: all(httpx.get(f"{url}/v1/jobs/{i}", headers=H, timeout=10).json()["state"] == "succeeded" for i in ids[1:]),
             "the queued jobs to succeed")
    assert [line.split()[2] for line in log.read_text().splitlines() if line.startswith("start m1 ")] == claws
