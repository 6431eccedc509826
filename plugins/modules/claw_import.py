#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_import
short_description: Place a claw's Cloudflare Containers export as its OpenClaw state directory, with the farm's gateway settings
version_added: 0.3.0
description:
  - Runs as root on the Mini. Reads the export O(archive) (an C(.openclaw) directory as C(.tar), C(.tar.gz) or
    C(.tar.zst), detected from its first bytes; a regular file of root's, never followed through a link) and extracts
    it with the extractor a restore uses (M(mirascope.clawfarm.r2_archive) - the same member checks, nothing written
    outside a new root-private staging directory in the users directory, never through a link, at most O(max_entries)
    entries and O(max_bytes) content bytes and no more than the free space). A leading C(.openclaw/) is stripped.
  - Rewrites the export's C(openclaw.json) - the gateway section (port, bind, auth - an inline token is dropped for the
    claw's C(CLAW_GATEWAY_TOKEN)), logging, update and discovery, the agents' default workspace and heartbeat are the
    farm's (the claw role's gateway config); every other path under the export's state directory is moved under the
    claw's; the agent's own settings are kept. The export's C(.env) is not imported (the claw's own is kept).
  - Hands the tree to the claw's user without following links (top directory 0700, last), then renames the claw's
    state directory aside (C(<state_dir>.pre-import-<UTC time>), RV(previous)) and the new one into place. Any failure
    before that leaves the claw as it was. The caller stops the gateway first, takes the claw's settings from
    RV(previous) and removes it (M(mirascope.clawfarm.claw_env) C(keep_from), M(mirascope.clawfarm.claw_home)).
  - Check mode reads the export and returns RV(plan) without writing anything.
author:
  - Mirascope platform team (@mirascope)
requirements:
  - zstandard in the module's Python for a C(.tar.zst) export (the farm venv has it).
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run replaces the claw's state directory with the export.
options:
  archive:
    description: The export on the Mini (a regular file of root's, for example uploaded 0600 into a root-only directory).
    type: path
    required: true
  home:
    description: The claw's home, C(/Users/claw-xxxxxxxx) (the claw user's).
    type: path
    required: true
  state_dir:
    description: The state directory's name in the home.
    type: str
    default: .openclaw
  owner:
    description: The claw's user.
    type: str
    required: true
  group:
    description: The claw's primary group id.
    type: int
    required: true
  config:
    description:
      - The farm's gateway config of the claw, as the claw role writes it at provision (filter
        C(mirascope.clawfarm.claw_gateway_config) - its port, the state dir's paths, the token as a SecretRef). Its
        sections replace the export's (RV(plan)); its C(agents.defaults.workspace) must be in the claw's state dir.
    type: dict
    required: true
  source_state_dir:
    description: The state directory the export's config names its paths under (default - found from the config).
    type: path
  max_entries:
    description: The most tar members the export may have.
    type: int
    default: 1000000
  max_bytes:
    description: The most file content bytes the export may hold (never more than the free space).
    type: int
    default: 53687091200
seealso:
  - module: mirascope.clawfarm.claw_import_source
  - module: mirascope.clawfarm.r2_archive
"""

EXAMPLES = r"""
- name: Import the export as the claw's state dir
  mirascope.clawfarm.claw_import:
    archive: /var/db/mirascope/imports/1a2b3c4d-0000-4000-8000-000000000001.export
    home: /Users/claw-1a2b3c4d
    owner: claw-1a2b3c4d
    group: 20
    config: "{{ 8120 | mirascope.clawfarm.claw_gateway_config('/Users/claw-1a2b3c4d/.openclaw') }}"
  become: true
  register: claw_imported
"""

RETURN = r"""
format:
  description: V(tar), V(gzip) or V(zstd).
  returned: success
  type: str
entries:
  description: Tar members.
  returned: success
  type: int
files:
  description: Regular files imported.
  returned: success
  type: int
bytes:
  description: File content bytes imported.
  returned: success
  type: int
root:
  description: V(.openclaw) when the export's members sat under C(.openclaw/), else empty.
  returned: success
  type: str
plan:
  description: The config rewrite, as M(mirascope.clawfarm.claw_import_source) returns it (dotted paths, never values).
  returned: success
  type: dict
  sample: {rewritten: [gateway.auth, gateway.port], kept: [agents.defaults.model], dropped: [.env], source_state_dir: /home/node/.openclaw}
previous:
  description: The claw's replaced state directory (null when it had none, and in check mode).
  returned: success
  type: str
  sample: /Users/claw-1a2b3c4d/.openclaw.pre-import-20261206T071500Z
uid:
  description: The claw user's uid.
  returned: success
  type: int
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _import as imp
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2


def main():
    module = AnsibleModule(
        argument_spec=dict(
            archive=dict(type="path", required=True),
            home=dict(type="path", required=True),
            state_dir=dict(type="str", default=".openclaw"),
            owner=dict(type="str", required=True),
            group=dict(type="int", required=True),
            config=dict(type="dict", required=True),
            source_state_dir=dict(type="path"),
            max_entries=dict(type="int", default=imp.DEFAULT_MAX_ENTRIES),
            max_bytes=dict(type="int", default=imp.DEFAULT_MAX_BYTES),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        uid = pwd.getpwnam(p["owner"]).pw_uid
    except KeyError:
        module.fail_json(msg=f"claw_import: no user {p['owner']!r}; provision the claw first")
    if uid == 0:
        module.fail_json(msg="claw_import: the owner must not be root")
    limits = imp.limits_for(p["max_entries"], p["max_bytes"])
    state_dir = os.path.join(os.path.normpath(p["home"]), p["state_dir"])
    try:
        r2.check_removable(p["home"])
        farm = imp.check_farm_config(p["config"], state_dir)
        if module.check_mode:
            info = imp.inspect_file(p["archive"], limits)
            _config, plan = imp.rewrite_config(info["config"], farm, state_dir, p["source_state_dir"])
            plan["dropped"] = [name for name in imp.DROPPED if name in info["names"]]
            module.exit_json(changed=True, format=info["format"], entries=info["entries"], files=info["files"],
                             bytes=info["bytes"], root=info["root"], plan=plan, previous=None, uid=uid)
        result = imp.import_export(p["archive"], p["home"], p["state_dir"], uid, p["group"], farm, limits,
                                   p["source_state_dir"])
    except ValueError as exc:
        module.fail_json(msg=f"claw_import: {exc}")
    except (r2.ArchiveError, OSError) as exc:
        module.fail_json(msg=f"claw_import: {exc}; the claw's state dir was not replaced")
    plan = dict(result["plan"], dropped=result["dropped"])
    module.exit_json(changed=True, format=result["format"], entries=result["entries"], files=result["files"],
                     bytes=result["bytes"], root=result["root"], plan=plan, previous=result["previous"], uid=uid)


if __name__ == "__main__":
    main()
