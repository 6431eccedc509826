# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-claw R2 credentials: a Cloudflare account API token scoped to one claw's bucket (PRIVATE, control node only).

Cloudflare derives R2's S3 key pair from an API token: access key id = the token's ``id``, secret access key =
lowercase hex SHA-256 of the token's ``value`` (https://developers.cloudflare.com/r2/api/tokens/; summary in
docs/reference/cloudflare-r2.md section 3.2). The token is made through the official ``cloudflare`` SDK
(``POST /accounts/{account_id}/tokens``) with one policy: the permission group
``Workers R2 Storage Bucket Item Write`` on the resource ``com.cloudflare.edge.r2.bucket.<account>_default_<bucket>``.

The pair is kept on the control node in ``<store>/<claw_id>.r2.json`` (0600, directory 0700), next to (or apart
from) the claws' archive key files, and handed to a Mini only as the module arguments of that claw's R2 tasks.
The token's value itself is never stored: only its id and the derived secret.
"""

from __future__ import annotations

import hashlib
import os
import time

from . import _claw
from ._private_json import read_private_json, write_private_json

STORE_FORMAT = "clawfarm-r2-credentials/1"
PERMISSION_GROUP = "Workers R2 Storage Bucket Item Write"
TOKEN_NAME_PREFIX = "clawfarm-r2-"
# Statuses of a token create that mean "this API token may not create tokens": the farm falls back to its own key.
REFUSED_STATUSES = (401, 403)


class CredentialError(RuntimeError):
    """A credential could not be made, read, stored or revoked; the message says which and why."""


class TokensRefused(CredentialError):
    """The farm's API token may not create (or list permission groups for) account API tokens."""


def s3_key_pair(token_id: str, token_value: str) -> tuple[str, str]:
    """R2's S3 credentials of an API token: ``(token id, sha256 hex of the token value)``."""
    return token_id, hashlib.sha256(token_value.encode()).hexdigest()


def bucket_resource(account_id: str, bucket: str, jurisdiction: str = "default") -> str:
    """The policy resource naming one R2 bucket (``com.cloudflare.edge.r2.bucket.<account>_<jurisdiction>_<bucket>``)."""
    return f"com.cloudflare.edge.r2.bucket.{account_id}_{jurisdiction}_{bucket}"


def token_name(bucket: str) -> str:
    return f"{TOKEN_NAME_PREFIX}{bucket}"


def store_path(store: str, claw_id: str) -> str:
    """``<store>/<claw_id>.r2.json`` for a valid claw id (a UUID: never a path)."""
    try:
        claw_id = _claw.validate_claw_id(claw_id)
    except _claw.ClawInputError as exc:
        raise CredentialError(str(exc))
    return os.path.join(store, f"{claw_id}.r2.json")


def load(path: str, claw_id: str) -> dict | None:
    """The claw's stored pair, or None when it has none.

    Raises:
        CredentialError: unreadable, a link, readable by others, or not this claw's credential file.
    """
    doc = read_private_json(path, "credential file", CredentialError)
    if doc is None:
        return None
    if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT or doc.get("claw_id") != claw_id \
            or not doc.get("access_key_id") or not doc.get("secret_access_key"):
        raise CredentialError(f"credential file {path} is not a {STORE_FORMAT} file of claw {claw_id}")
    return doc


def save(path: str, doc: dict) -> None:
    """Write a credential file atomically, 0600 (its directory made 0700 when missing)."""
    write_private_json(path, doc)


def _sdk_call(call: str, fn, *args, **kwargs):
    """Run one SDK call; SDK errors become CredentialError (TokensRefused on 401/403) with Cloudflare's text."""
    from ._cloudflare import describe_api_error

    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if type(exc).__module__.partition(".")[0] != "cloudflare":
            raise
        message = describe_api_error(call, exc)
        if getattr(exc, "status_code", None) in REFUSED_STATUSES:
            raise TokensRefused(message)
        if getattr(exc, "status_code", None) == 404:
            raise _NotFound(message)
        raise CredentialError(message)


class _NotFound(CredentialError):
    pass


def permission_group_id(client, account_id: str, name: str = PERMISSION_GROUP) -> str:
    """The id of the account permission group called ``name``."""
    page = _sdk_call("GET account token permission groups", client.accounts.tokens.permission_groups.list,
                     account_id=account_id, name=name)
    for group in page:
        data = group.to_dict(mode="json") if hasattr(group, "to_dict") else dict(group)
        if data.get("name") == name and data.get("id"):
            return data["id"]
    raise CredentialError(f"Cloudflare has no permission group named {name!r} for account {account_id}")


