#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_paths
short_description: Make a claw's directories, root-managed files, /tmp lock and log directories without following links
version_added: 0.1.0
description:
  - Creates or repairs directories inside a claw's home (owner, group, mode) and writes files root manages there
    (the gateway's C(openclaw.json)), and makes the claw's lock directory in C(/tmp).
  - The claw's home belongs to its tenant, whose code runs as the claw user and may replace any entry with a
    symlink at any moment. This module never acts through such a path. It walks from the home's root-owned
    parent with directory file descriptors (C(O_NOFOLLOW|O_DIRECTORY), C(fstat) compared with C(lstat)),
    sets owner and mode with C(fchown)/C(fchmod), and writes a file under a fresh temporary name that it renames
    over the old one, so a symlink or a hard link at that name is replaced, never written through.
  - A symlink or a non-directory where a directory must be, or a directory of another user, is refused before
    anything is changed, with a message naming the path and the link's target. The tenant (or the operator)
    removes it, and the next run goes through.
  - The lock directory (O(lock_dir)) sits in a sticky world-writable directory where any local user may create
    any name first. A real directory of the claw's uid is kept (a root-owned one is given to the claw); anything
    else (a symlink, a file, another uid's directory) is moved, never followed, INTO a fresh directory of root
    with an unpredictable name, C(<lock_dir>.moved-<16 random hex>/), made with C(mkdir) (which fails on any
    existing name, so no neighbour can take it first), and a new directory is made.
  - The launchd log directory (O(log_dir)) is root's, outside the home, and made with its missing parents from the
    deepest existing one (which must be root's and not writable by other users) with C(mkdir) relative to a
    directory descriptor, never through a link.
  - Text that comes from the tenant (the old content of a file in the diff, a link's target in a message) is shown
    with its control characters escaped (C(\x1b)), so it cannot drive the operator's terminal.
  - Not for secrets (the diff shows file contents, but for O(files[].merge_json) files only the writer's own
    values); the claw's C(.env) is written by M(mirascope.clawfarm.claw_env).
  - Runs no commands.
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  home:
    description:
      - The claw's home. Its parent (C(/Users)) must be a root-owned directory other users cannot write to; the
        home itself must be a directory owned by O(owner).
    type: path
    required: true
  owner:
    description: The claw's user name; owner of everything made or repaired.
    type: str
    required: true
  group:
    description: Group id (number) of everything made or repaired.
    type: int
    required: true
  directories:
    description:
      - Directories relative to O(home), made or repaired with O(owner), O(group) and O(mode). Parents are
        included (V(.openclaw/workspace) brings V(.openclaw)). No C(..), no absolute paths.
    type: list
    elements: str
    default: []
  mode:
    description: Mode of the directories (octal string).
    type: raw
    default: "0700"
  files:
    description: Files relative to O(home) that root writes (their directory must be in O(directories)).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to O(home).
        type: str
        required: true
      content:
        description: The whole content (text).
        type: str
        required: true
      mode:
        description: Mode (octal string).
        type: raw
        default: "0600"
      merge_json:
        description:
          - O(files[].content) is the writer's part of a JSON config (a JSON object), not the whole file. An existing
            file that is the claw's own regular file holding a JSON object keeps every setting outside the writer's
            sections and is rewritten only when the merge changes it.
          - The writer's sections are each top-level key of the content, except C(agents), where only the keys the
            content sets under C(agents.defaults) are the writer's (the rules of M(mirascope.clawfarm.claw_import)).
            The gateway's C(openclaw.json) is written this way, so the settings the agent made (models, channels,
            plugins, agents) survive every re-provision, migration and upgrade.
          - The diff shows the writer's sections, with any value that is not the writer's own hidden, and only the
            names of the other settings (they may hold the tenant's secrets). A file that is not plain JSON is
            replaced by the content and kept beside it as C(<name>.replaced-<UTC time>-<random>).
        type: bool
        default: false
  lock_dir:
    description:
      - An absolute path in a root-owned sticky directory (C(/tmp/openclaw-state-locks-<uid>)) that must be a
        directory of O(owner) with mode O(mode). Omitted - no lock directory is touched.
    type: path
  log_dir:
    description:
      - An absolute path outside the home that must be a directory of root (C(0:0), mode C(0755)), made with its
        missing parents (C(0:0 0755)) - the gateway's launchd log directory, which launchd opens as root
        (C(/Library/Logs/mirascope/claws/<user>)). Omitted - none is touched.
    type: path
  lstat:
    description:
      - Paths relative to O(home) (their directory must be in O(directories)) to look at once the rest is done,
        with C(lstat) (a link is reported, never followed; nothing is opened). Returned in RV(lstat).
      - The claw role asks for the C(.env), to know before writing it whether the claw already has a token of its
        own (a link, a hard link or another user's file is not the claw's).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Make the claw's state directories and its gateway configuration
  mirascope.clawfarm.claw_paths:
    home: /Users/claw-1a2b3c4d
    owner: claw-1a2b3c4d
    group: 20
    directories: [.openclaw, .openclaw/workspace, .openclaw/logs, .openclaw/tmp, .openclaw/cache]
    files:
      - path: .openclaw/openclaw.json
        content: "{{ claw_config | to_nice_json }}\n"
        merge_json: true  # the agent's own settings in the file are kept
    lock_dir: /tmp/openclaw-state-locks-{{ claw_user.uid }}
    log_dir: /Library/Logs/mirascope/claws/claw-1a2b3c4d
    lstat: [.openclaw/.env]
  become: true
"""

RETURN = r"""
actions:
  description: What was (or, in check mode, would be) done, one line each.
  returned: always
  type: list
  elements: str
  sample: ["create /Users/claw-1a2b3c4d/.openclaw/cache (601:20 0700)", "write /Users/claw-1a2b3c4d/.openclaw/openclaw.json (content)"]
moved_aside:
  description: Entries found at O(lock_dir) that were not the claw's directory and were renamed aside.
  returned: always
  type: list
  elements: str
files_changed:
  description: The O(files) paths that were (or would be) written.
  returned: always
  type: list
  elements: str
lstat:
  description:
    - For each path of O(lstat), what is there after the run, never followed - C(type) (V(file), V(directory),
      V(symlink), V(other) or V(missing)), the owner's C(uid) and the number of hard C(links).
  returned: always
  type: dict
  sample: {".openclaw/.env": {"type": "file", "uid": 601, "links": 1}}
"""

import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw_paths


def _mode(value, what, module):
    try:
        mode = int(str(value), 8) if isinstance(value, str) else int(value)
    except ValueError:
        module.fail_json(msg=f"{what} {value!r} is not an octal mode such as '0700'")
    if not 0 <= mode <= 0o777:
        module.fail_json(msg=f"{what} {value!r} must be a permission mode between 0000 and 0777")
    return mode


def main():
    module = AnsibleModule(
        argument_spec=dict(
            home=dict(type="path", required=True),
            owner=dict(type="str", required=True),
            group=dict(type="int", required=True),
            directories=dict(type="list", elements="str", default=[]),
            mode=dict(type="raw", default="0700"),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                content=dict(type="str", required=True),
                mode=dict(type="raw", default="0600"),
                merge_json=dict(type="bool", default=False),
            )),
            lock_dir=dict(type="path"),
            log_dir=dict(type="path"),
            lstat=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        uid = pwd.getpwnam(p["owner"]).pw_uid
    except KeyError:
        module.fail_json(msg=f"user {p['owner']} does not exist; create the claw's user first")
    mode = _mode(p["mode"], "mode", module)
    files = [{"path": f["path"], "content": f["content"], "mode": _mode(f["mode"], f"mode of {f['path']}", module),
              "merge_json": f["merge_json"]} for f in p["files"]]
    try:
        for item in p["directories"] + [f["path"] for f in files] + p["lstat"]:
            _claw_paths.validate_relative(item)
        logs = {"actions": []}
        if p["log_dir"]:
            logs = _claw_paths.ensure_root_dir(p["log_dir"], 0o755, check_mode=module.check_mode)
        tree = _claw_paths.ensure_claw_tree(p["home"], uid, p["group"], p["directories"], files, mode=mode,
                                            check_mode=module.check_mode, lstat=p["lstat"])
        lock = {"changed": False, "actions": [], "moved_aside": []}
        if p["lock_dir"]:
            lock = _claw_paths.ensure_lock_dir(p["lock_dir"], uid, p["group"], mode=mode, check_mode=module.check_mode)
    except _claw_paths.PathRefused as exc:
        module.fail_json(msg=f"refused: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"cannot prepare the claw's paths under {p['home']}: {exc}")
    actions = logs["actions"] + tree["actions"] + lock["actions"]
    home = p['home'].rstrip('/')
    changed_files = [rel for rel in tree["files"]
                     if any(a.startswith((f"write {home}/{rel} ", f"replace {home}/{rel} ")) for a in tree["actions"])]
    diff = [{"before_header": "claw paths", "after_header": "claw paths", "before": "",
             "after": "".join(a + "\n" for a in actions if not a.startswith(("write ", "replace ")))}]
    for rel in changed_files:
        diff.append({"before_header": f"{p['home']}/{rel}", "after_header": f"{p['home']}/{rel}",
                     "before": tree["files"][rel]["before"] or "", "after": tree["files"][rel]["after"]})
    module.exit_json(changed=bool(actions), actions=actions, moved_aside=lock["moved_aside"], files_changed=changed_files,
                     lstat=tree["lstat"], diff=diff)


if __name__ == "__main__":
    main()
