"""The fleet routes: GET /v1/claws (filters, pages), GET /v1/minis/{name} (its claws and tunnel routes), a repeated
POST /v1/claws going to the claw's Mini, and 409 for a Mini that takes no claws (draining, offline, maintenance).

The app runs in-process (TestClient without lifespan: jobs are queued, never run), on SQLite and on PostgreSQL
(a throwaway cluster, tests/integration/pgcluster.py).
"""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pgcluster import postgres_url, store_url  # noqa: F401 (postgres_url: a fixture store_url uses)

from api.config import Settings
from api.db import Claw, Job

TOKEN = "routes-token-0123456789abcdef0123"
CLAWS = [f"1a2b3c4d-0000-4000-8000-0000000000{i:02d}" for i in range(1, 8)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    return store_url(request, tmp_path, prefix="r")


@pytest.fixture
def api(tmp_path, store):
    from api.app import create_app

    inventory = tmp_path / "hosts.yml"
    inventory.write_text("minis:\n  hosts:\n    mini-01: {}\n    mini-02: {}\n    mini-03:\n      mini_status: draining\n"
                         "    mini-04:\n      mini_status: offline\n")
    state = tmp_path / "state"
    app = create_app(Settings(tokens=[TOKEN], database_url=store, state_dir=state, run_dir=state / "run",
                              inventory=inventory, health_interval=0, backup_schedule="off"))
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    with app.state.Session() as s:
        for i, claw_id in enumerate(CLAWS):
            mini = ("mini-01", "mini-02", "mini-03")[i % 3]
            s.add(Claw(claw_id=claw_id, mini=mini, present=0 if i == 6 else 1,
                       record={"mini": mini, "local_port": 8100 + i, "tunnel_hostname": f"c{i}.claws.example.com", "label": f"l{i}"}))
        s.commit()
    return app, client


def test_list_claws_filters_and_pages(api):
    _, client = api
    page = client.get("/v1/claws", params={"limit": 4}).json()
    assert [c["claw_id"] for c in page["items"]] == CLAWS[:4] and page["next"] == CLAWS[3]
    rest = client.get("/v1/claws", params={"limit": 4, "after": page["next"]}).json()
    assert [c["claw_id"] for c in rest["items"]] == CLAWS[4:6] and rest["next"] is None
    on_01 = client.get("/v1/claws", params={"mini": "mini-01"}).json()["items"]
    assert [c["claw_id"] for c in on_01] == [CLAWS[0], CLAWS[3]] and on_01[0]["record"]["local_port"] == 8100
    gone = client.get("/v1/claws", params={"state": "deprovisioned"}).json()["items"]
    assert [c["claw_id"] for c in gone] == [CLAWS[6]] and gone[0]["present"] is False
    assert len(client.get("/v1/claws", params={"state": "all"}).json()["items"]) == 7
    for bad in ({"limit": 0}, {"limit": 501}, {"state": "running"}, {"after": "x"}, {"mini": "../x"}):
        assert client.get("/v1/claws", params=bad).status_code == 422, bad
    assert client.get("/v1/claws", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_mini_shows_its_claws_and_routes(api):
    _, client = api
    mini = client.get("/v1/minis/mini-02").json()
    assert mini["claws"] == 2 and [c["claw_id"] for c in mini["claw_records"]] == [CLAWS[1], CLAWS[4]]
    assert mini["routes"] == [{"hostname": "c1.claws.example.com", "service": "http://127.0.0.1:8101", "claw_id": CLAWS[1]},
                              {"hostname": "c4.claws.example.com", "service": "http://127.0.0.1:8104", "claw_id": CLAWS[4]}]
    assert client.get("/v1/minis/mini-99").status_code == 404


def test_a_repeated_provision_goes_to_the_claws_mini(api):
    app, client = api
    answer = client.post("/v1/claws", json={"claw_id": CLAWS[2]})  # on mini-03, which is draining: it is not placed again
    assert answer.status_code == 202, answer.text
    assert answer.json()["mini"] == "mini-03"
    assert client.post("/v1/claws", json={"claw_id": CLAWS[2], "mini": "mini-03"}).json()["mini"] == "mini-03"
    moved = client.post("/v1/claws", json={"claw_id": CLAWS[1], "mini": "mini-01"})
    assert moved.status_code == 409 and "migrate" in moved.text
    # A claw whose first provision is still queued goes where that one went.
    new = "2a2b3c4d-0000-4000-8000-000000000001"
    first = client.post("/v1/claws", json={"claw_id": new}).json()
    assert client.post("/v1/claws", json={"claw_id": new}).json()["mini"] == first["mini"]
    with app.state.Session() as s:
        assert s.query(Job).count() == 4


@pytest.mark.parametrize("mini", ["mini-03", "mini-04"])
def test_a_mini_that_takes_no_claws_is_409(api, mini):
    app, client = api
    new = "3a2b3c4d-0000-4000-8000-000000000001"
    answer = client.post("/v1/claws", json={"claw_id": new, "mini": mini})
    assert answer.status_code == 409 and ("draining" in answer.text or "offline" in answer.text)
    answer = client.post(f"/v1/claws/{CLAWS[0]}/migrate", json={"target": mini})
    assert answer.status_code == 409 and mini in answer.text, answer.text
    with app.state.Session() as s:
        assert s.query(Job).count() == 0


def test_a_minis_status_and_capacity_set_through_the_api(api, tmp_path):
    import json
    import subprocess

    from clawfarm_testlib import REPO

    app, client = api
    answer = client.patch("/v1/minis/mini-01", json={"status": "draining"})
    assert answer.status_code == 200 and answer.json()["status"] == "draining" and answer.json()["max_claws"] == 12
    new = "5a2b3c4d-0000-4000-8000-000000000001"
    assert client.post("/v1/claws", json={"claw_id": new, "mini": "mini-01"}).status_code == 409
    assert client.post("/v1/claws", json={"claw_id": new}).json()["mini"] == "mini-02"  # placement skips it
    assert client.patch("/v1/minis/mini-02", json={"max_claws": 3}).json()["max_claws"] == 3  # 2 claws + 1 queued: full
    assert client.post("/v1/claws", json={"claw_id": new[:-1] + "2"}).status_code == 409
    assert client.patch("/v1/minis/mini-01", json={"status": "active"}).json()["status"] == "active"
    for body, status in (({}, 422), ({"status": "gone"}, 422), ({"max_claws": -1}, 422), ({"status": "active", "x": 1}, 422)):
        assert client.patch("/v1/minis/mini-01", json=body).status_code == status, body
    assert client.patch("/v1/minis/mini-99", json={"status": "offline"}).status_code == 404
    # The playbooks see the same: the job's inventory sources end with the API's settings as host_vars.
    client.patch("/v1/minis/mini-03", json={"status": "offline", "max_claws": 2})
    sources = app.state.service.inventory.override_sources(tmp_path / "job" / "mini-settings")
    listed = subprocess.run([str(REPO / ".venv/bin/ansible-inventory"), *[a for s in sources for a in ("-i", s)], "--list"],
                            capture_output=True, text=True, cwd=REPO, check=True)
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    assert hostvars["mini-03"]["mini_status"] == "offline" and hostvars["mini-03"]["claw_max_per_mini"] == 2
    assert hostvars["mini-02"]["claw_max_per_mini"] == 3 and hostvars["mini-01"]["mini_status"] == "active"
    assert "mini_status" not in hostvars["mini-04"] or hostvars["mini-04"]["mini_status"] == "offline"


def test_job_events_as_json_and_as_a_stream(api):
    from api.db import JobEvent

    app, client = api
    job_id = client.post(f"/v1/claws/{CLAWS[0]}/stop", json={}).json()["id"]
    with app.state.Session() as s:
        s.add_all([JobEvent(job_id=job_id, counter=n, event=name, data={"task": f"t{n}"})
                   for n, name in ((1, "playbook_on_start"), (2, "playbook_on_task_start"), (3, "playbook_on_stats"))])
        s.get(Job, job_id).state = "succeeded"
        s.commit()
    assert [e["counter"] for e in client.get(f"/v1/jobs/{job_id}/events", params={"after": 1}).json()] == [2, 3]
    streamed = client.get(f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    names = [line[7:] for line in streamed.text.splitlines() if line.startswith("event: ")]
    assert names == ["playbook_on_start", "playbook_on_task_start", "playbook_on_stats", "end"]
    assert client.get("/v1/jobs/00000000-0000-4000-8000-000000000000/events").status_code == 404


def test_a_mini_shows_its_tombstones_after_the_last_prune(api):
    """Issue 17: GET /v1/minis/{name} reports the tombstone count and bytes the last successful prune job left."""
    import uuid

    app, client = api
    assert client.get("/v1/minis/mini-01").json()["tombstones"] is None
    with app.state.Session() as s:
        s.add(Job(id=str(uuid.uuid4()), kind="prune", state="failed", params={}, result={}))
        s.add(Job(id=str(uuid.uuid4()), kind="prune", state="succeeded", params={},
                  result={"tombstones": {"mini-01": {"count": 2, "bytes": 8192, "checked_at": "2026-12-06T02:30:00Z"}}}))
        s.commit()
    assert client.get("/v1/minis/mini-01").json()["tombstones"] == {"count": 2, "bytes": 8192, "checked_at": "2026-12-06T02:30:00Z"}
    assert client.get("/v1/minis/mini-02").json()["tombstones"] is None
    listed = {m["name"]: m["tombstones"] for m in client.get("/v1/minis").json()}
    assert listed["mini-01"]["count"] == 2
