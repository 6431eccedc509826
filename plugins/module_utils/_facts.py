# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Claw discovery on a Mini and the "unique tuple" contract (PRIVATE to the collection).

Each claw owns a label, a port, a state dir and a token, each unique on the Mini (docs/reference/
openclaw-gateway.md). :func:`find_anomalies` compares what is really there - LaunchDaemon plists, users matching the
managed pattern, port claims, the gateway configs - and names every break of that contract. Tokens are compared by
a short sha256 prefix; a token itself is never returned.
"""

from __future__ import annotations

import hashlib
import re

from ._claw import CLAW_ID, PORT_STRIDE, family_of_port, overlapping_claims, port_capacity, slot_of


def token_fingerprint(token: str | None) -> str | None:
    """First 12 hex of sha256(token), to compare tokens without revealing them."""
    return hashlib.sha256(token.encode()).hexdigest()[:12] if token else None


def claw_from_plist(label_prefix: str, label: str, plist: dict) -> dict:
    """What a claw's LaunchDaemon plist says: ``{"label", "claw_id", "user", "state_dir", "program"}``."""
    claw_id = label[len(label_prefix) + 1:] if label.startswith(label_prefix + ".") else None
    env = plist.get("EnvironmentVariables") or {}
    return {"label": label, "claw_id": claw_id if claw_id and CLAW_ID.match(claw_id) else None, "user": plist.get("UserName"),
            "state_dir": env.get("OPENCLAW_STATE_DIR"), "program": (plist.get("ProgramArguments") or [None])[0]}


def find_anomalies(claws: list, users: dict, claims: dict, managed_pattern: str = r"^claw-[0-9a-f]{8}$",
                   expected=None) -> list:
    """Every break of the unique-tuple contract, as ``[{"kind", "detail", "claw_id"|None, ...}]``.

    Args:
        claws: one dict per claw plist: ``label, claw_id, user, state_dir, port`` (from its gateway config),
            ``token_fingerprint``.
        users: ``{name: uid}`` of every local user (``dscl . -list /Users UniqueID``).
        claims: ``{port: claw_id}`` port claim files.
        expected: ``claw_id -> {"user", "state_dir"}`` (the names derived from the id), to catch a plist whose user or
            state dir disagrees with its claw id.

    Kinds: ``user_without_job``, ``job_without_user``, ``bad_label``, ``plist_mismatch``, ``port_conflict``,
    ``port_mismatch``, ``claim_without_job``, ``job_without_claim``, ``shared_state_dir``, ``shared_token``.
    """
    found = []
    pattern = re.compile(managed_pattern)
    job_users = {c.get("user") for c in claws}
    for name in sorted(users):
        if pattern.match(name) and name not in job_users:
            found.append({"kind": "user_without_job", "claw_id": None, "detail": f"user {name} has no claw LaunchDaemon"})
    for claw in claws:
        if claw.get("claw_id") is None:
            found.append({"kind": "bad_label", "claw_id": None, "detail": f"plist {claw['label']} has no claw id in its label"})
            continue
        if claw.get("user") not in users:
            found.append({"kind": "job_without_user", "claw_id": claw["claw_id"], "detail": f"{claw['label']} runs as missing user {claw.get('user')}"})
        want = (expected or {}).get(claw["claw_id"])
        if want and (claw.get("user") != want["user"] or (claw.get("state_dir") and claw["state_dir"] != want["state_dir"])):
            found.append({"kind": "plist_mismatch", "claw_id": claw["claw_id"],
                          "detail": f"{claw['label']} runs as {claw.get('user')} in {claw.get('state_dir')}, "
                                    f"expected {want['user']} in {want['state_dir']}"})
    by_port, by_dir, by_token = {}, {}, {}
    for claw in claws:
        if claw.get("port") is not None:
            by_port.setdefault(claw["port"], []).append(claw)
        if claw.get("state_dir"):
            by_dir.setdefault(claw["state_dir"], []).append(claw)
        if claw.get("token_fingerprint"):
            by_token.setdefault(claw["token_fingerprint"], []).append(claw)
    for port, group in sorted(by_port.items()):
        if len(group) > 1:
            found.append({"kind": "port_conflict", "claw_id": None, "port": port,
                          "detail": f"port {port} is used by {', '.join(sorted(str(c['claw_id']) for c in group))}"})
    for path, group in sorted(by_dir.items()):
        if len(group) > 1:
            found.append({"kind": "shared_state_dir", "claw_id": None, "detail": f"state dir {path} is shared by "
                          + ", ".join(sorted(str(c['claw_id']) for c in group))})
    for fingerprint, group in sorted(by_token.items()):
        if len(group) > 1:
            found.append({"kind": "shared_token", "claw_id": None, "detail": f"one gateway token (sha256 {fingerprint}...) is shared by "
                          + ", ".join(sorted(str(c['claw_id']) for c in group))})
    claimed = {claw_id: int(port) for port, claw_id in claims.items()}
    ids = {c.get("claw_id") for c in claws}
    for port, claw_id in sorted(claims.items()):
        if claw_id not in ids:
            found.append({"kind": "claim_without_job", "claw_id": claw_id, "port": int(port),
                          "detail": f"port {port} is claimed by {claw_id}, which has no job"})
    for claw in claws:
        if claw.get("claw_id") and claw["claw_id"] not in claimed:
            found.append({"kind": "job_without_claim", "claw_id": claw["claw_id"], "detail": f"{claw['label']} has no port claim"})
        elif claw.get("claw_id") and claw.get("port") is not None and claimed[claw["claw_id"]] != claw["port"]:
            found.append({"kind": "port_mismatch", "claw_id": claw["claw_id"],
                          "detail": f"{claw['label']} listens on {claw['port']} but its claim is {claimed[claw['claw_id']]}"})
    return found


