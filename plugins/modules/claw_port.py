#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_port
short_description: Claim (or release) a claw's gateway port on a Mini, atomically
version_added: 0.1.0
description:
  - Each port a claw may use (O(base_port) .. O(base_port) + O(max_claws) - 1) has a claim file
    C(<claim_dir>/<port>) holding the claw id. A claim is made with an exclusive create
    (C(open(O_CREAT|O_EXCL))), so two runs started at the same moment can never get the same port.
  - Re-provisioning a claw finds its existing claim. O(state=absent) releases it.
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
    description: Claim exactly this port (it must be free or already this claw's). Default is the lowest free port.
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
free_slots:
  description: Free ports left on the Mini after the task.
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
    ports = range(p["base_port"], p["base_port"] + p["max_claws"])
    claims = _claw.read_port_claims(claim_dir)
    mine = sorted(port for port, owner in claims.items() if owner == claw_id)
    changed = False
    port = None
    if p["state"] == "absent":
        changed = bool(mine)
        if changed and not module.check_mode:
            for port_ in mine:
                os.unlink(os.path.join(claim_dir, str(port_)))
    elif mine:
        port = mine[0]
        if wanted is not None and wanted != port:
            module.fail_json(msg=f"claw {claw_id} already holds port {port}; deprovision it before moving it to {wanted}")
    else:
        if not module.check_mode:
            os.makedirs(claim_dir, mode=0o700, exist_ok=True)
            os.chmod(claim_dir, 0o700)
        candidates = [wanted] if wanted is not None else [x for x in ports if x not in claims]
        for candidate in candidates:
            if module.check_mode:
                if candidate not in claims:
                    port = candidate
                    break
                continue
            try:
                fd = os.open(os.path.join(claim_dir, str(candidate)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue  # taken, perhaps by a run started at the same moment
            with os.fdopen(fd, "w") as handle:
                handle.write(claw_id + "\n")
            port = candidate
            break
        if port is None:
            if wanted is not None:
                module.fail_json(msg=f"port {wanted} is already claimed by claw {claims.get(wanted)}")
            module.fail_json(msg=f"no capacity: all {p['max_claws']} claw ports ({p['base_port']}-{p['base_port'] + p['max_claws'] - 1}) "
                                 "on this Mini are claimed; pick another Mini")
        changed = True
    claims = _claw.read_port_claims(claim_dir) if not module.check_mode else claims
    module.exit_json(changed=changed, port=port, used_ports={str(k): v for k, v in sorted(claims.items())},
                     free_slots=len([x for x in ports if x not in claims]))


if __name__ == "__main__":
    main()
