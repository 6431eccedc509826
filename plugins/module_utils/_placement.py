# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a new claw goes (PRIVATE to the collection).

The Minis are the source of truth: their port claims say which claws they hold. Placement only ranks candidates;
the port claim on the Mini (an exclusive create) is what makes it race-free - a run whose first choice filled up
meanwhile claims on the next candidate.
"""

from __future__ import annotations

ACTIVE = "active"


def rank_minis(minis: dict, claw_id: str) -> list:
    """Candidate Minis for ``claw_id``, best first.

    Args:
        minis: ``{name: {"status": active|draining|offline|maintenance, "used": int, "free_slots": int,
            "memfree_mb": int|None, "claw_ids": [str], "reachable": bool}}``.
    Returns:
        ``[name]`` - the Mini that already holds the claw (re-provision) alone; else every reachable ``active`` Mini
        with a free slot, fewest claws first, then most free memory, then by name. Empty: no capacity.
    """
    for name, info in sorted(minis.items()):
        if claw_id in (info.get("claw_ids") or []):
            return [name]
    candidates = [(name, info) for name, info in minis.items()
                  if info.get("status", ACTIVE) == ACTIVE and info.get("reachable", True) and info.get("free_slots", 0) > 0]
    candidates.sort(key=lambda item: (item[1].get("used", 0), -(item[1].get("memfree_mb") or 0), item[0]))
    return [name for name, _score in candidates]


def locate_claw(minis: dict, claw_id: str) -> list:
    """The Minis whose port claims hold ``claw_id`` (normally exactly one).

    Args:
        minis: the :func:`rank_minis` view (``claw_ids`` per Mini).
    Returns:
        ``[name]``, sorted: empty when no reachable Mini holds the claw, several when claims disagree (run audit.yml).
    """
    return sorted(name for name, info in minis.items() if claw_id in (info.get("claw_ids") or []))


def migration_targets(minis: dict, claw_id: str, source: str) -> list:
    """Candidate targets for moving ``claw_id`` off ``source``, best first (the :func:`rank_minis` order).

    The source and any Mini that already holds a claim for the claw are left out, so a claw is never "moved"
    onto a Mini that has it. Empty: no capacity elsewhere.
    """
    others = {name: info for name, info in minis.items()
              if name != source and claw_id not in (info.get("claw_ids") or [])}
    return rank_minis(others, claw_id)
