# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter that checks a change of a claw's settings on the control node, before anything reaches a Mini."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw


def claw_settings(settings, require_one=False) -> dict:
    """Check ``{"claw_env", "claw_env_set", "claw_env_unset", "gateway_token"}`` with :func:`_claw.validate_settings`.

    Returns:
        Names only (never values): ``{"replace", "set", "unset", "token"}``.

    Raises:
        AnsibleFilterError: an invalid entry; the message names it and never shows a value.
    """
    if not isinstance(settings, dict):
        raise AnsibleFilterError("claw_settings expects a mapping")
    try:
        return _claw.validate_settings(settings.get("claw_env"), settings.get("claw_env_set"), settings.get("claw_env_unset"),
                                       settings.get("gateway_token"), require_one=require_one)
    except _claw.ClawInputError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule:
    """``claw_settings``."""

    def filters(self):
        return {"claw_settings": claw_settings}
