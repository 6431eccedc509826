"""Mini routes: the fleet, registering and forgetting a Mini, one Mini with its claws and tunnel routes, its status
and capacity, drain."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from .. import services
from ..db import Claw, Job
from ..deps import IdemKey, MiniName, Svc, auth, idem
from ..jobs import IdempotencyConflict
from ..schemas import DrainRequest, JobOut, MiniCreate, MiniDetail, MiniOut, MiniPatch, MiniRegistered

router = APIRouter()


@router.get("/v1/minis", response_model=list[MiniOut], dependencies=auth, tags=["minis"])
def list_minis(svc: Svc):
    """The inventory's Minis with their claws and last job."""
    return [svc.mini_out(n, info) for n, info in sorted(svc.inventory.minis().items())]

@router.post("/v1/minis", status_code=201, response_model=MiniRegistered, dependencies=auth, tags=["minis"],
             responses={200: {"model": MiniRegistered, "description": "Already registered with these values"}})
def register_mini(svc: Svc, body: MiniCreate, request: Request, idempotency_key: IdemKey = None):
    """Register a Mini (stored in the service's database; the ``mirascope.clawfarm.farm`` inventory plugin and every
    playbook the service runs see it), then queue ``playbooks/bootstrap.yml`` limited to it. 201 with the Mini and
    the job; the same record again is 200 with the newest bootstrap job (nothing queued); a name of the inventory
    file or registered with other values is 409."""
    key = idem(request, idempotency_key, body)
    url = svc.callback(body.callback_url)
    try:
        svc.engine.replay(key)  # a key used for another request is the caller's error, before anything is stored
    except IdempotencyConflict:
        raise svc.idempotency_conflict()
    record, created = svc.register_mini(body.record())
    job = None
    if created and body.bootstrap:
        try:
            job = svc.engine.submit("bootstrap", None, record["name"], {}, callback_url=url, idempotency=key)[0]
        except IdempotencyConflict:
            raise svc.idempotency_conflict()
    elif not created:
        with svc.Session() as s:
            job = s.scalars(select(Job).where(Job.kind == "bootstrap", Job.mini == record["name"]).order_by(Job.created_at.desc()).limit(1)).first()
    info = svc.inventory.minis()[record["name"]]
    return JSONResponse({"mini": MiniOut(**svc.mini_out(record["name"], info)).model_dump(mode="json"),
                         "job": svc.job_out(job) if job else None}, status_code=201 if created else 200)


@router.delete("/v1/minis/{name}", status_code=204, dependencies=auth, tags=["minis"],
               responses={409: {"description": "Not empty, busy, or a Mini of the inventory file"}})
def delete_mini(svc: Svc, name: MiniName):
    """Forget a registered Mini: only when no claw is on it (the service's records and the claims of its newest
    health sample) and no job for it is queued or running. Nothing runs on the Mini."""
    svc.delete_mini(name)
    return Response(status_code=204)


@router.get("/v1/minis/{name}", response_model=MiniDetail, dependencies=auth, tags=["minis"])
def get_mini(svc: Svc, name: MiniName):
    """One Mini: status, capacity, health, its claws (``claw_records``) and its tunnel routes (hostname → the
    claw's loopback port), from the service's claw records."""
    minis = svc.inventory.minis()
    if name not in minis:
        raise HTTPException(404, f"unknown Mini {name!r}")
    with svc.Session() as s:
        claws = s.scalars(select(Claw).where(Claw.mini == name, Claw.present == 1).order_by(Claw.claw_id)).all()
    routes = [{"hostname": c.record["tunnel_hostname"], "service": f"http://127.0.0.1:{int(c.record['local_port'])}", "claw_id": c.claw_id}
              for c in claws if (c.record or {}).get("tunnel_hostname") and str((c.record or {}).get("local_port", "")).isdigit()]
    return {**svc.mini_out(name, minis[name]), "claw_records": [svc.claw_summary(c) for c in claws], "routes": routes}

@router.patch("/v1/minis/{name}", response_model=MiniDetail, dependencies=auth, tags=["minis"])
def patch_mini(svc: Svc, name: MiniName, body: MiniPatch):
    """Set a Mini's ``status`` (active, draining, offline, maintenance) and/or ``max_claws``, over the inventory's
    values: placement, the 409 for a Mini that takes no claws, the schedules and the playbooks all see them. Nothing
    runs on the Mini (drain it with ``POST /v1/minis/{name}/drain``)."""
    if name not in svc.inventory.inventory_minis():
        raise HTTPException(404, f"unknown Mini {name!r}")
    svc.set_mini(name, status=body.status, max_claws=body.max_claws)
    return get_mini(svc, name)


@router.post("/v1/minis/{name}/drain", status_code=202, response_model=JobOut, dependencies=auth, tags=["minis"])
def drain(svc: Svc, name: MiniName, request: Request, body: DrainRequest | None = None, idempotency_key: IdemKey = None):
    """Queue ``playbooks/drain.yml`` for the Mini."""
    key = idem(request, idempotency_key, body)
    url = svc.callback(body.callback_url if body else None)
    if name not in svc.inventory.minis():
        raise HTTPException(404, f"unknown Mini {name!r}")
    if not services.playbook_available("drain"):
        raise HTTPException(409, "drain is not available in this release (playbooks/drain.yml is not installed)")
    return svc.submit("drain", None, name, {}, callback_url=url, idempotency=key)
