"""The job store's rules for several replicas, on SQLite and on a real PostgreSQL (tests/integration/pgcluster.py):
claims (one job per Mini and per claw whichever replica claims), leases (only an expired one is reaped), jobs with
secrets bound to their replica, the scheduler lease, a schedule fired once, Alembic on a store older than the
migrations, and the API's idempotent provision on PostgreSQL.

The engines here claim jobs but run no playbook (``_run`` is replaced): the test is the bookkeeping.
"""
from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from pgcluster import postgres_url, store_url  # noqa: F401 (postgres_url: a fixture store_url uses)
from sqlalchemy import create_engine, inspect, select, text

from api.config import Settings
from api.db import Job, JobLock, Replica, make_sessionmaker, utcnow
from api.jobs import JobEngine

A, B, C = ("1a2b3c4d-0000-4000-8000-00000000000%d" % i for i in (1, 2, 3))
TOKEN = "store-test-token-0123456789abcdef"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    return store_url(request, tmp_path, "store.sqlite", "t")


def settings(url, tmp_path, **overrides) -> Settings:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("minis:\n  hosts:\n    m1: {}\n    m2: {}\n    m3: {}\n")
    fields = dict(tokens=[TOKEN], database_url=url, state_dir=tmp_path / "state", run_dir=tmp_path / "state" / "run",
                  inventory=inventory, health_interval=0, backup_schedule="off", workers=10, lease_seconds=30)
    fields.update(overrides)
    return Settings(**fields)


def replica(url, tmp_path, Session=None) -> JobEngine:
    engine = JobEngine(settings(url, tmp_path), Session or make_sessionmaker(url))
    engine._run = lambda job_id: None  # claim only
    with engine.Session() as s:
        s.add(Replica(id=engine.replica, started_at=utcnow(), heartbeat_at=utcnow()))
        s.commit()
    return engine


def states(engine) -> dict:
    with engine.Session() as s:
        return {(job.claw_id, job.mini): (job.state, job.owner) for job in s.scalars(select(Job))}


def test_claims_hold_minis_and_claws_across_replicas(url, tmp_path):
    one, two = replica(url, tmp_path), replica(url, tmp_path)
    one.submit("start", A, "m1", {})
    one.submit("start", B, "m1", {})          # same Mini as A's job
    two.submit("start", C, "m2", {})
    two.submit("restart", C, "m3", {})         # same claw as the m2 job
    two._dispatch_once()
    one._dispatch_once()
    seen = states(one)
    running = {key: value for key, value in seen.items() if value[0] == "running"}
    assert set(running) == {(A, "m1"), (C, "m2")}, seen
    assert {owner for _, owner in running.values()} == {two.replica}  # the first claimer took what it could
    with one.Session() as s:
        assert set(s.scalars(select(JobLock.key))) == {"mini:m1", f"claw:{A}", "mini:m2", f"claw:{C}"}
    # A job ends: its locks go, and the other replica takes the job that waited for that Mini.
    job_id = one.Session().scalars(select(Job.id).where(Job.claw_id == A)).one()
    two._finish(job_id, "successful", 0, {"artifact": {}, "stats": None, "error": None}, [], 0.1)
    one._dispatch_once()
    assert states(one)[(B, "m1")] == ("running", one.replica)


def test_only_an_expired_lease_is_reaped(url, tmp_path):
    one, two = replica(url, tmp_path), replica(url, tmp_path)
    job, _ = one.submit("start", A, "m1", {})
    one._dispatch_once()
    assert two.reap() == [] and states(two)[(A, "m1")][0] == "running"  # a live replica's job is never touched
    with one.Session() as s:
        s.get(Job, job.id).lease_until = utcnow() - timedelta(seconds=1)
        s.commit()
    assert two.reap() == [job.id]
    with two.Session() as s:
        ended = s.get(Job, job.id)
        assert ended.state == "interrupted" and "lease expired" in ended.error
        assert s.scalars(select(JobLock)).all() == []
    # The late owner's answer does not overwrite the interrupted state.
    one._finish(job.id, "successful", 0, {"artifact": {}, "stats": None, "error": None}, [], 0.1)
    assert states(two)[(A, "m1")][0] == "interrupted"


