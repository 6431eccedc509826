# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cloudflare API calls for tunnel ingress and DNS, through the official ``cloudflare`` SDK (PRIVATE).

API: https://developers.cloudflare.com/api/resources/zero_trust/subresources/tunnels/subresources/cloudflared/subresources/configurations/
and https://developers.cloudflare.com/api/resources/dns/subresources/records/ (summary in
docs/reference/cloudflare-r2.md section 1).  The client is ``cloudflare.Cloudflare`` (v5),
given to every function here, so tests point it at a local stand-in with ``base_url``.

The tunnel configuration PUT replaces the whole document and takes no precondition, so
:func:`update_tunnel_ingress` serialises writers to one tunnel on this host with an exclusive
file lock and, after each write, reads the configuration back and redoes the cycle when another
writer (the dashboard, another controller) dropped its change.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from contextlib import contextmanager

from ._command import exclusive_lock
from ._ingress import IngressError, rules_equal

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
TUNNEL_TARGET_SUFFIX = ".cfargotunnel.com"


def api_argument_spec() -> dict:
    """AnsibleModule argument spec of the API options (documented in doc fragment ``cloudflare_api``)."""
    return dict(
        api_token=dict(type="str", no_log=True),
        api_base_url=dict(type="str", default=DEFAULT_BASE_URL),
        api_max_retries=dict(type="int", default=2),
        api_timeout=dict(type="float", default=30.0),
    )


class CloudflareError(RuntimeError):
    """An API call failed; the message names the call, the HTTP status and Cloudflare's error text."""


def make_client(api_token: str, base_url: str | None = None, max_retries: int = 2, timeout: float = 30.0):
    """A ``cloudflare.Cloudflare`` client (bearer token auth).

    The SDK retries 408/409/429/5xx and connection errors ``max_retries`` times with back-off,
    honouring ``retry-after`` up to 60 s.

    Raises:
        CloudflareError: the ``cloudflare`` package is not installed where the module runs.
    """
    try:
        import cloudflare
    except ImportError:
        raise CloudflareError(
            "the 'cloudflare' Python package is required for the Cloudflare API; run this task with delegate_to: localhost "
            "on a control node that has it (pip install cloudflare)"
        )
    return cloudflare.Cloudflare(api_token=api_token, base_url=base_url or DEFAULT_BASE_URL, max_retries=max_retries, timeout=timeout)


def describe_api_error(call: str, exc: Exception) -> str:
    """A one-line message for an SDK exception: call, HTTP status, Cloudflare error codes and messages, and a hint."""
    status = getattr(exc, "status_code", None)
    errors = getattr(exc, "errors", None) or []
    if not errors:
        body = getattr(exc, "body", None)
        if isinstance(body, dict):
            errors = body.get("errors") or []
    texts = []
    for err in errors:
        code = err.get("code") if isinstance(err, dict) else getattr(err, "code", None)
        message = err.get("message") if isinstance(err, dict) else getattr(err, "message", None)
        texts.append(f"{code}: {message}" if code is not None else str(message))
    detail = "; ".join(texts) if texts else type(exc).__name__ + (f": {exc}" if not status else "")
    hint = ""
    if status in (401, 403):
        hint = " (check the API token and its permissions: Account > Cloudflare Tunnel > Edit, Zone > DNS > Edit)"
    elif status == 429:
        hint = " (rate limited: Cloudflare blocks a token for 5 minutes after 1200 requests; retry later)"
    elif status is None:
        hint = " (could not reach the Cloudflare API; check api_base_url and the network)"
    where = f"HTTP {status}" if status else "no response"
    return f"Cloudflare API {call} failed ({where}): {detail}{hint}"


