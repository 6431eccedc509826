# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cloudflare Tunnel ingress rules: validation, merge, removal and diff (PRIVATE to the collection).

Plain functions on plain data, shared by both modes of ``cf_tunnel_ingress`` (a local
``config.yml`` and the remote tunnel configuration API).  A rule is a dict in the API/JSON
spelling: ``{"hostname": str, "path": str, "service": str, "originRequest": dict}``; only
``service`` is required, and a rule without hostname and path is the catch-all.

The validation mirrors cloudflared's own (``ingress/ingress.go``, ``ingress/rule.go`` of
cloudflared 2026.8; summarised in docs/reference/cloudflare-r2.md section 2.2), so the module
refuses a configuration that ``cloudflared tunnel ingress validate`` would reject.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from urllib.parse import urlsplit

CATCH_ALL_SERVICE = "http_status:404"
# Services a claw's rule may point at: HTTP(S)/WebSocket origins on the Mini's loopback only.
LOOPBACK_SCHEMES = ("http", "https", "ws", "wss")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# Every service form cloudflared accepts (ingress/ingress.go parseService).
URL_SCHEMES = ("http", "https", "ws", "wss", "tcp", "ssh", "rdp", "smb")
NAMED_SERVICES = ("hello_world", "bastion", "socks-proxy")
HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# RE2 (Go regexp) has no lookaround and no backreferences; Python's re has both.
RE2_UNSUPPORTED = re.compile(r"\(\?[=!]|\(\?<[=!]|\\[1-9]|\(\?P=")


class IngressError(ValueError):
    """Bad input or a configuration cloudflared would reject; the message says which rule and why."""


def validate_hostname(hostname, domain: str, allow_wildcard: bool = False) -> str:
    """Check a public hostname for an ingress rule and return it lowercased.

    Args:
        hostname: e.g. ``claw-1a2b3c4d-....claws.example.com``.
        domain: the claws domain (or zone) the hostname must be inside, e.g. ``claws.example.com``.
        allow_wildcard: accept a leading ``*.`` (cloudflared's only wildcard form).

    Raises:
        IngressError: empty, not a DNS name, a port, a wildcard not allowed or not leading,
            or outside ``domain``.
    """
    if not isinstance(hostname, str) or not hostname.strip():
        raise IngressError("hostname is required")
    name = hostname.strip().lower().rstrip(".")
    dom = validate_domain(domain)
    if ":" in name:
        raise IngressError(f"hostname {name!r} must not contain a port (cloudflared matches host names without ports)")
    if "*" in name:
        if not allow_wildcard:
            raise IngressError(f"hostname {name!r}: wildcards are not allowed here (set allow_wildcard to manage a wildcard rule)")
        if name.count("*") > 1 or not name.startswith("*."):
            raise IngressError(f"hostname {name!r}: cloudflared accepts only one wildcard, as the leading '*.' label")
    labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
    if len(name) > 253 or not all(HOSTNAME_LABEL.match(label) for label in labels):
        raise IngressError(f"hostname {name!r} is not a valid DNS name (letters, digits, '-', labels of 1-63 characters)")
    if name != dom and not name.endswith("." + dom):
        raise IngressError(f"hostname {name!r} is outside the domain {dom!r}; claws are only routed under their zone")
    if name == dom:
        raise IngressError(f"hostname {name!r} is the domain apex; a claw needs its own name under {dom!r}")
    return name


def validate_domain(domain) -> str:
    """Return a lowercased DNS domain such as ``claws.example.com``.

    Raises:
        IngressError: empty or not a DNS name.
    """
    if not isinstance(domain, str) or not domain.strip():
        raise IngressError("domain is required (the claws domain, e.g. claws.example.com)")
    dom = domain.strip().lower().rstrip(".")
    if len(dom) > 253 or "." not in dom or not all(HOSTNAME_LABEL.match(label) for label in dom.split(".")):
        raise IngressError(f"domain {dom!r} is not a valid DNS domain")
    return dom


def validate_loopback_service(service) -> str:
    """Check that a claw's service is an HTTP(S)/WebSocket URL on the Mini's loopback with a port and no path.

    Returns:
        The service URL as given (scheme lowercased), e.g. ``http://localhost:8100``.

    Raises:
        IngressError: another scheme, another host, no port, or a path (cloudflared rejects even ``/``).
    """
    if not isinstance(service, str) or not service:
        raise IngressError("service is required, e.g. http://localhost:8100")
    parts = urlsplit(service)
    if parts.scheme.lower() not in LOOPBACK_SCHEMES:
        raise IngressError(f"service {service!r} must be an http://, https://, ws:// or wss:// URL on the Mini's loopback")
    host = (parts.hostname or "").lower()
    if host not in LOOPBACK_HOSTS:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise IngressError(f"service {service!r} is not a loopback URL: claws are only reachable on localhost")
    try:
        port = parts.port
    except ValueError:
        raise IngressError(f"service {service!r} has an invalid port")
    if port is None:
        raise IngressError(f"service {service!r} needs an explicit port, e.g. http://localhost:8100")
    if parts.path or parts.query or parts.fragment:
        raise IngressError(f"service {service!r} must not have a path (cloudflared rejects service URLs with a path, even '/')")
    return parts.scheme.lower() + service[len(parts.scheme):]


