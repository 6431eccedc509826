#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: r2_archive_key
short_description: A claw's archive encryption keys, kept on the control node encrypted under the farm key
version_added: 0.3.0
description:
  - Runs on the control node (C(delegate_to=localhost)); never on a Mini.
  - Each claw has its own archive keys (32 random bytes each) in C(<key_store>/<claw_id>.json) (0600, directory
    0700), each sealed with AES-256-GCM under O(farm_key) with the claw id and key id as associated data.
  - O(state=present) makes the claw's first key when it has none; O(state=rotated) adds a new key and makes it
    current (new archives use it; archives sealed with older keys restore while those keys stay in the file);
    O(state=query) only reads (fails when the claw has no key file).
  - Returns the claw's keys, opened, for the M(mirascope.clawfarm.r2_archive) task that follows; run it with
    C(no_log=true) and pass RV(archive_keys) only as that module's O(mirascope.clawfarm.r2_archive#module:encryption_keys).
  - Runs no commands. See C(docs/archive-encryption.md).
author:
  - Mirascope platform team (@mirascope)
requirements:
  - cryptography on the control node.
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
    details: reports whether a key would be made; nothing is written and a key that would be made is not returned.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: present and query are idempotent; rotated adds a key on every run.
options:
  claw_id:
    description: The claw (UUID).
    type: str
    required: true
  key_store:
    description: Directory of the key files on the control node (C(r2_archive_key_store)). Back it up with the Vault.
    type: path
    required: true
  farm_key:
    description: The farm key, 32 bytes as base64 (C(r2_archive_farm_key), kept in Ansible Vault). Never logged.
    type: str
    required: true
  state:
    description: V(present) makes a first key when missing, V(rotated) adds a new current key, V(query) only reads.
    type: str
    choices: [present, rotated, query]
    default: present
"""

EXAMPLES = r"""
- name: Open the claw's archive keys on the control node
  mirascope.clawfarm.r2_archive_key:
    claw_id: 1a2b3c4d-0000-4000-8000-000000000001
    key_store: "{{ r2_archive_key_store }}"
    farm_key: "{{ r2_archive_farm_key }}"
  delegate_to: localhost
  no_log: true
  register: claw_archive_keys

- name: Rotate the claw's key (new archives use the new one)
  mirascope.clawfarm.r2_archive_key:
    claw_id: 1a2b3c4d-0000-4000-8000-000000000001
    key_store: "{{ r2_archive_key_store }}"
    farm_key: "{{ r2_archive_farm_key }}"
    state: rotated
  delegate_to: localhost
  no_log: true
"""

RETURN = r"""
key_id:
  description: The claw's current key id (seals new archives); null in check mode when none exists yet.
  returned: always
  type: str
  sample: k20261130T120000Z
key_ids:
  description: Every key id the claw has.
  returned: always
  type: list
  elements: str
archive_keys:
  description: Key id to base64 key (secret - the task must run with no_log).
  returned: always
  type: dict
path:
  description: The claw's key file.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ..module_utils import _r2 as r2
from ..module_utils import _r2_keys as keys


def main():
    module = AnsibleModule(
        argument_spec=dict(
            claw_id=dict(type="str", required=True),
            key_store=dict(type="path", required=True, no_log=False),
            farm_key=dict(type="str", required=True, no_log=True),
            state=dict(type="str", choices=["present", "rotated", "query"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = keys.ensure(p["key_store"], p["claw_id"], p["farm_key"], rotate=p["state"] == "rotated",
                             create=p["state"] != "query", check_mode=module.check_mode)
    except r2.ArchiveError as exc:
        module.fail_json(msg=f"r2_archive_key ({p['state']}, claw {p['claw_id']}): {exc}")
    module.exit_json(changed=result["changed"], key_id=result["current"], key_ids=result["key_ids"],
                     archive_keys=result["keys"], path=result["path"])


if __name__ == "__main__":
    main()
