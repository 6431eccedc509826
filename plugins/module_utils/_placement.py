# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a new claw goes (PRIVATE to the collection).

The Minis are the source of truth: their port claims say which claws they hold. Placement only ranks candidates;
the port claim on the Mini (an exclusive create) is what makes it race-free - a run whose first choice filled up
meanwhile claims on the next candidate.
"""

from __future__ import annotations

import re

ACTIVE = "active"
# macOS's vm_stat(1): the header names the page size (16384 on Apple silicon, 4096 on Intel), then one
# ``Name:   <count>.`` line per counter.
VM_STAT = "/usr/bin/vm_stat"
_VM_STAT_PAGE_SIZE = re.compile(r"page size of (\d+) bytes")
_VM_STAT_LINE = re.compile(r'^"?([^":]+)"?:\s+(\d+)\.?\s*$')


class VmStatError(ValueError):
    """vm_stat's output could not be read (no page size, or no free/inactive counts)."""


def parse_vm_stat(output: str) -> dict:
    """macOS ``vm_stat`` output as ``{"page_size": bytes, "pages": {counter name: count}}``.

    Source: ``/usr/bin/vm_stat`` with no arguments (one snapshot), e.g. ``Mach Virtual Memory Statistics: (page size
    of 16384 bytes)`` then ``Pages free:    12345.``; quoted names (``"Translation faults"``) are unquoted.

    Raises:
        VmStatError: no page size in the header.
    """
    match = _VM_STAT_PAGE_SIZE.search(output)
    if not match:
        raise VmStatError("vm_stat printed no page size (expected 'Mach Virtual Memory Statistics: (page size of N bytes)')")
    pages = {}
    for line in output.splitlines()[1:]:
        counter = _VM_STAT_LINE.match(line.strip())
        if counter:
            pages[counter.group(1).strip()] = int(counter.group(2))
    return {"page_size": int(match.group(1)), "pages": pages}


def memory_available_mb(output: str) -> int:
    """The Mini's available memory in MiB from ``vm_stat`` output: free + inactive pages (what psutil counts as
    available on macOS; inactive pages are reclaimed without paging anything out).

    Raises:
        VmStatError: the output has no page size or lacks the ``Pages free`` / ``Pages inactive`` counters.
    """
    stats = parse_vm_stat(output)
    pages = stats["pages"]
    if "Pages free" not in pages or "Pages inactive" not in pages:
        raise VmStatError("vm_stat printed no 'Pages free' / 'Pages inactive' counts")
    return (pages["Pages free"] + pages["Pages inactive"]) * stats["page_size"] // (1024 * 1024)


def rank_minis(minis: dict, claw_id: str) -> list:
    """Candidate Minis for ``claw_id``, best first.

    Args:
        minis: ``{name: {"status": active|draining|offline|maintenance, "used": int, "free_slots": int,
            "memory_available_mb": int|None, "claw_ids": [str], "reachable": bool}}``.
    Returns:
        ``[name]`` - the Mini that already holds the claw (re-provision) alone; else every reachable ``active`` Mini
        with a free slot, fewest claws first, then most available memory, then by name. Empty: no capacity.
    """
    for name, info in sorted(minis.items()):
        if claw_id in (info.get("claw_ids") or []):
            return [name]
    candidates = [(name, info) for name, info in minis.items()
                  if info.get("status", ACTIVE) == ACTIVE and info.get("reachable", True) and info.get("free_slots", 0) > 0]
    candidates.sort(key=lambda item: (item[1].get("used", 0), -(item[1].get("memory_available_mb") or 0), item[0]))
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
