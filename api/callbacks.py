"""Where job webhooks may go, and how they are sent.

A request's ``callback_url`` is typed by a customer-facing backend; left open it would let the API probe the
control node's own network (loopback services, the cloud metadata address 169.254.169.254, private hosts) and report
whether they answered. So:

- its host must be one the operator allowed (``CLAWFARM_API_CALLBACK_HOSTS``, or the host of the operator's own
  ``CLAWFARM_API_WEBHOOK_URL``), scheme http or https, no user info;
- every address the host resolves to must be global (not loopback, private, link-local, multicast, reserved or
  unspecified), checked when the request comes in (422) and again when each delivery is sent, and the delivery
  connects to the very address that was checked (no second DNS answer: DNS rebinding gets nowhere). For https the
  TLS handshake still names and verifies the host (SNI ``sni_hostname``).

The operator's own ``webhook_url`` is trusted as configured and is sent to as is.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

import httpx


class CallbackRefused(ValueError):
    """A callback URL the service will not call; the message says why (it shows the host, never a path or query)."""


def _port(parts) -> int:
    try:
        port = parts.port
    except ValueError:
        raise CallbackRefused("callback_url has an invalid port")
    return port or (443 if parts.scheme == "https" else 80)


def _parts(url: str):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("callback_url must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("callback_url must not carry user information")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise CallbackRefused("callback_url has no host")
    return parts, host


def resolve_global(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to; all must be global unicast addresses.

    Raises:
        CallbackRefused: the host does not resolve, or one of its addresses is loopback, private, link-local,
            multicast, reserved or unspecified (an IPv4-mapped IPv6 address is judged by its IPv4 address).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise CallbackRefused(f"callback_url host {host[:64]!r} does not resolve")
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        judged = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else address
        if (not judged.is_global or judged.is_multicast or judged.is_loopback or judged.is_link_local or judged.is_private
                or judged.is_reserved or judged.is_unspecified):
            raise CallbackRefused(f"callback_url host {host[:64]!r} resolves to {judged}, which is not a public address")
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise CallbackRefused(f"callback_url host {host[:64]!r} does not resolve")
    return addresses


def check_callback_url(url: str, allowed_hosts: list[str], webhook_url: str | None) -> str:
    """Check a request's ``callback_url`` (see the module docstring) and return it unchanged.

    Args:
        allowed_hosts: lowercase host names from ``CLAWFARM_API_CALLBACK_HOSTS``.
        webhook_url: the operator's webhook URL; its host is allowed too.
    Raises:
        CallbackRefused: the host is not allowed or does not resolve to global addresses only.
    """
    parts, host = _parts(url)
    allowed = set(allowed_hosts)
    if webhook_url:
        allowed.add((urlsplit(webhook_url).hostname or "").rstrip(".").lower())
    if host not in allowed:
        raise CallbackRefused(f"callback_url host {host[:64]!r} is not allowed; the operator allows "
                              f"{', '.join(sorted(h for h in allowed if h)) or 'none'} (CLAWFARM_API_CALLBACK_HOSTS)")
    resolve_global(host, _port(parts))
    return url


def post_checked(url: str, body: bytes, headers: dict, timeout: float = 10) -> httpx.Response:
    """POST to a request's callback URL through an address checked right now (never the loopback, a private or a
    link-local network, whatever DNS answers this time); redirects are not followed.

    Raises:
        CallbackRefused: the host now resolves to a non-global address.
        httpx.HTTPError: the delivery failed.
    """
    parts, host = _parts(url)
    port = _port(parts)
    address = resolve_global(host, port)[0]
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    default_port = 443 if parts.scheme == "https" else 80
    headers = {**headers, "Host": host if port == default_port else f"{host}:{port}"}
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        return client.post(pinned, content=body, headers=headers, extensions=extensions)
