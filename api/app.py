"""The HTTP API (FastAPI). Routes under ``/v1``; every route but ``/healthz`` needs ``Authorization: Bearer <token>``
(``/openapi.json`` exists only with ``CLAWFARM_API_OPENAPI=token``, behind the token; no ``/docs``). Every state change
queues a job that runs the same playbook an operator runs.

Request input is checked by the collection's own validators (``plugins/module_utils/_claw.py`` through
:mod:`api.validation`): bad input is a 422 naming the field, before any job exists. No error answer shows a
submitted value (the validation handler drops pydantic's ``input``), bodies are counted as they arrive (413 past
``max_body_bytes``, chunked or not), an ``Idempotency-Key`` is scoped by API token and bound to method, path and body,
and a ``callback_url`` must name an allowed host with public addresses only (:mod:`api.callbacks`).
"""

import asyncio
import hashlib
import hmac
import json
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator
from sqlalchemy import func, select

from .alerts import DiscordNotifier, default_rules
from .callbacks import CallbackRefused, check_callback_url
from .config import Settings, load_settings
from .db import TERMINAL, Claw, Job, JobEvent, make_sessionmaker
from .inventory import Inventory, place
from .jobs import JOB_DURATION, IdempotencyConflict, JobEngine, playbook_available
from .monitor import Monitor
from .validation import check_env, check_env_change, check_env_names, claw

log = logging.getLogger("clawfarm.api")

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
MINI_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ClawId = Annotated[str, Path(pattern=UUID_PATTERN, description="The claw's UUID (lowercase, with dashes)")]
MiniName = Annotated[str, Path(pattern=MINI_PATTERN, description="A Mini's inventory name")]
JobId = Annotated[str, Path(pattern=UUID_PATTERN, description="A job's id")]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Same key, same job (safe retries)")]


# ---- request and response models ------------------------------------------------------------------------------

EnvValues = dict[str, Annotated[str, Field(max_length=8192)]]
CALLBACK_DOC = ("Receives the final job state (HMAC-signed); its host must be allowed by CLAWFARM_API_CALLBACK_HOSTS "
                "(or be the configured webhook's) and resolve to public addresses only")


def _env(value: dict | None) -> dict | None:
    if value is None:
        return None
    if len(value) > 100:
        raise ValueError("more than 100 entries")
    return check_env(value)  # the collection's validate_env: names, reserved names, newlines, quoting


def _token(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        claw.validate_token(value.get_secret_value())
    return value


class ProvisionRequest(BaseModel):
    """Provision a claw. ``env`` holds the claw's secrets and settings (values never stored or shown); omitted, an
    existing claw keeps its env, given (even ``{}``), it replaces the claw's env."""
    model_config = ConfigDict(extra="forbid")
    claw_id: str = Field(pattern=UUID_PATTERN, description="The claw's UUID")
    mini: str | None = Field(None, pattern=MINI_PATTERN, description="Inventory name; placed on the least-loaded active Mini when absent")
    gateway_token: SecretStr | None = Field(None, min_length=32, max_length=512,
                                            description="Gateway token ([A-Za-z0-9._~+/=-], 32+); generated on the control node when absent")
    env: EnvValues | None = Field(None, description="Environment of the claw (API keys, model ids); replaces the current env when given")
    restore: bool = Field(False, description="Restore the newest archive after provisioning (re-subscribe)")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)

    @field_validator("claw_id")
    @classmethod
    def _claw_id(cls, value: str) -> str:
        return claw.validate_claw_id(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict | None) -> dict | None:
        return _env(value)

    @field_validator("gateway_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        return _token(value)


class ConfigureRequest(BaseModel):
    """Change a claw's settings in place (``playbooks/configure.yml``): set or remove single env entries and/or
    replace the gateway token; the gateway restarts, the claw stays where it is. At least one field."""
    model_config = ConfigDict(extra="forbid")
    env_set: EnvValues | None = Field(None, description="Env entries to add or overwrite (values never stored or shown)")
    env_unset: list[Annotated[str, Field(max_length=256)]] | None = Field(None, max_length=100, description="Env names to remove")
    gateway_token: SecretStr | None = Field(None, min_length=32, max_length=512, description="New gateway token ([A-Za-z0-9._~+/=-], 32+)")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)

    @field_validator("env_set")
    @classmethod
    def _env_set(cls, value: dict | None) -> dict | None:
        return _env(value)

    @field_validator("env_unset")
    @classmethod
    def _env_unset(cls, value: list | None) -> list | None:
        return None if value is None else check_env_names(value)

    @field_validator("gateway_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        return _token(value)

    @model_validator(mode="after")
    def _something(self):
        if not (self.env_set or self.env_unset or self.gateway_token):
            raise ValueError("give at least one of env_set, env_unset, gateway_token")
        check_env_change(self.env_set, self.env_unset)  # a name both set and unset
        return self


class ActionRequest(BaseModel):
    """Options of a claw action; all optional."""
    model_config = ConfigDict(extra="forbid")
    mini: str | None = Field(None, pattern=MINI_PATTERN, description="The claw's Mini, when the service does not know it yet")
    key: str | None = Field(None, pattern=r"^(backups|archives)/\d{8}T\d{6}Z\.tar\.zst$", description="restore: archive key (default newest)")
    target: str | None = Field(None, pattern=MINI_PATTERN, description="migrate: the target Mini")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)


class DrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    claw_id: str | None = None
    mini: str | None = None
    params: dict = {}
    result: dict | None = None
    error: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    webhook_status: str | None = None
    replica: str | None = Field(None, description="The API replica that ran (or runs) the job")


class ClawOut(BaseModel):
    claw_id: str
    present: bool
    mini: str | None = None
    record: dict = {}
    updated_at: str | None = None
    age_seconds: float | None = None
    last_job: JobOut | None = None
    health: dict | None = None
    refresh_job: str | None = None


class ClawSummary(BaseModel):
    claw_id: str
    present: bool
    mini: str | None = None
    record: dict = {}
    updated_at: str | None = None


class ClawPage(BaseModel):
    """One page of claws, by claw id; pass ``next`` as ``after`` for the following page (null: the last page)."""
    items: list[ClawSummary]
    next: str | None = None


class Route(BaseModel):
    """A tunnel route of the Mini: the claw's public hostname to its gateway's loopback port."""
    hostname: str
    service: str
    claw_id: str


class MiniOut(BaseModel):
    name: str
    status: str
    max_claws: int
    base_port: int
    timezone: str = "UTC"
    claws: int
    last_job: JobOut | None = None
    health: dict | None = None


class MiniDetail(MiniOut):
    claw_records: list[ClawSummary] = Field(default_factory=list, description="The claws present on the Mini")
    routes: list[Route] = Field(default_factory=list, description="Its tunnel's routes, one per claw with a hostname")


# ---- the application ---------------------------------------------------------------------------------------------

