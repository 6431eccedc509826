"""Fleet monitoring inside the API service: the health schedule, last samples, alerts and the nightly backups.

- The schedules run on one replica at a time (the ``scheduler`` lease), once per interval across the replicas.
- Every ``health_interval`` seconds (default 60) a ``health`` job runs ``playbooks/health.yml`` on every Mini
  (module ``mini_health``); the last sample per Mini and per claw is kept with its time. A Mini whose newest sample
  is older than 180 s is ``heartbeat missing``.
- After each sample the alert rules (api/alerts.py) are evaluated; notifications go to a Discord webhook.
- Backups: ``backup_schedule`` is ``HH:MM`` (daily, in each Mini's ``mini_timezone`` host var, default UTC) or
  ``every:<seconds>``; one Mini's ``backup.yml`` at a time. Each claw's last successful backup (time, key, size,
  sha256) is recorded from the job result and raises ``backup_failed`` after 24 h without one.
- Retention: with a daily (``HH:MM``) backup schedule, ``prune.yml`` once a day (tombstones, deprovision archives).
  A claw never backed up counts from its provision (``provisioned_at``), so it too raises ``backup_failed``.
- Info events come from job results: claw provisioned, backup success, migration complete.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Float, String, select
from sqlalchemy.orm import Mapped, mapped_column

from .alerts import AlertEngine, DbAlertStore, default_rules
from .db import Base, Claw, Job

log = logging.getLogger("clawfarm.api.monitor")
HEARTBEAT_SECONDS = 180
PRUNE_INTERVAL = 24 * 3600  # prune.yml once a day (with a daily backup schedule)


class Sample(Base):
    """The newest sample of a Mini (``claw_id`` empty) or of a claw."""
    __tablename__ = "samples"
    mini: Mapped[str] = mapped_column(String(128), primary_key=True)
    claw_id: Mapped[str] = mapped_column(String(36), primary_key=True, default="")
    sampled_at: Mapped[float] = mapped_column(Float)
    data: Mapped[dict] = mapped_column(JSON, default=dict)


def backup_due(schedule: str, now: float, last_run: float | None, timezone: str = "UTC") -> bool:
    """Whether a Mini's backup is due.

    ``schedule`` ``HH:MM``: due once per local day at or after that time (``last_run`` before today's slot);
    ``every:<seconds>``: due when ``last_run`` is older than that. ``off``: never.
    """
    if schedule in ("", "off"):
        return False
    if schedule.startswith("every:"):
        return last_run is None or now - last_run >= float(schedule.split(":", 1)[1])
    hour, minute = (int(x) for x in schedule.split(":"))
    local = datetime.fromtimestamp(now, ZoneInfo(timezone))
    slot = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return local >= slot and (last_run is None or last_run < slot.timestamp())


class Monitor:
    """Owns the schedules; hooked into the job engine's finished jobs."""

    def __init__(self, engine, Session, inventory, notifier, health_interval: float = 60, backup_schedule: str = "02:00",
                 rules=None):
        self.engine, self.Session, self.inventory = engine, Session, inventory
        self.notify = notifier or (lambda message: log.warning("alert (no Discord webhook configured): %s", message))
        self.alerts = AlertEngine(rules or default_rules(), self.notify, DbAlertStore(Session))
        self.health_interval, self.backup_schedule = health_interval, backup_schedule
        self.last_backup_run: dict[str, float] = {}
        self.started_at = time.time()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
        engine.finished_hooks.append(self.on_job_finished)

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()

    # ---- schedules ---------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the schedule keeps going
                log.exception("monitor error")

    def tick(self) -> None:
        """One turn of the schedules. Only the replica holding the ``scheduler`` lease (:meth:`JobEngine.hold_lease`)
        runs them, and the health schedule's last run is shared in the job store: with several replicas the fleet is
        sampled once per interval and each Mini's backup queued once, whichever replica leads (and after a leader
        dies, the next one goes on from the shared state)."""
        if not self.engine.hold_lease("scheduler"):
            self.last_backup_run.clear()  # another replica schedules; re-read from the job store when leading again
            return
        if self.health_interval > 0 and self.engine.schedule_due("health", self.health_interval):
            self._queue_once("health", None)
            self._check_heartbeats()
        self._schedule_backups()
        self._schedule_prune()

    def _queue_once(self, kind: str, mini: str | None) -> None:
        with self.Session() as s:
            busy = s.scalars(select(Job).where(Job.kind == kind, Job.state.in_(("queued", "running")), Job.claw_id.is_(None))).first()
        if busy is None:
            self.engine.submit(kind, None, mini, {"scheduled": True})

    def _schedule_backups(self) -> None:
        with self.Session() as s:
            running = s.scalars(select(Job).where(Job.kind == "backup", Job.claw_id.is_(None), Job.state.in_(("queued", "running")))).first()
        if running is not None:
            return  # one Mini at a time
        now = time.time()
        for name, info in sorted(self.inventory.minis().items()):
            if info["status"] in ("offline", "maintenance"):
                continue
            if backup_due(self.backup_schedule, now, self._last_backup_run(name), info.get("timezone", "UTC")):
                self.last_backup_run[name] = now
                self.engine.submit("backup", None, name, {"scheduled": True})
                return

    def _schedule_prune(self) -> None:
        """Retention of what the farm leaves behind (playbooks/prune.yml: tombstones, deprovision archives) once a
        day with the nightly backups: only with a daily ``HH:MM`` backup schedule (``off`` turns it off too), never
        while a backup or a prune is queued or running."""
        if self.backup_schedule in ("", "off") or self.backup_schedule.startswith("every:"):
            return
        with self.Session() as s:
            busy = s.scalars(select(Job).where(Job.kind.in_(("backup", "prune")), Job.state.in_(("queued", "running")))).first()
        if busy is None and self.engine.schedule_due("prune", PRUNE_INTERVAL):
            self.engine.submit("prune", None, None, {"scheduled": True})

    def _last_backup_run(self, mini: str) -> float:
        """When the Mini's last scheduled backup started (from the job store, so restarts do not repeat it); a Mini
        never backed up by the schedule counts from the service's start (no catch-up burst on first boot)."""
        if mini not in self.last_backup_run:
            with self.Session() as s:
                last = s.scalars(select(Job).where(Job.kind == "backup", Job.mini == mini, Job.claw_id.is_(None))
                                 .order_by(Job.created_at.desc()).limit(1)).first()
            created = last.created_at.replace(tzinfo=last.created_at.tzinfo or ZoneInfo("UTC")).timestamp() if last else None
            self.last_backup_run[mini] = created or self.started_at
        return self.last_backup_run[mini]

    def _check_heartbeats(self) -> None:
        now = time.time()
        with self.Session() as s:
            for row in s.scalars(select(Sample).where(Sample.claw_id == "")):
                if now - row.sampled_at > HEARTBEAT_SECONDS:
                    self.alerts.evaluate(row.mini, self._alert_view(s, row.mini, row, now, claws=None), now=now)

    # ---- results -----------------------------------------------------------------------------------------------

    def on_job_finished(self, job) -> None:
        """Store samples and backup records from a finished job and send its info event."""
        result = job.result or {}
        if job.kind == "health":
            self._store_health(result.get("health") or {})
        elif job.kind == "backup":
            self._store_backups(result.get("backups") or [])
        if job.state != "succeeded":
            return
        if job.kind == "provision":
            self.notify({"state": "info", "severity": "info", "rule": "claw_provisioned", "summary": "claw provisioned",
                         "mini": job.mini, "claw_id": job.claw_id, "value": (result.get("claw") or {}).get("tunnel_hostname")})
        elif job.kind == "migrate":
            self.notify({"state": "info", "severity": "info", "rule": "migration_complete", "summary": "migration complete",
                         "mini": job.mini, "claw_id": job.claw_id, "value": (job.params or {}).get("target")})

    def _store_backups(self, backups: list) -> None:
        with self.Session() as s:
            for entry in backups:
                claw = s.get(Claw, entry.get("claw_id"))
                if claw is None or not entry.get("key"):
                    continue
                claw.record = {**(claw.record or {}), "last_backup": {k: entry.get(k) for k in ("key", "size", "sha256", "finished_at")}}
                s.merge(claw)
                self.notify({"state": "info", "severity": "info", "rule": "backup_success", "summary": "backup success",
                             "mini": entry.get("mini"), "claw_id": entry.get("claw_id"), "value": entry.get("key")})
            s.commit()

    def _store_health(self, health: dict) -> None:
        now = time.time()
        with self.Session() as s:
            for mini, sample in health.items():
                sampled_at = float(sample.get("sampled_at") or now)
                s.merge(Sample(mini=mini, claw_id="", sampled_at=sampled_at,
                               data={"mini": sample.get("mini") or {}, "connector": sample.get("connector")}))
                changed = []
                for claw in sample.get("claws") or []:
                    before = s.get(Sample, (mini, claw["claw_id"]))
                    if before is not None and before.sampled_at < sampled_at and (before.data or {}).get("health") != claw.get("health"):
                        changed.append({"mini": mini, "claw_id": claw["claw_id"], "health": claw.get("health"),
                                        "previous": (before.data or {}).get("health"), "sampled_at": sampled_at})
                    s.merge(Sample(mini=mini, claw_id=claw["claw_id"], sampled_at=sampled_at, data=claw))
                s.commit()
                webhooks = getattr(self.engine, "webhooks", None)
                for event in changed if webhooks else ():
                    webhooks.publish("claw.health_changed", event)
                row = s.get(Sample, (mini, ""))
                # Claws on a Mini where a job (backup, restore, deploy...) was running when the sample was taken may be
                # stopped on purpose: their alerts wait for the next sample, so a nightly backup never pages anyone.
                claws = None if self._job_running_at(s, mini, sampled_at) else (sample.get("claws") or [])
                self.alerts.evaluate(mini, self._alert_view(s, mini, row, now, claws=claws), now=now)

    @staticmethod
    def _job_running_at(s, mini: str, moment: float) -> bool:
        when = datetime.fromtimestamp(moment, ZoneInfo("UTC"))
        recent = select(Job).where(Job.mini == mini, Job.kind != "health", Job.started_at.is_not(None),
                                   Job.started_at >= when - timedelta(days=1))
        for job in s.scalars(recent):
            started = job.started_at.replace(tzinfo=job.started_at.tzinfo or ZoneInfo("UTC"))
            finished = job.finished_at.replace(tzinfo=job.finished_at.tzinfo or ZoneInfo("UTC")) if job.finished_at else None
            if started <= when and (finished is None or finished >= when):
                return True
        return False

    def _alert_view(self, s, mini: str, row: Sample, now: float, claws) -> dict:
        host = row.data.get("mini") or {}
        view = {"age_s": now - row.sampled_at, "cpu_percent": host.get("cpu_percent"), "memory": host.get("memory"),
                "disks": host.get("disks"), "connector": row.data.get("connector")}
        if claws is not None:
            view["claws"] = [{**c, "last_backup_age_s": self._backup_age(s, c["claw_id"], now)} for c in claws]
        else:
            view["claws"] = None  # keep claw alerts as they are while the Mini is silent
        return view

    @staticmethod
    def _backup_age(s, claw_id: str, now: float) -> float | None:
        """Seconds since the claw's last backup, or since its provision when that is newer (a claw never backed up,
        or re-subscribed after older backups, raises backup_failed 24 h after its provision); None when neither is known."""
        claw = s.get(Claw, claw_id)
        record = (claw.record or {}) if claw else {}
        stamps = [t for t in (((record.get("last_backup") or {}).get("finished_at")), record.get("provisioned_at")) if t]
        if not stamps:
            return None
        return now - max(datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=ZoneInfo("UTC")).timestamp() for t in stamps)

    # ---- views -------------------------------------------------------------------------------------------------

    def mini_health(self, name: str) -> dict | None:
        """``{"sampled_at", "age_s", "heartbeat": "ok"|"heartbeat missing", "mini", "connector"}`` or None."""
        with self.Session() as s:
            row = s.get(Sample, (name, ""))
            if row is None:
                return None
            age = time.time() - row.sampled_at
            return {"sampled_at": row.sampled_at, "age_s": round(age, 1), "heartbeat": "ok" if age <= HEARTBEAT_SECONDS else "heartbeat missing",
                    **row.data}

    def claw_health(self, mini: str | None, claw_id: str) -> dict | None:
        with self.Session() as s:
            row = s.scalars(select(Sample).where(Sample.claw_id == claw_id).order_by(Sample.sampled_at.desc())).first()
            if row is None:
                return None
            return {"sampled_at": row.sampled_at, "age_s": round(time.time() - row.sampled_at, 1), "mini": row.mini, **row.data}

    def samples(self) -> list[Sample]:
        with self.Session() as s:
            return list(s.scalars(select(Sample)))
