"""Job routes: a job, its events (JSON or a live SSE stream), cancel."""
from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import select

from ..db import TERMINAL, Job, JobEvent
from ..deps import JobId, Svc, auth
from ..schemas import JobOut

router = APIRouter()


@router.get("/v1/jobs/{job_id}", response_model=JobOut, dependencies=auth, tags=["jobs"])
async def get_job(svc: Svc, job_id: JobId):
    """A job (its answer is a snapshot every commit of this replica renews: :mod:`api.pollcache`)."""
    job = await svc.polls.get(("job", job_id), lambda: svc.job_snapshot(job_id))
    if job is None:
        raise HTTPException(404, "no such job")
    return JSONResponse(job)

@router.get("/v1/jobs/{job_id}/events", dependencies=auth, tags=["jobs"],
         responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}})
async def job_events(svc: Svc, job_id: JobId, request: Request,
                     after: Annotated[int, Query(ge=0, le=2**31 - 1, description="Only events with a higher counter")] = 0,
                     limit: Annotated[int, Query(ge=1, le=5000)] = 500):
    """The playbook's task events (by counter). With ``Accept: text/event-stream`` they stream live until the job ends."""
    with svc.Session() as s:
        if s.get(Job, job_id) is None:
            raise HTTPException(404, "no such job")
    if "text/event-stream" not in request.headers.get("accept", ""):
        with svc.Session() as s:
            rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.counter > after)
                             .order_by(JobEvent.counter).limit(limit)).all()
            return [r.to_dict() for r in rows]

    async def stream():
        cursor = after
        while True:
            with svc.Session() as s:
                rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.counter > cursor)
                                 .order_by(JobEvent.counter).limit(500)).all()
                state = s.get(Job, job_id).state
            for row in rows:
                cursor = row.counter
                yield f"id: {row.counter}\nevent: {row.event}\ndata: {json.dumps(row.to_dict())}\n\n"
            if not rows and state in TERMINAL:
                yield f"event: end\ndata: {json.dumps({'state': state})}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.3 if not rows else 0)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

@router.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, status_code=202, dependencies=auth, tags=["jobs"])
def cancel_job(svc: Svc, job_id: JobId):
    """Cancel a queued job, or stop a running playbook (202); 409 when the job has already ended."""
    with svc.Session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        if job.state in TERMINAL:
            raise HTTPException(409, f"job already {job.state}")
    svc.engine.cancel(job_id)
    with svc.Session() as s:
        return JSONResponse(svc.job_out(s.get(Job, job_id)), status_code=202)
