"""The service layer the routes call: the job engine, the store, the inventory and the monitor behind plain methods
(placement of a claw, the Mini a claw is on, queueing a job with its idempotency key, callback checks, views).

One :class:`Service` per app (``app.state.service``); routes get it through :func:`api.deps.get_service`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from .callbacks import CallbackRefused, check_callback_url
from .config import Settings
from .db import Claw, Job, Mini, MiniSetting, utcnow
from .inventory import Inventory, place
from .jobs import IdempotencyConflict, JobEngine, playbook_available  # noqa: F401 - playbook_available: the routes' hook
from .monitor import Monitor, Sample
from .pollcache import PollCache

# Jobs that place a claw on their Mini (an import provisions the claw it brings in): while queued or running they
# count in the Mini's load and say where the claw is.
PLACING_KINDS = ("provision", "import")


@dataclass
class Service:
    """What a request works with; see the module docstring."""

    settings: Settings
    Session: object
    engine: JobEngine
    inventory: Inventory
    monitor: Monitor
    polls: PollCache | None = None

    def job_out(self, job: Job) -> dict:
        return job.to_dict()

    def job_snapshot(self, job_id: str) -> dict | None:
        """The answer of ``GET /v1/jobs/{id}`` (None: no such job); nothing in it depends on the time of asking."""
        with self.Session() as s:
            job = s.get(Job, job_id)
            return self.job_out(job) if job is not None else None

    def claw_snapshot(self, claw_id: str) -> dict | None:
        """What ``GET /v1/claws/{id}`` is built from (None: a claw the service does not know): the claw's record, its
        newest job and newest health sample, as plain data; :meth:`claw_answer` adds the ages."""
        with self.Session() as s:
            claw = s.get(Claw, claw_id)
            last = s.scalars(select(Job).where(Job.claw_id == claw_id).order_by(Job.created_at.desc()).limit(1)).first()
            if claw is None and last is None:
                return None
            updated = claw.updated_at.replace(tzinfo=claw.updated_at.tzinfo or UTC) if claw else None
            sample = None
            if claw is not None and claw.present:
                row = s.scalars(select(Sample).where(Sample.claw_id == claw_id).order_by(Sample.sampled_at.desc()).limit(1)).first()
                sample = {"sampled_at": row.sampled_at, "mini": row.mini, "data": row.data} if row is not None else None
            return {"claw_id": claw_id, "present": bool(claw and claw.present), "mini": claw.mini if claw else None,
                    "record": claw.record if claw else {}, "updated": updated, "last_job": self.job_out(last) if last else None,
                    "sample": sample}

    @staticmethod
    def claw_answer(snap: dict, refresh_job: str | None = None) -> dict:
        """The answer of ``GET /v1/claws/{id}`` from :meth:`claw_snapshot`, ages as of now."""
        updated, sample = snap["updated"], snap["sample"]
        health = None
        if sample is not None:
            health = {"sampled_at": sample["sampled_at"], "age_s": round(time.time() - sample["sampled_at"], 1), "mini": sample["mini"], **sample["data"]}
        return {"claw_id": snap["claw_id"], "present": snap["present"], "mini": snap["mini"], "record": snap["record"],
                "updated_at": updated.isoformat() if updated else None,
                "age_seconds": round((datetime.now(UTC) - updated).total_seconds(), 1) if updated else None,
                "last_job": snap["last_job"], "health": health, "refresh_job": refresh_job}

    def known_mini(self, name: str, placing: bool = False, field: str = "mini") -> None:
        """422 for a Mini the inventory does not have; with ``placing`` (a new claw or a migration's target goes
        there) 409 unless its ``mini_status`` is ``active``."""
        minis = self.inventory.minis()
        if name not in minis:
            raise HTTPException(422, [{"loc": ["body", field], "msg": f"unknown Mini {name!r}; known: {', '.join(sorted(minis)) or 'none'}",
                                       "type": "value_error"}])
        if placing and minis[name]["status"] != "active":
            raise HTTPException(409, f"Mini {name!r} is {minis[name]['status']}: it takes no new claws")

    def claw_home(self, claw_id: str) -> str | None:
        """The Mini an existing claw is on: the service's record of a present claw, else the Mini of its newest
        provision or import still queued or running; None for a claw the service does not know."""
        with self.Session() as s:
            claw = s.get(Claw, claw_id)
            if claw is not None and claw.present and claw.mini:
                return claw.mini
            pending = s.scalars(select(Job.mini).where(Job.claw_id == claw_id, Job.kind.in_(PLACING_KINDS),
                                                       Job.state.in_(("queued", "running"))).order_by(Job.created_at.desc()).limit(1)).first()
            return pending

    def claw_mini(self, claw_id: str, given: str | None) -> str:
        if given:
            self.known_mini(given)
            return given
        with self.Session() as s:
            claw = s.get(Claw, claw_id)
        if claw and claw.mini:
            return claw.mini
        minis = self.inventory.minis()
        if len(minis) == 1:
            return next(iter(minis))
        raise HTTPException(404, f"claw {claw_id} is not known to the service; pass its mini")

    def accepted(self, job: Job, created: bool) -> JSONResponse:
        return JSONResponse(self.job_out(job), status_code=202 if created else 200)

    def submit(self, *args, **kwargs) -> JSONResponse:
        try:
            return self.accepted(*self.engine.submit(*args, **kwargs))
        except IdempotencyConflict:
            raise self.idempotency_conflict()

    @staticmethod
    def idempotency_conflict() -> HTTPException:
        return HTTPException(422, [{"loc": ["header", "Idempotency-Key"], "type": "idempotency_conflict",
                                    "msg": "this Idempotency-Key was already used for a different request (method, path or body); use a new key"}])

    def callback(self, url, field: tuple = ("body", "callback_url")) -> str | None:
        if url is None:
            return None
        try:
            return check_callback_url(str(url), self.settings.callback_hosts, self.settings.webhook_url)
        except CallbackRefused as exc:
            raise HTTPException(422, [{"loc": list(field), "msg": str(exc), "type": "value_error"}])

    def claw_summary(self, claw: Claw) -> dict:
        updated = claw.updated_at.replace(tzinfo=claw.updated_at.tzinfo or UTC) if claw.updated_at else None
        return {"claw_id": claw.claw_id, "present": bool(claw.present), "mini": claw.mini, "record": claw.record or {},
                "updated_at": updated.isoformat() if updated else None}

    def mini_out(self, name: str, info: dict) -> dict:
        with self.Session() as s:
            claws = s.scalar(select(func.count()).select_from(Claw).where(Claw.mini == name, Claw.present == 1))
            last = s.scalars(select(Job).where(Job.mini == name).order_by(Job.created_at.desc()).limit(1)).first()
            pruned = s.scalars(select(Job).where(Job.kind == "prune", Job.state == "succeeded")
                               .order_by(Job.created_at.desc()).limit(1)).first()
        tombstones = ((pruned.result or {}).get("tombstones") or {}).get(name) if pruned else None
        return {**info, "claws": claws or 0, "last_job": self.job_out(last) if last else None, "health": self.monitor.mini_health(name),
                "tombstones": tombstones}

    def provision_target(self, claw_id: str, named: str | None) -> str:
        """The Mini a provision goes to: an existing claw's own Mini (naming another is a 409: migrate it), else the
        named Mini (422 unknown, 409 not ``active``), else the least-loaded active Mini with a free slot (claws
        present plus provisions and imports queued or running; 409 when none). Call it under
        ``engine.serialized("placement")`` and queue the job in the same block."""
        mini = named
        home = self.claw_home(claw_id)
        if home and mini and mini != home:
            raise HTTPException(409, f"claw {claw_id} is on Mini {home!r}; move it with POST /v1/claws/{{claw_id}}/migrate")
        if home:
            mini = home  # an existing claw is provisioned again where it is, never placed again
        elif mini:
            self.known_mini(mini, placing=True)
        else:
            load = {name: len(claws) for name, claws in self.claws_on().items()}
            with self.Session() as s:
                for job_mini, count in s.execute(select(Job.mini, func.count()).where(Job.kind.in_(PLACING_KINDS),
                                                 Job.state.in_(("queued", "running"))).group_by(Job.mini)).all():
                    load[job_mini] = load.get(job_mini, 0) + count
            mini = place(self.inventory.minis(), load)
            if mini is None:
                raise HTTPException(409, "no capacity: no active Mini has a free slot")
        return mini

    def claws_on(self) -> dict[str, set]:
        """``{mini: {claw_id, ...}}``: the claws actually on each Mini as far as the service knows: its present claw
        records (provision, status, migration results) and the claims of the newest health sample of the Mini (the
        Mini's own port claims, read by ``claw_port_info`` in ``playbooks/health.yml``: claws the service did not
        create count too). A claw the service knows to be elsewhere now counts on its own Mini only."""
        from .monitor import Sample

        with self.Session() as s:
            records = s.execute(select(Claw.claw_id, Claw.mini, Claw.present)).all()
            samples = s.execute(select(Sample.mini, Sample.claw_id, Sample.sampled_at)).all()
        where = {claw_id: mini for claw_id, mini, present in records if present and mini}
        gone = {claw_id for claw_id, _, present in records if not present}
        out: dict[str, set] = {}
        for claw_id, mini in where.items():
            out.setdefault(mini, set()).add(claw_id)
        newest = {mini: at for mini, claw_id, at in samples if claw_id == ""}
        for mini, claw_id, at in samples:
            if claw_id and at >= newest.get(mini, at) and where.get(claw_id, mini) == mini and claw_id not in gone:
                out.setdefault(mini, set()).add(claw_id)
        return out

    def register_mini(self, record: dict) -> tuple[dict, bool]:
        """Store a new Mini (a record checked by the collection's ``validate_mini``); returns ``(record, created)``.
        The same record again is not an error (``created`` False).

        Raises:
            HTTPException: 409 when the name is the inventory file's or registered with other values.
        """
        with self.engine.serialized("placement"), self.Session() as s:
            if record["name"] in self.inventory.file_minis():
                raise HTTPException(409, f"Mini {record['name']!r} is in the operator's inventory file; change it there")
            row = s.get(Mini, record["name"])
            if row is not None:
                stored = {k: getattr(row, k) for k in record}
                if stored != record:
                    raise HTTPException(409, f"Mini {record['name']!r} is already registered with other values; change it with PATCH "
                                             "or DELETE it first")
                return record, False
            s.add(Mini(**record, created_at=utcnow()))
            s.execute(MiniSetting.__table__.delete().where(MiniSetting.name == record["name"]))  # a leftover of an old Mini
            s.commit()
        return record, True

    def delete_mini(self, name: str) -> None:
        """Forget a registered Mini and its settings.

        Raises:
            HTTPException: 404 unknown; 409 a Mini of the inventory file, one with claws (records or claims of its
                newest health sample) or with jobs queued or running.
        """
        with self.engine.serialized("placement"), self.Session() as s:
            if name in self.inventory.file_minis():
                raise HTTPException(409, f"Mini {name!r} is in the operator's inventory file; remove it there")
            row = s.get(Mini, name)
            if row is None:
                raise HTTPException(404, f"unknown Mini {name!r}")
            claws = sorted(self.claws_on().get(name, ()))
            if claws:
                raise HTTPException(409, f"Mini {name!r} is not empty: {len(claws)} claw(s) on it (drain or deprovision them first)")
            busy = s.scalar(select(func.count()).select_from(Job).where(Job.state.in_(("queued", "running")),
                                                                          (Job.mini == name) | (Job.params["target"].as_string() == name)))
            if busy:
                raise HTTPException(409, f"Mini {name!r} has {busy} job(s) queued or running; wait for them")
            s.delete(row)
            s.execute(MiniSetting.__table__.delete().where(MiniSetting.name == name))
            s.commit()

    def set_mini(self, name: str, status: str | None = None, max_claws: int | None = None) -> None:
        """Store a Mini's status and/or capacity (the fields given; the others keep their value)."""
        with self.engine.serialized("placement"), self.Session() as s:  # never in the middle of a placement
            row = s.get(MiniSetting, name) or MiniSetting(name=name)
            if status is not None:
                row.status = status
            if max_claws is not None:
                row.max_claws = max_claws
            row.updated_at = utcnow()
            s.merge(row)
            s.commit()
