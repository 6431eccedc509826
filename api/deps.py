"""Dependencies of the routes: the bearer-token check, the :class:`~api.services.Service`, the Idempotency-Key
digest and the path/header parameter types."""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, SecretStr

from .schemas import MINI_PATTERN, UUID_PATTERN
from .services import Service

ClawId = Annotated[str, Path(pattern=UUID_PATTERN, description="The claw's UUID (lowercase, with dashes)")]
MiniName = Annotated[str, Path(pattern=MINI_PATTERN, description="A Mini's inventory name")]
JobId = Annotated[str, Path(pattern=UUID_PATTERN, description="A job's id")]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", description="Same key, same job (safe retries)")]
bearer = HTTPBearer(auto_error=False)


async def get_service(request: Request) -> Service:
    """The app's :class:`~api.services.Service` (``async``: no worker thread per request for it)."""
    return request.app.state.service


Svc = Annotated[Service, Depends(get_service)]


async def authorize(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """401 unless the bearer token is one of ``settings.tokens`` (constant time per token; every token is
    compared); the matching token is kept in ``request.state.api_token`` (it scopes Idempotency-Keys). ``async``
    (it never blocks): FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request."""
    match = token_of(request.app.state.settings.tokens, credentials.credentials if credentials else "")
    if not credentials or match is None:
        raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    request.state.api_token = match


def token_of(tokens: list[str], supplied: str) -> str | None:
    """The configured token equal to ``supplied``, or None: every token is compared, each in constant time (the one
    token check of the service: :func:`authorize` and :class:`api.pollcache.CachedPolls`)."""
    supplied_bytes = supplied.encode()
    match = None
    for token in tokens:
        if hmac.compare_digest(supplied_bytes, token.encode()):
            match = token
    return match


auth = [Depends(authorize)]


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

