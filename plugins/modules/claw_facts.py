#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_facts
short_description: Discover the claws on a Mini from what is really there, with capacity and every anomaly
version_added: 0.2.0
description:
  - Reads the LaunchDaemons whose label starts with O(label_prefix) (their plists - user, state dir), the local users
    (C(dscl . -list /Users UniqueID)) matching O(managed_pattern), the port claims in O(claim_dir), each claw's gateway
    config (C(<state dir>/openclaw.json), its port) and C(.env) (a sha256 prefix of its token, never the token),
    C(launchctl print system/<label>) (state, pid) and whether the port is listening.
  - With O(ingress_config) and O(claws_domain), also whether the claw's hostname has a rule in the local tunnel config,
    and whether that rule trusts only the claw's own certificate (docs/origin-tls.md).
  - Returns one record per claw, the Mini's capacity, and the anomalies that break the unique-tuple contract
    (label, port, state dir, token unique per claw) - a user with no job, a job with no user, a plist whose user or
    state dir disagrees with its claw id, two claws on one port, a shared state dir or token, claims without jobs,
    and claims that break the port plan (docs/port-plan.md) - overlapping port families, a port that is no slot's -
    and routes not pinned to the claw's certificate (C(route_unpinned), plain http from before origin TLS).
  - Read only; runs C(dscl) once and C(launchctl print) once per claw.
  - Sets the host facts C(clawfarm_claws), C(clawfarm_capacity) and C(clawfarm_anomalies) (the same as RV(claws),
    RV(capacity) and RV(anomalies)).
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm._info_module
  - ansible.builtin.action_common_attributes.facts
attributes:
  facts:
    support: full
