"""Durable jobs: each one runs one playbook through ansible-runner (https://ansible.readthedocs.io/projects/runner/).

Shape of a job: ``kind`` (provision, import, deprovision, start, stop, restart, status, backup, restore, migrate, drain),
``claw_id``/``mini``, non-secret ``params``, ``state`` in queued → running → succeeded | failed | canceled |
interrupted, ``result`` (the playbook's ``set_stats`` data, e.g. the claw record) and ``error``.

Scheduling: a dispatcher thread starts queued jobs in order, at most ``workers`` at once, and never two jobs for the
same Mini or the same claw at the same time. Secrets (gateway token, env values) live only in memory and in the
job's private run directory (0700, a 0600 vars file), which is removed when the job ends; events are redacted
against them before they are stored. Every request value reaches the playbook as data Ansible never renders: the
vars file is YAML whose every string is tagged ``!unsafe`` (:func:`unsafe_yaml`), so a value such as
``{{ lookup('pipe', 'id') }}`` arrives byte for byte and runs nothing. ansible-runner's own secret files are suppressed (``suppress_env_files``),
its job_events are not written (the handler returns False) and its stdout is not kept (docs/reference/
ansible-runner-api.md section 2.3).
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import zlib
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import yaml
from prometheus_client import Histogram
from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from .config import REPO, Settings
from .db import Claw, IdempotencyKey, Job, JobEvent, JobLock, Lease, Replica, ScheduleRun, utcnow

log = logging.getLogger("clawfarm.api.jobs")
CLAIM_LOCK = 7215_0016  # pg_advisory_xact_lock key: one replica claims or reaps at a time

PLAYBOOKS = {
    "provision": "provision.yml", "deprovision": "deprovision.yml", "start": "start.yml", "stop": "stop.yml",
    "restart": "restart.yml", "status": "status.yml", "backup": "backup.yml", "restore": "restore.yml",
    "migrate": "migrate.yml", "drain": "drain.yml", "health": "health.yml", "configure": "configure.yml",
    "bootstrap": "bootstrap.yml", "prune": "prune.yml", "import": "import.yml",
}
LIMITED = ("bootstrap",)  # kinds whose playbook acts on every host of group minis: limited to the job's Mini
JOB_DURATION = Histogram("clawfarm_job_duration_seconds", "Duration of finished jobs, from start to end", ["kind"],
                         buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600))


def playbook_path(kind: str, directory: Path | None = None) -> Path:
    """The playbook a job kind runs (absolute), in ``directory`` (the ``playbook_dir`` setting) or the repo's."""
    return Path(directory or REPO / "playbooks") / PLAYBOOKS[kind]


def playbook_available(kind: str) -> bool:
    """Whether this release ships the playbook behind a job kind (migrate and drain come with the fleet work)."""
    return playbook_path(kind).exists()


REDACTED = "********"
SHORT_SECRET = 8  # below this length a value is redacted only where it stands as a whole token


