# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tombstones on a Mini: homes kept by ``archive=false`` deprovisions and migration sources (PRIVATE).

``<tombstone dir>/<claw_id>-<UTC YYYYmmddTHHMMSSZ>`` (root, 0700), the time being when the home was moved there
(roles/claw/tasks/absent.yml): the name is the clock, not the tree's mtimes (the tenant's files keep theirs).
Sizes are counted and trees removed by directory fds, never following a link, with a bounded number of fds at any
depth (:func:`._r2.remove_tree`), since the tree is a former tenant's.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import datetime, timedelta, timezone

from ._r2 import _OPEN_DIR, _listdir, _same, remove_tree, walk_tree

NAME = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(\d{8}T\d{6}Z)$")


def parse_name(name: str):
    """``(claw_id, created)`` of a tombstone's name, or None for anything else (never touched)."""
    match = NAME.match(name)
    if not match:
        return None
    return match.group(1), datetime.strptime(match.group(2), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def tree_bytes(dir_fd: int, name: str) -> int:
    """Bytes of the regular files under ``name`` (apparent sizes; links and hard links counted as entries: once per
    name), without following a link, iteratively."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
    if not _same(os.fstat(fd), st):
        os.close(fd)
        return 0
    try:
        return sum(walked[3].st_size for walked in walk_tree(fd, lambda name: None)
                   if walked[0] == "entry" and stat.S_ISREG(walked[3].st_mode))
    finally:
        os.close(fd)


def survey(path: str, retention_days: int, existing=(), now: datetime | None = None) -> list:
    """The tombstones in ``path``: ``[{"name", "claw_id", "created", "bytes", "expired", "claw_exists"}]``, oldest first.

    ``expired``: older than ``retention_days`` and its claw is not in ``existing`` (a claw that exists again keeps its
    tombstones).  A missing directory gives an empty list; other names are ignored.
    """
    try:
        top = os.open(path, _OPEN_DIR)
    except FileNotFoundError:
        return []
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=retention_days)
    existing = {str(c).lower() for c in existing}
    out = []
    try:
        for name in sorted(_listdir(top)):
            parsed = parse_name(name)
            if not parsed:
                continue
            claw_id, created = parsed
            out.append({"name": name, "claw_id": claw_id, "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "bytes": tree_bytes(top, name), "claw_exists": claw_id in existing,
                        "expired": created < cutoff and claw_id not in existing})
    finally:
        os.close(top)
    out.sort(key=lambda t: t["created"])
    return out


def prune(path: str, tombstones: list) -> list:
    """Remove the expired tombstones of a :func:`survey`; returns their names."""
    removed = []
    for item in tombstones:
        if item["expired"]:
            remove_tree(os.path.join(path, item["name"]))
            removed.append(item["name"])
    return removed
