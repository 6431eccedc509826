#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_home
short_description: Delete a claw's home, or the home a restore replaced, without following any of the tenant's links
version_added: 0.3.0
description:
  - Removes O(path) and everything under it through directory file descriptors (each directory opened
    C(O_NOFOLLOW|O_DIRECTORY) from its parent and checked to be the one listed), unlinking links instead of following
    them, with a bounded number of descriptors at any depth. Root never acts through a path a tenant could have
    swapped for a link while it runs (C(shutil.rmtree), which C(ansible.builtin.file) uses, recurses with one
    descriptor per level and fails on a deep enough tree).
  - Refuses C(/), C(/Users), C(/var), C(/private) and C(/opt). A missing O(path) is not an error.
  - Runs no commands.
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
  path:
    description: The home (or former home) to delete, for example C(/Users/claw-1a2b3c4d).
    type: path
    required: true
  state:
    description: Only V(absent).
    type: str
    choices: [absent]
    default: absent
seealso:
  - module: mirascope.clawfarm.macos_user
"""

EXAMPLES = r"""
- name: Delete the claw's home (after its archive was verified)
  mirascope.clawfarm.claw_home:
    path: /Users/claw-1a2b3c4d
    state: absent
  become: true
"""

RETURN = r"""
path:
  description: The path.
  returned: always
  type: str
  sample: /Users/claw-1a2b3c4d
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", choices=["absent"], default="absent"),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        r2.check_removable(path)
    except ValueError as exc:
        module.fail_json(msg=str(exc), path=path)
    exists = os.path.lexists(path)
    if exists and not module.check_mode:
        try:
            r2.remove_tree(path)
        except OSError as exc:
            module.fail_json(msg=f"cannot delete {path}: {exc}; what could be removed is gone", path=path)
    module.exit_json(changed=exists, path=path)


if __name__ == "__main__":
    main()