def redact(value, secrets: list[str]):
    """Replace the job's secret values inside a JSON-able value (strings at any depth, dict keys too) with ``********``.

    A value of 8 characters or more is replaced wherever it occurs, inside longer text too. A shorter value (an env
    value such as ``on`` or ``42``) is replaced where it stands as a whole token (a letter, digit or ``_`` at its
    edge is not continued by another one): replacing every occurrence of ``42`` would garble unrelated text, skipping it (as this
    function did for values under 4 characters) would store the value itself, e.g. ``value 42 is invalid``.
    Numbers, booleans and null are left as they are; matching runs on the values, never on JSON text, so the
    result is always valid data.
    """
    values = sorted({str(v) for v in secrets if v is not None and str(v) != ""}, key=len, reverse=True)
    if not values:
        return value
    long = [v for v in values if len(v) >= SHORT_SECRET]
    short = [v for v in values if len(v) < SHORT_SECRET]
    def bounded(v: str) -> str:  # a word character at the value's edge must not continue a longer word
        word = re.compile(r"[A-Za-z0-9_]")
        return ((r"(?<![A-Za-z0-9_])" if word.match(v[0]) else "") + re.escape(v)
                + (r"(?![A-Za-z0-9_])" if word.match(v[-1]) else ""))

    token = re.compile("|".join(bounded(v) for v in short)) if short else None

    def clean(text: str) -> str:
        for secret in long:
            text = text.replace(secret, REDACTED)
        return token.sub(REDACTED, text) if token else text

    def walk(item):
        if isinstance(item, str):
            return clean(item)
        if isinstance(item, dict):
            return {clean(k) if isinstance(k, str) else k: walk(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v) for v in item]
        return item

    return walk(value)


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used by this API token for another request (method, path or body)."""


class _UnsafeDumper(yaml.SafeDumper):
    """YAML dumper whose every string (keys included) is written ``!unsafe "..."``."""


_UnsafeDumper.add_representer(str, lambda dumper, value: dumper.represent_scalar("!unsafe", value, style='"'))


def unsafe_yaml(data) -> str:
    """YAML text of ``data`` for ``ansible-playbook -e @file`` in which Ansible renders no string.

    ansible-core renders the strings of a JSON or plain YAML vars file as templates (trusted, like the playbook's
    own); a string tagged ``!unsafe`` is data it never renders (ansible-core 2.19 data tagging: not trusted as a
    template). Every string, at any depth, is tagged; numbers, booleans and null stay as they are.
    """
    return yaml.dump(data, Dumper=_UnsafeDumper, default_flow_style=False, allow_unicode=False, sort_keys=True, width=1 << 20)


def job_minis(job) -> set[str]:
    """The Minis a job touches: its ``mini`` and, for a migration, its ``target`` (``params["target"]``).

    Two jobs that share a Mini never run at once, so a migration and a provision on its target cannot race for
    the target's last slot. Shape: a set of inventory host names, empty for fleet-wide jobs without a Mini.
    """
    return {name for name in (job.mini, (job.params or {}).get("target")) if name}


def lock_keys(job) -> set[str]:
    """The :class:`~api.db.JobLock` keys a running job holds: ``mini:<name>`` per Mini it touches
    (:func:`job_minis`) and ``claw:<id>`` for its claw."""
    return {f"mini:{name}" for name in job_minis(job)} | ({f"claw:{job.claw_id}"} if job.claw_id else set())


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>`` for the ``X-Clawfarm-Signature`` webhook header.

    Raises:
        ValueError: no secret (nothing is ever signed with an empty key; load_settings refuses webhooks without one).
    """
    if not secret:
        raise ValueError("no webhook secret: set CLAWFARM_API_WEBHOOK_SECRET")
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class JobEngine:
    """Queue, dispatcher and runner of playbook jobs; see the module docstring.

    Several replicas (processes, on one host or many) may share one PostgreSQL job store. Each has an id
    (``replica``) and a heartbeat row; it claims queued jobs in one transaction (PostgreSQL: a transaction-scoped
    advisory lock serialises the claimers, rows are read ``FOR UPDATE SKIP LOCKED``), inserting one
    :class:`~api.db.JobLock` row per Mini and claw the job touches: the primary key keeps two jobs off one Mini or
    one claw whichever replica claims them. A running job carries ``owner`` and ``lease_until``; its replica renews
    the lease every third of ``lease_seconds``. Any replica ends a running job whose lease expired ``interrupted``
    (its replica died) and frees its locks; a queued job with secrets is run only by the replica that holds them
    (``secrets_on``) and ends ``interrupted`` when that replica's heartbeat stops. SQLite is for one replica: a
    replica that starts on SQLite ends every job still marked running at once.
    """

    replica = ""  # set per instance: "<host>:<pid>:<random>"
    inventory = None

    def __init__(self, settings: Settings, sessionmaker):
        self.settings = settings
        self.Session = sessionmaker
        self.replica = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock = threading.RLock()
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.running: dict[str, dict] = {}
        self.secrets: dict[str, dict] = {}
        self.threads: list[threading.Thread] = []
        self.dispatcher = None
        self.keeper = None
        self.inventory = None  # api.inventory.Inventory: playbooks get its override_sources() (set by create_app)
        # Called with each finished job (outside the engine's lock), e.g. by the monitor.
        self.finished_hooks: list = []
        from .webhooks import Webhooks

        self.webhooks = Webhooks(self)  # durable deliveries (job.finished and the subscriptions' events)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql`` (the job store's SQLAlchemy dialect)."""
        return self.Session.kw["bind"].dialect.name

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=float(getattr(self.settings, "lease_seconds", 30)))

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Register this replica, recover what dead processes left (:meth:`reap`; on SQLite every job still marked
        running, and queued jobs whose secrets died with a process, end ``interrupted``), remove run directories
        no live job owns, then start the dispatcher and the lease keeper."""
        with self.Session() as s:
            s.merge(Replica(id=self.replica, started_at=utcnow(), heartbeat_at=utcnow()))
            s.commit()
        self.reap(everything=self.dialect == "sqlite", legacy=True)
        self.settings.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.settings.run_dir, 0o700)
        with self.Session() as s:
            live = {job_id[:8] for job_id in s.scalars(select(Job.id).where(Job.state == "running"))}
        for leftover in self.settings.run_dir.iterdir():  # run dirs of a killed process: may hold secrets
            if not (leftover.name.startswith("job-") and leftover.name[4:12] in live):
                shutil.rmtree(leftover, ignore_errors=True)
        # ansible-runner is imported by the first job's thread otherwise: its POST would wait for that too.
        threading.Thread(target=importlib.import_module, args=("ansible_runner",), name="import-ansible-runner", daemon=True).start()
        self.dispatcher = threading.Thread(target=self._dispatch_loop, name="job-dispatcher", daemon=True)
        self.dispatcher.start()
        self.keeper = threading.Thread(target=self._keep_loop, name="job-leases", daemon=True)
        self.keeper.start()
        self.webhooks.start()

    def shutdown(self, timeout: float = 30) -> None:
        """Stop dispatching, kill running playbooks (their jobs end ``interrupted``) and wait for their threads;
        then leave the replicas table (queued jobs whose secrets only this replica held end ``interrupted``)."""
        self.stopping.set()
        self.wakeup.set()
        self.webhooks.shutdown()
        deadline = time.monotonic() + timeout
        for thread in list(self.threads):
            thread.join(max(0.1, deadline - time.monotonic()))
        try:
            with self.lock, self.Session() as s:
                for job in s.scalars(select(Job).where(Job.state == "queued", Job.secrets_on == self.replica)):
                    self._interrupt(s, job, "the service stopped before this job ran and its secrets were not kept; retry it")
                s.execute(delete(Lease).where(Lease.holder == self.replica))
                s.execute(delete(Replica).where(Replica.id == self.replica))
                s.commit()
        except Exception:  # noqa: BLE001 - the others reap after the lease
            log.exception("could not leave the replicas table")

    # ---- leases ------------------------------------------------------------------------------------------------

    def _keep_loop(self) -> None:
        period = max(0.2, self.lease.total_seconds() / 3)
        while not self.stopping.wait(period):
            try:
                self.renew()
                self.reap()
            except Exception:  # noqa: BLE001 - keep renewing
                log.exception("lease keeper error")

    def renew(self) -> None:
        """Renew this replica's heartbeat and the leases of the jobs it runs; pick up cancel requests made through
        another replica."""
        now = utcnow()
        with self.Session() as s:
            s.execute(update(Replica).where(Replica.id == self.replica).values(heartbeat_at=now))
            s.execute(update(Job).where(Job.owner == self.replica, Job.state == "running").values(lease_until=now + self.lease)
                      .execution_options(poll_cache="unchanged"))  # no answer shows a lease: kept poll answers stay
            canceled = set(s.scalars(select(Job.id).where(Job.owner == self.replica, Job.state == "running", Job.cancel_requested == 1)))
            if s.get(Replica, self.replica) is None:  # reaped as dead while paused: come back
                s.add(Replica(id=self.replica, started_at=now, heartbeat_at=now))
            s.commit()
        for job_id in canceled:
            if job_id in self.running:
                self.running[job_id]["cancel"] = True

    def reap(self, everything: bool = False, legacy: bool = False) -> list[str]:
        """End ``interrupted`` the running jobs whose lease expired (all running jobs but this replica's with
        ``everything``, for SQLite's single replica) and the queued jobs with secrets whose replica is gone
        (``legacy``: also those queued by a release that did not record the replica); free their locks. Returns the
        ids of the jobs ended; their final state goes to the webhook like any job's."""
        now = utcnow()
        ended, jobs = [], []
        with self.lock, self.Session() as s:
            if self.dialect == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK})
            s.execute(delete(Replica).where(Replica.heartbeat_at < now - 2 * self.lease, Replica.id != self.replica))
            alive = set(s.scalars(select(Replica.id)))
            stale = select(Job).where(Job.state == "running", Job.owner.is_distinct_from(self.replica)).with_for_update()
            if not everything:
                stale = stale.where(or_(Job.lease_until.is_(None), Job.lease_until < now))
            for job in s.scalars(stale):
                self._interrupt(s, job, "the service stopped while this job was running; the playbooks are idempotent, retry it" if everything
                                else "the replica running this job stopped (its lease expired); the playbooks are idempotent, retry it")
                ended.append(job.id)
                jobs.append(job)
            queued = select(Job).where(Job.state == "queued", Job.secrets_on.is_distinct_from(self.replica))
            if not (everything or legacy):  # a job with secrets always names its replica (older releases did not)
                queued = queued.where(Job.secrets_on.is_not(None))
            for job in s.scalars(queued):
                if (job.params or {}).get("has_secrets") and (everything or job.secrets_on not in alive):
                    self._interrupt(s, job, "the service stopped before this job ran and its secrets were not kept; retry it")
                    ended.append(job.id)
                    jobs.append(job)
            s.commit()
        for job in jobs:  # the final state goes to the webhook, as any job's does
            self._finish_side_effects(job)
        return ended

    def _interrupt(self, s, job: Job, error: str) -> None:
        job.state, job.finished_at, job.error, job.lease_until = "interrupted", utcnow(), error, None
        s.execute(delete(JobLock).where(JobLock.job_id == job.id))

    def hold_lease(self, name: str) -> bool:
        """Take or renew the named lease (e.g. ``scheduler``) for ``lease_seconds``; True while this replica holds it."""
        now = utcnow()
        with self.Session() as s:
            done = s.execute(update(Lease).where(Lease.name == name, or_(Lease.holder == self.replica, Lease.until < now))
                             .values(holder=self.replica, until=now + self.lease))
            if done.rowcount:
                s.commit()
                return True
            if s.get(Lease, name) is not None:
                return False
            s.add(Lease(name=name, holder=self.replica, until=now + self.lease))
            try:
                s.commit()
            except IntegrityError:
                return False
            return True

    def schedule_due(self, name: str, interval: float, now: float | None = None) -> bool:
        """Whether the fleet-wide schedule ``name`` is due (last fired ``interval`` seconds ago or never); when it
        is, records this run. Called by the scheduler leader only, so the replicas fire it once per interval."""
        now = time.time() if now is None else now
        with self.Session() as s:
            row = s.get(ScheduleRun, name, with_for_update=self.dialect == "postgresql")
            if row is not None and now - row.last_run < interval:
                return False
            s.merge(ScheduleRun(name=name, last_run=now))
            try:
                s.commit()
            except IntegrityError:
                return False
            return True

    @contextlib.contextmanager
    def serialized(self, name: str):
        """Hold ``name`` across all replicas while the block runs (PostgreSQL: a session advisory lock on a
        connection of its own; SQLite, one replica: the engine's lock is enough). Placement of a new claw runs
        under ``placement``, so two replicas never hand out a Mini's last slot twice."""
        with self.lock:
            if self.dialect != "postgresql":
                yield
                return
            key = zlib.crc32(f"clawfarm:{name}".encode())
            with self.Session.kw["bind"].connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                connection.commit()
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()

    # ---- submission --------------------------------------------------------------------------------------------

    def submit(self, kind: str, claw_id: str | None, mini: str | None, params: dict, secrets: dict | None = None,
               callback_url: str | None = None, idempotency: tuple[str, str, str] | None = None) -> tuple[Job, bool]:
        """Queue a job; returns ``(job, created)``. A job with secrets is bound to this replica (``secrets_on``).

        ``idempotency`` is ``(scope, key, request)``: the caller's token digest, the Idempotency-Key, and a digest of
        method, path and body. The same triple returns the first job (``created`` False).

        Raises:
            IdempotencyConflict: this scope used the key for a different request.
        """
        with self.lock, self.Session() as s:
            first = self.replay(idempotency)
            if first is not None:
                return first, False
            job = Job(id=str(uuid.uuid4()), kind=kind, state="queued", claw_id=claw_id, mini=mini,
                      params={**params, "has_secrets": bool(secrets)}, callback_url=callback_url,
                      secrets_on=self.replica if secrets else None)
            if secrets:
                self.secrets[job.id] = secrets
            s.add(job)
            s.flush()
            if idempotency:
                s.add(IdempotencyKey(scope=idempotency[0], key=idempotency[1], request=idempotency[2], job_id=job.id))
            try:
                s.commit()
            except Exception:
                self.secrets.pop(job.id, None)
                raise
        self.wakeup.set()
        return job, True

    def replay(self, idempotency: tuple[str, str, str] | None) -> Job | None:
        """The job an earlier request with this ``(scope, key, request)`` created, or None.

        Raises:
            IdempotencyConflict: this scope used the key for a different request.
        """
        if not idempotency:
            return None
        with self.lock, self.Session() as s:
            known = s.get(IdempotencyKey, (idempotency[0], idempotency[1]))
            if known is None:
                return None
            if not hmac.compare_digest(known.request, idempotency[2]):
                raise IdempotencyConflict(idempotency[1])
            return s.get(Job, known.job_id)

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued job at once or ask a running one to stop (its replica stops it, whichever replica was
        asked); returns the state after, None if unknown."""
        with self.lock, self.Session() as s:
            done = s.execute(update(Job).where(Job.id == job_id, Job.state == "queued")
                             .values(state="canceled", finished_at=utcnow(), error="canceled before it started"))
            if done.rowcount:
                s.commit()
                self.secrets.pop(job_id, None)
                job = s.get(Job, job_id)
                s.refresh(job)
                self._finish_side_effects(job)
                return job.state
            job = s.get(Job, job_id)
            if job is None:
                return None
            if job.state == "running":
                job.cancel_requested = 1
                s.commit()
                if job_id in self.running:
                    self.running[job_id]["cancel"] = True
            return job.state

    # ---- dispatching -------------------------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self.stopping.is_set():
            self.wakeup.wait(0.5)
            self.wakeup.clear()
            try:
                self._dispatch_once()
            except Exception:  # noqa: BLE001 - keep dispatching
                log.exception("dispatcher error")

    def _dispatch_once(self) -> None:
        """Claim queued jobs, oldest first, up to ``workers`` running here; see the class docstring."""
        with self.lock:
            if len(self.running) >= self.settings.workers or self.stopping.is_set():
                return
            claimed = []
            with self.Session() as s:
                if self.dialect == "postgresql":
                    s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK})
                query = (select(Job).where(Job.state == "queued", or_(Job.secrets_on.is_(None), Job.secrets_on == self.replica))
                         .order_by(Job.created_at).limit(200))
                if self.dialect == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                busy = set(s.scalars(select(JobLock.key)))
                for ctx in self.running.values():  # this replica's own view agrees with the lock rows
                    busy |= lock_keys(SimpleNamespace(mini=None, params={}, claw_id=ctx["claw_id"])) | {f"mini:{m}" for m in ctx["minis"]}
                for job in s.scalars(query).all():
                    if len(self.running) + len(claimed) >= self.settings.workers:
                        break
                    keys = lock_keys(job)
                    if keys & busy or ((job.params or {}).get("has_secrets") and job.id not in self.secrets):
                        continue
                    try:
                        with s.begin_nested():
                            s.add_all([JobLock(key=key, job_id=job.id) for key in sorted(keys)])
                            job.state, job.started_at, job.owner = "running", utcnow(), self.replica
                            job.lease_until = job.started_at + self.lease
                    except IntegrityError:  # another replica holds one of the keys
                        continue
                    busy |= keys
                    claimed.append((job.id, job_minis(job), job.claw_id))
                s.commit()
            for job_id, minis, claw_id in claimed:
                self.running[job_id] = {"minis": minis, "claw_id": claw_id, "cancel": False}
                thread = threading.Thread(target=self._run, args=(job_id,), name=f"job-{job_id[:8]}", daemon=True)
                self.threads = [t for t in self.threads if t.is_alive()] + [thread]
                thread.start()

    # ---- running -----------------------------------------------------------------------------------------------

    def _extra_vars(self, job: Job, secrets: dict) -> dict:
        p = job.params
        extra = {"claw_id": job.claw_id} if job.claw_id else {}
        if job.mini:
            extra["mini"] = job.mini
        for name in ("restore", "archive", "key", "target", "src"):
            if p.get(name) is not None:
                extra[name] = p[name]
        if secrets.get("src"):  # an import's https source with a query (a presigned URL): kept out of params
            extra["src"] = secrets["src"]
        if job.kind in ("migrate", "drain"):
            # The per-migration SSH key expires when the job would be killed (expiry-time in authorized_keys).
            extra["claw_migrate_key_lifetime"] = int(self.settings.job_timeout)
        if p.get("env_unset"):
            extra["claw_env_unset"] = list(p["env_unset"])
        if secrets.get("gateway_token"):
            extra["gateway_token"] = secrets["gateway_token"]
        # claw_env only when the request gave a non-empty env, which replaces the claw's; omitted or {}, the claw keeps
        # its env, as the role does with an empty claw_env (remove names with PATCH env_unset).
        if secrets.get("env"):
            extra["claw_env"] = secrets["env"]
        if secrets.get("env_set"):
            extra["claw_env_set"] = secrets["env_set"]
        # Tokens the playbook generates stay on the control node (0600), never in the job.
        return extra

    def _run(self, job_id: str) -> None:
        import ansible_runner

        with self.Session() as s:
            job = s.get(Job, job_id)
        secrets = self.secrets.get(job_id, {})
        secret_values = [v for v in [secrets.get("gateway_token"), secrets.get("src"), *(secrets.get("env") or {}).values(),
                                     *(secrets.get("env_set") or {}).values()] if v]
        pdd = Path(tempfile.mkdtemp(prefix=f"job-{job_id[:8]}-", dir=self.settings.run_dir))
        outcome = {"artifact": {}, "stats": None, "error": None, "counter": 0}
        started = time.monotonic()
        status, rc = "failed", None
        try:
            os.chmod(pdd, 0o700)
            (pdd / "env").mkdir(mode=0o700)
            fd = os.open(pdd / "env" / "settings", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"suppress_output_file": True, "suppress_ansible_output": True, "pexpect_timeout": 1,
                           "job_timeout": self.settings.job_timeout}, handle)
            vars_file = pdd / "job-vars.yml"
            fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(unsafe_yaml(self._extra_vars(job, secrets)))
            cmdline = f"-e @{vars_file}"
            if self.settings.farm_vars:
                cmdline = f"-e @{self.settings.farm_vars} " + cmdline

            def on_event(event: dict) -> bool:
                self._store_event(job_id, event, secret_values, outcome)
                return False  # nothing in artifacts/job_events

            def should_cancel() -> bool:
                ctx = self.running.get(job_id, {})
                return bool(ctx.get("cancel")) or self.stopping.is_set()

            inventory = self.inventory.override_sources(pdd / "mini-settings") if self.inventory else str(self.settings.inventory)
            runner = ansible_runner.run(
                private_data_dir=str(pdd), project_dir=str(REPO), playbook=str(playbook_path(job.kind, self.settings.playbook_dir)),
                inventory=inventory, cmdline=cmdline, ident=job_id, quiet=True, suppress_env_files=True,
                envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                         # ansible-playbook of this Python's environment, whatever PATH the service was started with
                         "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
                event_handler=on_event, cancel_callback=should_cancel, timeout=self.settings.job_timeout,
                **({"limit": job.mini} if job.kind in LIMITED and job.mini else {}),
            )
            status, rc = runner.status, runner.rc
        except Exception as exc:  # noqa: BLE001 - infrastructure failure: the job fails, the service goes on
            log.exception("job %s could not run", job_id)
            outcome["error"] = f"could not run the playbook: {type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(pdd, ignore_errors=True)
            self.secrets.pop(job_id, None)
        self._finish(job_id, status, rc, outcome, secret_values, time.monotonic() - started)

    def _store_event(self, job_id: str, event: dict, secrets: list, outcome: dict) -> None:
        data = event.get("event_data") or {}
        name = event.get("event", "")
        summary = {"task": data.get("task"), "host": data.get("host"), "play": data.get("play"), "role": data.get("role")}
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        if name.startswith("runner_on_") or name.startswith("runner_item_on_"):
            summary["changed"] = bool(res.get("changed"))
        if name in ("runner_on_failed", "runner_on_unreachable", "runner_item_on_failed") and not data.get("ignore_errors"):
            message = res.get("msg") or res.get("stderr") or "failed"
            summary["msg"] = str(message)[:2000]
            outcome["error"] = f"{data.get('task')}: {summary['msg']}"
        if name == "playbook_on_stats":
            outcome["artifact"] = data.get("artifact_data") or {}
            outcome["stats"] = {k: data.get(k) for k in ("ok", "changed", "failures", "dark", "skipped", "rescued")}
            summary = {"stats": outcome["stats"]}
        summary = redact({k: v for k, v in summary.items() if v is not None}, secrets)
        with self.Session() as s:
            s.add(JobEvent(job_id=job_id, counter=int(event.get("counter") or 0), event=name, created=event.get("created"), data=summary))
            s.commit()

    def _finish(self, job_id: str, status: str, rc, outcome: dict, secrets: list, seconds: float) -> None:
        with self.lock, self.Session() as s:
            job = s.get(Job, job_id, with_for_update=self.dialect == "postgresql")
            ctx = self.running.pop(job_id, {})
            if job.state != "running" or job.owner != self.replica:
                # Another replica ended it when this one missed its lease renewals: that answer stands.
                log.warning("job %s was ended %s by another replica while it ran here (lease lost)", job_id, job.state)
                s.commit()
                self.wakeup.set()
                return
            s.execute(delete(JobLock).where(JobLock.job_id == job_id))
            job.lease_until = None
            if status == "successful":
                job.state = "succeeded"
            elif status == "canceled" and self.stopping.is_set() and not ctx.get("cancel"):
                job.state, outcome["error"] = "interrupted", "the service stopped while this job was running; retry it"
            elif status == "canceled":
                job.state, outcome["error"] = "canceled", "canceled on request"
            else:
                job.state = "failed"
                if status == "timeout":
                    outcome["error"] = f"the playbook ran longer than {self.settings.job_timeout} s and was stopped"
            artifact = outcome["artifact"]
            job.result = redact({**({"claw": artifact["claw"]} if "claw" in artifact else {}),
                                 **{k: v for k, v in artifact.items() if k != "claw"},
                                 "stats": outcome["stats"], "rc": rc}, secrets)
            job.error = None if job.state == "succeeded" else redact(outcome["error"] or f"playbook ended {status} (rc {rc})", secrets)
            job.finished_at = utcnow()
            self._record_claw(s, job)
            s.commit()
            JOB_DURATION.labels(job.kind).observe(seconds)
            self._finish_side_effects(job)
        for hook in self.finished_hooks:
            try:
                hook(job)
            except Exception:  # noqa: BLE001 - a hook never breaks job bookkeeping
                log.exception("finished-job hook failed for %s", job_id)
        self.wakeup.set()

    def _record_claw(self, s, job: Job) -> None:
        if job.state != "succeeded":
            return
        # migrate and drain report every claw they moved (its new Mini, port...): drain has no claw_id of its own.
        for claw_id, moved in ((job.result or {}).get("migrated_claws") or {}).items():
            claw = s.get(Claw, claw_id) or Claw(claw_id=claw_id, record={})
            claw.record = {**(claw.record or {}), **{k: v for k, v in moved.items() if k != "migration"}}
            claw.mini, claw.present, claw.updated_at = moved.get("mini") or claw.mini, 1, utcnow()
            s.merge(claw)
        if not job.claw_id:
            return
        claw = s.get(Claw, job.claw_id) or Claw(claw_id=job.claw_id, record={})
        record = dict(claw.record or {})
        record.update((job.result or {}).get("claw") or {})
        if job.kind in ("provision", "import") and (not record.get("provisioned_at") or claw.present == 0):
            # A claw never backed up raises backup_failed 24 h after this (api/monitor.py _backup_age).
            record["provisioned_at"] = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        if job.kind == "deprovision":
            claw.present = 0
        elif job.kind in ("provision", "import", "restore", "start", "restart", "status", "backup", "migrate"):
            claw.present = 1
        claw.mini = record.get("mini") or job.mini or claw.mini
        claw.record = record
        claw.updated_at = utcnow()
        s.merge(claw)

    # ---- webhooks ----------------------------------------------------------------------------------------------

    def _finish_side_effects(self, job: Job) -> None:
        """Queue the final job for its webhooks (durable, :mod:`api.webhooks`); never blocks or breaks a job."""
        try:
            self.webhooks.job_finished(job)
        except Exception:  # noqa: BLE001 - bookkeeping of the job stands
            log.exception("could not queue the webhooks of job %s", job.id)