def _call(call: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if type(exc).__module__.partition(".")[0] == "cloudflare":
            raise CloudflareError(describe_api_error(call, exc))
        raise


def get_tunnel(client, account_id: str, tunnel_id: str) -> dict:
    """The tunnel object (``config_src``, ``remote_config``, ``status``, ...) as a JSON-spelled dict."""
    tunnel = _call("GET tunnel", client.zero_trust.tunnels.cloudflared.get, tunnel_id, account_id=account_id)
    return tunnel.to_dict(mode="json") if tunnel is not None else {}


def get_tunnel_config(client, account_id: str, tunnel_id: str) -> tuple[int | None, dict]:
    """Read a remotely managed tunnel's configuration.

    Returns:
        ``(version, config)``; ``config`` keeps every key the API sent (API spelling: ``ingress``,
        ``originRequest``, ``warp-routing``) so writing it back loses nothing.
    """
    result = _call("GET tunnel configuration", client.zero_trust.tunnels.cloudflared.configurations.get, tunnel_id, account_id=account_id)
    data = result.to_dict(mode="json") if result is not None else {}
    return data.get("version"), dict(data.get("config") or {})


def put_tunnel_config(client, account_id: str, tunnel_id: str, config: dict) -> int | None:
    """Replace the tunnel's configuration; returns the new ``version``."""
    result = _call("PUT tunnel configuration", client.zero_trust.tunnels.cloudflared.configurations.update,
                   tunnel_id, account_id=account_id, config=config)
    data = result.to_dict(mode="json") if result is not None else {}
    return data.get("version")


def _clean_rules(rules) -> list:
    # The SDK reads the catch-all's hostname as None; drop None values so rules compare and write back cleanly.
    return [{k: v for k, v in rule.items() if v is not None} for rule in rules or []]


@contextmanager
def tunnel_lock(lock_dir: str, tunnel_id: str, timeout: float = 300.0):
    """Hold an exclusive lock for one tunnel on this host (``fcntl.flock`` on ``<lock_dir>/cf-tunnel-<sha>.lock``).

    Serialises every read-modify-write of the tunnel's configuration made from this control node:
    parallel forks, parallel ``ansible-playbook`` runs and API jobs (the wait is :func:`_command.exclusive_lock`).

    Raises:
        CloudflareError: the lock was not obtained within ``timeout`` seconds.
    """
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    name = hashlib.sha256(tunnel_id.encode()).hexdigest()[:16]
    path = os.path.join(lock_dir, f"cf-tunnel-{name}.lock")

    def stuck(lock_path, waited):
        return CloudflareError(f"another run has held the lock for tunnel {tunnel_id} ({lock_path}) for {waited:.0f} s; is it stuck?")

    with exclusive_lock(path, timeout=timeout, timeout_error=stuck):
        yield path


def update_tunnel_ingress(client, account_id: str, tunnel_id: str, transform, check_mode: bool = False,
                          attempts: int = 10, settle: float = 0.5, sleep=time.sleep) -> dict:
    """Read-modify-write-verify the ingress of a remotely managed tunnel.

    The PUT replaces the whole configuration, so a writer that read before our PUT and writes after it
    drops our rule. Writers on this control node are serialised by :func:`tunnel_lock`; writers elsewhere
    are healed here: after the PUT the configuration is read back at once and again ``settle`` seconds
    later, and the cycle repeats (with jittered back-off) until both reads carry our change.

    Args:
        transform: ``rules -> rules``; must be idempotent (``transform(transform(x)) == transform(x)``).
        attempts: full GET/PUT/GET cycles before giving up when the read-back lacks our change.
        settle: seconds between the immediate read-back and the second one (0 disables the second read).

    Returns:
        ``{"changed", "before", "after", "version_before", "version_after", "attempts", "warnings"}``;
        ``before``/``after`` are rule lists.

    Raises:
        CloudflareError: an API call failed after the SDK's retries, or the change did not stick
            after ``attempts`` cycles.
        IngressError: the resulting configuration would not pass cloudflared's validation.
    """
    warnings = []
    first_before = None
    version_before = None
    for attempt in range(1, attempts + 1):
        version, config = get_tunnel_config(client, account_id, tunnel_id)
        before = _clean_rules(config.get("ingress"))
        if first_before is None:
            first_before, version_before = before, version
        after = transform(before)
        if rules_equal(before, after):
            return {"changed": attempt > 1, "before": first_before, "after": before, "version_before": version_before,
                    "version_after": version, "attempts": attempt, "warnings": warnings}
        if check_mode:
            return {"changed": True, "before": before, "after": after, "version_before": version,
                    "version_after": version, "attempts": attempt, "warnings": warnings}
        new_config = dict(config)
        new_config["ingress"] = after
        new_version = put_tunnel_config(client, account_id, tunnel_id, new_config)
        check_version, check_config = get_tunnel_config(client, account_id, tunnel_id)
        check_rules = _clean_rules(check_config.get("ingress"))
        if (version is not None and check_version is not None and check_version > version + 1) or (
                new_version is not None and check_version is not None and check_version != new_version):
            warnings.append(
                f"tunnel {tunnel_id}: configuration version went from {version} to {check_version} during this write; "
                "another writer changed it at the same time (its change may have been overwritten; this run re-checked its own rule)"
            )
        if rules_equal(transform(check_rules), check_rules):
            if settle > 0:
                sleep(settle)
                check_version, check_config = get_tunnel_config(client, account_id, tunnel_id)
                check_rules = _clean_rules(check_config.get("ingress"))
            if rules_equal(transform(check_rules), check_rules):
                return {"changed": True, "before": first_before, "after": check_rules, "version_before": version_before,
                        "version_after": check_version, "attempts": attempt, "warnings": warnings}
        sleep(random.uniform(0.05, min(0.2 * 2 ** attempt, 3.0)))  # full jitter: racing writers drift apart
    raise CloudflareError(f"tunnel {tunnel_id}: the ingress change did not stick after {attempts} write attempts (concurrent writers?)")


def tunnel_target(tunnel_id: str) -> str:
    """The CNAME target of a tunnel: ``<tunnel_id>.cfargotunnel.com``."""
    return f"{tunnel_id}{TUNNEL_TARGET_SUFFIX}"


def _records(client, zone_id: str, name: str) -> list[dict]:
    page = _call("GET DNS records", client.dns.records.list, zone_id=zone_id, name={"exact": name})
    return [r.to_dict(mode="json") for r in page]


def ensure_tunnel_cname(client, zone_id: str, name: str, tunnel_id: str, check_mode: bool = False) -> dict:
    """Make ``name`` a proxied CNAME to ``<tunnel_id>.cfargotunnel.com`` (auto TTL).

    A CNAME pointing at another tunnel (the claw moved Minis) is updated; any other record on the
    name (an A/AAAA, or a CNAME pointing outside Cloudflare Tunnel) is left alone and reported.

    Returns:
        ``{"changed", "action": "none"|"create"|"update", "before": record|None, "after": record|None}``.

    Raises:
        CloudflareError: an API call failed, or another record owns the name.
    """
    target = tunnel_target(tunnel_id)
    existing = _records(client, zone_id, name)
    others = [r for r in existing if r.get("type") != "CNAME" or not str(r.get("content", "")).endswith(TUNNEL_TARGET_SUFFIX)]
    if others:
        r = others[0]
        raise CloudflareError(f"DNS name {name} already has a {r.get('type')} record pointing at {r.get('content')}; "
                              "not a Cloudflare Tunnel route, so it is left alone. Remove it by hand if it is stale.")
    desired = {"type": "CNAME", "name": name, "content": target, "proxied": True, "ttl": 1}
    if existing:
        record = existing[0]
        if record.get("content") == target and record.get("proxied") is True:
            return {"changed": False, "action": "none", "before": record, "after": record}
        if check_mode:
            return {"changed": True, "action": "update", "before": record, "after": {**record, **desired}}
        updated = _call("PUT DNS record", client.dns.records.update, record["id"], zone_id=zone_id, **desired)
        return {"changed": True, "action": "update", "before": record, "after": updated.to_dict(mode="json")}
    if check_mode:
        return {"changed": True, "action": "create", "before": None, "after": desired}
    try:
        created = _call("POST DNS record", client.dns.records.create, zone_id=zone_id, **desired)
        after = created.to_dict(mode="json")
    except CloudflareError:
        # A create retried after a timeout may answer 81053/81058 although the first one worked: re-list.
        again = [r for r in _records(client, zone_id, name) if r.get("type") == "CNAME" and r.get("content") == target]
        if not again:
            raise
        after = again[0]
    return {"changed": True, "action": "create", "before": None, "after": after}


def remove_tunnel_cname(client, zone_id: str, name: str, tunnel_id: str, check_mode: bool = False) -> dict:
    """Delete ``name``'s CNAME only if it points at this tunnel; never a record pointing elsewhere.

    Returns:
        ``{"changed", "action": "none"|"delete", "before": record|None, "after": None, "skipped": str|None}``.
    """
    target = tunnel_target(tunnel_id)
    existing = _records(client, zone_id, name)
    mine = [r for r in existing if r.get("type") == "CNAME" and r.get("content") == target]
    skipped = None
    if not mine:
        if existing:
            skipped = f"{name} points at {existing[0].get('content')}, not at this tunnel; left alone"
        return {"changed": False, "action": "none", "before": existing[0] if existing else None, "after": None, "skipped": skipped}
    if not check_mode:
        for record in mine:
            _call("DELETE DNS record", client.dns.records.delete, record["id"], zone_id=zone_id)
    return {"changed": True, "action": "delete", "before": mine[0], "after": None, "skipped": None}


__all__ = [
    "CloudflareError", "IngressError", "api_argument_spec", "make_client", "describe_api_error", "get_tunnel", "get_tunnel_config",
    "put_tunnel_config", "tunnel_lock", "update_tunnel_ingress", "tunnel_target", "ensure_tunnel_cname", "remove_tunnel_cname",
]
