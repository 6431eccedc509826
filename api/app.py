"""The HTTP API (FastAPI), laid out like the FastAPI full-stack template: ``api/routes/`` (one router per
resource: claws, minis, jobs, service), ``api/deps.py`` (auth, the service, Idempotency-Key digests),
``api/schemas.py`` (request and response models), ``api/services.py`` (the service layer the routes call).

The HTTP API. Routes under ``/v1``; every route but ``/healthz`` needs ``Authorization: Bearer <token>``
(``/openapi.json`` exists only with ``CLAWFARM_API_OPENAPI=token``, behind the token; no ``/docs``). Every state change
queues a job that runs the same playbook an operator runs.

Request input is checked by the collection's own validators (``plugins/module_utils/_claw.py`` through
:mod:`api.validation`): bad input is a 422 naming the field, before any job exists. No error answer shows a
submitted value (the validation handler drops pydantic's ``input``), bodies are counted as they arrive (413 past
``max_body_bytes``, chunked or not), an ``Idempotency-Key`` is scoped by API token and bound to method, path and body,
and a ``callback_url`` must name an allowed host with public addresses only (:mod:`api.callbacks`).
"""

import asyncio
import gc
import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .alerts import DiscordNotifier, default_rules
from .config import Settings, load_settings
from .db import make_sessionmaker
from .deps import authorize
from .inventory import Inventory
from .jobs import JobEngine, playbook_available  # noqa: F401 - re-exported
from .metrics import make_registry
from .middleware import BodyLimit
from .monitor import Monitor
from .pollcache import CachedPolls, PollCache
from .routes import claws, imports, jobs, minis, service, webhooks
from .services import Service

log = logging.getLogger("clawfarm.api.monitor")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to :func:`api.config.load_settings` (environment)."""
    settings = settings or load_settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.state_dir.chmod(0o700)  # the job store and run dirs
    Session = make_sessionmaker(settings.database_url)
    engine = JobEngine(settings, Session)
    inventory = Inventory(settings.inventory, Session=Session)
    engine.inventory = inventory
    discord = DiscordNotifier(settings.discord_webhook_url) if settings.discord_webhook_url else None

    def notifier(message: dict) -> None:
        """Alerts and notices to Discord (or the log), firing and resolved alerts to the webhook subscriptions."""
        if discord is not None:
            discord(message)
        else:
            log.warning("alert (no Discord webhook configured): %s", message)
        engine.webhooks.alert(message)

    monitor = Monitor(engine, Session, inventory, notifier, settings.health_interval, settings.backup_schedule,
                      default_rules(**settings.alert_thresholds))

    @asynccontextmanager
    async def lifespan(_app):
        engine.start()
        monitor.start()
        app.state.service.polls.start()
        gc.freeze()  # what start-up made lives as long as the process: full collections no longer walk it (request tails)
        yield
        monitor.shutdown()
        await asyncio.to_thread(engine.shutdown)
        await asyncio.to_thread(app.state.service.polls.shutdown)

    app = FastAPI(title="clawfarm API", version="0.2.0", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None,
                  description="Runs the clawfarm playbooks as durable jobs for the web backend.")
    app.state.engine, app.state.settings, app.state.Session = engine, settings, Session
    app.state.service = Service(settings=settings, Session=Session, engine=engine, inventory=inventory, monitor=monitor,
                                polls=PollCache(Session, settings.poll_cache_seconds))
    app.state.registry = make_registry(app.state.service)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CachedPolls, service=app.state.service)  # outermost: a kept poll answer skips the rest

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError):
        """422 naming each bad field, without pydantic's ``input``/``ctx`` (they would echo secrets back)."""
        return JSONResponse({"detail": [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid")), "type": str(e.get("type", "value_error"))}
                                        for e in exc.errors()]}, status_code=422)

    if settings.openapi == "token":
        @app.get("/openapi.json", dependencies=[Depends(authorize)], include_in_schema=False)
        def openapi_schema():
            """The OpenAPI document, behind the bearer token (``CLAWFARM_API_OPENAPI=token``)."""
            return JSONResponse(app.openapi())

    for module in (service, claws, imports, minis, jobs, webhooks):
        app.include_router(module.router)
    return app
