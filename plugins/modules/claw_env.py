#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_env
short_description: Write a claw's secret dotenv file (gateway token and claw_env), 0600; settings change only when asked
version_added: 0.1.0
description:
  - Writes the OpenClaw state dir's C(.env) (a trusted dotenv file the gateway loads at start) with the
    gateway token as C(CLAW_GATEWAY_TOKEN) plus the environment the web backend passes in
    (C(ANTHROPIC_API_KEY), C(ANTHROPIC_BASE_URL), C(PRIMARY_MODEL_ID), ...).
  - Settings change only when asked. Without O(env) the claw's current variables are kept; O(env) replaces them
    all; O(env_set) adds or changes single variables and O(env_unset) removes single variables (both after O(env)).
    When O(gateway_token) is not given, the token already in the file is kept; when there is none,
    O(fallback_token) is used, so re-running the task never rotates a token or drops a key by accident.
  - The current file is trusted only if it is a regular file owned by O(owner) with one link (opened with
    C(O_NOFOLLOW) and checked with C(fstat)). A symlink or hard link (to another claw's file, say) is never read;
    no token or variable of it is kept and the diff never lists its names. It is replaced by a new file holding
    O(gateway_token), or else O(fallback_token) (a new token the caller has saved), and only the variables of
    O(env) and O(env_set); a warning names what was found.
  - The file is written atomically through a descriptor of its directory (opened with C(O_NOFOLLOW); a linked
    state dir is refused). A new temporary file is created exclusively, owned by O(owner)/O(group), mode 0600,
    then renamed over C(.env) (a link there is replaced, never followed). Secrets never appear on a command line;
    the module runs no command.
  - The diff lists variable names that are added, changed or removed; values are never shown.
  - O(env), O(env_set), O(gateway_token) and O(fallback_token) are C(no_log) options, so their values are masked
    in every output, and errors (bad names, missing owner) stay readable.
author:
  - Mirascope platform team (@mirascope)
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
    description:
      - The claw's variables besides the token, replacing the current ones. Omitted (null) - keep the current ones.
      - Names must be valid environment variable names and not reserved by the claw's job.
    type: dict
  env_set:
    description: Variables to add or change (applied after O(env) or the kept variables).
    type: dict
    default: {}
  env_unset:
    description: Names of variables to remove (absent names are no change). A name may not be in O(env_set) too.
    type: list
    elements: str
    default: []
  gateway_token:
    description: The gateway token (at least 32 characters). When given it replaces the token in the file.
    type: str
  fallback_token:
    description: Token to use only when O(gateway_token) is not given and the file holds none yet
      (the claw role generates it on the control node). RV(fallback_token_used) says whether it was used.
    type: str
  fallback_token_file:
    description:
      - A file on the control node where O(fallback_token) is saved (0600; its directory made 0700 when missing)
        whenever it becomes the claw's token. Handled by the module's action plugin on the control node, never sent
        to the Mini - the token is written to a pending file beside it before the Mini is touched, which is renamed
        into place when RV(fallback_token_used), removed otherwise, so a token in force is never only on the Mini.
      - Has no effect in check mode or without O(fallback_token).
    type: path
  keep_from:
    description:
      - Another dotenv file of the same claw whose token and variables are the ones to keep (instead of O(path)'s),
        with the same trust checks. A restore swaps in the archived home with its C(.env); the claw's present
        settings are then taken from the replaced home's file. When it does not exist, O(path)'s own file is used.
    type: path
"""

EXAMPLES = r"""
- name: Write the claw's secrets, keeping what is not asked to change
  mirascope.clawfarm.claw_env:
    path: /Users/claw-1a2b3c4d/.openclaw/.env
    owner: claw-1a2b3c4d
    env_set:
      PRIMARY_MODEL_ID: claude-sonnet-4
    env_unset: [ANTHROPIC_BASE_URL]
  no_log: true
  become: true

- name: Give a new claw a token, saved on the control node before it reaches the Mini
  mirascope.clawfarm.claw_env:
    path: /Users/claw-1a2b3c4d/.openclaw/.env
    owner: claw-1a2b3c4d
    fallback_token: "{{ lookup('ansible.builtin.password', '/dev/null', length=48, chars=['ascii_letters', 'digits']) }}"
    fallback_token_file: "{{ playbook_dir }}/../secrets/1a2b3c4d-0000-4000-8000-000000000000.token"
  no_log: true
  become: true

- name: Replace the claw's whole env (claw_env)
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
  description: Variable names in force in the file (including C(CLAW_GATEWAY_TOKEN)); never values.
  returned: always
  type: list
  elements: str
token_fingerprint:
  description: First 12 hex digits of the sha256 of the token in force, to tell tokens apart without revealing them.
  returned: always
  type: str
dropped:
  description:
    - Names of the current file that were not kept because they are not valid claw_env entries (hand-written).
    - A name that is not a valid name is shown quoted, cut at 64 characters, control characters escaped (C(\x1b)).
  returned: always
  type: list
  elements: str
fallback_token_saved:
  description: Whether O(fallback_token) was saved to O(fallback_token_file) on the control node in this run.
  returned: when O(fallback_token_file) and O(fallback_token) are given, not in check mode
  type: bool
replaced_untrusted:
  description: Whether the current file was not trusted (a link, another owner, several links) and is replaced unread.
  returned: always
  type: bool
"""

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw, _claw_paths, _facts


def open_state_dir(path: str, uid: int) -> int:
    """A descriptor of the dotenv file's directory, refusing a link there or a directory someone else owns.

    Raises:
        _claw.DotenvRefused: the directory is missing, a link, not a directory, or owned by neither root nor the claw.
    """
    directory = os.path.dirname(path) or "."
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if os.path.islink(directory):
            raise _claw.DotenvRefused(f"{directory} is a symbolic link to {os.readlink(directory)[:200]!r}; "
                                      "re-provision the claw to recreate its state dir")
        raise _claw.DotenvRefused(f"{directory} cannot be opened ({exc.strerror}): provision the claw first")
    st = os.fstat(fd)
    if st.st_uid not in (0, uid):
        os.close(fd)
        raise _claw.DotenvRefused(f"{directory} is owned by uid {st.st_uid}, not the claw's uid {uid}")
    return fd


def current_state(dir_fd: int, path: str, uid: int):
    """``(env, text, (uid, gid, mode) or None, refusal)`` of the current file, read only if trusted."""
    name = os.path.basename(path)
    try:
        text = _claw.read_dotenv_text(path, uid, dir_fd)
    except _claw.DotenvRefused as exc:
        return {}, None, None, str(exc)
    if text is None:
        return {}, None, None, None
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    return _claw.parse_dotenv(text), text, (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), None


def shown(name: str) -> str:
    """A name from the tenant's file as output may show it: valid names as they are, anything else quoted and cut."""
    return name if _claw.ENV_NAME.match(name) else _claw_paths.escape_control(repr(name)[:64])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            owner=dict(type="str", required=True),
            group=dict(type="str", default="20"),
            env=dict(type="dict", no_log=True),
            env_set=dict(type="dict", default={}, no_log=True),
            env_unset=dict(type="list", elements="str", default=[]),
            gateway_token=dict(type="str", no_log=True),
            fallback_token=dict(type="str", no_log=True),
            keep_from=dict(type="path"),
            fallback_token_file=dict(type="path"),  # the action plugin's, on the control node: never reaches here
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        _claw.desired_env({}, p["env"], p["env_set"], p["env_unset"])  # input errors before anything is read
        for option in ("gateway_token", "fallback_token"):
            if p[option]:
                _claw.validate_token(p[option])
        uid = pwd.getpwnam(p["owner"]).pw_uid
        gid = int(p["group"]) if p["group"].isdigit() else grp.getgrnam(p["group"]).gr_gid
    except _claw.ClawInputError as exc:
        module.fail_json(msg=str(exc))
    except KeyError as exc:
        module.fail_json(msg=f"unknown owner or group {exc}: create the claw user first")
    try:
        dir_fd = open_state_dir(p["path"], uid)
    except _claw.DotenvRefused as exc:
        module.fail_json(msg=_claw_paths.escape_control(f"cannot write the claw's secrets: {exc}"))
    try:
        current, text, owner_mode, refusal = current_state(dir_fd, p["path"], uid)
        if p["keep_from"]:
            try:
                kept = _claw.read_dotenv(p["keep_from"], uid)
            except _claw.DotenvRefused as exc:
                kept, refusal = {}, str(exc)
            if kept is not None:
                current = kept
        env, dropped = _claw.desired_env(current, p["env"], p["env_set"], p["env_unset"])
        token = p["gateway_token"] or current.get(_claw.TOKEN_VAR)
        fallback_used = token is None
        if fallback_used:
            if not p["fallback_token"]:
                module.fail_json(msg=_claw_paths.escape_control(f"{refusal}. " if refusal else "")
                                 + "the claw has no gateway token yet: pass gateway_token or fallback_token")
            token = p["fallback_token"]
        desired = dict(env, **{_claw.TOKEN_VAR: token})
        content = _claw.render_dotenv(desired)
        changed = text != content or owner_mode != (uid, gid, 0o600)
        if changed and not module.check_mode:
            _claw_paths.replace_file(os.path.basename(p["path"]), dir_fd, content.encode(), uid, gid, 0o600)
    except _claw.ClawInputError as exc:
        module.fail_json(msg=str(exc))
    finally:
        os.close(dir_fd)
    if refusal:
        module.warn(_claw_paths.escape_control(f"replaced an untrusted .env without reading it: {refusal}"))
    if dropped:
        module.warn(f"dropped from {p['path']} entries that are not valid claw_env names: {', '.join(map(shown, dropped))}")
    names_before, names_after = set(current), set(desired)
    changed_names = sorted(n for n in names_before & names_after if current[n] != desired[n])
    diff = {
        "before": "".join(f"{shown(n)}=<hidden>\n" for n in sorted(names_before)),
        "after": "".join(f"{n}=<hidden{' (changed)' if n in changed_names else ''}>\n" for n in sorted(names_after)),
        "before_header": p["path"], "after_header": p["path"],
    }
    result = dict(changed=changed, fallback_token_used=fallback_used and not module.check_mode, names=sorted(names_after),
                  token_fingerprint=_facts.token_fingerprint(token), dropped=[shown(n) for n in dropped],
                  replaced_untrusted=bool(refusal))
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