def validate_path(path) -> str | None:
    """Check an ingress ``path`` (an unanchored Go regexp). ``None``/empty means no path.

    Raises:
        IngressError: not a valid regular expression, or uses a construct Go's RE2 lacks
            (lookahead/lookbehind, backreferences).
    """
    if path is None or path == "":
        return None
    if not isinstance(path, str):
        raise IngressError(f"path must be a string regular expression, got {type(path).__name__}")
    if RE2_UNSUPPORTED.search(path):
        raise IngressError(f"path {path!r} uses lookaround or a backreference, which cloudflared's Go regexp does not support")
    try:
        re.compile(path)
    except re.error as exc:
        raise IngressError(f"path {path!r} is not a valid regular expression: {exc}")
    return path


def is_catch_all(rule: dict) -> bool:
    """True for a rule that matches every request: no hostname (or ``*``) and no path."""
    return rule.get("hostname") in (None, "", "*") and not rule.get("path")


def _check_service(index: int, service) -> None:
    where = f"Rule #{index + 1}"
    if not isinstance(service, str) or not service:
        raise IngressError(f"{where} has no service")
    if service in NAMED_SERVICES:
        return
    if service.startswith("http_status:"):
        code = service[len("http_status:"):]
        if not code.isdigit() or not 100 <= int(code) <= 999:
            raise IngressError(f"{where}: invalid HTTP status code in {service!r} (100-999)")
        return
    if service.startswith(("unix:", "unix+tls:")):
        if not service.split(":", 1)[1]:
            raise IngressError(f"{where}: {service!r} needs a socket path")
        return
    parts = urlsplit(service)
    if parts.scheme not in URL_SCHEMES or not parts.hostname:
        raise IngressError(f"{where}: {service!r} is not a service cloudflared knows "
                           "(URL with scheme and host, http_status:N, unix:path, hello_world, bastion)")
    if parts.path:
        raise IngressError(f"{where}: {service!r} is an address with a path; ingress services must not have a path, remove {parts.path!r}")


def validate_ingress(rules) -> None:
    """Apply cloudflared's ingress validation to a whole rule list.

    Raises:
        IngressError: no rules, a rule that is not a mapping, a bad hostname (port, misplaced
            wildcard), a bad path regexp or service, a catch-all before the last rule, or a last
            rule that is not a catch-all.  Messages follow cloudflared's wording and number rules
            from 1.
    """
    if not isinstance(rules, list) or not rules:
        raise IngressError("The config file doesn't contain any ingress rules")
    last = len(rules) - 1
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise IngressError(f"Rule #{index + 1} is not a mapping")
        hostname = rule.get("hostname")
        if hostname not in (None, ""):
            if not isinstance(hostname, str):
                raise IngressError(f"Rule #{index + 1}: hostname must be a string")
            if ":" in hostname:
                raise IngressError(f"Hostname {hostname!r} cannot contain a port")
            if hostname.count("*") > 1 or ("*" in hostname and hostname != "*" and not hostname.startswith("*.")):
                raise IngressError(f"Hostname {hostname!r} is invalid: only one wildcard, as the first label, is allowed")
        try:
            validate_path(rule.get("path"))
        except IngressError as exc:
            raise IngressError(f"Rule #{index + 1}: {exc}")
        _check_service(index, rule.get("service"))
        if is_catch_all(rule) and index != last:
            raise IngressError(
                f"Rule #{index + 1} is matching the hostname '{hostname or ''}', but this will match every hostname, "
                "meaning the rules which follow it will never be triggered."
            )
    if not is_catch_all(rules[last]):
        raise IngressError("The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)")


def make_rule(hostname: str, service: str, path: str | None = None, origin_request: dict | None = None) -> dict:
    """Build one rule in the API/JSON spelling (keys omitted when empty)."""
    rule = {"hostname": hostname}
    if path:
        rule["path"] = path
    rule["service"] = service
    if origin_request:
        rule["originRequest"] = copy.deepcopy(origin_request)
    return rule


