"""The job store (SQLAlchemy 2): jobs, their events, the claws the service knows and idempotency keys; and the
tables several replicas share the work through (job locks, replicas, leases, schedule runs).

The schema is created and changed only by the Alembic migrations in ``api/migrations`` (:func:`migrate`, run by
every replica at start under a PostgreSQL advisory lock); SQLite is the embedded default for one replica.

Nothing secret is stored: job ``params`` hold only non-secret request fields (the names of ``env`` keys, never
values), events are summaries (event name, task, host, changed/failed, a message) redacted against the job's
secrets before they are written.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine, event, inspect, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from .config import DEFAULT_BASE_PORT, DEFAULT_MAX_CLAWS

JOB_STATES = ("queued", "running", "succeeded", "failed", "canceled", "interrupted")
TERMINAL = ("succeeded", "failed", "canceled", "interrupted")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    claw_id: Mapped[str | None] = mapped_column(String(36), index=True)
    mini: Mapped[str | None] = mapped_column(String(128), index=True)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)
    webhook_status: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[int] = mapped_column(Integer, default=0)
    # The replica running the job and until when its lease holds (renewed while it runs); a job whose lease
    # expired ends ``interrupted``. ``secrets_on``: the replica holding the job's secrets in memory (only it may run it).
    owner: Mapped[str | None] = mapped_column(String(128), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    secrets_on: Mapped[str | None] = mapped_column(String(128))

    def to_dict(self) -> dict:
        """The job as the API shows it (ISO 8601 UTC times)."""
        def iso(value):
            if value is None:
                return None
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            return value.isoformat().replace("+00:00", "Z")
        return {"id": self.id, "kind": self.kind, "state": self.state, "claw_id": self.claw_id, "mini": self.mini,
                "params": self.params, "result": self.result, "error": self.error, "created_at": iso(self.created_at),
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at), "webhook_status": self.webhook_status,
                "replica": self.owner}


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "counter"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    counter: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(64))
    created: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict] = mapped_column(JSON, default=dict)

    def to_dict(self) -> dict:
        return {"counter": self.counter, "event": self.event, "created": self.created, **self.data}


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` as one API token used it: ``scope`` is a digest of the caller's token, ``request``
    a digest of method, path and body. The same key from the same token for the same request gives the same job;
    another request under that key is refused (422); another token's key of the same name is a different key.
    (A new table: the unscoped ``idempotency_keys`` table of older releases is no longer read.)"""
    __tablename__ = "idempotency_keys_scoped"
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Claw(Base):
    """What the service last learnt about a claw from a job result (the backend's record, with its age)."""
    __tablename__ = "claws"
    claw_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    mini: Mapped[str | None] = mapped_column(String(128), index=True)
    record: Mapped[dict] = mapped_column(JSON, default=dict)
    present: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobLock(Base):
    """One row per resource a running job holds: ``mini:<name>`` (its Mini, a migration's target too) and
    ``claw:<id>``. The primary key is what keeps two jobs off one Mini or one claw across all replicas: a claim
    inserts the rows in the same transaction that marks the job running, the end of the job deletes them."""
    __tablename__ = "job_locks"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)


class Replica(Base):
    """A running API process; ``heartbeat_at`` is renewed while it lives (a replica silent for a lease is dead)."""
    __tablename__ = "replicas"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Lease(Base):
    """A named lease (``scheduler``: the replica that runs the schedules), held by ``holder`` until ``until``."""
    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertState(Base):
    """The alert engine's memory of one Mini (api/alerts.py): which conditions hold since when (``pending``), which
    alerts fired and have not resolved (``firing``) and what remembering rules keep (``memory``: the browser start
    times of ``browser_crash_loop``'s window). Shared by the replicas: health jobs finish on any of them, and an alert
    must fire and resolve once whichever replica evaluates the next sample. (``state`` is JSON: ``memory`` needed no
    migration; a row without it starts empty.)"""
    __tablename__ = "alert_states"
    mini: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScheduleRun(Base):
    """When a fleet-wide schedule (``health``) last fired (UNIX time), shared by the replicas that lead in turn."""
    __tablename__ = "schedule_runs"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run: Mapped[float] = mapped_column(Float)


