# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Claw naming, input validation, the claw's dotenv file and gateway config (PRIVATE to the collection).

A claw is identified by a UUID.  Everything else is derived from it (the design's
naming): user ``claw-<first 8 hex>``, launchd label ``<prefix>.<claw_id>``, home
``/Users/<user>``, OpenClaw state dir ``<home>/.openclaw``.  Validation happens on the
control node, before any command reaches a Mini.
"""

from __future__ import annotations

import re

CLAW_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LABEL_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOKEN_VAR = "CLAW_GATEWAY_TOKEN"
# Variables the claw's launchd job sets itself; a claw_env entry may not shadow them.
RESERVED_ENV = frozenset({
    "HOME", "USER", "LOGNAME", "SHELL", "PATH", "TMPDIR", "XDG_CACHE_HOME", "LANG",
    "OPENCLAW_STATE_DIR", "OPENCLAW_CONFIG_PATH", "OPENCLAW_HOME", "OPENCLAW_SUPERVISOR_MODE",
    "OPENCLAW_DISABLE_BONJOUR", "OPENCLAW_NO_AUTO_UPDATE", "OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PORT",
    "OPENCLAW_LAUNCHD_LABEL", "NODE_OPTIONS", "NODE_COMPILE_CACHE", TOKEN_VAR,
})
MIN_TOKEN_LENGTH = 32


class ClawInputError(ValueError):
    """Bad input; the message says what is wrong without echoing more than 64 characters of it."""


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "...'"


def validate_claw_id(value) -> str:
    """Return the claw id in canonical form (lowercase UUID with dashes).

    Raises:
        ClawInputError: missing, not a string, or not ``8-4-4-4-12`` hex digits.  Shell
            metacharacters, paths and long text never get past this.
    """
    if value is None or value == "":
        raise ClawInputError("claw_id is required: pass -e claw_id=<uuid>")
    if not isinstance(value, str) or len(value) != 36 or not CLAW_ID.match(value.lower()):
        raise ClawInputError(f"claw_id must be a UUID such as 1a2b3c4d-0000-4000-8000-000000000001, got {_show(value)}")
    return value.lower()


def claw_identity(claw_id, label_prefix: str = "com.mirascope.claw", users_dir: str = "/Users") -> dict:
    """Names of everything that belongs to one claw.

    Returns:
        ``{"claw_id", "user", "label", "home", "state_dir", "real_name"}``; ``real_name`` records
        the full id in the account so that two ids sharing 8 hex characters are told apart.

    Raises:
        ClawInputError: invalid claw id or label prefix.
    """
    claw_id = validate_claw_id(claw_id)
    if not isinstance(label_prefix, str) or not LABEL_PREFIX.match(label_prefix):
        raise ClawInputError(f"claw_label_prefix must be reverse-DNS words such as com.mirascope.claw, got {_show(label_prefix)}")
    user = f"claw-{claw_id[:8]}"
    home = f"{users_dir.rstrip('/')}/{user}"
    return {
        "claw_id": claw_id,
        "user": user,
        "label": f"{label_prefix}.{claw_id}",
        "home": home,
        "state_dir": f"{home}/.openclaw",
        "real_name": f"claw {claw_id}",
    }


# The port plan (docs/port-plan.md). OpenClaw derives from a gateway port P a browser control port P+2 and a CDP
# range P+11..P+110, opened when the claw's browser is used: each slot of a Mini gets a family of PORT_STRIDE ports
# from claw_base_port + slot * PORT_STRIDE, so no claw's derived ports meet a neighbour's.
PORT_STRIDE = 128
BROWSER_CONTROL_OFFSET = 2
CDP_FIRST_OFFSET = 11
CDP_LAST_OFFSET = 110


def port_family(base_port: int, slot: int) -> dict:
    """The ports of one claw slot: the one place a claw's ports are computed.

    Returns:
        ``{"slot", "gateway", "control", "cdp_first", "cdp_last"}``: the gateway port ``base_port + slot * PORT_STRIDE``,
        OpenClaw's browser control port (gateway + 2) and its CDP range (gateway + 11 .. gateway + 110).

    Raises:
        ClawInputError: a negative slot, a base port below 1024 or a family that would end above 65535.
    """
    base_port, slot = int(base_port), int(slot)
    if slot < 0:
        raise ClawInputError(f"a claw slot is 0 or more, got {slot}")
    gateway = base_port + slot * PORT_STRIDE
    if base_port < 1024 or gateway + CDP_LAST_OFFSET > 65535:
        raise ClawInputError(f"slot {slot} from claw_base_port {base_port} gives ports {gateway}-{gateway + CDP_LAST_OFFSET}, "
                             "outside 1024-65535 (lower claw_base_port or claw_max_per_mini)")
    return {"slot": slot, "gateway": gateway, "control": gateway + BROWSER_CONTROL_OFFSET,
            "cdp_first": gateway + CDP_FIRST_OFFSET, "cdp_last": gateway + CDP_LAST_OFFSET}


def family_of_port(gateway_port: int) -> tuple:
    """``(first, last)``: the ports a gateway on ``gateway_port`` may listen on (itself .. the end of its CDP range).

    Also right for a claim off the plan (a claw still on the old consecutive layout): OpenClaw derives from the port it runs on.
    """
    return int(gateway_port), int(gateway_port) + CDP_LAST_OFFSET


def families_overlap(port_a: int, port_b: int) -> bool:
    """True when the port families of gateways on ``port_a`` and ``port_b`` share a port."""
    return abs(int(port_a) - int(port_b)) <= CDP_LAST_OFFSET


def gateway_ports(base_port: int, max_claws: int) -> list:
    """The gateway port of every slot of a Mini, slot 0 first."""
    return [port_family(base_port, slot)["gateway"] for slot in range(int(max_claws))]


def slot_of(port, base_port: int, max_claws: int):
    """The slot whose gateway port is ``port``, or None when ``port`` is off the plan (e.g. the old consecutive layout)."""
    ports = gateway_ports(base_port, max_claws)
    return ports.index(int(port)) if int(port) in ports else None


def free_gateway_ports(claims: dict, base_port: int, max_claws: int, claw_id=None) -> list:
    """Gateway ports a claw may claim: unclaimed slots whose family meets no other claw's family.

    Args:
        claims: ``{port: claw_id}`` (read_port_claims).
        claw_id: the claw that claims; its own claims do not count (a claw moving off the old layout).
    """
    others = [int(port) for port, owner in claims.items() if owner != claw_id]
    return [port for port in gateway_ports(base_port, max_claws)
            if int(port) not in claims and not any(families_overlap(port, other) for other in others)]


def port_capacity(claims: dict, base_port: int, max_claws: int) -> dict:
    """``{"used", "free_slots", "free_ports"}`` of a Mini: claws that hold a claim, slots left for new claws
    (no more than ``max_claws`` claws in all, each on a family that meets no other) and their gateway ports."""
    owners = set(claims.values())
    free = free_gateway_ports(claims, base_port, max_claws)
    room = max(0, int(max_claws) - len(owners))
    return {"used": len(owners), "free_slots": min(room, len(free)), "free_ports": free[:room]}


def validate_port(port, base_port: int, max_claws: int) -> int:
    """A claw port must be the gateway port of one of the Mini's slots (port_family).  Raises ClawInputError."""
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ClawInputError(f"claw_port must be an integer, got {_show(port)}")
    ports = gateway_ports(base_port, max_claws)
    if port not in ports:
        raise ClawInputError(f"claw_port {port} is not a slot of this Mini: slot gateway ports are {base_port} + slot x {PORT_STRIDE}, "
                             f"{ports[0]}-{ports[-1]} (claw_base_port, claw_max_per_mini; e.g. {', '.join(map(str, ports[:3]))})")
    return port


