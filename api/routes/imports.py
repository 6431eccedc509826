"""Import route: ``POST /v1/claws/{claw_id}/import`` queues ``playbooks/import.yml`` (issue 17), which brings a claw
exported from Cloudflare Containers in: fetched on the control node, checked with restore's rules, provisioned if
needed, its ``.openclaw`` placed as the claw's with the farm's gateway settings, restarted healthy.

``src`` is checked here with the collection's own parser (``_import.parse_source``) before any job exists: only
``s3://bucket/key`` (the farm's R2 endpoint, read with the farm key on the control node) and ``https://`` URLs whose
host resolves to public addresses only; a control-node path is for operators running the playbook, never for API
callers (it would let a caller import any tar the service can read). The value reaches the playbook as data
Ansible never renders (``api.jobs.unsafe_yaml``), like every request value.
"""
from __future__ import annotations

import importlib

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

from .. import services
from ..callbacks import CallbackRefused, resolve_global
from ..deps import ClawId, IdemKey, Svc, auth, idem
from ..jobs import IdempotencyConflict
from ..schemas import CALLBACK_DOC, MINI_PATTERN, EnvValues, JobOut, _env, _token
from ..validation import claw  # noqa: F401 - puts the collection on sys.path

imports = importlib.import_module("ansible_collections.mirascope.clawfarm.plugins.module_utils._import")

router = APIRouter()


class ImportRequest(BaseModel):
    """Import a claw exported from Cloudflare Containers (its ``.openclaw`` directory as .tar, .tar.gz or .tar.zst).
    ``gateway_token`` and ``env`` are the claw's settings, as for a provision (an existing claw keeps its own when
    they are not given); the export's ``.env`` and inline token are never used."""
    model_config = ConfigDict(extra="forbid")
    src: str = Field(max_length=2048, description="s3://bucket/key on the farm's R2 endpoint, or an https:// URL (public host, no credentials)")
    mini: str | None = Field(None, pattern=MINI_PATTERN, description="Inventory name; placed on the least-loaded active Mini when absent")
    gateway_token: SecretStr | None = Field(None, min_length=32, max_length=512,
                                            description="Gateway token ([A-Za-z0-9._~+/=-], 32+) the claw runs with")
    env: EnvValues | None = Field(None, description="Environment of the claw (API keys, model ids); replaces the current env when given")
    callback_url: HttpUrl | None = Field(None, description=CALLBACK_DOC)

    @field_validator("src")
    @classmethod
    def _src(cls, value: str) -> str:
        source = imports.parse_source(value)  # ImportInputError is a ValueError: a 422 naming src
        if source["kind"] == "path":
            raise ValueError("src must be s3://bucket/key or an https:// URL (a control-node path is for the import "
                             "playbook run by an operator)")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict | None) -> dict | None:
        return _env(value)

    @field_validator("gateway_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        return _token(value)


def check_public(src: str) -> None:
    """An https source's host must resolve to public addresses only (the control node fetches it).

    Raises:
        HTTPException: 422 naming src.
    """
    source = imports.parse_source(src)
    if source["kind"] != "https":
        return
    from urllib.parse import urlsplit

    parts = urlsplit(src)
    try:
        resolve_global(parts.hostname, parts.port or 443)
    except CallbackRefused as exc:
        raise HTTPException(422, [{"loc": ["body", "src"], "type": "value_error",
                                   "msg": str(exc).replace("callback_url host", "src host")}])


@router.post("/v1/claws/{claw_id}/import", status_code=202, response_model=JobOut, dependencies=auth, tags=["claws"])
def import_claw(svc: Svc, claw_id: ClawId, body: ImportRequest, request: Request, idempotency_key: IdemKey = None):
    """Import a claw exported from Cloudflare Containers (``playbooks/import.yml``): the job fetches ``src`` on the
    control node, checks it as a restore would, provisions the claw if needed (placed like a provision), places the
    export as its state dir with the farm's gateway settings and restarts it healthy. Its result has ``import``
    (settings kept and rewritten, by name) and the claw record."""
    key = idem(request, idempotency_key, body)
    callback_url = svc.callback(body.callback_url)
    if not services.playbook_available("import"):
        raise HTTPException(409, "import is not available in this release (playbooks/import.yml is not installed)")
    check_public(body.src)
    with svc.engine.serialized("placement"):  # placement and queueing are one step, as for a provision
        try:
            first = svc.engine.replay(key)
        except IdempotencyConflict:
            raise svc.idempotency_conflict()
        if first is not None:
            return svc.accepted(first, False)
        mini = svc.provision_target(claw_id, body.mini)
        # A URL's query (a presigned URL's signature) is a secret: the job's params show the source without it.
        shown, _, query = body.src.partition("?")
        secrets = {"gateway_token": body.gateway_token.get_secret_value() if body.gateway_token else None, "env": body.env,
                   "src": body.src if query else None}
        params = {"src": shown, **({"env_keys": sorted(body.env)} if body.env is not None else {})}
        return svc.submit("import", claw_id, mini, params,
                          secrets=secrets if (secrets["gateway_token"] or body.env is not None or query) else None,
                          callback_url=callback_url, idempotency=key)
