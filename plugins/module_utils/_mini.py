# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Mini as data: its name, address, tunnel id, capacity, base port, timezone and status (PRIVATE to the collection).

One validation for everyone who writes or reads a Mini record: the API's ``POST /v1/minis`` and ``PATCH``
(through ``api/validation.py``) and the ``mirascope.clawfarm.farm`` inventory plugin, which turns the records into
host vars. A value that passes can go into an inventory as is: no Jinja2 braces, no leading ``-`` (an SSH option),
no whitespace or quotes get through.
"""

from __future__ import annotations

import ipaddress
import re

from ._claw import ClawInputError, port_family

STATUSES = ("active", "draining", "offline", "maintenance")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
TUNNEL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMEZONE = re.compile(r"^(UTC|[A-Za-z][A-Za-z0-9_+-]{0,31}(/[A-Za-z0-9_+-]{1,32}){0,2})$")
DEFAULTS = {"max_claws": 12, "base_port": 8100, "timezone": "UTC", "status": "active", "tunnel_id": None, "address": None}
# A Mini record's field -> the host var the playbooks read.
HOST_VARS = {"address": "ansible_host", "tunnel_id": "cf_tunnel_id", "max_claws": "claw_max_per_mini",
             "base_port": "claw_base_port", "timezone": "mini_timezone", "status": "mini_status"}


class MiniInputError(ValueError):
    """Bad Mini input; the message names the field and shows at most 64 characters of the value."""


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "...'"


def validate_name(value) -> str:
    """A Mini's inventory name: a letter or digit, then up to 127 of ``[A-Za-z0-9._-]``."""
    if not isinstance(value, str) or not NAME.match(value):
        raise MiniInputError(f"name must be 1-128 characters [A-Za-z0-9._-] starting with a letter or digit, got {_show(value)}")
    return value


def validate_address(value) -> str:
    """Where the control node reaches the Mini (``ansible_host``): a DNS name (a Tailscale MagicDNS name) or an IP
    address. Returned lowercase for names, in canonical form for addresses."""
    if not isinstance(value, str) or not value:
        raise MiniInputError(f"address must be a host name or an IP address, got {_show(value)}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not HOSTNAME.match(value):
        raise MiniInputError(f"address must be a host name or an IP address, got {_show(value)}")
    return value.lower()


def validate_tunnel_id(value):
    """The Cloudflare tunnel's id (a UUID, lowercase), or None/empty for a Mini without its own tunnel yet."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not TUNNEL_ID.match(value.lower()):
        raise MiniInputError(f"tunnel_id must be the tunnel's UUID, got {_show(value)}")
    return value.lower()


def validate_timezone(value) -> str:
    """An IANA time zone name (``Europe/Berlin``, ``UTC``) known to this system's zoneinfo."""
    if not isinstance(value, str) or not TIMEZONE.match(value):
        raise MiniInputError(f"timezone must be an IANA name such as Europe/Berlin, got {_show(value)}")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(value)
    except ImportError:  # pragma: no cover - Python < 3.9
        pass
    except Exception:
        raise MiniInputError(f"timezone {_show(value)} is not a known IANA time zone")
    return value


def validate_status(value) -> str:
    if value not in STATUSES:
        raise MiniInputError(f"status must be one of {', '.join(STATUSES)}, got {_show(value)}")
    return value


def _integer(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MiniInputError(f"{name} must be an integer from {low} to {high}, got {_show(value)}")
    return value


def validate_mini(record: dict, partial: bool = False) -> dict:
    """A Mini record checked field by field, defaults filled in (unless ``partial``: only the fields given, as for
    a change). Fields: name, address, tunnel_id, max_claws (0-1000), base_port (1024-65535; the port family of the
    last slot, ``_claw.port_family(base_port, max_claws - 1)``, must end below 65536), timezone, status.

    Raises:
        MiniInputError: an unknown field or the first bad value.
    """
    unknown = sorted(set(record) - {"name", *DEFAULTS})
    if unknown:
        raise MiniInputError(f"unknown Mini field(s): {', '.join(_show(k) for k in unknown)}")
    clean = {} if partial else dict(DEFAULTS)
    clean.update(record)
    if not partial and "name" not in clean:
        raise MiniInputError("name is required")
    checks = {"name": validate_name, "address": validate_address, "tunnel_id": validate_tunnel_id,
              "timezone": validate_timezone, "status": validate_status,
              "max_claws": lambda v: _integer("max_claws", v, 0, 1000), "base_port": lambda v: _integer("base_port", v, 1024, 65535)}
    for key, value in list(clean.items()):
        if value is None and key in ("address", "tunnel_id"):
            continue
        clean[key] = checks[key](value)
    if "base_port" in clean and clean.get("max_claws"):
        try:
            port_family(clean["base_port"], clean["max_claws"] - 1)  # the port plan (docs/port-plan.md)
        except ClawInputError as exc:
            raise MiniInputError(str(exc)) from None
    return clean


def host_vars(record: dict) -> dict:
    """The host vars of a (validated) Mini record: ``ansible_host``, ``cf_tunnel_id``, ``claw_max_per_mini``,
    ``claw_base_port``, ``mini_timezone``, ``mini_status``; fields that are None are left out (the inventory's
    group vars and the roles' defaults apply)."""
    return {HOST_VARS[key]: value for key, value in record.items() if key in HOST_VARS and value is not None}