def overlapping_claims(claims: dict) -> list:
    """Pairs ``(port_a, port_b)`` of claims (``{port: claw_id}``) of different claws whose port families overlap."""
    ports = sorted(int(port) for port in claims)
    return [(a, b) for i, a in enumerate(ports) for b in ports[i + 1:]
            if families_overlap(a, b) and claims.get(a, claims.get(str(a))) != claims.get(b, claims.get(str(b)))]


def validate_env(env) -> dict:
    """Check ``claw_env`` (the claw's secrets and settings) and return it with string values.

    Raises:
        ClawInputError: not a dict, a name that is not a valid environment variable name, a reserved
            name the job sets itself, or a value with a newline or NUL.  Values are never shown.
    """
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise ClawInputError("claw_env must be a mapping of environment variable names to values")
    clean = {}
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise ClawInputError(f"claw_env key {_show(name)} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if name in RESERVED_ENV:
            raise ClawInputError(f"claw_env key {name} is set by the claw's launchd job and cannot be overridden")
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            raise ClawInputError(f"claw_env[{name}] must be a string or a number")
        text = str(value)
        if "\n" in text or "\r" in text or "\0" in text:
            raise ClawInputError(f"claw_env[{name}] contains a newline or NUL, which a dotenv file cannot hold")
        clean[name] = text
    return clean


def validate_env_unset(names) -> list:
    """Check ``claw_env_unset`` (names to remove from the claw's env) and return them sorted, without duplicates.

    Raises:
        ClawInputError: not a list of valid environment variable names, or a reserved name (the token is changed
            with ``gateway_token``, never unset).
    """
    if names is None:
        return []
    if isinstance(names, str) or not isinstance(names, (list, tuple, set)):
        raise ClawInputError("claw_env_unset must be a list of environment variable names")
    for name in names:
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise ClawInputError(f"claw_env_unset entry {_show(name)} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if name in RESERVED_ENV:
            raise ClawInputError(f"claw_env_unset entry {name} is set by the claw's launchd job and cannot be removed")
    return sorted(set(names))


def desired_env(current, replace=None, set_=None, unset=None):
    """The claw's env after a change: settings are changed only when asked.

    Args:
        current: the env in the claw's ``.env`` now, without the token (``None``/``{}`` when there is none).
        replace: ``claw_env``: when not ``None``, the new env as a whole (validated); ``None`` keeps ``current``.
        set_: ``claw_env_set``: names to add or change (validated).
        unset: ``claw_env_unset``: names to remove (validated); removing a name that is not there is no change.

    Returns:
        ``(env, dropped)``: the new env (no token), and the names of ``current`` that were dropped because they are
        not valid claw_env entries any more (written by hand into the file, e.g. a reserved name).

    Raises:
        ClawInputError: invalid input, or a name both set and unset.
    """
    set_ = validate_env(set_)
    unset = validate_env_unset(unset)
    both = sorted(set(set_) & set(unset))
    if both:
        raise ClawInputError(f"claw_env_set and claw_env_unset both name {', '.join(both)}: say one or the other")
    dropped = []
    if replace is not None:
        env = validate_env(replace)
    else:
        env = {}
        for name, value in (current or {}).items():
            if name == TOKEN_VAR:
                continue
            try:
                clean = validate_env({name: value})
                _quote(clean[name])
            except ClawInputError:
                dropped.append(name)
                continue
            env.update(clean)
    env.update(set_)
    for name in unset:
        env.pop(name, None)
    return env, sorted(dropped)


def validate_settings(env=None, env_set=None, env_unset=None, gateway_token=None, require_one: bool = False) -> dict:
    """Check a change of a claw's settings (``claw_env``, ``claw_env_set``, ``claw_env_unset``, ``gateway_token``).

    An empty or missing ``env`` means "keep the current env" (as a missing token keeps the token).

    Returns:
        What the change asks for, names only: ``{"replace": [names] or None, "set": [names], "unset": [names],
        "token": bool}``.

    Raises:
        ClawInputError: an invalid entry (see :func:`validate_env`, :func:`validate_env_unset`, :func:`validate_token`),
            a name both set and unset, or (``require_one``) nothing asked at all.
    """
    replace = validate_env(env) if env else None
    desired_env({}, replace, env_set, env_unset)
    if gateway_token:
        validate_token(gateway_token)
    summary = {"replace": sorted(replace) if replace is not None else None, "set": sorted(validate_env(env_set)),
               "unset": validate_env_unset(env_unset), "token": bool(gateway_token)}
    if require_one and not (summary["replace"] or summary["set"] or summary["unset"] or summary["token"]):
        raise ClawInputError("nothing to change: give claw_env, claw_env_set, claw_env_unset or gateway_token")
    return summary


def validate_token(token) -> str:
    """A gateway token must be at least 32 printable characters without spaces or quotes.  Raises ClawInputError."""
    if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH or not re.fullmatch(r"[A-Za-z0-9._~+/=-]+", token):
        raise ClawInputError(f"gateway_token must be at least {MIN_TOKEN_LENGTH} characters of [A-Za-z0-9._~+/=-]")
    return token


def _quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._~+/=:@,-]*", value):
        return value
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value and "\\" not in value and "$" not in value:
        return f'"{value}"'
    raise ClawInputError("a claw_env value contains both single and double quotes, which a dotenv file cannot hold")


def render_dotenv(env: dict) -> str:
    """dotenv text, one ``NAME=value`` per line, sorted, quoted only when needed."""
    lines = ["# Managed by mirascope.clawfarm. Secrets: keep 0600, owned by the claw user."]
    lines += [f"{name}={_quote(env[name])}" for name in sorted(env)]
    return "\n".join(lines) + "\n"


def parse_dotenv(text: str) -> dict:
    """Parse the dotenv files :func:`render_dotenv` writes (and plain ``NAME=value`` lines)."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _sep, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name.strip()] = value
    return env


BROWSER_PROFILE = "openclaw"


def browser_user_data_dir(state_dir: str, profile: str = BROWSER_PROFILE) -> str:
    """Where OpenClaw keeps a managed browser profile's Chromium user data: ``<state dir>/browser/<profile>/user-data``."""
    return f"{state_dir}/browser/{profile}/user-data"


def browser_config(port: int, executable_path: str = "", headless: bool = True, allowed_hostnames=()) -> dict:
    """The ``browser`` block of a claw's ``openclaw.json`` (docs/browser.md).

    With an ``executable_path``: OpenClaw's managed ``openclaw`` profile, the default, launched on demand from that
    browser (never auto-detected), headless unless asked otherwise, Chromium's own sandbox on (``noSandbox: false``,
    never ``--no-sandbox``), its CDP port the first of the claw's CDP range (port_family: gateway + 11) so the browser
    stays inside the family the pf anchor gives the claw. ``allowed_hostnames`` are exact hosts the browser may open
    although they are private (``ssrfPolicy.allowedHostnames``); the private network stays blocked otherwise.
    Without one: the browser is off (``enabled: false``).

    Raises:
        ClawInputError: a relative executable path or an allowed hostname that is not a plain host name.
    """
    if not executable_path:
        return {"enabled": False}
    if not str(executable_path).startswith("/"):
        raise ClawInputError(f"browser_executable_path must be absolute, got {executable_path!r}")
    hosts = [str(host) for host in allowed_hostnames or ()]
    for host in hosts:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:]+\]", host):
            raise ClawInputError(f"an allowed browser hostname is a host name or an address, got {host!r}")
    config = {
        "enabled": True,
        "executablePath": str(executable_path),
        "headless": bool(headless),
        "noSandbox": False,
        "attachOnly": False,
        "defaultProfile": BROWSER_PROFILE,
        "profiles": {BROWSER_PROFILE: {"cdpPort": int(port) + CDP_FIRST_OFFSET}},
    }
    if hosts:
        config["ssrfPolicy"] = {"allowedHostnames": hosts}
    return config