def test_a_job_with_secrets_runs_only_on_its_replica(url, tmp_path):
    one, two = replica(url, tmp_path), replica(url, tmp_path)
    job, _ = one.submit("provision", A, "m1", {}, secrets={"env": {"K": "secret-value"}})
    two._dispatch_once()
    assert states(two)[(A, "m1")] == ("queued", None)
    assert two.reap() == []  # its replica lives
    with one.Session() as s:
        s.get(Replica, one.replica).heartbeat_at = utcnow() - timedelta(hours=1)
        s.commit()
    assert two.reap() == [job.id]
    assert states(two)[(A, "m1")][0] == "interrupted"


def test_the_scheduler_lease_and_a_schedule_fire_once(url, tmp_path):
    one, two = replica(url, tmp_path), replica(url, tmp_path)
    assert one.hold_lease("scheduler") and one.hold_lease("scheduler")
    assert not two.hold_lease("scheduler")
    from api.db import Lease
    with one.Session() as s:
        s.get(Lease, "scheduler").until = utcnow() - timedelta(seconds=1)
        s.commit()
    assert two.hold_lease("scheduler") and not one.hold_lease("scheduler")
    assert one.schedule_due("health", 60, now=1000.0)
    assert not two.schedule_due("health", 60, now=1030.0)
    assert two.schedule_due("health", 60, now=1060.0)


def test_a_store_older_than_the_migrations_is_stamped_and_upgraded(url):
    from alembic import command

    from api.db import alembic_config
    engine = create_engine(url)
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0001")
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text("INSERT INTO jobs (id, kind, state, params, created_at, cancel_requested) "
                                "VALUES ('old', 'start', 'succeeded', '{}', '2026-01-01 00:00:00', 0)"))
    Session = make_sessionmaker(url)
    names = set(inspect(Session.kw["bind"]).get_table_names())
    assert {"job_locks", "replicas", "leases", "schedule_runs", "alembic_version"} <= names
    with Session() as s:
        assert s.get(Job, "old").state == "succeeded" and s.get(Job, "old").owner is None


def test_the_api_on_each_store(url, tmp_path):
    from api.app import create_app

    app = create_app(settings(url, tmp_path))
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    body = {"claw_id": A, "mini": "m2", "env": {"API_KEY": "sk-store-secret-0123"}}
    first = client.post("/v1/claws", json=body, headers={"Idempotency-Key": "k1"})
    again = client.post("/v1/claws", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert client.post("/v1/claws", json={**body, "mini": "m3"}, headers={"Idempotency-Key": "k1"}).status_code == 422
    assert "sk-store-secret" not in client.get(f"/v1/jobs/{first.json()['id']}").text
    assert client.post(f"/v1/jobs/{first.json()['id']}/cancel").json()["state"] == "canceled"


def test_two_replicas_never_give_the_last_slot_twice(url, tmp_path):
    if not url.startswith("postgresql"):
        pytest.skip("one replica on SQLite")
    import threading

    from api.app import create_app

    apps = []
    for name in ("r1", "r2"):
        work = tmp_path / name
        work.mkdir()
        config = settings(url, work)
        config.inventory.write_text("minis:\n  hosts:\n    m1:\n      claw_max_per_mini: 1\n")
        client = TestClient(create_app(config))
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        apps.append(client)
    answers, barrier = [], threading.Barrier(8)

    def ask(i):
        barrier.wait()
        answers.append(apps[i % 2].post("/v1/claws", json={"claw_id": f"4a2b3c4d-0000-4000-8000-0000000000{i:02d}"}).status_code)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202] + [409] * 7


