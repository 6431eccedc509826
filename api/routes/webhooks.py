"""Webhook routes: subscriptions per event kind and the durable deliveries (pending, delivered, dead) of
:mod:`api.webhooks`."""
from __future__ import annotations

import uuid
from datetime import UTC
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import select

from ..db import WebhookDelivery, WebhookSubscription, utcnow
from ..deps import JobId, Svc, auth
from ..schemas import UUID_PATTERN, DeliveryOut, WebhookCreate, WebhookOut

router = APIRouter()


def iso(value):
    if value is None:
        return None
    return value.replace(tzinfo=value.tzinfo or UTC).isoformat().replace("+00:00", "Z")


def subscription_out(row: WebhookSubscription) -> dict:
    return {"id": row.id, "url": row.url, "events": list(row.events or []), "description": row.description, "created_at": iso(row.created_at)}


def delivery_out(row: WebhookDelivery) -> dict:
    return {"id": row.id, "subscription_id": row.subscription_id, "job_id": row.job_id, "event": row.event, "state": row.state,
            "attempts": row.attempts, "next_attempt_at": iso(row.next_attempt_at) if row.state == "pending" else None,
            "last_error": row.last_error, "created_at": iso(row.created_at), "delivered_at": iso(row.delivered_at)}


@router.post("/v1/webhooks", status_code=201, response_model=WebhookOut, dependencies=auth, tags=["webhooks"])
def subscribe(svc: Svc, body: WebhookCreate):
    """Subscribe ``url`` to event kinds: ``job.finished`` (every job's final state), ``claw.health_changed`` (a claw's
    health differs from its previous fleet sample), ``alert.fired`` and ``alert.resolved``. Each event is POSTed
    signed like job callbacks, retried with back-off from the database (across restarts and replicas), then ``dead``."""
    if not svc.settings.webhook_secret:
        raise HTTPException(409, "webhooks need CLAWFARM_API_WEBHOOK_SECRET (nothing is sent unsigned)")
    url = svc.callback(body.url, ("body", "url"))
    row = WebhookSubscription(id=str(uuid.uuid4()), url=url, events=sorted(set(body.events)), description=body.description,
                              created_at=utcnow())
    with svc.Session() as s:
        s.add(row)
        s.commit()
    return subscription_out(row)


@router.get("/v1/webhooks", response_model=list[WebhookOut], dependencies=auth, tags=["webhooks"])
def list_subscriptions(svc: Svc):
    """The subscriptions, oldest first."""
    with svc.Session() as s:
        return [subscription_out(r) for r in s.scalars(select(WebhookSubscription).order_by(WebhookSubscription.created_at))]


@router.get("/v1/webhooks/deliveries", response_model=list[DeliveryOut], dependencies=auth, tags=["webhooks"])
def list_deliveries(svc: Svc, state: Annotated[Literal["pending", "delivered", "dead"] | None, Query()] = None,
                    subscription_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
                    job_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100):
    """Deliveries, newest first: ``state=dead`` is the dead-letter list (attempts used up or the host refused)."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.created_at.desc()).limit(limit)
    for column, value in ((WebhookDelivery.state, state), (WebhookDelivery.subscription_id, subscription_id), (WebhookDelivery.job_id, job_id)):
        if value is not None:
            query = query.where(column == value)
    with svc.Session() as s:
        return [delivery_out(r) for r in s.scalars(query)]


@router.post("/v1/webhooks/deliveries/{delivery_id}/retry", response_model=DeliveryOut, dependencies=auth, tags=["webhooks"])
def retry_delivery(svc: Svc, delivery_id: JobId):
    """Send a ``dead`` delivery again (a new series of attempts); 409 unless it is dead."""
    with svc.Session() as s:
        row = s.get(WebhookDelivery, delivery_id)
        if row is None:
            raise HTTPException(404, "unknown delivery")
        if row.state != "dead":
            raise HTTPException(409, f"the delivery is {row.state}")
        row.state, row.attempts, row.next_attempt_at, row.claimed_until = "pending", 0, utcnow(), None
        s.commit()
        svc.engine.webhooks.wakeup.set()
        return delivery_out(row)


@router.get("/v1/webhooks/{subscription_id}", response_model=WebhookOut, dependencies=auth, tags=["webhooks"])
def get_subscription(svc: Svc, subscription_id: JobId):
    with svc.Session() as s:
        row = s.get(WebhookSubscription, subscription_id)
        if row is None:
            raise HTTPException(404, "unknown subscription")
        return subscription_out(row)


@router.delete("/v1/webhooks/{subscription_id}", status_code=204, dependencies=auth, tags=["webhooks"])
def unsubscribe(svc: Svc, subscription_id: JobId):
    """Remove a subscription; its pending deliveries end ``dead`` (``last_error``: unsubscribed)."""
    with svc.Session() as s:
        row = s.get(WebhookSubscription, subscription_id)
        if row is None:
            raise HTTPException(404, "unknown subscription")
        s.query(WebhookDelivery).filter(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.state == "pending").update(
            {WebhookDelivery.state: "dead", WebhookDelivery.last_error: "unsubscribed"})
        s.delete(row)
        s.commit()
    return Response(status_code=204)