def gateway_config(port: int, state_dir: str, control_ui: bool = False, browser_executable_path: str = "",
                   browser_headless: bool = True, browser_allowed_hostnames=(), tls_cert_path: str = "",
                   tls_key_path: str = "") -> dict:
    """The claw's ``openclaw.json`` (no secrets: the token is a SecretRef to ``CLAW_GATEWAY_TOKEN``).

    Follows docs/reference/openclaw-gateway.md 1.2: ``gateway.mode: local`` (required),
    loopback bind, token auth whose missing secret makes the gateway exit instead of running
    with a random token, logs inside the state dir, no update check, no mDNS, no heartbeat turns;
    the browser as browser_config says. With ``tls_cert_path`` and ``tls_key_path`` (the claw's origin TLS pair,
    ``_origin_tls``) the gateway serves HTTPS/WSS with them (``gateway.tls``; never a generated pair:
    ``autoGenerate: false``, a missing file makes the gateway exit instead of serving an unpinned certificate).
    """
    gateway = {
        "mode": "local",
        "port": int(port),
        "bind": "loopback",
        "auth": {"mode": "token", "token": {"source": "env", "provider": "default", "id": TOKEN_VAR}},
        "controlUi": {"enabled": bool(control_ui)},
    }
    if tls_cert_path or tls_key_path:
        if not (tls_cert_path and tls_key_path):
            raise ClawInputError("gateway TLS needs both the certificate and the key path")
        gateway["tls"] = {"enabled": True, "autoGenerate": False, "certPath": tls_cert_path, "keyPath": tls_key_path}
    return {
        "gateway": gateway,
        "logging": {"file": f"{state_dir}/logs/gateway.log"},
        "update": {"checkOnStart": False},
        "discovery": {"mdns": {"mode": "off"}},
        "agents": {"defaults": {"workspace": f"{state_dir}/workspace", "heartbeat": {"every": "0m"}}},
        "browser": browser_config(port, browser_executable_path, browser_headless, browser_allowed_hostnames),
    }