def _same_match(rule: dict, hostname: str, path: str | None) -> bool:
    return (rule.get("hostname") or "").lower() == hostname and (rule.get("path") or None) == (path or None)


def find_rule(rules: list, hostname: str, path: str | None = None) -> dict | None:
    """The rule for ``hostname`` (+ ``path``), or ``None``."""
    for rule in rules or []:
        if _same_match(rule, hostname, path):
            return rule
    return None


def _equivalent(a: dict, b: dict) -> bool:
    def norm(rule):
        return {k: v for k, v in rule.items() if v not in (None, "", {}, [])}
    return norm(a) == norm(b)


def merge_rule(rules: list, rule: dict) -> list:
    """Return a new rule list with ``rule`` present, everything else kept as it was, in order.

    An existing rule with the same hostname and path is replaced in place (extra keys such as a
    per-rule ``originRequest`` come from ``rule``); otherwise the rule goes immediately before the
    catch-all.  A list without a catch-all gets ``http_status:404`` appended, so the result always
    ends with one.
    """
    result = [copy.deepcopy(r) for r in rules or []]
    hostname, path = rule["hostname"], rule.get("path")
    for index, existing in enumerate(result):
        if _same_match(existing, hostname, path):
            if not _equivalent(existing, rule):
                result[index] = copy.deepcopy(rule)
            return _ensure_catch_all(result)
    result = _ensure_catch_all(result)
    result.insert(len(result) - 1, copy.deepcopy(rule))
    return result


def remove_rule(rules: list, hostname: str, path: str | None = None) -> list:
    """Return a new rule list without the rule(s) for ``hostname`` (+ ``path``); the rest unchanged."""
    result = [copy.deepcopy(r) for r in rules or [] if not _same_match(r, hostname, path)]
    return _ensure_catch_all(result) if result else [{"service": CATCH_ALL_SERVICE}]


def _ensure_catch_all(rules: list) -> list:
    if not rules or not is_catch_all(rules[-1]):
        rules.append({"service": CATCH_ALL_SERVICE})
    return rules


def rules_equal(a: list, b: list) -> bool:
    """Compare two rule lists after dropping empty keys (``originRequest: {}`` equals no key)."""
    return len(a or []) == len(b or []) and all(_equivalent(x, y) for x, y in zip(a or [], b or []))


def describe_rule(rule: dict) -> str:
    """One line for a rule, as used in diffs and messages: ``hostname[path] -> service``."""
    host = rule.get("hostname") or "*"
    path = f" path={rule['path']}" if rule.get("path") else ""
    extra = f" originRequest={json.dumps(rule['originRequest'], sort_keys=True)}" if rule.get("originRequest") else ""
    return f"{host}{path} -> {rule.get('service')}{extra}"


def rules_diff(before: list, after: list, label: str = "ingress") -> dict:
    """An Ansible ``diff`` dict with one line per rule (rule-level diff)."""
    return {
        "before_header": f"{label} (before)",
        "after_header": f"{label} (after)",
        "before": "".join(describe_rule(r) + "\n" for r in before or []),
        "after": "".join(describe_rule(r) + "\n" for r in after or []),
    }


def parse_config_text(text: str, yaml_module=None) -> dict:
    """Parse a cloudflared ``config.yml``.

    JSON is valid YAML, so a file written without a YAML library is read back with :mod:`json`;
    a hand-edited YAML file needs PyYAML (pass the imported module as ``yaml_module``).

    Returns:
        The document as a dict (``{}`` for an empty file).

    Raises:
        IngressError: not a mapping, not parseable, or YAML without a YAML library.
    """
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        if yaml_module is None:
            raise IngressError("config.yml is YAML but PyYAML is not installed in the Python running the module; run bootstrap's mini_python role")
        try:
            doc = yaml_module.safe_load(text)
        except Exception as exc:  # yaml.YAMLError and its subclasses
            raise IngressError(f"config.yml is not valid YAML: {exc}")
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise IngressError("config.yml must be a mapping at the top level")
    return doc


def dump_config_text(doc: dict, yaml_module=None) -> str:
    """Serialise a ``config.yml`` document, keys in their original order (YAML when PyYAML is there, else JSON)."""
    if yaml_module is not None:
        return yaml_module.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return json.dumps(doc, indent=2) + "\n"


def tunnel_argument_spec() -> dict:
    """AnsibleModule argument spec of which tunnel (documented in doc fragment ``cf_tunnel``)."""
    return dict(
        mode=dict(type="str", choices=["local", "api"], default="local"),
        config_path=dict(type="path", default="/etc/cloudflared/config.yml"),
        account_id=dict(type="str"),
        tunnel_id=dict(type="str"),
    )
