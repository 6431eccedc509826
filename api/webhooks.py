"""Durable webhook deliveries: a job's final state (to its ``callback_url`` or the operator's ``webhook_url``) and the
events of subscriptions (``POST /v1/webhooks``), signed ``X-Clawfarm-Signature: sha256=<HMAC-SHA256 of the body>``
with ``CLAWFARM_API_WEBHOOK_SECRET``.

Every delivery is a row of ``webhook_deliveries`` (:class:`api.db.WebhookDelivery`) before anything is sent: a
worker thread of each replica claims due rows (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; a claim holds for
:data:`CLAIM_SECONDS`, so a replica that dies mid-send leaves the row to another one), sends, and records the outcome.
A failed attempt is retried after the next of ``webhook_delays`` seconds (default 1, 2, 4, 8, 16, 32: seven attempts),
across restarts; then the delivery is ``dead`` (``GET /v1/webhooks/deliveries?state=dead`` lists them). A request's
``callback_url`` and every subscription URL are checked again at each attempt (:func:`api.callbacks.post_checked`:
public addresses only); a refused host makes the delivery ``dead`` at once. The operator's own ``webhook_url`` is sent
to as configured.

Event kinds (:data:`EVENTS`) and their bodies (JSON, keys sorted):

- ``job.finished``: ``{"type", "job"}`` (the job as ``GET /v1/jobs/{id}`` shows it);
- ``claw.health_changed``: ``{"type", "mini", "claw_id", "health", "previous", "sampled_at"}`` when a claw's health in a
  fleet sample differs from its previous sample's;
- ``alert.fired`` / ``alert.resolved``: ``{"type", "alert"}`` (rule, severity, mini, claw_id, value, summary).
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import or_, select

from .callbacks import CallbackRefused, post_checked
from .db import Job, WebhookDelivery, WebhookSubscription, utcnow

log = logging.getLogger("clawfarm.api.webhooks")
EVENTS = ("job.finished", "claw.health_changed", "alert.fired", "alert.resolved")
CLAIM_SECONDS = 60
BATCH = 20


class Webhooks:
    """Queue and sender of deliveries for one replica (see the module docstring)."""

    def __init__(self, engine):
        self.engine = engine
        self.Session = engine.Session
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.thread = None

    @property
    def settings(self):
        return self.engine.settings

    # ---- queueing ----------------------------------------------------------------------------------------------

    def enabled(self) -> bool:
        return bool(self.settings.webhook_secret)

    def publish(self, event: str, body: dict, job: Job | None = None) -> int:
        """Queue ``body`` (``type`` added) for every subscription to ``event`` and, for ``job.finished``, for the
        job's ``callback_url`` or the operator's ``webhook_url``. Returns the number of deliveries queued; none
        without a webhook secret."""
        if not self.enabled():
            return 0
        body = {**body, "type": event}
        rows = []
        with self.Session() as s:
            for sub in s.scalars(select(WebhookSubscription)):
                if event in (sub.events or []):
                    rows.append(WebhookDelivery(id=str(uuid.uuid4()), subscription_id=sub.id, url=sub.url, checked=1, event=event,
                                                body=body, job_id=job.id if job else None))
            if job is not None and (job.callback_url or self.settings.webhook_url):
                rows.append(WebhookDelivery(id=str(uuid.uuid4()), url=job.callback_url or self.settings.webhook_url,
                                            checked=1 if job.callback_url else 0, event=event, body=body, job_id=job.id))
            for row in rows:
                row.state, row.attempts, row.next_attempt_at, row.created_at = "pending", 0, utcnow(), utcnow()
            s.add_all(rows)
            if job is not None and any(r.subscription_id is None for r in rows):
                s.query(Job).filter(Job.id == job.id).update({Job.webhook_status: "pending"})
            s.commit()
        if rows:
            self.wakeup.set()
        return len(rows)

    def job_finished(self, job: Job) -> None:
        self.publish("job.finished", {"job": job.to_dict()}, job=job)

    def alert(self, message: dict) -> None:
        """A notifier: firing and resolved alerts become ``alert.fired`` / ``alert.resolved`` events."""
        state = message.get("state")
        if state in ("firing", "resolved"):
            self.publish("alert.fired" if state == "firing" else "alert.resolved", {"alert": dict(message)})

    # ---- sending -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
        self.thread.start()

    def shutdown(self) -> None:
        self.stopping.set()
        self.wakeup.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                while self.run_once():
                    if self.stopping.is_set():
                        return
            except Exception:  # noqa: BLE001 - keep delivering
                log.exception("webhook worker error")
            self.wakeup.wait(0.5)
            self.wakeup.clear()

    def claim(self) -> list[str]:
        """Claim up to :data:`BATCH` due deliveries for this replica; returns their ids."""
        now = utcnow()
        with self.Session() as s:
            query = (select(WebhookDelivery).where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now,
                                                   or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now))
                     .order_by(WebhookDelivery.next_attempt_at).limit(BATCH))
            if self.engine.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = s.scalars(query).all()
            for row in rows:
                row.claimed_until = now + timedelta(seconds=CLAIM_SECONDS)
            s.commit()
            return [row.id for row in rows]

    def run_once(self) -> int:
        """Send every due delivery once (claimed first); returns how many were attempted."""
        ids = self.claim()
        for delivery_id in ids:
            self.attempt(delivery_id)
        return len(ids)

    def attempt(self, delivery_id: str) -> str:
        """One attempt of a claimed delivery; returns its new state."""
        from .jobs import sign

        with self.Session() as s:
            row = s.get(WebhookDelivery, delivery_id)
            url, checked, body_data, job_id, event = row.url, bool(row.checked), row.body, row.job_id, row.event
            attempt = row.attempts + 1
        body = json.dumps(body_data, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-Clawfarm-Signature": sign(body, self.settings.webhook_secret),
                   "X-Clawfarm-Event": event, "X-Clawfarm-Delivery": delivery_id}
        if job_id:
            headers["X-Clawfarm-Job"] = job_id
        error, refused = None, False
        try:
            response = post_checked(url, body, headers) if checked else httpx.post(url, content=body, headers=headers, timeout=10)
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}"
        except CallbackRefused:
            error, refused = "refused: host not public at send time", True
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        delays = list(self.settings.webhook_delays)
        with self.Session() as s:
            row = s.get(WebhookDelivery, delivery_id)
            row.attempts, row.claimed_until, row.last_error = attempt, None, error
            if error is None:
                row.state, row.delivered_at = "delivered", utcnow()
                status = f"delivered (attempt {attempt})"
            elif refused or attempt > len(delays):
                row.state = "dead"
                status = error if refused else f"failed after {attempt} attempts"
            else:
                row.next_attempt_at = utcnow() + timedelta(seconds=float(delays[attempt - 1]))
                status = f"pending (attempt {attempt} failed: {error})"
            if job_id and row.subscription_id is None:
                s.query(Job).filter(Job.id == job_id).update({Job.webhook_status: status[:64]})
            s.commit()
            return row.state
