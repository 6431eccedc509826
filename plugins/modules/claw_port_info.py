#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_port_info
short_description: Read a Mini's claw port claims
version_added: 0.2.0
description:
  - Lists the claim files C(<claim_dir>/<port>) that M(mirascope.clawfarm.claw_port) makes (one per claw port, holding
    the claw id), the Mini's free slots (the port plan, docs/port-plan.md), and optionally which port one claw holds.
  - With O(memory), also the Mini's available memory, for ranking placement candidates (one C(vm_stat) run).
  - Reads files under O(claim_dir) (and runs C(/usr/bin/vm_stat) when O(memory) is set); changes nothing.
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm._info_module
options:
  base_port:
    description: Gateway port of slot 0 (the farm role's C(claw_base_port)); slot N's is O(base_port) + N x 128.
    type: int
    required: true
  max_claws:
    description: Number of claw slots on the Mini (the farm role's C(claw_max_per_mini)).
    type: int
    required: true
  claw_id:
    description: Also report the port this claw holds (RV(port)).
    type: str
  claim_dir:
    description: Root-owned directory holding one claim file per used port.
    type: path
    default: /var/db/mirascope/ports
  memory:
    description:
      - Also report RV(memory_available_mb), read from C(/usr/bin/vm_stat) (free + inactive pages, as psutil counts
        macOS's available memory). A few milliseconds, where the C(setup) module's hardware facts take seconds.
    type: bool
    default: false
seealso:
  - module: mirascope.clawfarm.claw_port
"""

EXAMPLES = r"""
- name: Read the Mini's port claims
  mirascope.clawfarm.claw_port_info:
    base_port: "{{ claw_base_port }}"
    max_claws: "{{ claw_max_per_mini }}"
  register: claims
  become: true

- name: Which port does this claw hold?
  mirascope.clawfarm.claw_port_info:
    base_port: "{{ claw_base_port }}"
    max_claws: "{{ claw_max_per_mini }}"
    claw_id: 1a2b3c4d-0000-4000-8000-000000000001
  register: claim
  become: true

- name: Claims and available memory, for placing a new claw
  mirascope.clawfarm.claw_port_info:
    base_port: "{{ claw_base_port }}"
    max_claws: "{{ claw_max_per_mini }}"
    memory: true
  register: place_claims
  become: true
"""

RETURN = r"""
used_ports:
  description: Claimed ports (as strings) and the claw id each holds, in port order; claims outside the range included.
  returned: always
  type: dict
  sample: {"8100": "1a2b3c4d-0000-4000-8000-000000000001"}
free_slots:
  description: >-
    Claws the Mini can still take: slots whose gateway port nobody claims and whose port family (gateway .. gateway
    + 110) meets no claimed family, at most O(max_claws) claws in all.
  returned: always
  type: int
  sample: 11
port:
  description: The lowest port O(claw_id) holds (null when it holds none or no O(claw_id) was given).
  returned: always
  type: int
  sample: 8100
memory_available_mb:
  description: The Mini's available memory in MiB (free + inactive pages from C(vm_stat)); null without O(memory).
  returned: always
  type: int
  sample: 9123
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw, _placement


def claims_report(claims: dict, base_port: int, max_claws: int, claw_id=None) -> dict:
    """What the module returns for ``claims`` (``{port: claw_id}``) on a Mini with the given port plan."""
    mine = sorted(port for port, owner in claims.items() if claw_id is not None and owner == claw_id)
    return {"used_ports": {str(k): v for k, v in sorted(claims.items())},
            "free_slots": _claw.port_capacity(claims, base_port, max_claws)["free_slots"],
            "port": mine[0] if mine else None}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            base_port=dict(type="int", required=True),
            max_claws=dict(type="int", required=True),
            claw_id=dict(type="str"),
            claim_dir=dict(type="path", default="/var/db/mirascope/ports"),
            memory=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        claw_id = _claw.validate_claw_id(p["claw_id"]) if p["claw_id"] is not None else None
    except _claw.ClawInputError as exc:
        module.fail_json(msg=str(exc))
    try:
        claims = _claw.read_port_claims(p["claim_dir"])
    except OSError as exc:
        module.fail_json(msg=f"cannot read the port claims in {p['claim_dir']}: {exc}; run with become (the directory is root's)")
    memory = None
    if p["memory"]:
        rc, out, err = module.run_command([_placement.VM_STAT])
        try:
            if rc != 0:
                raise _placement.VmStatError(f"{_placement.VM_STAT} exited {rc}: {err.strip()}")
            memory = _placement.memory_available_mb(out)
        except _placement.VmStatError as exc:
            module.fail_json(msg=f"cannot read the Mini's available memory: {exc}")
    module.exit_json(changed=False, memory_available_mb=memory, **claims_report(claims, p["base_port"], p["max_claws"], claw_id))


if __name__ == "__main__":
    main()