class MiniSetting(Base):
    """A Mini's status and capacity as set through ``PATCH /v1/minis/{name}``: they override the inventory's
    ``mini_status`` and ``claw_max_per_mini`` in the service's view and in every playbook it runs (a generated
    inventory source whose ``host_vars`` come after the operator's); null keeps the inventory's value."""
    __tablename__ = "mini_settings"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str | None] = mapped_column(String(16))
    max_claws: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Mini(Base):
    """A Mini registered through ``POST /v1/minis`` (the Minis of the operator's inventory file are not stored here):
    where the control node reaches it (``address`` -> ``ansible_host``), its Cloudflare tunnel, capacity, first
    port, time zone and status. Checked by the collection's ``module_utils/_mini.py``. Changes through ``PATCH`` go
    to :class:`MiniSetting` as for every Mini."""
    __tablename__ = "minis"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    address: Mapped[str | None] = mapped_column(String(255))
    tunnel_id: Mapped[str | None] = mapped_column(String(36))
    max_claws: Mapped[int] = mapped_column(Integer, default=DEFAULT_MAX_CLAWS)
    base_port: Mapped[int] = mapped_column(Integer, default=DEFAULT_BASE_PORT)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookSubscription(Base):
    """A receiver of events (``events``: a list of kinds, see :data:`api.webhooks.EVENTS`), signed with the
    service's webhook secret like job callbacks."""
    __tablename__ = "webhook_subscriptions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """One event for one receiver: ``pending`` (due at ``next_attempt_at``; claimed by one replica at a time, which
    sets ``claimed_until``), ``delivered`` or ``dead`` (attempts used up, or the host refused). Kept in the store, so
    deliveries survive restarts and another replica finishes what a dead one started."""
    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str | None] = mapped_column(String(36), index=True)
    job_id: Mapped[str | None] = mapped_column(String(36), index=True)
    url: Mapped[str] = mapped_column(Text)
    checked: Mapped[int] = mapped_column(Integer, default=1)
    event: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def private_sqlite_file(url: str) -> None:
    """Create a SQLite database file 0600 before SQLite opens it (SQLite gives its -wal and -shm files the
    database file's mode), and make an existing one 0600: job records name the claws and their Minis."""
    import os

    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:") or url[len(prefix):].startswith("file:"):
        return
    path = url[len(prefix):].split("?", 1)[0]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        if os.path.isfile(path + suffix) and not os.path.islink(path + suffix):
            os.chmod(path + suffix, 0o600)


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_REVISION = "0001"
MIGRATION_LOCK = 7215_0015  # pg_advisory_xact_lock key: one replica migrates at a time


def alembic_config(url: str | None = None):
    """The Alembic configuration of the job store (script location ``api/migrations``)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine) -> None:
    """Bring the schema to the newest Alembic revision. A store created before migrations existed (tables, no
    ``alembic_version``) is stamped with the first revision, which is that schema, then upgraded. On PostgreSQL
    replicas starting together migrate one after the other (a transaction-scoped advisory lock)."""
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = connection
        names = set(inspect(connection).get_table_names())
        if "jobs" in names and "alembic_version" not in names:
            command.stamp(cfg, FIRST_REVISION)
        command.upgrade(cfg, "head")


def make_sessionmaker(url: str):
    """Engine + session factory, schema migrated (:func:`migrate`); SQLite gets WAL and a busy timeout so the API
    and job threads share it, and its file is 0600 (:func:`private_sqlite_file`)."""
    private_sqlite_file(url)
    kwargs = {"json_serializer": lambda obj: json.dumps(obj, default=str)}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)
