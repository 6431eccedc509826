"""What every poll reads, kept in memory (api/pollcache.py, issue 19): a kept answer is the route's answer, every
write of the replica to a job, a claw record or a health sample shows in the next poll, a token is checked before
a kept answer is given, and the cache can be turned off. On SQLite and on PostgreSQL. No timing is asserted.
"""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pgcluster import postgres_url, store_url  # noqa: F401 (postgres_url: a fixture store_url uses)
from sqlalchemy import update

from api.config import Settings
from api.db import Claw, Job
from api.monitor import Sample

TOKEN = "pollcache-token-0123456789abcdef01"
CLAW = "5e6f7a8b-0000-4000-8000-000000000001"
JOB = "5e6f7a8b-0000-4000-8000-0000000000aa"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    return store_url(request, tmp_path, prefix="pc")


def make(tmp_path, store, cache_seconds=60.0):
    from api.app import create_app

    tmp_path.mkdir(parents=True, exist_ok=True)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("minis:\n  hosts:\n    mini-01: {}\n")
    state = tmp_path / "state"
    app = create_app(Settings(tokens=[TOKEN, "second-token-0123456789abcdef0123"], database_url=store, state_dir=state,
                              run_dir=state / "run", inventory=inventory, health_interval=0, backup_schedule="off",
                              poll_cache_seconds=cache_seconds))
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    with app.state.Session() as s:
        s.add(Claw(claw_id=CLAW, mini="mini-01", present=1, record={"mini": "mini-01", "local_port": 8100}))
        s.add(Job(id=JOB, kind="provision", state="running", claw_id=CLAW, mini="mini-01", params={}))
        s.commit()
    return app, client


@pytest.fixture
def api(tmp_path, store):
    return make(tmp_path, store)


def test_a_kept_answer_is_the_routes_answer(api):
    app, client = api
    first = client.get(f"/v1/claws/{CLAW}")  # through the route: keeps the snapshot
    assert ("claw", CLAW) in app.state.service.polls.entries
    second = client.get(f"/v1/claws/{CLAW}")  # kept
    a, b = first.json(), second.json()
    assert first.status_code == second.status_code == 200 and first.headers["content-type"] == second.headers["content-type"]
    assert {k: v for k, v in a.items() if k != "age_seconds"} == {k: v for k, v in b.items() if k != "age_seconds"}
    assert b["last_job"]["id"] == JOB and b["record"]["local_port"] == 8100 and b["health"] is None
    job = client.get(f"/v1/jobs/{JOB}")
    assert job.json() == client.get(f"/v1/jobs/{JOB}").json() and job.json()["state"] == "running"


def test_every_write_of_the_replica_shows_in_the_next_poll(api):
    app, client = api
    assert client.get(f"/v1/claws/{CLAW}").json()["last_job"]["state"] == "running"
    assert client.get(f"/v1/jobs/{JOB}").json()["state"] == "running"
    with app.state.Session() as s:  # an ORM change of the job
        s.get(Job, JOB).state = "succeeded"
        s.commit()
    assert client.get(f"/v1/jobs/{JOB}").json()["state"] == "succeeded"
    assert client.get(f"/v1/claws/{CLAW}").json()["last_job"]["state"] == "succeeded"
    with app.state.Session() as s:  # an UPDATE statement on the claws table
        s.execute(update(Claw).where(Claw.claw_id == CLAW).values(record={"mini": "mini-01", "local_port": 8111}))
        s.commit()
    assert client.get(f"/v1/claws/{CLAW}").json()["record"]["local_port"] == 8111
    with app.state.Session() as s:  # a health sample
        s.merge(Sample(mini="mini-01", claw_id=CLAW, sampled_at=1.0, data={"health": "ok"}))
        s.commit()
    assert client.get(f"/v1/claws/{CLAW}").json()["health"]["health"] == "ok"
    job = client.post("/v1/claws", json={"claw_id": CLAW}).json()  # a new job through the API (queued, never run here)
    assert client.get(f"/v1/claws/{CLAW}").json()["last_job"]["id"] == job["id"]


def test_an_uncommitted_change_is_never_shown(api):
    app, client = api
    client.get(f"/v1/jobs/{JOB}")
    with app.state.Session() as s:
        s.get(Job, JOB).state = "failed"
        s.flush()
        s.rollback()
    assert client.get(f"/v1/jobs/{JOB}").json()["state"] == "running"


