#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: macos_user_processes
short_description: Leave no process of a claw's macOS user running
version_added: 0.1.0
description:
  - Kills every process of one managed macOS account (a claw), before its home is archived or its account deleted.
    A claw's code may have double-forked or C(setsid)-ed processes that outlive its gateway's launchd job; they
    would go on changing the home during the archive, and would keep the account's UID after it is deleted.
  - The account's launchd domains C(user/UID) and C(gui/UID) are booted out first (so launchd restarts none of its
    agents); then C(pkill -STOP) and C(pkill -KILL) by real and by effective UID run until
    C(ps -A -o pid= -o uid= -o ruid= -o stat=) shows no live process of the UID (zombies do not count), at most 50 rounds.
    If some survive, the module fails and names their pids.
  - The same safety rules as M(mirascope.clawfarm.macos_user) - the account must match O(managed_pattern), have a
    UID of 500 or more, not be an administrator, and carry O(real_name) when given - are checked before anything runs.
  - M(mirascope.clawfarm.macos_user) with O(mirascope.clawfarm.macos_user#module:state=absent) does the same right
    before it deletes an account.
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
    details: Lists the processes that would be killed (RV(processes_killed)) and kills nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  name:
    description: Short name of the account, for example V(claw-1a2b3c4d). Must match O(managed_pattern).
    type: str
    required: true
  real_name:
    description: C(RealName) the account must have (the claw role stores the full claw id there); another value fails.
    type: str
  state:
    description: V(absent) - no process of the account runs afterwards.
    type: str
    choices: [absent]
    default: absent
  managed_pattern:
    description: Python regular expression every managed name must match.
    type: str
    default: "^claw-[0-9a-f]{8}$"
notes:
  - Needs root (C(become=true)). A missing account is not an error (nothing to kill, RV(uid) null).
seealso:
  - module: mirascope.clawfarm.macos_user
  - name: pkill(1)
    description: Signal processes by attribute (C(-U) real UID, C(-u) effective UID).
    link: https://keith.github.io/xcode-man-pages/pkill.1.html
"""

EXAMPLES = r"""
- name: Stop every process of the claw's user before its home is archived
  mirascope.clawfarm.macos_user_processes:
    name: claw-1a2b3c4d
    real_name: "claw 1a2b3c4d-0000-4000-8000-000000000001"
  become: true
"""

RETURN = r"""
uid:
  description: UID of the account (null when the account does not exist).
  returned: always
  type: int
  sample: 601
processes_killed:
  description: PIDs that were running as the account and were killed (in check mode, would be).
  returned: always
  type: list
  elements: int
  sample: [4242, 4243]
commands:
  description: Every command run, as argv lists, in order.
  returned: always
  type: list
  elements: list
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _macos_user as mu
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandError, CommandRunner


def stop_user_processes(module, runner: CommandRunner) -> dict:
    """Check the account like macos_user does, then kill its processes (check mode: only list them)."""
    p = module.params
    name = p["name"]
    mu.validate_name(name, p["managed_pattern"])
    result = runner.run(mu.cmd_read(name))
    if result.rc == mu.DSCL_RECORD_NOT_FOUND or "eDSRecordNotFound" in result.text:
        return {"changed": False, "uid": None, "processes_killed": []}
    if result.rc != 0:
        raise CommandError(result, "dscl could not read the local directory; run with become: true")
    record = mu.parse_dscl_plist(result.stdout)
    member = runner.run(mu.cmd_checkmember(name))
    mu.check_record_is_managed(record, name, member.rc == 0 and member.stdout.strip().startswith("yes"))
    mu.check_real_name(record, name, p["real_name"])
    uid = mu.record_int(record, "UniqueID")
    if uid is None:
        return {"changed": False, "uid": None, "processes_killed": []}
    if module.check_mode:
        pids = [pid for pid, _ in mu.list_user_processes(runner, uid)]
        return {"changed": bool(pids), "uid": uid, "processes_killed": pids}
    pids = mu.kill_user_processes(runner, uid)
    return {"changed": bool(pids), "uid": uid, "processes_killed": pids}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            real_name=dict(type="str"),
            state=dict(type="str", default="absent", choices=["absent"]),
            managed_pattern=dict(type="str", default=mu.DEFAULT_MANAGED_PATTERN),
        ),
        supports_check_mode=True,
    )
    runner = CommandRunner(module)
    try:
        result = stop_user_processes(module, runner)
    except (mu.UserSafetyError, CommandError, ValueError) as exc:
        module.fail_json(msg=str(exc), commands=runner.history)
    module.exit_json(commands=runner.history, **result)


if __name__ == "__main__":
    main()
