# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers of macOS settings output used by the mini_base role (PRIVATE to the collection).

Formats (docs/reference/macos-admin.md 2.8, pmset(1), systemsetup(8)):
``pmset -g`` prints a header then one setting per line, the name padded to a column and the value first:
`` sleep                0 (sleep prevented by sharingd, powerd)``; names may contain spaces
(`` Sleep On Power Button 1``). ``systemsetup -getrestartpowerfailure`` prints
``Restart After Power Failure: On|Off`` or ``Not supported on this machine.``.
"""

from __future__ import annotations

import re

PMSET_LINE = re.compile(r"^\s+(?P<name>[A-Za-z][A-Za-z ]*?)\s+(?P<value>-?\d+)\b")


def parse_pmset(text: str) -> dict:
    """``pmset -g`` / ``pmset -g custom`` output -> ``{setting: int}`` (the first profile's values when several)."""
    settings = {}
    for line in text.splitlines():
        match = PMSET_LINE.match(line)
        if match and match.group("name") not in settings:
            settings[match.group("name")] = int(match.group("value"))
    return settings


def pmset_changes(text: str, wanted: dict) -> list:
    """The ``pmset -a`` arguments that bring ``pmset -g`` output to ``wanted``: ``["sleep", "0", ...]``.

    A setting the Mac does not list (its model lacks it, e.g. ``autorestart`` on some) is skipped, as pmset
    would refuse it.
    """
    current = parse_pmset(text)
    args = []
    for name, value in wanted.items():
        if name in current and current[name] != int(value):
            args += [name, str(int(value))]
    return args


def restart_after_power_failure(text: str) -> bool | None:
    """``systemsetup -getrestartpowerfailure`` -> True (On), False (Off) or None (not supported / unknown)."""
    match = re.search(r"Restart After Power Failure:\s*(On|Off)", text)
    return None if not match else match.group(1) == "On"