def test_the_token_is_checked_before_a_kept_answer(api):
    _, client = api
    assert client.get(f"/v1/claws/{CLAW}").status_code == 200  # kept now
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": ""}, {"Authorization": "Bearer"}):
        answer = client.get(f"/v1/claws/{CLAW}", headers=headers)
        assert answer.status_code == 401 and CLAW not in answer.text, headers
        assert client.get(f"/v1/jobs/{JOB}", headers=headers).status_code == 401
    bare = TestClient(client.app)
    assert bare.get(f"/v1/claws/{CLAW}").status_code == 401
    assert client.get(f"/v1/claws/{CLAW}", headers={"Authorization": "bearer second-token-0123456789abcdef0123"}).status_code == 200


def test_unknown_ids_and_bad_paths_go_through_the_routes(api):
    _, client = api
    unknown = "5e6f7a8b-0000-4000-8000-0000000000ff"
    assert client.get(f"/v1/claws/{unknown}").status_code == 404
    assert client.get(f"/v1/claws/{unknown}").status_code == 404  # a kept "unknown" is answered by the route too
    assert client.get(f"/v1/jobs/{unknown}").status_code == 404
    assert client.get(f"/v1/claws/{CLAW.upper()}").status_code == 422
    through_route = client.get(f"/v1/claws/{CLAW}", params={"refresh": "false"})  # a query string: never the kept answer
    assert through_route.status_code == 200 and through_route.json()["claw_id"] == CLAW


def test_the_cache_can_be_turned_off(tmp_path, store):
    app, client = make(tmp_path, store, cache_seconds=0)
    assert client.get(f"/v1/claws/{CLAW}").status_code == 200
    assert app.state.service.polls.entries == {}
    with app.state.Session() as s:
        s.get(Job, JOB).state = "succeeded"
        s.commit()
    assert client.get(f"/v1/jobs/{JOB}").json()["state"] == "succeeded"


def test_a_load_started_before_a_write_is_neither_kept_nor_shared():
    import asyncio
    import threading

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from api.pollcache import PollCache

    cache = PollCache(sessionmaker(create_engine("sqlite://")), ttl=60)
    gate, started = threading.Event(), threading.Event()

    def old():
        started.set()
        gate.wait(30)
        return "old"

    async def main():
        first = asyncio.create_task(cache.get("k", old))
        while not started.is_set():
            await asyncio.sleep(0.01)
        cache.invalidate()  # a write committed while the first load runs
        second = await cache.get("k", lambda: "new")  # does not wait for, nor get, the older load
        gate.set()
        return await first, second

    assert asyncio.run(main()) == ("old", "new")
    assert cache.entries["k"][2] == "new"


def test_replicas_on_postgresql_drop_what_the_other_one_wrote(tmp_path, postgres_url):  # noqa: F811 (the fixture)
    import time

    url = postgres_url
    one, client_one = make(tmp_path / "one", url, cache_seconds=300)
    two = make_replica(tmp_path / "two", url)
    polls = one.state.service.polls
    polls.start()
    try:
        while polls.listener is None or not polls.listener.is_alive():
            time.sleep(0.05)
        assert client_one.get(f"/v1/jobs/{JOB}").json()["state"] == "running"
        assert client_one.get(f"/v1/claws/{CLAW}").json()["last_job"]["state"] == "running"
        with two.state.Session() as s:  # the other replica finishes the job
            s.get(Job, JOB).state = "succeeded"
            s.commit()
        for _ in range(600):  # waits for the notification (no timing asserted: the ttl alone would take 300 s)
            if ("job", JOB) not in polls.entries and ("claw", CLAW) not in polls.entries:
                break
            time.sleep(0.05)
        assert client_one.get(f"/v1/jobs/{JOB}").json()["state"] == "succeeded"
        assert client_one.get(f"/v1/claws/{CLAW}").json()["last_job"]["state"] == "succeeded"
    finally:
        polls.shutdown()


def make_replica(tmp_path, url):
    from api.app import create_app

    tmp_path.mkdir(parents=True, exist_ok=True)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("minis:\n  hosts:\n    mini-01: {}\n")
    state = tmp_path / "state"
    return create_app(Settings(tokens=[TOKEN], database_url=url, state_dir=state, run_dir=state / "run", inventory=inventory,
                               health_interval=0, backup_schedule="off"))
