#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pf_anchor
short_description: Keep a Mini's pf anchor (tenant network isolation) in step with its claws
version_added: 0.3.0
description:
  - Generates the farm's pf rules from the Mini's port claims and users - each claw's port family (gateway, browser
    control port, CDP range) reachable only by the claw's own UID, its gateway port also by O(gateway_clients); no
    claw UID reaching the tailnet - writes them to O(path) (root, 0644, renamed over the old file) and loads them with
    C(pfctl -a ANCHOR -f FILE). pf is enabled with C(pfctl -E) when it is off.
  - Runs on every provision and deprovision and in C(bootstrap.yml); the LaunchDaemon C(com.mirascope.pf) loads the
    same file at boot. M(mirascope.clawfarm.pf_anchor_info) reports a missing or stale anchor (C(audit.yml)).
  - Concurrent runs on one Mini (parallel provisions) are serialised by a lock file beside O(path) (C(.<name>.lock)).
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm.pf_anchor
attributes:
  check_mode:
    support: full
    details: Reports what would be written, enabled or loaded; runs only the reading pfctl commands.
  diff_mode:
    support: full
    details: The anchor file before and after.
  idempotent:
    support: full
options: {}
"""

EXAMPLES = r"""
- name: Load the Mini's tenant isolation rules
  mirascope.clawfarm.pf_anchor:
    uid_range: [600, 29999]
  become: true
"""

RETURN = r"""
rules:
  description: The anchor file's text (rules and comments; no secrets).
  returned: always
  type: str
claws:
  description: The claws the rules cover, by gateway port (uid null when the claw's user does not exist yet).
  returned: always
  type: list
  elements: dict
  sample: [{"claw_id": "1a2b3c4d-0000-4000-8000-000000000001", "user": "claw-1a2b3c4d", "uid": 600, "port": 8100}]
written:
  description: Whether the anchor file was (in check mode, would be) rewritten.
  returned: always
  type: bool
loaded:
  description: Whether the anchor was (would be) loaded into pf.
  returned: always
  type: bool
enabled:
  description: Whether pf was (would be) enabled (C(pfctl -E)).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _pf
from ansible_collections.mirascope.clawfarm.plugins.module_utils._claw import ClawInputError
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandError, CommandRunner


def main():
    module = AnsibleModule(argument_spec=_pf.ARGUMENT_SPEC, supports_check_mode=True)
    runner = CommandRunner(module)
    try:
        with _pf.serialised(module.params["path"], module.check_mode):  # concurrent provisions on one Mini
            state = _pf.read_state(runner, module.params)
            done = _pf.apply(runner, module.params, state, module.check_mode)
    except (_pf.PfError, ClawInputError, CommandError, OSError) as exc:
        module.fail_json(msg=str(exc), commands=runner.history)
    result = dict(changed=any(done.values()), rules=state["expected"], claws=state["claws"], **done)
    if module._diff and done["written"]:
        result["diff"] = {"before": state["file"] or "", "after": state["expected"],
                          "before_header": module.params["path"], "after_header": module.params["path"]}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