class BodyLimit:
    """ASGI middleware: at most ``limit`` request body bytes, counted as they arrive (a declared Content-Length
    over the limit is refused before reading; a chunked body is cut off at the limit). Answers 413 and never
    echoes the body."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def _too_large(self, send) -> None:
        body = json.dumps({"detail": [{"loc": ["body"], "msg": f"body larger than {self.limit} bytes", "type": "too_large"}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                return await self._too_large(send)
        state = {"received": 0, "over": False, "answered": False}

        async def counted_receive():
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}  # stop reading; the app's answer is replaced by the 413
            return message

        async def guarded_send(message):
            if state["over"]:
                if not state["answered"]:
                    state["answered"] = True
                    await self._too_large(send)
                return
            state["answered"] = state["answered"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["answered"]:
            state["answered"] = True
            await self._too_large(send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to :func:`api.config.load_settings` (environment)."""
    settings = settings or load_settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.state_dir.chmod(0o700)  # the job store and run dirs
    Session = make_sessionmaker(settings.database_url)
    engine = JobEngine(settings, Session)
    inventory = Inventory(settings.inventory)
    notifier = DiscordNotifier(settings.discord_webhook_url) if settings.discord_webhook_url else None
    monitor = Monitor(engine, Session, inventory, notifier, settings.health_interval, settings.backup_schedule,
                      default_rules(**settings.alert_thresholds))

    @asynccontextmanager
    async def lifespan(_app):
        engine.start()
        monitor.start()
        yield
        monitor.shutdown()
        await asyncio.to_thread(engine.shutdown)

    app = FastAPI(title="clawfarm API", version="0.2.0", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None,
                  description="Runs the clawfarm playbooks as durable jobs for the web backend.")
    app.state.engine, app.state.settings, app.state.Session = engine, settings, Session
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    bearer = HTTPBearer(auto_error=False)

    def authorize(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        supplied = credentials.credentials.encode() if credentials else b""
        match = None
        for token in settings.tokens:  # constant time per token; every token is compared
            if hmac.compare_digest(supplied, token.encode()):
                match = token
        if not credentials or match is None:
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        request.state.api_token = match

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError):
        """422 naming each bad field, without pydantic's ``input``/``ctx`` (they would echo secrets back)."""
        return JSONResponse({"detail": [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid")), "type": str(e.get("type", "value_error"))}
                                        for e in exc.errors()]}, status_code=422)

    auth = [Depends(authorize)]

    if settings.openapi == "token":
        @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
        def openapi_schema():
            """The OpenAPI document, behind the bearer token (``CLAWFARM_API_OPENAPI=token``)."""
            return JSONResponse(app.openapi())

    def job_out(job: Job) -> dict:
        return job.to_dict()

    def known_mini(name: str, placing: bool = False, field: str = "mini") -> None:
        """422 for a Mini the inventory does not have; with ``placing`` (a new claw or a migration's target goes
        there) 409 unless its ``mini_status`` is ``active``."""
        minis = inventory.minis()
        if name not in minis:
            raise HTTPException(422, [{"loc": ["body", field], "msg": f"unknown Mini {name!r}; known: {', '.join(sorted(minis)) or 'none'}",
                                       "type": "value_error"}])
        if placing and minis[name]["status"] != "active":
            raise HTTPException(409, f"Mini {name!r} is {minis[name]['status']}: it takes no new claws")

    def claw_home(claw_id: str) -> str | None:
        """The Mini an existing claw is on: the service's record of a present claw, else the Mini of its newest
        provision still queued or running; None for a claw the service does not know."""
        with Session() as s:
            claw = s.get(Claw, claw_id)
            if claw is not None and claw.present and claw.mini:
                return claw.mini
            pending = s.scalars(select(Job.mini).where(Job.claw_id == claw_id, Job.kind == "provision",
                                                       Job.state.in_(("queued", "running"))).order_by(Job.created_at.desc()).limit(1)).first()
            return pending

    def claw_mini(claw_id: str, given: str | None) -> str:
        if given:
            known_mini(given)
            return given
        with Session() as s:
            claw = s.get(Claw, claw_id)
        if claw and claw.mini:
            return claw.mini
        minis = inventory.minis()
        if len(minis) == 1:
            return next(iter(minis))
        raise HTTPException(404, f"claw {claw_id} is not known to the service; pass its mini")

    def accepted(job: Job, created: bool) -> JSONResponse:
        return JSONResponse(job_out(job), status_code=202 if created else 200)

    def idem(request: Request, key: str | None, body: BaseModel | None = None) -> tuple[str, str, str] | None:
        """``(scope, key, request)`` for :meth:`JobEngine.submit`: the key belongs to the caller's API token and to
        this method, path, query and body (digests only; the request digest is keyed with the caller's token)."""
        if key is None:
            return None
        if not (1 <= len(key) <= 255) or not key.isprintable() or not key.isascii():
            raise HTTPException(422, [{"loc": ["header", "Idempotency-Key"], "msg": "1 to 255 printable ASCII characters", "type": "value_error"}])
        token = request.state.api_token.encode()
        scope = hashlib.sha256(b"clawfarm-idempotency-scope\0" + token).hexdigest()
        payload = body.model_dump(mode="python") if body is not None else None
        text = json.dumps([request.method, request.url.path, sorted(request.query_params.multi_items()), payload], sort_keys=True,
                          default=lambda v: v.get_secret_value() if isinstance(v, SecretStr) else str(v))
        return scope, key, hmac.new(token, text.encode(), hashlib.sha256).hexdigest()

    def submit(*args, **kwargs) -> JSONResponse:
        try:
            return accepted(*engine.submit(*args, **kwargs))
        except IdempotencyConflict:
            raise idempotency_conflict()

    def idempotency_conflict() -> HTTPException:
        return HTTPException(422, [{"loc": ["header", "Idempotency-Key"], "type": "idempotency_conflict",
                                    "msg": "this Idempotency-Key was already used for a different request (method, path or body); use a new key"}])

    def callback(url, field: tuple = ("body", "callback_url")) -> str | None:
        if url is None:
            return None
        try:
            return check_callback_url(str(url), settings.callback_hosts, settings.webhook_url)
        except CallbackRefused as exc:
            raise HTTPException(422, [{"loc": list(field), "msg": str(exc), "type": "value_error"}])

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        """Liveness; no auth."""
        return {"ok": True}

    @app.post("/v1/claws", status_code=202, response_model=JobOut, dependencies=auth, tags=["claws"])
    def provision(body: ProvisionRequest, request: Request, idempotency_key: IdemKey = None):
        """Provision a claw (``playbooks/provision.yml``); the job's result carries mini, mac_username, local_port,
        tunnel_hostname and label. Without ``env`` an existing claw keeps its env (``claw_env`` is not sent)."""
        key = idem(request, idempotency_key, body)
        callback_url = callback(body.callback_url)
        mini = body.mini
        with engine.serialized("placement"):  # placement and queueing are one step, across replicas: no last slot twice
            try:
                first = engine.replay(key)  # a retry gets its job even when that job took the last slot
            except IdempotencyConflict:
                raise idempotency_conflict()  # before any other check: a reused key is the caller's error
            if first is not None:
                return accepted(first, False)
            home = claw_home(body.claw_id)
            if home and mini and mini != home:
                raise HTTPException(409, f"claw {body.claw_id} is on Mini {home!r}; move it with POST /v1/claws/{{claw_id}}/migrate")
            if home:
                mini = home  # an existing claw is provisioned again where it is, never placed again
            elif mini:
                known_mini(mini, placing=True)
            else:
                with Session() as s:
                    load = dict(s.execute(select(Claw.mini, func.count()).where(Claw.present == 1).group_by(Claw.mini)).all())
                    for job_mini, count in s.execute(select(Job.mini, func.count()).where(Job.kind == "provision",
                                                     Job.state.in_(("queued", "running"))).group_by(Job.mini)).all():
                        load[job_mini] = load.get(job_mini, 0) + count
                mini = place(inventory.minis(), load)
                if mini is None:
                    raise HTTPException(409, "no capacity: no active Mini has a free slot")
            secrets = {"gateway_token": body.gateway_token.get_secret_value() if body.gateway_token else None, "env": body.env}
            params = {"restore": body.restore, **({"env_keys": sorted(body.env)} if body.env is not None else {})}
            return submit("provision", body.claw_id, mini, params,
                          secrets=secrets if (secrets["gateway_token"] or body.env is not None) else None,
                          callback_url=callback_url, idempotency=key)

    @app.patch("/v1/claws/{claw_id}", status_code=202, response_model=JobOut, dependencies=auth, tags=["claws"])
    def configure(claw_id: ClawId, body: ConfigureRequest, request: Request, idempotency_key: IdemKey = None):
        """Change a claw's settings in place (``playbooks/configure.yml``): ``env_set`` adds or overwrites entries,
        ``env_unset`` removes names, ``gateway_token`` replaces the token; the gateway restarts on the claw's Mini (no
        placement). Entries not named keep their values. Values never appear in the job, its events or answers."""
        key = idem(request, idempotency_key, body)
        callback_url = callback(body.callback_url)
        if not playbook_available("configure"):
            raise HTTPException(409, "configure is not available in this release (playbooks/configure.yml is not installed)")
        secrets = {"gateway_token": body.gateway_token.get_secret_value() if body.gateway_token else None, "env_set": body.env_set or {}}
        params = {"env_set_keys": sorted(body.env_set or {}), "env_unset": body.env_unset or [], "gateway_token": bool(body.gateway_token)}
        return submit("configure", claw_id, claw_mini(claw_id, None), params,
                      secrets=secrets if (secrets["gateway_token"] or secrets["env_set"]) else None,
                      callback_url=callback_url, idempotency=key)

    @app.delete("/v1/claws/{claw_id}", status_code=202, response_model=JobOut, dependencies=auth, tags=["claws"])
    def deprovision(claw_id: ClawId, request: Request,
                    archive: Annotated[bool, Query(description="Archive to R2 first (false: tombstone on the Mini)")] = True,
                    mini: Annotated[str | None, Query(pattern=MINI_PATTERN)] = None,
                    callback_url: Annotated[HttpUrl | None, Query(description=CALLBACK_DOC)] = None,
                    idempotency_key: IdemKey = None):
        """Deprovision (``playbooks/deprovision.yml``): archive, verify, then remove."""
        key = idem(request, idempotency_key)
        url = callback(callback_url, ("query", "callback_url"))
        return submit("deprovision", claw_id, claw_mini(claw_id, mini), {"archive": archive}, callback_url=url, idempotency=key)

    def claw_summary(claw: Claw) -> dict:
        updated = claw.updated_at.replace(tzinfo=claw.updated_at.tzinfo or UTC) if claw.updated_at else None
        return {"claw_id": claw.claw_id, "present": bool(claw.present), "mini": claw.mini, "record": claw.record or {},
                "updated_at": updated.isoformat() if updated else None}

    @app.get("/v1/claws", response_model=ClawPage, dependencies=auth, tags=["claws"])
    def list_claws(mini: Annotated[str | None, Query(pattern=MINI_PATTERN, description="Only the claws on this Mini")] = None,
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
        with Session() as s:
            rows = s.scalars(query).all()
        page = [claw_summary(c) for c in rows[:limit]]
        return {"items": page, "next": page[-1]["claw_id"] if len(rows) > limit else None}

    @app.get("/v1/claws/{claw_id}", response_model=ClawOut, dependencies=auth, tags=["claws"])
    async def claw_status(claw_id: ClawId,
                          refresh: Annotated[bool, Query(description="Run the status playbook first (waits up to 20 s; "
                                                                     "then answers with the cached record and refresh_job)")] = False):
        """What the service knows about a claw, with its age; ``refresh=true`` runs ``playbooks/status.yml`` first."""
        refresh_job = None
        if refresh:
            job, _ = engine.submit("status", claw_id, claw_mini(claw_id, None), {})
            refresh_job = job.id
            for _ in range(40):
                with Session() as s:
                    if s.get(Job, job.id).state in TERMINAL:
                        refresh_job = None
                        break
                await asyncio.sleep(0.5)
        with Session() as s:
            claw = s.get(Claw, claw_id)
            last = s.scalars(select(Job).where(Job.claw_id == claw_id).order_by(Job.created_at.desc()).limit(1)).first()
            if claw is None and last is None:
                raise HTTPException(404, f"claw {claw_id} is not known to the service")
            updated = claw.updated_at.replace(tzinfo=claw.updated_at.tzinfo or UTC) if claw else None
            return {"claw_id": claw_id, "present": bool(claw and claw.present), "mini": claw.mini if claw else None,
                    "record": claw.record if claw else {}, "updated_at": updated.isoformat() if updated else None,
                    "age_seconds": round((datetime.now(UTC) - updated).total_seconds(), 1) if updated else None,
                    "last_job": job_out(last) if last else None,
                    "health": monitor.claw_health(claw.mini if claw else None, claw_id) if claw and claw.present else None,
                    "refresh_job": refresh_job}

    def action(kind: str):
        def route(claw_id: ClawId, request: Request, body: ActionRequest | None = None, idempotency_key: IdemKey = None):
            body = body or ActionRequest()
            key = idem(request, idempotency_key, body)
            callback_url = callback(body.callback_url)
            if not playbook_available(kind):
                raise HTTPException(409, f"{kind} is not available in this release (playbooks/{kind}.yml is not installed)")
            if body.target:
                known_mini(body.target, placing=True, field="target")
            params = {k: v for k, v in {"key": body.key, "target": body.target}.items() if v is not None}
            return submit(kind, claw_id, claw_mini(claw_id, body.mini), params, callback_url=callback_url, idempotency=key)
        route.__name__ = f"claw_{kind}"
        route.__doc__ = f"Queue ``playbooks/{kind}.yml`` for the claw."
        return route

    for kind in ("start", "stop", "restart", "backup", "restore", "migrate"):
        app.post(f"/v1/claws/{{claw_id}}/{kind}", status_code=202, response_model=JobOut, dependencies=auth, tags=["claws"])(action(kind))

    def mini_out(name: str, info: dict) -> dict:
        with Session() as s:
            claws = s.scalar(select(func.count()).select_from(Claw).where(Claw.mini == name, Claw.present == 1))
            last = s.scalars(select(Job).where(Job.mini == name).order_by(Job.created_at.desc()).limit(1)).first()
        return {**info, "claws": claws or 0, "last_job": job_out(last) if last else None, "health": monitor.mini_health(name)}

    @app.get("/v1/minis", response_model=list[MiniOut], dependencies=auth, tags=["minis"])
    def list_minis():
        """The inventory's Minis with their claws and last job."""
        return [mini_out(n, info) for n, info in sorted(inventory.minis().items())]

    @app.get("/v1/minis/{name}", response_model=MiniDetail, dependencies=auth, tags=["minis"])
    def get_mini(name: MiniName):
        """One Mini: status, capacity, health, its claws (``claw_records``) and its tunnel routes (hostname → the
        claw's loopback port), from the service's claw records."""
        minis = inventory.minis()
        if name not in minis:
            raise HTTPException(404, f"unknown Mini {name!r}")
        with Session() as s:
            claws = s.scalars(select(Claw).where(Claw.mini == name, Claw.present == 1).order_by(Claw.claw_id)).all()
        routes = [{"hostname": c.record["tunnel_hostname"], "service": f"http://127.0.0.1:{int(c.record['local_port'])}", "claw_id": c.claw_id}
                  for c in claws if (c.record or {}).get("tunnel_hostname") and str((c.record or {}).get("local_port", "")).isdigit()]
        return {**mini_out(name, minis[name]), "claw_records": [claw_summary(c) for c in claws], "routes": routes}

    @app.post("/v1/minis/{name}/drain", status_code=202, response_model=JobOut, dependencies=auth, tags=["minis"])
    def drain(name: MiniName, request: Request, body: DrainRequest | None = None, idempotency_key: IdemKey = None):
        """Queue ``playbooks/drain.yml`` for the Mini."""
        key = idem(request, idempotency_key, body)
        url = callback(body.callback_url if body else None)
        if name not in inventory.minis():
            raise HTTPException(404, f"unknown Mini {name!r}")
        if not playbook_available("drain"):
            raise HTTPException(409, "drain is not available in this release (playbooks/drain.yml is not installed)")
        return submit("drain", None, name, {}, callback_url=url, idempotency=key)

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, dependencies=auth, tags=["jobs"])
    def get_job(job_id: JobId):
        with Session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise HTTPException(404, "no such job")
            return job_out(job)

    @app.get("/v1/jobs/{job_id}/events", dependencies=auth, tags=["jobs"],
             responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}})
    async def job_events(job_id: JobId, request: Request,
                         after: Annotated[int, Query(ge=0, le=2**31 - 1, description="Only events with a higher counter")] = 0,
                         limit: Annotated[int, Query(ge=1, le=5000)] = 500):
        """The playbook's task events (by counter). With ``Accept: text/event-stream`` they stream live until the job ends."""
        with Session() as s:
            if s.get(Job, job_id) is None:
                raise HTTPException(404, "no such job")
        if "text/event-stream" not in request.headers.get("accept", ""):
            with Session() as s:
                rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.counter > after)
                                 .order_by(JobEvent.counter).limit(limit)).all()
                return [r.to_dict() for r in rows]

        async def stream():
            cursor = after
            while True:
                with Session() as s:
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

    @app.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, status_code=202, dependencies=auth, tags=["jobs"])
    def cancel_job(job_id: JobId):
        """Cancel a queued job, or stop a running playbook (202); 409 when the job has already ended."""
        with Session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise HTTPException(404, "no such job")
            if job.state in TERMINAL:
                raise HTTPException(409, f"job already {job.state}")
        engine.cancel(job_id)
        with Session() as s:
            return JSONResponse(job_out(s.get(Job, job_id)), status_code=202)

    registry = CollectorRegistry()
    registry.register(JOB_DURATION)

    class FleetCollector:
        def collect(self):
            jobs = GaugeMetricFamily("clawfarm_jobs", "Jobs in the store by kind and state", labels=["kind", "state"])
            queue = GaugeMetricFamily("clawfarm_job_queue_depth", "Jobs waiting to run")
            claws = GaugeMetricFamily("clawfarm_mini_claws", "Claws the service knows on each Mini", labels=["mini"])
            with Session() as s:
                for kind, state, count in s.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)):
                    jobs.add_metric([kind, state], count)
                queue.add_metric([], s.scalar(select(func.count()).select_from(Job).where(Job.state == "queued")) or 0)
                per_mini = dict(s.execute(select(Claw.mini, func.count()).where(Claw.present == 1).group_by(Claw.mini)).all())
            try:
                names = inventory.minis()
            except RuntimeError:
                names = {}
            for name in sorted(set(names) | {m for m in per_mini if m}):
                claws.add_metric([name], per_mini.get(name, 0))
            yield from (jobs, queue, claws)
            yield from fleet_gauges()

    def fleet_gauges():
        """Per Mini and per claw gauges from the newest samples (Prometheus naming: base units, ratios 0-1)."""
        cpu = GaugeMetricFamily("clawfarm_mini_cpu_usage_ratio", "Host CPU in use (0-1) at the last sample", labels=["mini"])
        mem_used = GaugeMetricFamily("clawfarm_mini_memory_used_bytes", "Host memory in use", labels=["mini"])
        mem_total = GaugeMetricFamily("clawfarm_mini_memory_total_bytes", "Host memory", labels=["mini"])
        disk_used = GaugeMetricFamily("clawfarm_mini_disk_used_bytes", "Used bytes per volume", labels=["mini", "mount"])
        disk_total = GaugeMetricFamily("clawfarm_mini_disk_total_bytes", "Size of each volume", labels=["mini", "mount"])
        sample_ts = GaugeMetricFamily("clawfarm_mini_last_sample_timestamp_seconds", "UNIX time of the last health sample", labels=["mini"])
        up = GaugeMetricFamily("clawfarm_claw_up", "1 when the claw's gateway answered its health handshake", labels=["mini", "claw_id"])
        rss = GaugeMetricFamily("clawfarm_claw_resident_memory_bytes", "RSS of the gateway's process tree", labels=["mini", "claw_id"])
        runs = GaugeMetricFamily("clawfarm_claw_launchd_runs", "How often launchd started the gateway (restarts + 1)", labels=["mini", "claw_id"])
        backup = GaugeMetricFamily("clawfarm_claw_last_backup_timestamp_seconds", "UNIX time of the last successful backup",
                                   labels=["mini", "claw_id"])
        with Session() as s:
            records = {c.claw_id: c for c in s.scalars(select(Claw).where(Claw.present == 1))}
        for row in monitor.samples():
            if not row.claw_id:
                host = row.data.get("mini") or {}
                sample_ts.add_metric([row.mini], row.sampled_at)
                if host.get("cpu_percent") is not None:
                    cpu.add_metric([row.mini], host["cpu_percent"] / 100.0)
                if host.get("memory"):
                    mem_used.add_metric([row.mini], host["memory"]["used_bytes"])
                    mem_total.add_metric([row.mini], host["memory"]["total_bytes"])
                for d in host.get("disks") or []:
                    disk_used.add_metric([row.mini, d["mount"]], d["used_bytes"])
                    disk_total.add_metric([row.mini, d["mount"]], d["total_bytes"])
            elif row.claw_id in records:
                labels = [row.mini, row.claw_id]
                up.add_metric(labels, 1.0 if row.data.get("health") == "ok" else 0.0)
                if row.data.get("rss_bytes") is not None:
                    rss.add_metric(labels, row.data["rss_bytes"])
                if row.data.get("runs") is not None:
                    runs.add_metric(labels, row.data["runs"])
                stamp = ((records[row.claw_id].record or {}).get("last_backup") or {}).get("finished_at")
                if stamp:
                    backup.add_metric(labels, datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
        return (cpu, mem_used, mem_total, disk_used, disk_total, sample_ts, up, rss, runs, backup)

    registry.register(FleetCollector())

    @app.get("/metrics", dependencies=auth, tags=["service"], response_class=PlainTextResponse)
    def metrics():
        """Prometheus text format: jobs by kind and state, job durations, queue depth, claws per Mini."""
        return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)

    return app