def capacity(claims: dict, base_port: int, max_claws: int) -> dict:
    """``{"used", "free_slots", "free_ports"}`` of a Mini (the port plan: ``_claw.port_capacity``)."""
    return port_capacity(claims, base_port, max_claws)


def port_plan_anomalies(claims: dict, base_port: int, max_claws: int) -> list:
    """Claims that break the port plan (docs/port-plan.md), as find_anomalies' entries.

    Kinds: ``port_families_overlap`` (two claws whose gateway, browser control or CDP ports meet: either could reach
    or take the other's browser ports), ``off_plan_port`` (a claim that is no slot's gateway port, e.g. the old
    consecutive layout: a re-provision moves the claw to a free slot, data and token kept).
    """
    found = []
    for low, high in overlapping_claims(claims):
        found.append({"kind": "port_families_overlap", "claw_id": claims.get(low), "port": low,
                      "detail": f"port families of {claims.get(low)} (gateway {low}, ports {low}-{family_of_port(low)[1]}) and "
                                f"{claims.get(high)} (gateway {high}) overlap; re-provision the claw that is off the plan"})
    for port, claw_id in sorted(claims.items()):
        if slot_of(port, base_port, max_claws) is None:
            found.append({"kind": "off_plan_port", "claw_id": claw_id, "port": int(port),
                          "detail": f"{claw_id} holds port {port}, which is no slot's gateway port ({base_port} + slot x {PORT_STRIDE}); "
                                    "re-provision it to move it to the port plan"})
    return found


def route_pinned(rule) -> bool:
    """Whether an ingress rule reaches its origin over TLS trusting a pinned certificate (docs/origin-tls.md):
    an ``https://``/``wss://`` service with ``originRequest.caPool`` set and ``noTLSVerify`` not on."""
    if not isinstance(rule, dict):
        return False
    origin = rule.get("originRequest") or {}
    service = str(rule.get("service") or "").lower()
    return service.startswith(("https://", "wss://")) and bool(origin.get("caPool")) and not origin.get("noTLSVerify")


def route_anomalies(claws: list) -> list:
    """Claws whose route is not pinned to their own certificate, as find_anomalies' entries.

    ``claws`` carry ``route_present`` and ``route_pinned`` (claw_facts, from the local tunnel's config.yml). Kind
    ``route_unpinned``: the claw's rule reaches its gateway in plain HTTP (a claw provisioned before origin TLS) or
    without a caPool, so a tenant listening on its port while the gateway is stopped would get its traffic.
    """
    return [{"kind": "route_unpinned", "claw_id": claw.get("claw_id"),
             "detail": f"the tunnel route of {claw.get('claw_id')} does not trust only its own certificate (plain http, "
                       "no caPool or noTLSVerify); re-provision the claw (docs/origin-tls.md)"}
            for claw in claws if claw.get("route_present") and claw.get("route_pinned") is False]
