# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action of mirascope.clawfarm.claw_env: save a new token on the control node before it can reach the Mini.

With O(fallback_token_file), the fallback token is written to a new pending file beside it (0600, its directory made
0700 when missing) *before* the module runs on the Mini; when the module reports that the token became the claw's
(``fallback_token_used``), the pending file is renamed over the token file, otherwise it is removed. A token that is
in force on the Mini is therefore always on the control node's disk too, in one task and one round trip to the Mini
(the role used to spend two control-node module runs on it). The module itself never sees the option.
"""
from __future__ import annotations

import os
import secrets

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

PENDING_SUFFIX = ".pending-"


def write_pending(token_file: str, token: str) -> str:
    """Write ``token`` and a newline to a new file beside ``token_file``; returns its path.

    The directory is made (0700) when missing; the file is created exclusively with mode 0600 (``O_EXCL``,
    ``O_NOFOLLOW``: never through a link) and fsynced. Raises OSError when it cannot be written.
    """
    directory = os.path.dirname(os.path.abspath(token_file))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pending = f"{os.path.abspath(token_file)}{PENDING_SUFFIX}{secrets.token_hex(6)}"
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (token + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return pending


def settle_pending(pending: str, token_file: str, used: bool) -> bool:
    """Rename ``pending`` over ``token_file`` when the token was ``used``, else remove it; returns ``used``."""
    if used:
        os.replace(pending, token_file)
    else:
        os.unlink(pending)
    return used


class ActionModule(ActionBase):
    """Runs the claw_env module; with fallback_token_file, saves the fallback token on the control node first."""

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        token_file = args.pop("fallback_token_file", None)
        pending = None
        if token_file and args.get("fallback_token") and not self._task.check_mode:
            try:
                pending = write_pending(token_file, args["fallback_token"])
            except OSError as exc:
                raise AnsibleActionFail(
                    f"cannot save the claw's new token on the control node in {token_file} ({exc.strerror}): nothing "
                    "was changed on the Mini. Make the directory writable, or set claw_token_file to another path "
                    "(empty: the token is shown once instead)") from None
        module_result = self._execute_module(module_name="mirascope.clawfarm.claw_env", module_args=args,
                                             task_vars=task_vars)
        if pending:
            used = bool(module_result.get("fallback_token_used"))
            try:
                module_result["fallback_token_saved"] = settle_pending(pending, token_file, used)
            except OSError as exc:
                module_result.update(failed=True, msg=(
                    f"the claw's new token is in force on the Mini but could not be moved into {token_file} "
                    f"({exc.strerror}); it is saved in {pending}: move it there by hand"))
        result.update(module_result)
        return result
