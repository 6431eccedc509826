"""Webhook subscriptions (``/v1/webhooks``) and durable deliveries, on SQLite and on PostgreSQL: each event kind
reaches its subscribers signed, a failing receiver is retried from the store then ``dead`` (listed, retried on
request), a pending delivery survives a restart (another app on the same store sends it), a claimed delivery is
not claimed twice, and the URL rules of callbacks hold (allowed host, public addresses).

The app runs in-process without its lifespan: the test drives the sender (``run_once``); the network is replaced
by a recorder (``post_checked``) and the DNS check by a fixed public address.
"""
from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest
from fastapi.testclient import TestClient
from pgcluster import postgres_url, store_url  # noqa: F401 (postgres_url: a fixture store_url uses)

from api.config import Settings

TOKEN = "hooks-token-0123456789abcdef012345"
SECRET = "webhook-secret-0123456789abcdef0123"
CLAW = "1a2b3c4d-0000-4000-8000-0000000000aa"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    return store_url(request, tmp_path, "db.sqlite", "w")


class Receiver:
    def __init__(self):
        self.received, self.fail = [], 0

    def __call__(self, url, body, headers, timeout=10):
        if self.fail:
            self.fail -= 1
            raise httpx.ConnectError("down")
        self.received.append((url, headers, json.loads(body)))
        assert headers["X-Clawfarm-Signature"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return httpx.Response(204)


@pytest.fixture
def make_app(tmp_path, store, monkeypatch):
    from api import callbacks, webhooks

    monkeypatch.setattr(callbacks, "resolve_global", lambda host, port: ["93.184.216.34"])
    receiver = Receiver()
    monkeypatch.setattr(webhooks, "post_checked", receiver)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("minis:\n  hosts:\n    mini-01: {}\n")

    def make():
        from api.app import create_app

        app = create_app(Settings(tokens=[TOKEN], database_url=store, state_dir=tmp_path / "state", run_dir=tmp_path / "state" / "run",
                                  inventory=inventory, health_interval=0, backup_schedule="off", webhook_secret=SECRET,
                                  callback_hosts=["hooks.example.com"], webhook_delays=[0, 0]))
        client = TestClient(app)
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        return app, client

    make.receiver = receiver
    return make


def finish_a_job(app, state="successful"):
    engine = app.state.engine
    engine._run = lambda job_id: None
    job, _ = engine.submit("stop", CLAW, "mini-01", {})
    engine._dispatch_once()
    engine._finish(job.id, state, 0, {"artifact": {}, "stats": None, "error": None}, [], 0.1)
    return job.id


def test_subscriptions_get_their_events_signed(make_app):
    app, client = make_app()
    for bad in ({"url": "http://127.0.0.1/x", "events": ["job.finished"]}, {"url": "https://elsewhere.example.org/x", "events": ["job.finished"]},
                {"url": "https://hooks.example.com/x", "events": []}, {"url": "https://hooks.example.com/x", "events": ["job.started"]}):
        assert client.post("/v1/webhooks", json=bad).status_code == 422, bad
    jobs = client.post("/v1/webhooks", json={"url": "https://hooks.example.com/jobs", "events": ["job.finished"]})
    assert jobs.status_code == 201, jobs.text
    alerts = client.post("/v1/webhooks", json={"url": "https://hooks.example.com/alerts", "events": ["alert.fired", "alert.resolved",
                                                                                                    "claw.health_changed"]}).json()
    assert [s["id"] for s in client.get("/v1/webhooks").json()] == [jobs.json()["id"], alerts["id"]]
    assert client.get(f"/v1/webhooks/{alerts['id']}").json()["events"] == ["alert.fired", "alert.resolved", "claw.health_changed"]

    job_id = finish_a_job(app)
    monitor = app.state.service.monitor
    monitor.notify({"state": "firing", "rule": "disk", "severity": "warning", "mini": "mini-01", "claw_id": None, "value": 91, "summary": "disk"})
    monitor.notify({"state": "info", "rule": "backup_success", "severity": "info", "mini": "mini-01", "summary": "backup"})  # not an event
    monitor._store_health({"mini-01": {"sampled_at": 100.0, "claws": [{"claw_id": CLAW, "health": "ok"}]}})
    monitor._store_health({"mini-01": {"sampled_at": 160.0, "claws": [{"claw_id": CLAW, "health": "failed"}]}})
    monitor._store_health({"mini-01": {"sampled_at": 220.0, "claws": [{"claw_id": CLAW, "health": "failed"}]}})  # no change
    sent = app.state.engine.webhooks.run_once()
    received = [(url.rsplit("/", 1)[1], body["type"], headers, body) for url, headers, body in make_app.receiver.received]
    assert len(received) == sent
    kinds = {(where, kind) for where, kind, _, _ in received}
    # (the samples, old and without a pid, fire the monitor's own alerts too: they are alert.fired events as well)
    assert kinds == {("jobs", "job.finished"), ("alerts", "alert.fired"), ("alerts", "claw.health_changed")}
    finished = [(h, b) for w, k, h, b in received if k == "job.finished"]
    assert len(finished) == 1 and finished[0][1]["job"]["id"] == job_id and finished[0][0]["X-Clawfarm-Job"] == job_id
    assert "disk" in [b["alert"]["rule"] for _, k, _, b in received if k == "alert.fired"]
    assert not [b for _, k, _, b in received if k.startswith("alert") and b["alert"]["state"] == "info"]
    changed = [b for _, k, _, b in received if k == "claw.health_changed"]
    assert [{k: c[k] for k in ("claw_id", "health", "previous")} for c in changed] == [{"claw_id": CLAW, "health": "failed", "previous": "ok"}]
    delivered = client.get("/v1/webhooks/deliveries", params={"state": "delivered"}).json()
    assert len(delivered) == sent and all(d["attempts"] == 1 for d in delivered)


def test_a_failing_receiver_is_retried_then_dead_and_a_restart_keeps_pending_ones(make_app):
    app, client = make_app()
    sub = client.post("/v1/webhooks", json={"url": "https://hooks.example.com/in", "events": ["job.finished"]}).json()
    make_app.receiver.fail = 10
    first = finish_a_job(app)
    hooks = app.state.engine.webhooks
    assert hooks.run_once() == 1 and hooks.run_once() == 1 and hooks.run_once() == 1  # three attempts (delays 0, 0)
    assert hooks.run_once() == 0
    dead = client.get("/v1/webhooks/deliveries", params={"state": "dead"}).json()
    assert [(d["job_id"], d["attempts"], d["last_error"], d["subscription_id"]) for d in dead] == [(first, 3, "ConnectError", sub["id"])]
    # Retried on request: the receiver is back.
    make_app.receiver.fail = 0
    assert client.post(f"/v1/webhooks/deliveries/{dead[0]['id']}/retry").json()["state"] == "pending"
    assert client.post(f"/v1/webhooks/deliveries/{dead[0]['id']}/retry").status_code == 409
    assert hooks.run_once() == 1 and client.get("/v1/webhooks/deliveries", params={"state": "dead"}).json() == []
    # A delivery queued by one app (which then stops) is sent by the next one on the same store, once.
    finish_a_job(app)
    second_app, _ = make_app()
    other = second_app.state.engine.webhooks
    claimed = other.claim()
    assert len(claimed) == 1 and hooks.claim() == []  # claimed: the other replica does not take it
    for delivery_id in claimed:
        other.attempt(delivery_id)
    assert len(make_app.receiver.received) == 2 and other.run_once() == 0 and hooks.run_once() == 0
    # Unsubscribed: its pending deliveries end dead, new events go nowhere.
    make_app.receiver.fail = 10
    finish_a_job(app)
    assert hooks.run_once() == 1
    assert client.delete(f"/v1/webhooks/{sub['id']}").status_code == 204
    assert client.get(f"/v1/webhooks/{sub['id']}").status_code == 404
    assert [d["last_error"] for d in client.get("/v1/webhooks/deliveries", params={"state": "dead"}).json()] == ["unsubscribed"]
    finish_a_job(app)
    assert hooks.run_once() == 0


def test_a_jobs_callback_goes_through_the_store(make_app):
    app, client = make_app()
    job = client.post(f"/v1/claws/{CLAW}/stop", json={"mini": "mini-01", "callback_url": "https://hooks.example.com/cb"}).json()
    engine = app.state.engine
    engine._run = lambda job_id: None
    engine._dispatch_once()
    make_app.receiver.fail = 1
    engine._finish(job["id"], "successful", 0, {"artifact": {}, "stats": None, "error": None}, [], 0.1)
    assert client.get(f"/v1/jobs/{job['id']}").json()["webhook_status"] == "pending"
    engine.webhooks.run_once()
    assert client.get(f"/v1/jobs/{job['id']}").json()["webhook_status"].startswith("pending (attempt 1 failed")
    engine.webhooks.run_once()
    assert client.get(f"/v1/jobs/{job['id']}").json()["webhook_status"] == "delivered (attempt 2)"
    assert make_app.receiver.received[0][0] == "https://hooks.example.com/cb"