def create_bucket_token(client, account_id: str, bucket: str) -> dict:
    """Create an account API token that may read and write only the objects of ``bucket``.

    Returns:
        ``{"id", "value", "name"}``; the value is shown once by Cloudflare.
    """
    group = permission_group_id(client, account_id)
    policy = {"effect": "allow", "permission_groups": [{"id": group}],
              "resources": {bucket_resource(account_id, bucket): "*"}}
    token = _sdk_call("POST account token", client.accounts.tokens.create, account_id=account_id,
                      name=token_name(bucket), policies=[policy])
    data = token.to_dict(mode="json") if token is not None else {}
    if not data.get("id") or not data.get("value"):
        raise CredentialError(f"Cloudflare's answer to the token create for bucket {bucket} has no id or value")
    return {"id": data["id"], "value": data["value"], "name": data.get("name") or token_name(bucket)}


def revoke_token(client, account_id: str, token_id: str) -> bool:
    """Delete an account API token; False when it was already gone."""
    try:
        _sdk_call("DELETE account token", client.accounts.tokens.delete, token_id, account_id=account_id)
    except _NotFound:
        return False
    return True


def _public(doc: dict | None, scope: str) -> dict:
    doc = doc or {}
    return {"scope": scope, "access_key_id": doc.get("access_key_id"), "secret_access_key": doc.get("secret_access_key"),
            "token_id": doc.get("token_id"), "bucket": doc.get("bucket"), "reason": None}


def ensure(client_factory, account_id: str, store: str, claw_id: str, bucket: str, check_mode: bool = False,
           verify=None, now=time.time) -> dict:
    """Make sure the claw has its bucket-scoped pair; create the token when it has none.

    Args:
        client_factory: ``() -> cloudflare.Cloudflare`` (called only when a token must be made).
        verify: ``(access_key_id, secret) -> None``, called with a new pair before it is stored (raises when the
            pair does not reach the bucket); None skips it.

    Returns:
        ``{"changed", "scope": "claw"|"farm", "access_key_id", "secret_access_key", "token_id", "bucket", "credential_file",
        "warnings"}``; ``scope`` is ``farm`` (no pair, the caller keeps the farm key) when the API token may not
        create tokens.

    Raises:
        CredentialError: the store, the API (other than a refusal) or the verification failed.
    """
    path = store_path(store, claw_id)
    doc = load(path, claw_id)
    if doc is not None:
        if doc.get("bucket") != bucket:
            raise CredentialError(f"credential file {path} is for bucket {doc.get('bucket')}, not {bucket}")
        return {**_public(doc, "claw"), "changed": False, "credential_file": path, "warnings": []}
    if check_mode:
        return {**_public(None, "claw"), "changed": True, "credential_file": path, "warnings": []}
    client = client_factory()
    try:
        token = create_bucket_token(client, account_id, bucket)
    except TokensRefused as exc:
        warning = (f"claw {claw_id}: no per-claw R2 credentials ({exc}); the Mini's R2 tasks use the farm-wide R2 key "
                   "as before. Give the farm's Cloudflare API token the permission to create account API tokens "
                   "(Account > Account API Tokens > Edit) to scope each claw to its bucket.")
        return {**_public(None, "farm"), "changed": False, "credential_file": path, "warnings": [warning], "reason": warning}
    access_key_id, secret = s3_key_pair(token["id"], token["value"])
    try:
        if verify is not None:
            verify(access_key_id, secret)
        doc = {"format": STORE_FORMAT, "claw_id": claw_id, "bucket": bucket, "account_id": account_id,
               "token_id": token["id"], "token_name": token["name"], "access_key_id": access_key_id,
               "secret_access_key": secret, "created": int(now())}
        save(path, doc)
    except BaseException:
        # Never leave a live token nobody knows about.
        try:
            revoke_token(client, account_id, token["id"])
        except CredentialError:
            pass
        raise
    return {**_public(doc, "claw"), "changed": True, "credential_file": path, "warnings": []}


def query(store: str, claw_id: str) -> dict:
    """The stored pair (``scope: claw``) or ``scope: farm`` when the claw has none; never calls the API."""
    path = store_path(store, claw_id)
    doc = load(path, claw_id)
    return {**_public(doc, "claw" if doc else "farm"), "changed": False, "credential_file": path, "warnings": []}


def revoke(client_factory, account_id: str, store: str, claw_id: str, check_mode: bool = False) -> dict:
    """Revoke the claw's token and remove its credential file (after its last archive is verified).

    Returns:
        ``{"changed", "scope": "farm", "token_id", "revoked": bool, "credential_file", "warnings"}``.
    """
    path = store_path(store, claw_id)
    doc = load(path, claw_id)
    if doc is None:
        return {**_public(None, "farm"), "changed": False, "revoked": False, "credential_file": path, "warnings": []}
    result = {**_public(None, "farm"), "token_id": doc.get("token_id"), "bucket": doc.get("bucket"), "credential_file": path,
              "changed": True, "revoked": False, "warnings": []}
    if check_mode:
        return result
    result["revoked"] = revoke_token(client_factory(), doc.get("account_id") or account_id, doc["token_id"])
    os.unlink(path)
    return result


__all__ = ["CredentialError", "TokensRefused", "PERMISSION_GROUP", "s3_key_pair", "bucket_resource", "token_name",
           "store_path", "load", "save", "permission_group_id", "create_bucket_token", "revoke_token", "ensure", "query",
           "revoke"]
