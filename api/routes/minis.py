"""Mini routes: the fleet, one Mini with its claws and tunnel routes, drain."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import select

from .. import services
from ..db import Claw
from ..deps import IdemKey, MiniName, Svc, auth, idem
from ..schemas import DrainRequest, JobOut, MiniDetail, MiniOut, MiniPatch

router = APIRouter()


@router.get("/v1/minis", response_model=list[MiniOut], dependencies=auth, tags=["minis"])
def list_minis(svc: Svc):
    """The inventory's Minis with their claws and last job."""
    return [svc.mini_out(n, info) for n, info in sorted(svc.inventory.minis().items())]

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