# What the farm owns in a claw's openclaw.json: every top-level section of its own config (gateway_config: gateway -
# port, bind, auth, control UI, and anything else set there such as remote or tailscale -, logging, update, discovery,
# browser), except the shared sections, where only the keys the farm sets under ``agents.defaults`` are its (the
# workspace and the heartbeat). Everything else (models, channels, plugins, tools, agents.list, ...) is the agent's:
# set by the tenant, through the gateway or an import, and kept by every write of the farm (present.yml, import).
FARM_SHARED_SECTIONS = ("agents",)
MISSING = object()
# What a shown key may not carry to the operator's terminal: C0, DEL, C1, lone surrogates (JSON allows "\ud800";
# Ansible refuses them in a result) and bidi overrides.
_CONFIG_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def farm_config_paths(farm: dict) -> tuple:
    """The config paths the farm owns, as tuples of keys, from its own config ``farm`` (see above).

    ``farm_config_paths(gateway_config(...))`` is ``(("browser",), ("discovery",), ("gateway",), ("logging",),
    ("update",), ("agents", "defaults", "heartbeat"), ("agents", "defaults", "workspace"))``.
    """
    paths = [(key,) for key in sorted(farm) if key not in FARM_SHARED_SECTIONS]
    for shared in FARM_SHARED_SECTIONS:
        defaults = (farm.get(shared) or {}).get("defaults") or {}
        paths += [(shared, "defaults", key) for key in sorted(defaults)]
    return tuple(paths)


