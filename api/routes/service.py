"""Service routes: liveness (no auth) and Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import auth

router = APIRouter(tags=["service"])


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness; no auth (``async``: answered on the event loop, no worker thread)."""
    return {"ok": True}


@router.get("/metrics", dependencies=auth, response_class=PlainTextResponse)
def metrics(request: Request):
    """Prometheus text format: jobs by kind and state, job durations, queue depth, claws per Mini."""
    return PlainTextResponse(generate_latest(request.app.state.registry).decode(), media_type=CONTENT_TYPE_LATEST)