def test_a_starting_replica_recovers_what_a_dead_process_left(url, tmp_path):
    one = replica(url, tmp_path)
    with one.Session() as s:
        s.add(Job(id="run", kind="start", state="running", claw_id=A, mini="m1", params={}, owner="gone:1:x",
                  lease_until=utcnow() + timedelta(hours=1)))
        s.add(JobLock(key="mini:m1", job_id="run"))
        s.add(Job(id="old", kind="provision", state="queued", claw_id=B, mini="m2", params={"has_secrets": True}))  # older release
        s.add(Job(id="plain", kind="start", state="queued", claw_id=C, mini="m3", params={"has_secrets": False}))
        s.commit()
    sqlite = url.startswith("sqlite")
    # SQLite is one replica: whatever was running belongs to a dead process. PostgreSQL waits for the lease.
    assert sorted(one.reap(everything=sqlite, legacy=True)) == (["old", "run"] if sqlite else ["old"])
    with one.Session() as s:
        assert s.get(Job, "plain").state == "queued"
        assert s.get(Job, "run").state == ("interrupted" if sqlite else "running")


def test_a_cancel_asked_of_another_replica_reaches_the_running_one(url, tmp_path):
    one, two = replica(url, tmp_path), replica(url, tmp_path)
    job, _ = two.submit("start", A, "m1", {})
    one._dispatch_once()
    assert one.running[job.id]["cancel"] is False
    assert two.cancel(job.id) == "running"  # asked of the replica that does not run it
    one.renew()
    assert one.running[job.id]["cancel"] is True
    queued, _ = two.submit("stop", B, "m2", {})
    assert one.cancel(queued.id) == "canceled" and states(two)[(B, "m2")][0] == "canceled"
    one._dispatch_once()
    assert states(one)[(B, "m2")][0] == "canceled"


def test_a_job_ended_by_the_reaper_goes_to_the_webhook(url, tmp_path, monkeypatch):
    from api import webhooks
    from api.db import WebhookDelivery

    one = replica(url, tmp_path)
    two = JobEngine(settings(url, tmp_path, webhook_url="https://hooks.example.com/x", webhook_secret="s" * 32), one.Session)
    sent = []
    monkeypatch.setattr(webhooks.httpx, "post", lambda url, content, headers, timeout: sent.append((headers["X-Clawfarm-Job"], url))
                        or httpx.Response(204))
    job, _ = one.submit("start", A, "m1", {})
    one._dispatch_once()
    with one.Session() as s:
        s.get(Job, job.id).lease_until = utcnow() - timedelta(seconds=1)
        s.commit()
    assert two.reap() == [job.id]
    with two.Session() as s:  # queued in the store before anything is sent
        queued = s.scalars(select(WebhookDelivery)).all()
        assert [(d.job_id, d.url, d.state, d.event) for d in queued] == [(job.id, "https://hooks.example.com/x", "pending", "job.finished")]
    assert two.webhooks.run_once() == 1
    assert sent == [(job.id, "https://hooks.example.com/x")]
    with two.Session() as s:
        assert s.get(Job, job.id).webhook_status == "delivered (attempt 1)"


def test_an_alert_fires_and_resolves_once_whichever_replica_evaluates(url):
    """Health jobs finish on any replica: the alert state is the store's, so a claw that goes down fires once on
    replica one, is not fired again by replica two, and resolves once there; a condition with a duration that started
    holding on one replica fires on the other when the duration is over."""
    from api.alerts import AlertEngine, DbAlertStore, default_rules

    claw = "1a2b3c4d-0000-4000-8000-000000000001"

    def sample(pid=123, cpu=10.0):
        return {"age_s": 5, "cpu_percent": cpu, "memory": {"percent": 40}, "disks": [{"mount": "/", "percent": 50}],
                "connector": {"state": "running"},
                "claws": [{"claw_id": claw, "pid": pid, "health": "ok" if pid else "not running", "launchd_state": "running",
                           "last_backup_age_s": 3600}]}

    sent = []
    one, two = (AlertEngine(default_rules(), sent.append, DbAlertStore(make_sessionmaker(url))) for _ in range(2))
    one.evaluate("m1", sample(), now=0)
    assert [m["rule"] for m in one.evaluate("m1", sample(pid=None), now=60) if m["state"] == "firing"] == ["gateway_down"]
    assert two.evaluate("m1", sample(pid=None), now=120) == []
    assert [(m["rule"], m["state"]) for m in two.evaluate("m1", sample(), now=180)] == [("gateway_down", "resolved")]
    assert one.evaluate("m1", sample(), now=240) == []
    # CPU high needs 300 s: it starts holding on one replica and fires on the other, once.
    assert one.evaluate("m1", sample(cpu=95), now=300) == []
    assert [m["rule"] for m in two.evaluate("m1", sample(cpu=95), now=600)] == ["cpu_high"]
    assert one.evaluate("m1", sample(cpu=95), now=660) == []
    assert [m["state"] for m in sent] == ["firing", "resolved", "firing"]


