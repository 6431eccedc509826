#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_port
short_description: Claim (or release) a claw's gateway port on a Mini, atomically
version_added: 0.1.0
description:
  - >-
    A claw's port is the gateway port of one slot of the Mini's port plan (docs/port-plan.md). Slot N has
    O(base_port) + N x 128, with OpenClaw's browser control port (+2) and CDP range (+11 .. +110) in its family, so no
    claw's ports meet a neighbour's. Each claimed port has a claim file C(<claim_dir>/<port>) holding the claw id,
    made with an exclusive create (C(open(O_CREAT|O_EXCL))), so two runs started at the same moment can never get the
    same port.
  - >-
    Re-provisioning a claw finds its existing claim. A claim off the plan (the old consecutive layout, 8100, 8101, ...)
    is moved to a free slot (RV(moved_from)); the new claim is made before the old one is removed. O(state=absent)
    releases it.
  - Runs no commands; reads and writes files under O(claim_dir) only (root-owned, 0700).
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  claw_id:
    description: The claw's UUID.
    type: str
    required: true
  port:
    description: Claim exactly this port (a slot's gateway port, free or already this claw's). Default is the lowest free slot.
    type: int
  base_port:
    description: First port of the Mini's claw range (the farm role's C(claw_base_port)).
    type: int
    required: true
  max_claws:
    description: Number of ports (claw slots) on the Mini (the farm role's C(claw_max_per_mini)).
    type: int
    required: true
  claim_dir:
    description: Root-owned directory holding one claim file per used port.
    type: path
    default: /var/db/mirascope/ports
  state:
    description:
      - V(present) claims, V(absent) releases.
      - To read the claims or the claw's port without changing anything, use M(mirascope.clawfarm.claw_port_info).
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Claim a port for the claw
  mirascope.clawfarm.claw_port:
    claw_id: 1a2b3c4d-0000-4000-8000-000000000001
    base_port: "{{ claw_base_port }}"
    max_claws: "{{ claw_max_per_mini }}"
  register: claw_port_claim
  become: true
"""

RETURN = r"""
port:
  description: The claw's port (null when released or none was claimed).
  returned: always
  type: int
  sample: 8100
used_ports:
  description: Ports claimed on the Mini after the task, with their claw ids.
  returned: always
  type: dict
moved_from:
  description: The claw's old port when it was (in check mode, would be) moved off the old layout to a slot; else null.
  returned: always
  type: int
  sample: 8101
free_slots:
  description: Claws the Mini can still take after the task (free slots whose family meets no claimed family).
  returned: always
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw


def main():
    module = AnsibleModule(
        argument_spec=dict(
            claw_id=dict(type="str", required=True),
            port=dict(type="int"),
            base_port=dict(type="int", required=True),
            max_claws=dict(type="int", required=True),
            claim_dir=dict(type="path", default="/var/db/mirascope/ports"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        claw_id = _claw.validate_claw_id(p["claw_id"])
        wanted = _claw.validate_port(p["port"], p["base_port"], p["max_claws"]) if p["port"] is not None else None
    except _claw.ClawInputError as exc:
        module.fail_json(msg=str(exc))
    claim_dir = p["claim_dir"]
    if p["state"] == "absent":
        claims = _claw.read_port_claims(claim_dir)
        mine = sorted(port for port, owner in claims.items() if owner == claw_id)
        if mine and not module.check_mode:
            for port_ in mine:
                os.unlink(os.path.join(claim_dir, str(port_)))
            claims = _claw.read_port_claims(claim_dir)
        result = {"changed": bool(mine), "port": None, "moved_from": None, "claims": claims}
    else:
        try:
            result = _claw.claim_port(claim_dir, claw_id, p["base_port"], p["max_claws"], wanted, module.check_mode)
        except _claw.ClawInputError as exc:
            module.fail_json(msg=str(exc))
    claims = result["claims"]
    module.exit_json(changed=result["changed"], port=result["port"], moved_from=result["moved_from"],
                     used_ports={str(k): v for k, v in sorted(claims.items())},
                     free_slots=_claw.port_capacity(claims, p["base_port"], p["max_claws"])["free_slots"])


if __name__ == "__main__":
    main()
