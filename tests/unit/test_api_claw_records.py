"""The API's claw records follow migrate and drain results; a migration holds its source and target Minis."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from api.db import Base, Claw, Job, make_sessionmaker
from api.jobs import JobEngine

A = "1a2b3c4d-0000-4000-8000-000000000001"
B = "2a2b3c4d-0000-4000-8000-000000000002"


def engine():
    Session = make_sessionmaker("sqlite://")
    Base.metadata.create_all(Session.kw["bind"])
    return JobEngine.__new__(JobEngine), Session


def moved(claw_id, mini, port):
    return {"claw_id": claw_id, "mini": mini, "local_port": port, "mac_username": f"claw-{claw_id[:8]}", "migration": {"downtime_seconds": 3.1}}


def test_drain_result_moves_every_claw_record():
    jobs, Session = engine()
    with Session() as s:
        for claw_id in (A, B):
            s.add(Claw(claw_id=claw_id, mini="mini-03", record={"mini": "mini-03", "local_port": 8100, "label": "x"}))
        s.commit()
        job = SimpleNamespace(state="succeeded", kind="drain", claw_id=None, mini="mini-03",
                              result={"migrated_claws": {A: moved(A, "mini-01", 8104), B: moved(B, "mini-02", 8100)}})
        jobs._record_claw(s, job)
        s.commit()
        a, b = s.get(Claw, A), s.get(Claw, B)
        assert (a.mini, a.record["local_port"], a.record["label"], a.present) == ("mini-01", 8104, "x", 1)
        assert b.mini == "mini-02" and "migration" not in b.record


def test_failed_migration_changes_no_record():
    jobs, Session = engine()
    with Session() as s:
        s.add(Claw(claw_id=A, mini="mini-03", record={"mini": "mini-03"}))
        s.commit()
        jobs._record_claw(s, Job(id="j", kind="migrate", state="failed", claw_id=A, mini="mini-03", result={}))
        assert s.get(Claw, A).mini == "mini-03"


def test_a_migration_holds_its_target_mini_too():
    from api.jobs import job_minis

    assert job_minis(SimpleNamespace(mini="mini-01", params={"target": "mini-02"})) == {"mini-01", "mini-02"}
    assert job_minis(SimpleNamespace(mini="mini-01", params={})) == {"mini-01"}
    assert job_minis(SimpleNamespace(mini=None, params=None)) == set()


def test_a_provision_on_a_migration_target_waits_for_the_migration():
    jobs, Session = engine()
    jobs.Session, jobs.lock, jobs.stopping = Session, threading.RLock(), threading.Event()
    jobs.settings = SimpleNamespace(workers=4)
    jobs.running = {"m": {"minis": {"mini-01", "mini-02"}, "claw_id": A, "cancel": False}}
    with Session() as s:
        s.add(Job(id="p", kind="provision", state="queued", claw_id=B, mini="mini-02", params={}))
        s.commit()
    jobs._dispatch_once()
    with Session() as s:
        assert s.get(Job, "p").state == "queued"