def config_get(tree, path):
    """The value at ``path`` (a tuple of keys) in nested dicts, or :data:`MISSING`."""
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return MISSING
        tree = tree[key]
    return tree


def dotted_path(path) -> str:
    """``("agents", "list")`` as ``agents.list``, control characters escaped (``\\x1b``): keys may be the tenant's."""
    return ".".join(_CONFIG_CONTROL.sub(_escaped, str(key)) for key in path)


def _escaped(match) -> str:
    code = ord(match.group())
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def same_json(a, b) -> bool:
    """Whether two parsed JSON values are the same JSON (types included: ``0`` is not ``false``, ``1.0`` not ``1``)."""
    import json

    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def merge_farm_config(config, farm: dict) -> tuple:
    """A claw's config with the farm's sections set from ``farm`` and every other setting of ``config`` kept.

    Args:
        config: the claw's current config (a dict parsed from its ``openclaw.json``; anything else counts as empty).
        farm: the farm's own config of the claw (:func:`gateway_config`), which owns :func:`farm_config_paths`.

    Returns:
        ``(merged, rewritten)``: a new dict (``config`` is not modified) and the sorted dotted paths whose value the
        farm set or changed (one level below a replaced section: ``gateway.bind``), never values.
    """
    import copy

    old = config if isinstance(config, dict) else {}
    merged = copy.deepcopy(old)
    rewritten = set()
    for path in farm_config_paths(farm):
        value = config_get(farm, path)
        before = config_get(old, path)
        parent = merged
        for key in path[:-1]:
            if not isinstance(parent.get(key), dict):
                parent[key] = {}
            parent = parent[key]
        parent[path[-1]] = copy.deepcopy(value)
        if before is MISSING or not same_json(before, value):
            if isinstance(value, dict) and isinstance(before, dict):
                keys = set(value) | set(before)
                rewritten.update(dotted_path(path + (k,)) for k in keys
                                 if k not in before or k not in value or not same_json(before[k], value[k]))
            else:
                rewritten.add(dotted_path(path))
    return merged, sorted(rewritten)