def test_a_browser_crash_loop_fires_and_resolves_once_whichever_replica_sees_the_starts(url):
    """The browser's start times are remembered in the job store, not in each replica: a claw whose browser restarts
    at every sample, its samples evaluated by two replicas in turn (each sees only every other start), fires
    ``browser_crash_loop`` once at the fifth start in 30 min, and resolves once when the window no longer holds more
    than 4 starts; a replica that starts afresh (new rules, new process) goes on from the same memory."""
    import time

    from api.alerts import AlertEngine, DbAlertStore, default_rules

    claw = "1a2b3c4d-0000-4000-8000-000000000001"
    base = float(int(time.time()))  # start times are UNIX seconds, as mini_health reports them

    def sample(started_at):
        return {"age_s": 5, "cpu_percent": 10.0, "memory": {"percent": 40}, "disks": [{"mount": "/", "percent": 50}],
                "connector": {"state": "running"},
                "claws": [{"claw_id": claw, "pid": 123, "health": "ok", "launchd_state": "running", "last_backup_age_s": 3600,
                           "browser": {"running": True, "chromium_pid": 4000 + int(started_at - base), "started_at": started_at}}]}

    sent = []
    replicas = [AlertEngine(default_rules(), sent.append, DbAlertStore(make_sessionmaker(url))) for _ in range(2)]
    seen = []
    # One browser up for three samples, then a new browser at every sample (12 starts), then a steady one.
    timeline = [(t, base + 10) for t in (0, 60, 120)] + [(t, base + t - 1) for t in range(180, 900, 60)]
    timeline += [(t, base + 839) for t in range(900, 3000, 60)]
    for i, (t, started_at) in enumerate(timeline):
        if i == 20:  # replica two restarts: a new process with its own rules
            replicas[1] = AlertEngine(default_rules(), sent.append, DbAlertStore(make_sessionmaker(url)))
        seen += [(t, i % 2, m["rule"], m["state"]) for m in replicas[i % 2].evaluate("m1", sample(started_at), now=base + t)]
    # The fifth start (base+10, +179, +239, +299, +359; replica one saw +10, +239 and +359 of them) at t=360; at
    # t=2400 only 4 starts (+659 … +839) are within 30 min: resolved. Nothing fired or resolved twice.
    assert seen == [(360, 0, "browser_crash_loop", "firing"), (2400, 0, "browser_crash_loop", "resolved")]
    assert [m["value"] for m in sent] == [5, 4]
    from api.db import AlertState
    with make_sessionmaker(url)() as s:  # what is remembered is the store's, and only the window's
        assert s.get(AlertState, "m1").state["memory"] == []
    replicas[0].evaluate("m1", sample(base + 2990), now=base + 3000)
    with make_sessionmaker(url)() as s:
        assert s.get(AlertState, "m1").state["memory"] == [["browser_crash_loop", claw, [base + 2990]]]
    replicas[1].evaluate("m1", {**sample(base + 2990), "claws": []}, now=base + 3060)  # deprovisioned: forgotten
    with make_sessionmaker(url)() as s:
        assert s.get(AlertState, "m1").state["memory"] == []
