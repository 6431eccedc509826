# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that read macOS settings output for the mini_base role."""

from __future__ import annotations

from ansible_collections.mirascope.clawfarm.plugins.module_utils import _macos_settings, _placement


def placement_view(names, hostvars) -> dict:
    """What rank_minis needs, from each Mini's host vars after _place_claw.yml read them:
    ``{name: {"status", "used", "free_slots", "memory_available_mb", "claw_ids", "reachable"}}`` (``place_claims`` is the
    registered claw_port_info result, with ``memory_available_mb`` when it was asked for ``memory``)."""
    view = {}
    for name in names:
        hv = hostvars[name]
        claims = hv.get("place_claims") or {}
        used = claims.get("used_ports") or {}
        view[name] = {"status": hv.get("mini_status", "active"), "used": len(used), "free_slots": claims.get("free_slots") or 0,
                      "memory_available_mb": claims.get("memory_available_mb"), "claw_ids": list(used.values()),
                      "reachable": "free_slots" in claims and not claims.get("unreachable")}
    return view


def reachable_status_minis(names, hostvars) -> list:
    """The Minis a fleet play may touch: every name whose ``mini_status`` (default ``active``) is neither
    ``offline`` nor ``maintenance``, in inventory order."""
    return [name for name in names if hostvars[name].get("mini_status", "active") not in ("offline", "maintenance")]


class FilterModule:
    """``pmset_settings``, ``pmset_changes``, ``restart_after_power_failure``, ``rank_minis``, ``locate_claw``,
    ``migration_targets``, ``placement_view``, ``reachable_status_minis``."""

    def filters(self):
        return {
            "pmset_settings": _macos_settings.parse_pmset,
            "pmset_changes": _macos_settings.pmset_changes,
            "restart_after_power_failure": _macos_settings.restart_after_power_failure,
            "rank_minis": _placement.rank_minis,
            "locate_claw": _placement.locate_claw,
            "migration_targets": _placement.migration_targets,
            "placement_view": placement_view,
            "reachable_status_minis": reachable_status_minis,
        }
