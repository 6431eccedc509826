"""Claw routes: provision, settings, deprovision, list, status and the actions (start, stop, restart, backup,
restore, migrate). Each state change queues a job (``playbooks/<kind>.yml``) through the service layer."""
from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import HttpUrl
from sqlalchemy import select

from .. import services
from ..db import TERMINAL, Claw
from ..deps import ClawId, IdemKey, Svc, auth, idem
from ..jobs import IdempotencyConflict
from ..schemas import CALLBACK_DOC, MINI_PATTERN, UUID_PATTERN, ActionRequest, ClawOut, ClawPage, ConfigureRequest, JobOut, ProvisionRequest

router = APIRouter()


@router.post("/v1/claws", status_code=202, response_model=JobOut, dependencies=auth, tags=["claws"])
def provision(svc: Svc, body: ProvisionRequest, request: Request, idempotency_key: IdemKey = None):
    """Provision a claw (``playbooks/provision.yml``); the job's result carries mini, mac_username, local_port,
    tunnel_hostname and label. Without ``env`` an existing claw keeps its env (``claw_env`` is not sent)."""
    key = idem(request, idempotency_key, body)
    callback_url = svc.callback(body.callback_url)
    with svc.engine.serialized("placement"):  # placement and queueing are one step, across replicas: no last slot twice
        try:
            first = svc.engine.replay(key)  # a retry gets its job even when that job took the last slot
        except IdempotencyConflict:
            raise svc.idempotency_conflict()  # before any other check: a reused key is the caller's error
        if first is not None:
            return svc.accepted(first, False)
        mini = svc.provision_target(body.claw_id, body.mini)
        secrets = {"gateway_token": body.gateway_token.get_secret_value() if body.gateway_token else None, "env": body.env}
        params = {"restore": body.restore, **({"env_keys": sorted(body.env)} if body.env is not None else {})}
        return svc.submit("provision", body.claw_id, mini, params,
                          secrets=secrets if (secrets["gateway_token"] or body.env is not None) else None,
                          callback_url=callback_url, idempotency=key)


@router.patch("/v1/claws/{claw_id}", status_code=202, response_model=JobOut, dependencies=auth, tags=["claws"])
def configure(svc: Svc, claw_id: ClawId, body: ConfigureRequest, request: Request, idempotency_key: IdemKey = None):
    """Change a claw's settings in place (``playbooks/configure.yml``): ``env_set`` adds or overwrites entries,
    ``env_unset`` removes names, ``gateway_token`` replaces the token; the gateway restarts on the claw's Mini (no
    placement). Entries not named keep their values. Values never appear in the job, its events or answers."""
    key = idem(request, idempotency_key, body)
    callback_url = svc.callback(body.callback_url)
    if not services.playbook_available("configure"):
        raise HTTPException(409, "configure is not available in this release (playbooks/configure.yml is not installed)")
    secrets = {"gateway_token": body.gateway_token.get_secret_value() if body.gateway_token else None, "env_set": body.env_set or {}}
    params = {"env_set_keys": sorted(body.env_set or {}), "env_unset": body.env_unset or [], "gateway_token": bool(body.gateway_token)}
    return svc.submit("configure", claw_id, svc.claw_mini(claw_id, None), params,
                      secrets=secrets if (secrets["gateway_token"] or secrets["env_set"]) else None,
                      callback_url=callback_url, idempotency=key)


@router.delete("/v1/claws/{claw_id}", status_code=202, response_model=JobOut, dependencies=auth, tags=["claws"])
def deprovision(svc: Svc, claw_id: ClawId, request: Request,
                archive: Annotated[bool, Query(description="Archive to R2 first (false: tombstone on the Mini)")] = True,
                mini: Annotated[str | None, Query(pattern=MINI_PATTERN)] = None,
                callback_url: Annotated[HttpUrl | None, Query(description=CALLBACK_DOC)] = None,
                idempotency_key: IdemKey = None):
    """Deprovision (``playbooks/deprovision.yml``): archive, verify, then remove."""
    key = idem(request, idempotency_key)
    url = svc.callback(callback_url, ("query", "callback_url"))
    return svc.submit("deprovision", claw_id, svc.claw_mini(claw_id, mini), {"archive": archive}, callback_url=url, idempotency=key)

@router.get("/v1/claws", response_model=ClawPage, dependencies=auth, tags=["claws"])
def list_claws(svc: Svc, mini: Annotated[str | None, Query(pattern=MINI_PATTERN, description="Only the claws on this Mini")] = None,
               state: Annotated[Literal["present", "deprovisioned", "all"], Query(description="present (default), deprovisioned or all")] = "present",
               after: Annotated[str | None, Query(pattern=UUID_PATTERN, description="The previous page's next")] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100):
    """The claws the service knows (its records from job results), ordered by claw id, a page at a time."""
    query = select(Claw).order_by(Claw.claw_id).limit(limit + 1)
    if mini:
        query = query.where(Claw.mini == mini)
    if state != "all":
        query = query.where(Claw.present == (1 if state == "present" else 0))
    if after:
        query = query.where(Claw.claw_id > after)
    with svc.Session() as s:
        rows = s.scalars(query).all()
    page = [svc.claw_summary(c) for c in rows[:limit]]
    return {"items": page, "next": page[-1]["claw_id"] if len(rows) > limit else None}

@router.get("/v1/claws/{claw_id}", response_model=ClawOut, dependencies=auth, tags=["claws"])
async def claw_status(svc: Svc, claw_id: ClawId,
                      refresh: Annotated[bool, Query(description="Run the status playbook first (waits up to 20 s; "
                                                                 "then answers with the cached record and refresh_job)")] = False):
    """What the service knows about a claw, with its age; ``refresh=true`` runs ``playbooks/status.yml`` first.
    The answer is built from a snapshot every commit of this replica renews (:mod:`api.pollcache`)."""
    refresh_job = None
    if refresh:
        job, _ = await asyncio.to_thread(svc.engine.submit, "status", claw_id, svc.claw_mini(claw_id, None), {})
        refresh_job = job.id
        for _ in range(40):
            if (await svc.polls.get(("job", job.id), lambda: svc.job_snapshot(job.id)))["state"] in TERMINAL:
                refresh_job = None
                break
            await asyncio.sleep(0.5)
    snap = await svc.polls.get(("claw", claw_id), lambda: svc.claw_snapshot(claw_id))
    if snap is None:
        raise HTTPException(404, f"claw {claw_id} is not known to the service")
    return JSONResponse(svc.claw_answer(snap, refresh_job))

def action(kind: str):
    def route(svc: Svc, claw_id: ClawId, request: Request, body: ActionRequest | None = None, idempotency_key: IdemKey = None):
        body = body or ActionRequest()
        key = idem(request, idempotency_key, body)
        callback_url = svc.callback(body.callback_url)
        if not services.playbook_available(kind):
            raise HTTPException(409, f"{kind} is not available in this release (playbooks/{kind}.yml is not installed)")
        if body.target:
            svc.known_mini(body.target, placing=True, field="target")
        params = {k: v for k, v in {"key": body.key, "target": body.target}.items() if v is not None}
        return svc.submit(kind, claw_id, svc.claw_mini(claw_id, body.mini), params, callback_url=callback_url, idempotency=key)
    route.__name__ = f"claw_{kind}"
    route.__doc__ = f"Queue ``playbooks/{kind}.yml`` for the claw."
    return route

for kind in ("start", "stop", "restart", "backup", "restore", "migrate"):
    router.post(f"/v1/claws/{{claw_id}}/{kind}", status_code=202, response_model=JobOut, dependencies=auth, tags=["claws"])(action(kind))