def farm_config_view(config, farm: dict) -> str:
    """What a diff of a claw's ``openclaw.json`` shows: the farm's sections, and only the names of the agent's.

    The agent's settings (channels, provider keys...) may hold secrets, and so may a value the tenant put in one of
    the farm's sections (an inline token): a value is shown only where it equals the farm's own (which holds none),
    else as ``(the claw's value, not shown)``. Returns sorted JSON text with a trailing newline.
    """
    import json

    hidden = "(the claw's value, not shown)"

    def shown(value, want):
        if want is not MISSING and same_json(value, want):
            return value
        if isinstance(value, dict) and isinstance(want, dict):
            return {dotted_path((k,)): shown(value[k], want.get(k, MISSING)) for k in value}
        return hidden

    old = config if isinstance(config, dict) else {}
    owned = farm_config_paths(farm)
    view = {}
    for path in owned:
        value = config_get(old, path)
        if value is MISSING:
            continue
        parent = view
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
        parent[path[-1]] = shown(value, config_get(farm, path))
    kept = set()
    for key in old:
        if (key,) in owned:
            continue
        if key in FARM_SHARED_SECTIONS and isinstance(old[key], dict):
            for sub, value in old[key].items():
                if sub == "defaults" and isinstance(value, dict):
                    kept.update(dotted_path((key, sub, k)) for k in value if (key, sub, k) not in owned)
                else:
                    kept.add(dotted_path((key, sub)))
        else:
            kept.add(dotted_path((key,)))
    if kept:
        view["(the agent's settings, kept; values not shown)"] = sorted(kept)
    return json.dumps(view, indent=4, sort_keys=True, ensure_ascii=True) + "\n"


def read_port_claims(claim_dir: str) -> dict:
    """The Mini's port claim files as ``{port: claw_id}`` (``{}`` when the directory does not exist).

    Each file ``<claim_dir>/<port>`` holds the id of the claw that owns that port (see module ``claw_port``).
    """
    import os

    claims = {}
    if os.path.isdir(claim_dir):
        for entry in os.listdir(claim_dir):
            if entry.isdigit():
                with open(os.path.join(claim_dir, entry)) as handle:
                    claims[int(entry)] = handle.read().strip()
    return claims