options:
  label_prefix:
    description: launchd label prefix of the claws.
    type: str
    default: com.mirascope.claw
  launch_daemons_dir:
    description: Where the plists are.
    type: path
    default: /Library/LaunchDaemons
  users_dir:
    description: Where claw homes live.
    type: path
    default: /Users
  managed_pattern:
    description: Regular expression of claw user names.
    type: str
    default: ^claw-[0-9a-f]{8}$
  claim_dir:
    description: Root-owned directory of the port claim files.
    type: path
    default: /var/db/mirascope/ports
  base_port:
    description: First port of the Mini's claw range (the farm role's C(claw_base_port)).
    type: int
    required: true
  max_claws:
    description: Claw slots on the Mini (the farm role's C(claw_max_per_mini)).
    type: int
    required: true
  ingress_config:
    description: The local tunnel's config.yml (JSON form readable without PyYAML), to report each claw's route.
    type: path
  claws_domain:
    description: The claws domain, for the route check.
    type: str
"""

EXAMPLES = r"""
- name: Discover the claws
  mirascope.clawfarm.claw_facts:
    base_port: "{{ claw_base_port }}"
    max_claws: "{{ claw_max_per_mini }}"
  register: facts
  become: true

- name: Or use the host facts it sets
  ansible.builtin.debug:
    msg: "{{ clawfarm_claws | length }} claws, {{ clawfarm_capacity.free_slots }} free slots, {{ clawfarm_anomalies | length }} anomalies"
"""

RETURN = r"""
claws:
  description:
    - One record per claw plist - claw_id, label, user, uid, state_dir, port, claim_port, token_fingerprint,
      launchd_state, pid, listening, route_present, route_pinned (the route trusts only the claw's certificate,
      docs/origin-tls.md; null without a route).
  returned: always
  type: list
  elements: dict
capacity:
  description: used (claws), free_slots, free_ports (gateway ports of the free slots) of the Mini's port plan.
  returned: always
  type: dict
anomalies:
  description: Breaks of the unique-tuple contract - kind, claw_id, detail (and port where it applies).
  returned: always
  type: list
  elements: dict
ansible_facts:
  description: The same as host facts.
  returned: always
  type: dict
  contains:
    clawfarm_claws:
      description: RV(claws).
      type: list
      elements: dict
    clawfarm_capacity:
      description: RV(capacity).
      type: dict
    clawfarm_anomalies:
      description: RV(anomalies).
      type: list
      elements: dict
"""

import json
import os
import plistlib
import socket
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _facts as facts
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _launchd as ld
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _macos_user as mu
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandRunner


def read_plists(directory: str, prefix: str) -> list:
    found = []
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            if name.startswith(prefix + ".") and name.endswith(".plist"):
                try:
                    with open(os.path.join(directory, name), "rb") as handle:
                        found.append(facts.claw_from_plist(prefix, name[: -len(".plist")], plistlib.load(handle)))
                except (OSError, plistlib.InvalidFileException, ValueError):
                    found.append(facts.claw_from_plist(prefix, name[: -len(".plist")], {}))
    return found


def gateway_port(state_dir: str | None, max_bytes: int = 1 << 20):
    """The ``gateway.port`` of a claw's ``openclaw.json`` (``None`` when unreadable).

    The file sits in the tenant's home: it is opened ``O_NOFOLLOW | O_NONBLOCK`` and read only when ``fstat`` says it
    is a regular file, at most ``max_bytes`` (a FIFO, a link to /dev/zero or a huge file never blocks or floods root).
    """
    try:
        fd = os.open(os.path.join(state_dir, "openclaw.json"),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, TypeError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        data = os.read(fd, max_bytes + 1)
        return int(json.loads(data[:max_bytes])["gateway"]["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(fd)


def route_rules(path: str | None) -> dict | None:
    """``{hostname: rule}`` of the local tunnel's config.yml (JSON or YAML), or ``None`` when it cannot be read."""
    if not path:
        return None
    try:
        with open(path) as handle:
            doc = json.load(handle)
    except (OSError, ValueError):
        try:
            import yaml

            with open(path) as handle:
                doc = yaml.safe_load(handle)
        except Exception:  # noqa: BLE001 - no route info, not an error of the facts
            return None
    return {r.get("hostname"): r for r in (doc or {}).get("ingress") or [] if isinstance(r, dict)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            label_prefix=dict(type="str", default="com.mirascope.claw"),
            launch_daemons_dir=dict(type="path", default="/Library/LaunchDaemons"),
            users_dir=dict(type="path", default="/Users"),
            managed_pattern=dict(type="str", default=r"^claw-[0-9a-f]{8}$"),
            claim_dir=dict(type="path", default="/var/db/mirascope/ports"),
            base_port=dict(type="int", required=True),
            max_claws=dict(type="int", required=True),
            ingress_config=dict(type="path"),
            claws_domain=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    runner = CommandRunner(module)
    listed = runner.run(mu.cmd_list_uids())
    users = mu.parse_uid_list(listed.stdout) if listed.rc == 0 else {}
    claims = _claw.read_port_claims(p["claim_dir"])
    rules = route_rules(p["ingress_config"])
    claim_of = {claw_id: port for port, claw_id in claims.items()}
    claws = read_plists(p["launch_daemons_dir"], p["label_prefix"])
    for claw in claws:
        claw["port"] = gateway_port(claw["state_dir"])
        claw["claim_port"] = claim_of.get(claw["claw_id"])
        claw["uid"] = users.get(claw["user"])
        try:
            # Only the claw's own regular .env counts: a link to a neighbour's file is not read (its fingerprint
            # would be the neighbour's).
            token = _claw.read_token(os.path.join(claw["state_dir"], ".env"), claw["uid"]) if claw["state_dir"] else None
        except _claw.DotenvRefused:
            token = None
        claw["token_fingerprint"] = facts.token_fingerprint(token)
        result = runner.run(ld.cmd_print(ld.service_target("system", claw["label"])))
        info = ld.parse_print(result.stdout) if result.rc == 0 else {}
        claw["launchd_state"], claw["pid"] = info.get("state") or "not loaded", info.get("pid")
        claw["listening"] = False
        if claw["port"]:
            try:
                with socket.create_connection(("127.0.0.1", claw["port"]), timeout=1):
                    claw["listening"] = True
            except OSError:
                pass
        rule = None if rules is None or not p["claws_domain"] else rules.get(f"claw-{claw['claw_id']}.{p['claws_domain'].lower()}")
        claw["route_present"] = None if rules is None or not p["claws_domain"] else rule is not None
        claw["route_pinned"] = None if rule is None else facts.route_pinned(rule)
    expected = {}
    for claw in claws:
        if claw["claw_id"]:
            ident = _claw.claw_identity(claw["claw_id"], p["label_prefix"], p["users_dir"])
            expected[claw["claw_id"]] = {"user": ident["user"], "state_dir": ident["state_dir"]}
    anomalies = facts.find_anomalies(claws, users, claims, p["managed_pattern"], expected)
    anomalies += facts.port_plan_anomalies(claims, p["base_port"], p["max_claws"])
    anomalies += facts.route_anomalies(claws)
    capacity = facts.capacity(claims, p["base_port"], p["max_claws"])
    module.exit_json(changed=False, claws=claws, capacity=capacity, anomalies=anomalies,
                     ansible_facts={"clawfarm_claws": claws, "clawfarm_capacity": capacity, "clawfarm_anomalies": anomalies})


if __name__ == "__main__":
    main()
