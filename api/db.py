"""The job store (SQLAlchemy 2): jobs, their events, the claws the service knows and idempotency keys.

Nothing secret is stored: job ``params`` hold only non-secret request fields (the names of ``env`` keys, never
values), events are summaries (event name, task, host, changed/failed, a message) redacted against the job's
secrets before they are written.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

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
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at), "webhook_status": self.webhook_status}


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


def make_sessionmaker(url: str):
    """Engine + session factory; SQLite gets WAL and a busy timeout so the API and job threads share it, and its
    file is 0600 (:func:`private_sqlite_file`)."""
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
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)
