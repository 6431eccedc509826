#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pf_anchor_info
short_description: Report whether a Mini's pf anchor (tenant network isolation) is missing or stale
version_added: 0.3.0
description:
  - Generates the rules M(mirascope.clawfarm.pf_anchor) would write for the Mini's port claims and users and compares
    them with the anchor file, the rules pf has loaded in the anchor (C(pfctl -a ANCHOR -s rules)) and pf's status
    (C(pfctl -s info)). C(audit.yml) reports every problem as an anomaly.
  - Runs only reading commands and changes nothing.
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm._info_module
  - mirascope.clawfarm.pf_anchor
options: {}
"""

EXAMPLES = r"""
- name: Check the Mini's tenant isolation rules
  mirascope.clawfarm.pf_anchor_info:
    uid_range: [600, 29999]
  become: true
  register: pf
"""

RETURN = r"""
problems:
  description: What is wrong (empty when the file matches the claws, is loaded and pf is enabled).
  returned: always
  type: list
  elements: str
  sample: ["/etc/pf.anchors/com.mirascope.clawfarm is missing: tenants' loopback ports are open to every user of the Mini"]
anomalies:
  description: RV(problems) in the shape of M(mirascope.clawfarm.claw_facts)' anomalies (kind V(pf_anchor)), for C(audit.yml).
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "pf_anchor", "claw_id": null, "detail": "pf is disabled (pfctl -E)"}]
present:
  description: Whether the anchor file exists.
  returned: always
  type: bool
current:
  description: Whether the anchor file is exactly the rules the Mini's claims call for.
  returned: always
  type: bool
enabled:
  description: Whether pf is enabled.
  returned: always
  type: bool
loaded_rules:
  description: Rules loaded in the anchor (0 when none or unreadable).
  returned: always
  type: int
expected_rules:
  description: Rules the Mini's claims call for.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _pf
from ansible_collections.mirascope.clawfarm.plugins.module_utils._claw import ClawInputError
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandRunner


def main():
    module = AnsibleModule(argument_spec=_pf.ARGUMENT_SPEC, supports_check_mode=True)
    runner = CommandRunner(module)
    try:
        state = _pf.read_state(runner, module.params)
    except (_pf.PfError, ClawInputError, OSError) as exc:
        module.fail_json(msg=str(exc), commands=runner.history)
    problems = _pf.anchor_problems(state["expected"], state["file"], state["loaded"], state["enabled"], module.params["anchor"],
                                   module.params["path"])
    module.exit_json(changed=False, problems=problems, anomalies=[{"kind": "pf_anchor", "claw_id": None, "detail": text} for text in problems],
                     present=state["file"] is not None, current=state["file"] == state["expected"], enabled=state["enabled"],
                     loaded_rules=_pf.rule_count(state["loaded"] or ""), expected_rules=_pf.rule_count(state["expected"]))


if __name__ == "__main__":
    main()
