"""A local stand-in for the parts of the Cloudflare API that clawfarm uses (tests only).

The real API is unreachable from the test machines, so the official ``cloudflare`` SDK is pointed
at this app (``base_url=http://127.0.0.1:<port>/client/v4``).  It implements exactly the endpoints
the collection calls, with Cloudflare's behaviour as documented in docs/reference/cloudflare-r2.md
section 1 (and the API reference at https://developers.cloudflare.com/api/):

- the response envelope ``{"success", "errors", "messages", "result"}`` (+ ``result_info`` on lists),
  real HTTP status codes on errors;
- ``Authorization: Bearer <token>`` checked on every call (400/6003 when missing or malformed,
  403/10000 when wrong);
- tunnel object and configuration (GET/PUT; PUT replaces the document and increments ``version``;
  a last rule with a hostname or path is rejected with 400 like the real validation);
- DNS records list (``name.exact``/``name``, ``type``, ``page``/``per_page`` honoured, so the SDK's
  auto-pagination ends), create (81053 when a CNAME/A/AAAA already owns the name), get, update,
  patch and delete (``result: {"id": ...}``), records carry ``comment``/``tags``;
- ``GET /zones?name=``;
- account API tokens (``GET …/tokens/permission_groups?name=``, ``POST``/``GET``/``DELETE …/tokens``): a create
  checks each policy's permission group ids and resources and answers the token ``value`` once; a token that may
  not create tokens is simulated with ``/__control/tokens {"forbid_create": true}`` (403/9109 like Cloudflare).

Test control (not part of Cloudflare's API), under ``/__control``: seed tunnels and zones, inject
faults (status, count, delay, method and path regexp), read and reset state, and a global
per-request delay that widens race windows.

Run: ``python -m uvicorn tests.cfapi.server:app`` or ``python tests/cfapi/server.py --port N``.
Environment: ``CFAPI_TOKEN`` (accepted bearer token, default ``test-token``).
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import threading
import uuid
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

API = "/client/v4"
TOKEN = os.environ.get("CFAPI_TOKEN", "test-token")

app = FastAPI(title="Cloudflare API stand-in (tests)", docs_url=None, redoc_url=None, openapi_url=None)
_lock = threading.Lock()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fresh_state() -> dict:
    return {"tunnels": {}, "zones": {}, "records": {}, "faults": [], "delay": 0.0, "log": [], "tokens": {},
            "forbid_token_create": False}


STATE = _fresh_state()


def ok(result, result_info: dict | None = None, status: int = 200) -> JSONResponse:
    body = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return JSONResponse(body, status_code=status)


def fail(status: int, code: int, message: str, retry: bool | None = None, headers: dict | None = None) -> JSONResponse:
    hdrs = dict(headers or {})
    if retry is not None:
        hdrs["x-should-retry"] = "true" if retry else "false"
    return JSONResponse({"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None},
                        status_code=status, headers=hdrs)


@app.middleware("http")
async def auth_faults_and_log(request: Request, call_next):
    path = request.url.path
    if path.startswith("/__control"):
        return await call_next(request)
    with _lock:
        STATE["log"].append({"method": request.method, "path": path, "query": str(request.url.query)})
        delay = STATE["delay"]
        fault = None
        for item in STATE["faults"]:
            if item["count"] > 0 and (not item.get("method") or item["method"] == request.method) and re.search(item["path"], path):
                item["count"] -= 1
                fault = dict(item)
                break
    if delay:
        await asyncio.sleep(delay)
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return fail(400, 6003, "Invalid request headers")
    if auth[7:].strip() != TOKEN:
        return fail(403, 10000, "Authentication error")
    if fault:
        if fault.get("delay"):
            await asyncio.sleep(fault["delay"])
        if fault.get("status"):
            headers = {"retry-after": str(fault["retry_after"])} if fault.get("retry_after") is not None else None
            code = 971 if fault["status"] == 429 else 10001
            message = "Please wait and consider throttling your request speed" if fault["status"] == 429 else "Internal server error"
            return fail(fault["status"], code, message, headers=headers)
    return await call_next(request)


# ---- test control -------------------------------------------------------------------------------------------

@app.post("/__control/reset")
async def control_reset():
    with _lock:
        STATE.clear()
        STATE.update(_fresh_state())
    return {"ok": True}


@app.post("/__control/tunnels")
async def control_add_tunnel(request: Request):
    body = await request.json()
    tunnel_id = body.get("id") or str(uuid.uuid4())
    with _lock:
        STATE["tunnels"][tunnel_id] = {
            "account_id": body["account_id"],
            "remote_config": body.get("remote_config", True),
            "name": body.get("name", f"tunnel-{tunnel_id[:8]}"),
            "version": body.get("version", 1),
            "config": body.get("config") or {"ingress": [{"service": "http_status:404"}], "warp-routing": {"enabled": False}},
            "created_at": _now(),
        }
    return {"id": tunnel_id}


@app.post("/__control/zones")
async def control_add_zone(request: Request):
    body = await request.json()
    zone_id = body.get("id") or uuid.uuid4().hex
    with _lock:
        STATE["zones"][zone_id] = {"id": zone_id, "name": body["name"], "status": "active"}
    return {"id": zone_id}


@app.post("/__control/faults")
async def control_add_fault(request: Request):
    body = await request.json()
    with _lock:
        if "global_delay" in body:
            STATE["delay"] = float(body["global_delay"])
        if body.get("path"):
            STATE["faults"].append({"path": body["path"], "method": body.get("method"), "status": body.get("status"),
                                    "delay": body.get("delay", 0), "count": int(body.get("count", 1)),
                                    "retry_after": body.get("retry_after")})
    return {"ok": True}


@app.post("/__control/tokens")
async def control_tokens(request: Request):
    body = await request.json()
    with _lock:
        STATE["forbid_token_create"] = bool(body.get("forbid_create", False))
    return {"ok": True}


@app.get("/__control/state")
async def control_state():
    with _lock:
        return copy.deepcopy({k: v for k, v in STATE.items()})


# ---- tunnels ------------------------------------------------------------------------------------------------

def _tunnel(account_id: str, tunnel_id: str):
    tunnel = STATE["tunnels"].get(tunnel_id)
    if tunnel is None or tunnel["account_id"] != account_id:
        return None
    return tunnel


@app.get(API + "/accounts/{account_id}/cfd_tunnel/{tunnel_id}")
async def tunnel_get(account_id: str, tunnel_id: str):
    with _lock:
        tunnel = _tunnel(account_id, tunnel_id)
        if tunnel is None:
            return fail(404, 1003, "Tunnel not found", retry=False)
        return ok({"id": tunnel_id, "account_tag": account_id, "name": tunnel["name"], "created_at": tunnel["created_at"],
                   "deleted_at": None, "connections": [], "conns_active_at": None, "conns_inactive_at": None,
                   "tun_type": "cfd_tunnel", "metadata": {}, "status": "healthy",
                   "remote_config": tunnel["remote_config"], "config_src": "cloudflare" if tunnel["remote_config"] else "local"})


def _config_result(tunnel_id: str, tunnel: dict) -> dict:
    return {"account_id": tunnel["account_id"], "tunnel_id": tunnel_id, "version": tunnel["version"],
            "source": "cloudflare", "created_at": tunnel["created_at"], "config": copy.deepcopy(tunnel["config"])}


@app.get(API + "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations")
async def tunnel_config_get(account_id: str, tunnel_id: str):
    with _lock:
        tunnel = _tunnel(account_id, tunnel_id)
        if tunnel is None:
            return fail(404, 1003, "Tunnel not found", retry=False)
        return ok(_config_result(tunnel_id, tunnel))


def _validate_ingress(config) -> str | None:
    if not isinstance(config, dict):
        return "config must be an object"
    rules = config.get("ingress")
    if rules is None:
        return None
    if not isinstance(rules, list) or not rules:
        return "The config file doesn't contain any ingress rules"
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or not rule.get("service"):
            return f"Rule #{index + 1} has no service"
        catch_all = rule.get("hostname") in (None, "", "*") and not rule.get("path")
        if catch_all and index != len(rules) - 1:
            return f"Rule #{index + 1} is matching the hostname '{rule.get('hostname') or ''}', but this will match every hostname"
    last = rules[-1]
    if last.get("hostname") not in (None, "", "*") or last.get("path"):
        return "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"
    return None


@app.put(API + "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations")
async def tunnel_config_put(account_id: str, tunnel_id: str, request: Request):
    body = await request.json()
    with _lock:
        tunnel = _tunnel(account_id, tunnel_id)
        if tunnel is None:
            return fail(404, 1003, "Tunnel not found", retry=False)
        config = body.get("config") if isinstance(body, dict) else None
        problem = _validate_ingress(config)
        if problem:
            return fail(400, 1055, f"Bad Configuration: Validation failed: {problem}", retry=False)
        tunnel["config"] = copy.deepcopy(config)
        tunnel["version"] += 1
        return ok(_config_result(tunnel_id, tunnel))


# ---- zones and DNS ------------------------------------------------------------------------------------------

def _page(items: list, request: Request) -> JSONResponse:
    page = max(1, int(request.query_params.get("page", 1)))
    per_page = max(1, min(5000, int(request.query_params.get("per_page", 100))))
    start = (page - 1) * per_page
    chunk = items[start:start + per_page]
    total_pages = (len(items) + per_page - 1) // per_page
    return ok(chunk, {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(items), "total_pages": total_pages})


@app.get(API + "/zones")
async def zones_list(request: Request):
    name = request.query_params.get("name")
    with _lock:
        zones = [z for z in STATE["zones"].values() if not name or z["name"] == name]
        return _page(copy.deepcopy(zones), request)


def _zone(zone_id: str):
    return STATE["zones"].get(zone_id)


@app.get(API + "/zones/{zone_id}/dns_records")
async def dns_list(zone_id: str, request: Request):
    q = request.query_params
    name = q.get("name.exact") or q.get("name")
    rtype = q.get("type")
    with _lock:
        if _zone(zone_id) is None:
            return fail(404, 7003, "Could not route to /zones/..., perhaps your object identifier is invalid?", retry=False)
        records = [r for r in STATE["records"].values() if r["zone_id"] == zone_id
                   and (not name or r["name"] == name.lower()) and (not rtype or r["type"] == rtype)]
        return _page(copy.deepcopy(sorted(records, key=lambda r: r["created_on"])), request)


def _record_from(body: dict, zone: dict, record_id: str, created_on: str) -> dict | JSONResponse:
    name = str(body.get("name", "")).lower().rstrip(".")
    if not name or not (name == zone["name"] or name.endswith("." + zone["name"])):
        return fail(400, 9005, "Content for name is invalid or outside the zone", retry=False)
    rtype = body.get("type")
    if rtype not in ("A", "AAAA", "CNAME", "TXT"):
        return fail(400, 9004, "DNS record type is invalid", retry=False)
    if not body.get("content"):
        return fail(400, 9007, "Content for record is invalid", retry=False)
    proxied = bool(body.get("proxied", False))
    ttl = body.get("ttl", 1)
    if proxied:
        ttl = 1
    return {"id": record_id, "zone_id": zone["id"], "zone_name": zone["name"], "name": name, "type": rtype,
            "content": body["content"], "proxiable": rtype in ("A", "AAAA", "CNAME"), "proxied": proxied, "ttl": ttl,
            "comment": body.get("comment"), "tags": body.get("tags") or [], "settings": {}, "meta": {},
            "created_on": created_on, "modified_on": _now()}


def _conflict(zone_id: str, record: dict, skip_id: str | None = None) -> JSONResponse | None:
    for other in STATE["records"].values():
        if other["zone_id"] != zone_id or other["id"] == skip_id or other["name"] != record["name"]:
            continue
        if other["type"] == record["type"] and other["content"] == record["content"]:
            return fail(400, 81058, "An identical record already exists.", retry=False)
        if "CNAME" in (other["type"], record["type"]) and {other["type"], record["type"]} <= {"A", "AAAA", "CNAME"}:
            return fail(400, 81053, "An A, AAAA, or CNAME record with that host already exists.", retry=False)
    return None


@app.post(API + "/zones/{zone_id}/dns_records")
async def dns_create(zone_id: str, request: Request):
    body = await request.json()
    with _lock:
        zone = _zone(zone_id)
        if zone is None:
            return fail(404, 7003, "Could not route to /zones/..., perhaps your object identifier is invalid?", retry=False)
        record = _record_from(body, zone, uuid.uuid4().hex, _now())
        if isinstance(record, JSONResponse):
            return record
        conflict = _conflict(zone_id, record)
        if conflict:
            return conflict
        STATE["records"][record["id"]] = record
        return ok(copy.deepcopy(record))


@app.get(API + "/zones/{zone_id}/dns_records/{record_id}")
async def dns_get(zone_id: str, record_id: str):
    with _lock:
        record = STATE["records"].get(record_id)
        if record is None or record["zone_id"] != zone_id:
            return fail(404, 81044, "Record does not exist.", retry=False)
        return ok(copy.deepcopy(record))


async def _dns_write(zone_id: str, record_id: str, request: Request, merge: bool):
    body = await request.json()
    with _lock:
        zone = _zone(zone_id)
        record = STATE["records"].get(record_id)
        if zone is None or record is None or record["zone_id"] != zone_id:
            return fail(404, 81044, "Record does not exist.", retry=False)
        source = {**record, **body} if merge else body
        new = _record_from(source, zone, record_id, record["created_on"])
        if isinstance(new, JSONResponse):
            return new
        conflict = _conflict(zone_id, new, skip_id=record_id)
        if conflict:
            return conflict
        STATE["records"][record_id] = new
        return ok(copy.deepcopy(new))


@app.put(API + "/zones/{zone_id}/dns_records/{record_id}")
async def dns_update(zone_id: str, record_id: str, request: Request):
    return await _dns_write(zone_id, record_id, request, merge=False)


@app.patch(API + "/zones/{zone_id}/dns_records/{record_id}")
async def dns_patch(zone_id: str, record_id: str, request: Request):
    return await _dns_write(zone_id, record_id, request, merge=True)


@app.delete(API + "/zones/{zone_id}/dns_records/{record_id}")
async def dns_delete(zone_id: str, record_id: str):
    with _lock:
        record = STATE["records"].get(record_id)
        if record is None or record["zone_id"] != zone_id:
            return fail(404, 81044, "Record does not exist.", retry=False)
        del STATE["records"][record_id]
        return ok({"id": record_id})


# ---- account API tokens (R2 bucket-scoped credentials) -----------------------------------------------------------

PERMISSION_GROUPS = [
    {"id": "2efd5506f9c8494dacb1fa10a3e7d5b6", "name": "Workers R2 Storage Bucket Item Write",
     "scopes": ["com.cloudflare.edge.r2.bucket"]},
    {"id": "6a018a9f2fc74eb6b293b0c548f38b39", "name": "Workers R2 Storage Bucket Item Read",
     "scopes": ["com.cloudflare.edge.r2.bucket"]},
    {"id": "bf7481a1826f439697cb59a20b22293e", "name": "Workers R2 Storage Write", "scopes": ["com.cloudflare.api.account"]},
    {"id": "c1fde68c7bcc44588cbb6ddbc16d6480", "name": "Account Settings Read", "scopes": ["com.cloudflare.api.account"]},
]


@app.get(API + "/accounts/{account_id}/tokens/permission_groups")
async def token_permission_groups(account_id: str, request: Request):
    name = request.query_params.get("name")
    groups = [g for g in PERMISSION_GROUPS if not name or g["name"] == name]
    return ok(copy.deepcopy(groups), {"page": 1, "per_page": len(groups), "count": len(groups), "total_count": len(groups),
                                      "total_pages": 1})


def _token_view(token: dict) -> dict:
    return {k: copy.deepcopy(v) for k, v in token.items() if k not in ("value", "account_id")}


@app.post(API + "/accounts/{account_id}/tokens")
async def token_create(account_id: str, request: Request):
    body = await request.json()
    known = {g["id"]: g for g in PERMISSION_GROUPS}
    with _lock:
        if STATE["forbid_token_create"]:
            return fail(403, 9109, "Unauthorized to access requested resource", retry=False)
        if not isinstance(body, dict) or not body.get("name") or not isinstance(body.get("policies"), list) or not body["policies"]:
            return fail(400, 1001, "name and policies are required", retry=False)
        for policy in body["policies"]:
            if not isinstance(policy, dict) or policy.get("effect") not in ("allow", "deny"):
                return fail(400, 1001, "policy effect must be allow or deny", retry=False)
            groups = policy.get("permission_groups") or []
            if not groups or any(not isinstance(g, dict) or g.get("id") not in known for g in groups):
                return fail(400, 1001, "unknown permission group", retry=False)
            resources = policy.get("resources")
            if not isinstance(resources, dict) or not resources:
                return fail(400, 1001, "policy resources are required", retry=False)
            for resource in resources:
                if not (resource.startswith(f"com.cloudflare.edge.r2.bucket.{account_id}_")
                        or resource == f"com.cloudflare.api.account.{account_id}"):
                    return fail(400, 1001, f"resource {resource} is not in account {account_id}", retry=False)
        token_id = uuid.uuid4().hex
        value = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        token = {"id": token_id, "account_id": account_id, "name": body["name"], "status": "active",
                 "policies": [{"id": uuid.uuid4().hex, **copy.deepcopy(p)} for p in body["policies"]],
                 "issued_on": _now(), "modified_on": _now(), "value": value}
        STATE["tokens"][token_id] = token
        return ok({**_token_view(token), "value": value})


@app.get(API + "/accounts/{account_id}/tokens")
async def token_list(account_id: str, request: Request):
    with _lock:
        tokens = [_token_view(t) for t in STATE["tokens"].values() if t["account_id"] == account_id]
    return _page(tokens, request)


@app.get(API + "/accounts/{account_id}/tokens/{token_id}")
async def token_get(account_id: str, token_id: str):
    with _lock:
        token = STATE["tokens"].get(token_id)
        if token is None or token["account_id"] != account_id:
            return fail(404, 1003, "Invalid API Token", retry=False)
        return ok(_token_view(token))


@app.delete(API + "/accounts/{account_id}/tokens/{token_id}")
async def token_delete(account_id: str, token_id: str):
    with _lock:
        token = STATE["tokens"].get(token_id)
        if token is None or token["account_id"] != account_id:
            return fail(404, 1003, "Invalid API Token", retry=False)
        del STATE["tokens"][token_id]
        return ok({"id": token_id})


@app.api_route(API + "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def not_implemented(rest: str):
    return fail(404, 7003, f"Could not route to /{rest}, perhaps your object identifier is invalid?", retry=False)


if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
