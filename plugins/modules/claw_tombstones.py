#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_tombstones
short_description: Report and prune the tombstones (kept homes of removed claws) on a Mini
version_added: 0.3.0
description:
  - Tombstones are C(<path>/<claw_id>-<UTC YYYYmmddTHHMMSSZ>) directories left by C(archive=false) deprovisions and
    by migration sources. The time in the name (when the home was moved there) is the tombstone's age.
  - O(state=query) reports their count and bytes; O(state=pruned) also removes those older than O(retention_days),
    never one younger, and never one of a claw listed in O(existing_claws) (a claw that exists again).
  - Trees are measured and removed through directory file descriptors, never following a link, at any depth.
    Other names in O(path) are never touched. Runs no commands.
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
    details: pruned lists what would be removed.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  path:
    description: The tombstone directory (C(claw_tombstone_dir)).
    type: path
    default: /var/db/mirascope/tombstones
  state:
    description: V(query) reports, V(pruned) removes the expired ones.
    type: str
    choices: [query, pruned]
    default: query
  retention_days:
    description: Tombstones older than this many days expire (C(mini_tombstone_retention_days)).
    type: int
    default: 14
  existing_claws:
    description: Claw ids that exist (on any Mini); their tombstones never expire.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Prune tombstones older than 14 days
  mirascope.clawfarm.claw_tombstones:
    state: pruned
    retention_days: 14
    existing_claws: "{{ claws_on_the_farm }}"
"""

RETURN = r"""
count:
  description: Tombstones present before pruning.
  returned: always
  type: int
bytes:
  description: Bytes of their regular files, before pruning.
  returned: always
  type: int
tombstones:
  description: Each tombstone - C(name), C(claw_id), C(created), C(bytes), C(expired), C(claw_exists).
  returned: always
  type: list
  elements: dict
removed:
  description: Names removed (in check mode, that would be removed).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ..module_utils import _tombstones as tombstones


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/db/mirascope/tombstones"),
            state=dict(type="str", choices=["query", "pruned"], default="query"),
            retention_days=dict(type="int", default=14),
            existing_claws=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["retention_days"] < 1:
        module.fail_json(msg=f"retention_days must be at least 1, got {p['retention_days']}")
    try:
        found = tombstones.survey(p["path"], p["retention_days"], p["existing_claws"])
        expired = [t["name"] for t in found if t["expired"]]
        removed = expired
        if p["state"] == "pruned" and not module.check_mode:
            removed = tombstones.prune(p["path"], found)
    except OSError as exc:
        module.fail_json(msg=f"claw_tombstones ({p['path']}): {exc}; fix it (an immutable flag?) and run again")
    module.exit_json(changed=p["state"] == "pruned" and bool(removed), count=len(found),
                     bytes=sum(t["bytes"] for t in found), tombstones=found,
                     removed=removed if p["state"] == "pruned" else [])


if __name__ == "__main__":
    main()
