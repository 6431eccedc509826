#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_env
short_description: Write a claw's secret dotenv file (gateway token and claw_env), 0600
version_added: 0.1.0
description:
  - Writes the OpenClaw state dir's C(.env) (a trusted dotenv file the gateway loads at start) with the
    gateway token as C(CLAW_GATEWAY_TOKEN) plus the environment the web backend passes in
    (C(ANTHROPIC_API_KEY), C(ANTHROPIC_BASE_URL), C(PRIMARY_MODEL_ID), ...).
  - When O(gateway_token) is not given, the token already in the file is kept; when there is none,
    O(fallback_token) is used, so re-running the task never rotates a token by accident.
  - The file is written atomically (temporary file in the same directory, then rename), owned by
    O(owner)/O(group), mode 0600. Secrets never appear on a command line; the module runs no command.
  - The diff lists variable names that are added, changed or removed; values are never shown.
  - O(env), O(gateway_token) and O(fallback_token) are C(no_log) options, so their values are masked in
    every output, so errors (bad names, missing owner) stay readable.
author:
  - Mirascope platform team
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Names only, never values.
  idempotent:
    support: full
options:
  path:
    description: The dotenv file, for example C(/Users/claw-1a2b3c4d/.openclaw/.env).
    type: path
    required: true
  owner:
    description: Owner (the claw user).
    type: str
    required: true
  group:
    description: Group (numeric id or name).
    type: str
    default: "20"
  env:
    description: Variables besides the token. Names must be valid environment variable names and not reserved by the claw's job.
    type: dict
    default: {}
  gateway_token:
    description: The gateway token (at least 32 characters). When given it replaces the token in the file.
    type: str
  fallback_token:
    description: Token to use only when O(gateway_token) is not given and the file holds none yet
      (the claw role generates it on the control node). RV(fallback_token_used) says whether it was used.
    type: str
"""

EXAMPLES = r"""
- name: Write the claw's secrets
  mirascope.clawfarm.claw_env:
    path: /Users/claw-1a2b3c4d/.openclaw/.env
    owner: claw-1a2b3c4d
    env: "{{ claw_env }}"
  no_log: true
  become: true
"""

RETURN = r"""
fallback_token_used:
  description: Whether O(fallback_token) became the claw's token in this run (the caller should store it, 0600).
  returned: always
  type: bool
names:
  description: Variable names in the file.
  returned: always
  type: list
  elements: str
"""

import grp
import os
import pwd
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            owner=dict(type="str", required=True),
            group=dict(type="str", default="20"),
            env=dict(type="dict", default={}, no_log=True),
            gateway_token=dict(type="str", no_log=True),
            fallback_token=dict(type="str", no_log=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        env = _claw.validate_env(p["env"])
        for option in ("gateway_token", "fallback_token"):
            if p[option]:
                _claw.validate_token(p[option])
        uid = pwd.getpwnam(p["owner"]).pw_uid
        gid = int(p["group"]) if p["group"].isdigit() else grp.getgrnam(p["group"]).gr_gid
    except _claw.ClawInputError as exc:
        module.fail_json(msg=str(exc))
    except KeyError as exc:
        module.fail_json(msg=f"unknown owner or group {exc}: create the claw user first")
    current = {}
    if os.path.exists(p["path"]):
        with open(p["path"]) as handle:
            current = _claw.parse_dotenv(handle.read())
    token = p["gateway_token"] or current.get(_claw.TOKEN_VAR)
    fallback_used = token is None
    if fallback_used:
        if not p["fallback_token"]:
            module.fail_json(msg="the claw has no gateway token yet: pass gateway_token or fallback_token")
        token = p["fallback_token"]
    desired = dict(env, **{_claw.TOKEN_VAR: token})
    content = _claw.render_dotenv(desired)
    st = os.stat(p["path"]) if os.path.exists(p["path"]) else None
    with open(p["path"]) if st else open(os.devnull) as handle:
        same_text = handle.read() == content
    changed = not same_text or st is None or (st.st_uid, st.st_gid, st.st_mode & 0o777) != (uid, gid, 0o600)
    if changed and not module.check_mode:
        fd, tmp = tempfile.mkstemp(prefix=".env.", dir=os.path.dirname(p["path"]))
        try:
            os.fchmod(fd, 0o600)
            os.fchown(fd, uid, gid)
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            os.replace(tmp, p["path"])
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    names_before, names_after = set(current), set(desired)
    changed_names = sorted(n for n in names_before & names_after if current[n] != desired[n])
    diff = {
        "before": "".join(f"{n}=<hidden>\n" for n in sorted(names_before)),
        "after": "".join(f"{n}=<hidden{' (changed)' if n in changed_names else ''}>\n" for n in sorted(names_after)),
        "before_header": p["path"], "after_header": p["path"],
    }
    result = dict(changed=changed, fallback_token_used=fallback_used and not module.check_mode, names=sorted(names_after))
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