def claim_port(claim_dir: str, claw_id: str, base_port: int, max_claws: int, wanted=None, check_mode: bool = False) -> dict:
    """Give ``claw_id`` a slot of the port plan: keep its claim, make one, or move it off the old layout.

    A claim is the file ``<claim_dir>/<port>`` holding the claw id, made with an exclusive create, so two runs started
    at the same moment never get the same port. A claw whose claim is no slot's gateway port (the old consecutive
    layout) gets a free slot (or ``wanted``) claimed first and its old claim removed after: it is never without one.

    Returns:
        ``{"changed", "port", "moved_from", "claims"}`` (``moved_from``: the old port when the claw moved, else None).

    Raises:
        ClawInputError: ``wanted`` is not a slot, is another claw's, or the claw holds another slot; no capacity.
    """
    import os

    claims = read_port_claims(claim_dir)
    mine = sorted(port for port, owner in claims.items() if owner == claw_id)
    on_plan = [port for port in mine if slot_of(port, base_port, max_claws) is not None]
    if on_plan:
        if wanted is not None and wanted != on_plan[0]:
            raise ClawInputError(f"claw {claw_id} already holds port {on_plan[0]}; deprovision it before moving it to {wanted}")
        return {"changed": False, "port": on_plan[0], "moved_from": None, "claims": claims}
    if not mine and port_capacity(claims, base_port, max_claws)["free_slots"] == 0 and wanted is None:
        raise ClawInputError(f"no capacity: {len(set(claims.values()))} claws hold this Mini's {max_claws} slots; pick another Mini")
    free = free_gateway_ports(claims, base_port, max_claws, claw_id)
    if wanted is not None and wanted not in free:
        owner = claims.get(wanted)
        raise ClawInputError(f"port {wanted} is already claimed by claw {owner}" if owner else
                             f"port {wanted}'s family meets another claw's ports (one still on the old layout); pick another slot")
    candidates = [wanted] if wanted is not None else free
    port = None
    for candidate in candidates:
        if check_mode:
            port = candidate
            break
        os.makedirs(claim_dir, mode=0o700, exist_ok=True)
        os.chmod(claim_dir, 0o700)
        try:
            fd = os.open(os.path.join(claim_dir, str(candidate)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # taken, perhaps by a run started at the same moment
        with os.fdopen(fd, "w") as handle:
            handle.write(claw_id + "\n")
        port = candidate
        break
    if port is None:
        raise ClawInputError(f"no capacity: no free slot left on this Mini ({max_claws} slots from {base_port}, "
                             f"every {PORT_STRIDE} ports); pick another Mini")
    if not check_mode:
        for old in mine:  # off the plan: the new claim exists, so the claw is never without one
            os.unlink(os.path.join(claim_dir, str(old)))
        claims = read_port_claims(claim_dir)
    return {"changed": True, "port": port, "moved_from": mine[0] if mine else None, "claims": claims}


class DotenvRefused(Exception):
    """A claw's dotenv file exists but is not one root may trust; the message says what was found and how to fix it."""


MAX_DOTENV_BYTES = 256 * 1024


def read_dotenv_text(env_file: str, uid, dir_fd=None):
    """The text of a claw's dotenv file, read only if the claw itself owns it (``None`` when it does not exist).

    The claw's home is the tenant's: ``.env`` may have been replaced by a symlink or a hard link to a neighbour's
    file, a FIFO, or a huge file.  It is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` on the
    open descriptor (no race between check and read): a regular file, owned by ``uid``, with one link, at most
    256 KiB.  A link in a parent directory cannot redirect it to another claw's file: that file is owned by the
    other claw's uid and is refused.

    Args:
        env_file: path of the dotenv file.
        uid: the claw user's uid (``None``: the user does not exist, and any existing file is refused).
        dir_fd: an open descriptor of the file's directory (then only the file's base name is opened in it).

    Raises:
        DotenvRefused: the file exists but fails a check (never shows its content).
    """
    import os
    import stat

    from ._claw_paths import read_at_most

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_NOCTTY", 0)
    name = os.path.basename(env_file) if dir_fd is not None else env_file
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            target = None
        if target is not None:
            raise DotenvRefused(f"{env_file} is a symbolic link to {target[:200]!r}, not the claw's own file; "
                                "its token and settings are not trusted: remove it, or pass gateway_token and claw_env "
                                "to write a new one")
        raise DotenvRefused(f"{env_file} cannot be opened: {exc.strerror}")
    try:
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif uid is None or st.st_uid != uid:
            problem = f"is owned by uid {st.st_uid}, not the claw's uid {uid}"
        elif st.st_nlink != 1:
            problem = f"has {st.st_nlink} hard links (another name points at the same file)"
        elif st.st_size > MAX_DOTENV_BYTES:
            problem = f"is {st.st_size} bytes, more than a dotenv file can be ({MAX_DOTENV_BYTES})"
        if problem:
            raise DotenvRefused(f"{env_file} {problem}; its token and settings are not trusted: remove it, or pass "
                                "gateway_token and claw_env to write a new one")
        return read_at_most(fd, MAX_DOTENV_BYTES)[:MAX_DOTENV_BYTES].decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def read_dotenv(env_file: str, uid, dir_fd=None):
    """A claw's dotenv file as ``{name: value}`` (``None`` when missing).  Same checks as :func:`read_dotenv_text`.

    Raises:
        DotenvRefused: the file exists but is not the claw's own regular file.
    """
    text = read_dotenv_text(env_file, uid, dir_fd)
    return None if text is None else parse_dotenv(text)


def read_token(env_file: str, uid):
    """The gateway token from a claw's ``.env`` (``None`` when the file or the variable is missing).

    Args:
        env_file: path of the dotenv file.
        uid: the claw user's uid; a file not owned by it (or a link, FIFO, hard-linked file) is refused.

    Raises:
        DotenvRefused: the file exists but is not the claw's own regular file.
    """
    env = read_dotenv(env_file, uid)
    return None if env is None else env.get(TOKEN_VAR)
