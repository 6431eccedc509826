# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that read macOS settings output for the mini_base role."""

from __future__ import annotations

from ansible_collections.mirascope.clawfarm.plugins.module_utils import _macos_settings


class FilterModule:
    """``pmset_settings``, ``pmset_changes``, ``restart_after_power_failure``."""

    def filters(self):
        return {
            "pmset_settings": _macos_settings.parse_pmset,
            "pmset_changes": _macos_settings.pmset_changes,
            "restart_after_power_failure": _macos_settings.restart_after_power_failure,
        }
