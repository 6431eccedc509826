"""What every poll reads, kept in memory: the answers of ``GET /v1/claws/{id}`` and ``GET /v1/jobs/{id}`` (issue 19).

A backend's pollers ask for the same few claws and jobs many times a second; the store changes a few times a
second at most. :class:`PollCache` keeps each answer's snapshot (the rows it was built from, as plain data) until
the store changes:

- a commit through the replica's sessionmaker that wrote a job, a claw record or a health sample drops the
  snapshots of that job and that claw (``after_commit``, once the commit is visible; an ``UPDATE``/``DELETE``
  statement on those tables drops every snapshot, unless it is marked ``execution_options(poll_cache="unchanged")``
  because it changes nothing an answer shows, as the lease renewals), and a snapshot read while such a commit
  happened is neither kept nor handed to a later caller (a generation counter), so this replica never answers with
  data older than its own last write. Commits that touch none of them (a job's playbook events, leases, webhook
  deliveries) keep every snapshot;
- on PostgreSQL, the replicas tell each other: after such a commit a replica sends the keys it dropped with
  ``NOTIFY clawfarm_poll`` and every replica's listener thread (:meth:`PollCache.start`, a connection of its own
  that ``LISTEN``s) drops them too, within milliseconds; a listener that lost its connection drops everything
  once it is back;
- whatever happens, no snapshot is older than ``ttl`` seconds (``CLAWFARM_API_POLL_CACHE_SECONDS``, default 10 on
  PostgreSQL, 30 on SQLite, where the one replica makes every write itself; 0 turns the cache off).

Loads run in a worker thread (the event loop never waits on the database) and concurrent misses of one key share
one load. Time-dependent fields (ages) are computed from the snapshot at every answer, never cached.

:class:`CachedPolls` answers a poll whose snapshot is kept before FastAPI's routing and dependencies (most of a
poll's cost): only a plain ``GET`` of one of the two paths with a valid bearer token (the same check as the routes,
:func:`api.deps.token_of`) and a kept snapshot of a known claw or job; everything else (a miss, an unknown id, a bad
or missing token, ``?refresh=true``) goes through the routes, which answer the same JSON and keep the snapshot.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text

DEFAULT_TTL = {"postgresql": 10.0, "sqlite": 30.0}
CHANNEL = "clawfarm_poll"
log = logging.getLogger("clawfarm.api.pollcache")
ALL = object()  # "drop every snapshot"
MISSING = object()
TABLES = ("jobs", "claws", "samples")  # what the cached answers are built from


class PollCache:
    """Snapshots by key, dropped on every commit of ``sessionmaker`` and after ``ttl`` seconds; see the module docstring."""

    def __init__(self, sessionmaker, ttl: float | None = None):
        """``ttl`` None: :data:`DEFAULT_TTL` of the store's dialect."""
        self.engine = sessionmaker.kw["bind"]
        self.ttl = float(DEFAULT_TTL.get(self.engine.dialect.name, 1.0) if ttl is None else ttl)
        self.stopping = threading.Event()
        self.listener = None
        self.entries: dict[Any, tuple] = {}  # key -> (expires, renew_at, snapshot, load), monotonic times
        self.inflight: dict[Any, tuple[asyncio.Future, int]] = {}  # key -> (its load's future, generation at its start)
        self.generation = 0
        self._lock = threading.Lock()
        self._tasks: set = set()
        event.listen(sessionmaker, "after_flush", self._after_flush)
        event.listen(sessionmaker, "do_orm_execute", self._on_execute)
        event.listen(sessionmaker, "after_commit", self._after_commit)
        event.listen(sessionmaker, "after_rollback", lambda session: session.info.pop("poll_keys", None))

    @staticmethod
    def _keys(session) -> set:
        return session.info.setdefault("poll_keys", set())

    def _after_flush(self, session, _context) -> None:
        keys = self._keys(session)
        for obj in (*session.new, *session.dirty, *session.deleted):
            table = getattr(obj, "__tablename__", None)
            if table == "jobs":
                keys.update({("job", obj.id), ("claw", obj.claw_id)})
            elif table in ("claws", "samples") and obj.claw_id:
                keys.add(("claw", obj.claw_id))

    def _on_execute(self, state) -> None:
        if state.execution_options.get("poll_cache") == "unchanged":  # e.g. lease renewals: no answer shows them
            return
        if state.is_update or state.is_delete or state.is_insert:
            table = getattr(state.statement, "table", None)
            if table is not None and getattr(table, "name", None) in TABLES:
                self._keys(state.session).add(ALL)

    def _after_commit(self, session) -> None:
        keys = session.info.pop("poll_keys", None)
        if keys:
            self.invalidate(None if ALL in keys else keys)
            if self.engine.dialect.name == "postgresql" and self.ttl > 0:
                self._publish(keys)

    def _publish(self, keys: set) -> None:
        """Tell the other replicas (``NOTIFY``, sent after the commit it reports is visible)."""
        payload = "*" if ALL in keys else json.dumps(sorted([list(k) for k in keys if k[1]]))
        if len(payload) > 7000:  # NOTIFY payloads stop at 8000 bytes
            payload = "*"
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})
                connection.commit()
        except Exception:  # noqa: BLE001 - the others fall back to the ttl
            log.exception("could not notify the other replicas")

    def start(self) -> None:
        """On PostgreSQL, start the listener thread that drops what other replicas report (see the module docstring)."""
        if self.engine.dialect.name == "postgresql" and self.ttl > 0 and self.listener is None:
            self.listener = threading.Thread(target=self._listen, name="poll-cache-listener", daemon=True)
            self.listener.start()

    def shutdown(self) -> None:
        self.stopping.set()
        if self.listener is not None:
            self.listener.join(5)

    def _listen(self) -> None:
        import psycopg

        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self.stopping.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.invalidate()  # whatever was missed while not listening
                    while not self.stopping.is_set():
                        for note in connection.notifies(timeout=1.0):
                            self._received(note.payload)
            except Exception:  # noqa: BLE001 - listen again; the ttl bounds what is missed meanwhile
                log.warning("poll cache listener lost its connection; listening again", exc_info=True)
                self.stopping.wait(1)

    def _received(self, payload: str) -> None:
        try:
            keys = None if payload == "*" else {tuple(k) for k in json.loads(payload)}
        except (ValueError, TypeError):
            keys = None
        self.invalidate(keys)

    def invalidate(self, keys=None) -> None:
        """Drop the snapshots of ``keys`` (None: every snapshot), from any thread; loads under way are not kept."""
        with self._lock:
            self.generation += 1
            if keys is None:
                self.entries = {}
            else:
                for key in keys:
                    self.entries.pop(key, None)

    def peek(self, key):
        """The kept snapshot of ``key`` (never one older than ``ttl``), or :data:`MISSING`. A snapshot in the last part
        of its time is renewed in the background (one load; the point is spread per key), so steady pollers never
        wait for a load."""
        hit = self.entries.get(key)
        if hit is None:
            return MISSING
        expires, renew_at, value, load = hit
        now = time.monotonic()
        if now >= expires:
            return MISSING
        if now >= renew_at and key not in self.inflight:
            self._spawn(key, load)
        return value

    async def get(self, key, load: Callable[[], Any]):
        """The snapshot of ``key``: kept (:meth:`peek`), or ``load()`` run in a worker thread. Callers share a load
        under way only when it started after the last commit that dropped snapshots (so nobody gets data older
        than a write made before the call). Exceptions of ``load`` reach every caller waiting for it and are not kept."""
        if self.ttl <= 0:
            return await asyncio.to_thread(load)
        value = self.peek(key)
        if value is not MISSING:
            return value
        pending = self.inflight.get(key)
        future = pending[0] if pending is not None and pending[1] == self.generation else self._spawn(key, load)
        return await asyncio.shield(future)  # a caller that goes away does not stop the load the others wait for

    def _spawn(self, key, load) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even when nobody waited
        entry = (future, self.generation)
        self.inflight[key] = entry
        task = loop.create_task(self._load(key, load, entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _load(self, key, load, entry: tuple) -> None:
        future, generation = entry
        started = time.monotonic()
        try:
            value = await asyncio.to_thread(load)
        except BaseException as exc:
            if self.inflight.get(key) is entry:
                del self.inflight[key]
            if isinstance(exc, asyncio.CancelledError):  # the loop is closing
                future.cancel()
                raise
            future.set_exception(exc)
            return
        if self.inflight.get(key) is entry:
            del self.inflight[key]
        with self._lock:
            if generation == self.generation:
                self.entries[key] = (started + self.ttl, started + self.ttl * random.uniform(0.7, 0.9), value, load)
        future.set_result(value)


class CachedPolls:
    """ASGI middleware: kept answers of ``GET /v1/claws/{id}`` and ``GET /v1/jobs/{id}`` without the routing; see the
    module docstring. ``service`` is the app's :class:`~api.services.Service`."""

    def __init__(self, app, service):
        from fastapi.responses import JSONResponse
        from fastapi.security.utils import get_authorization_scheme_param

        from .deps import token_of
        from .schemas import UUID_PATTERN

        self.app, self.service = app, service
        self.path = re.compile(r"/v1/(claws|jobs)/(" + UUID_PATTERN.strip("^$") + ")")
        self.response, self.scheme_param, self.token_of = JSONResponse, get_authorization_scheme_param, token_of

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("query_string"):
            match = self.path.fullmatch(scope["path"])
            if match is not None and self._authorized(scope):
                snap = self.service.polls.peek(("claw" if match[1] == "claws" else "job", match[2]))
                if snap is not MISSING and snap is not None:
                    body = self.service.claw_answer(snap) if match[1] == "claws" else snap
                    return await self.response(body)(scope, receive, send)
        return await self.app(scope, receive, send)

    def _authorized(self, scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, credentials = self.scheme_param(value.decode("latin-1"))
                return scheme.lower() == "bearer" and bool(credentials) and self.token_of(self.service.settings.tokens, credentials) is not None
        return False
