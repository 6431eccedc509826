"""Issue 17: a claw with no backup 24 h after its provision raises backup_failed (api/monitor.py _backup_age)."""
from __future__ import annotations

from datetime import UTC, datetime

from api.alerts import AlertEngine, default_rules
from api.db import Claw
from api.monitor import Monitor

CLAW = "1a2b3c4d-0000-4000-8000-000000000017"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC).timestamp()


class Session:
    def __init__(self, record):
        self.claw = Claw(claw_id=CLAW, record=record) if record is not None else None

    def get(self, model, key):
        return self.claw if model is Claw and key == CLAW else None


def age(record):
    return Monitor._backup_age(Session(record), CLAW, NOW)


def test_a_claw_never_backed_up_ages_from_its_provision():
    assert age({"provisioned_at": "2026-12-05T11:00:00Z"}) == 25 * 3600
    assert age({}) is None and age(None) is None


def test_the_newer_of_last_backup_and_provision_counts():
    assert age({"provisioned_at": "2026-12-01T00:00:00Z", "last_backup": {"finished_at": "2026-12-06T10:00:00Z"}}) == 2 * 3600
    # Re-subscribed yesterday after older backups: counts from the new provision.
    assert age({"provisioned_at": "2026-12-06T06:00:00Z", "last_backup": {"finished_at": "2026-11-01T02:00:00Z"}}) == 6 * 3600


def test_the_backup_alert_fires_for_a_claw_never_backed_up_after_24_hours():
    sent = []
    eng = AlertEngine(default_rules(), sent.append)
    view = {"age_s": 5, "cpu_percent": 1.0, "memory": {"percent": 10}, "disks": [], "connector": {"state": "running"},
            "claws": [{"claw_id": CLAW, "pid": 1, "health": "ok", "launchd_state": "running",
                       "last_backup_age_s": age({"provisioned_at": "2026-12-05T11:00:00Z"})}]}
    eng.evaluate("mini-01", view, now=NOW)
    assert "backup_failed" in str(sent)


class FakeEngine:
    def __init__(self, due=True):
        self.due, self.submitted = due, []

    def schedule_due(self, name, interval):
        assert name == "prune" and interval == 24 * 3600
        return self.due

    def submit(self, kind, claw_id, mini, params):
        self.submitted.append((kind, claw_id, mini, params))


class JobSession:
    def __init__(self, busy=None):
        self.busy = busy

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def scalars(self, query):
        return self

    def first(self):
        return self.busy


def monitor(schedule, engine, busy=None):
    mon = Monitor.__new__(Monitor)
    mon.backup_schedule, mon.engine, mon.Session = schedule, engine, lambda: JobSession(busy)
    return mon


def test_prune_runs_once_a_day_with_a_daily_backup_schedule_only():
    engine = FakeEngine()
    monitor("02:00", engine)._schedule_prune()
    assert engine.submitted == [("prune", None, None, {"scheduled": True})]
    for schedule in ("off", "", "every:15"):
        other = FakeEngine()
        monitor(schedule, other)._schedule_prune()
        assert other.submitted == []
    busy = FakeEngine()
    monitor("02:00", busy, busy=object())._schedule_prune()  # a backup (or prune) still queued or running
    not_due = FakeEngine(due=False)
    monitor("02:00", not_due)._schedule_prune()
    assert busy.submitted == [] and not_due.submitted == []
