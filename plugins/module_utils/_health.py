# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health samples of a Mini and its claws, shaped like the design's health JSON (PRIVATE to the collection).

Host metrics come from psutil (https://psutil.readthedocs.io/): ``cpu_percent`` over an interval,
``getloadavg``, ``virtual_memory``, ``disk_usage`` per mounted volume, ``boot_time``; per claw process
``memory_info().rss``, ``cpu_percent``, ``create_time``. Units: bytes, percent (0-100), seconds.
"""

from __future__ import annotations

import time

# Mounts that are not storage (macOS: /System/Volumes/VM & co.; Linux pseudo file systems).
SKIP_FSTYPES = frozenset({"devfs", "autofs", "proc", "sysfs", "tmpfs", "devtmpfs", "cgroup", "cgroup2", "overlay", "nullfs", "squashfs"})
SKIP_MOUNT_PREFIXES = ("/System/Volumes/VM", "/System/Volumes/Preboot", "/System/Volumes/Update", "/System/Volumes/xarts",
                       "/System/Volumes/iSCPreboot", "/System/Volumes/Hardware", "/dev", "/proc", "/sys", "/run")


def mini_sample(psutil, cpu_interval: float = 1.0, extra_mounts=("/",)) -> dict:
    """``{"cpu_percent", "load_avg": [1, 5, 15], "memory": {...}, "disks": [...], "uptime_s"}`` for the host."""
    memory = psutil.virtual_memory()
    disks, seen = [], set()
    partitions = [p for p in psutil.disk_partitions(all=False)
                  if p.fstype not in SKIP_FSTYPES and not p.mountpoint.startswith(SKIP_MOUNT_PREFIXES)]
    mounts = [p.mountpoint for p in partitions] + list(extra_mounts)
    for mount in mounts:
        if mount in seen:
            continue
        seen.add(mount)
        try:
            usage = psutil.disk_usage(mount)
        except OSError:
            continue
        disks.append({"mount": mount, "used_bytes": usage.used, "total_bytes": usage.total, "percent": usage.percent})
    return {
        "cpu_percent": psutil.cpu_percent(interval=cpu_interval),
        "load_avg": [round(x, 2) for x in psutil.getloadavg()],
        "memory": {"used_bytes": memory.total - memory.available, "total_bytes": memory.total,
                   "percent": round(100.0 * (memory.total - memory.available) / memory.total, 1) if memory.total else 0.0},
        "disks": disks,
        "uptime_s": round(time.time() - psutil.boot_time()),
    }


def process_sample(psutil, pid: int | None, cpu_interval: float = 0.2) -> dict:
    """``{"rss_bytes", "cpu_percent", "uptime_s"}`` of a pid and its children (the gateway's helpers); Nones when gone."""
    empty = {"rss_bytes": None, "cpu_percent": None, "uptime_s": None}
    if not pid:
        return empty
    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
        for p in family:
            p.cpu_percent(None)
        time.sleep(cpu_interval)
        rss = cpu = 0.0
        for p in family:
            try:
                rss += p.memory_info().rss
                cpu += p.cpu_percent(None)
            except psutil.Error:
                pass
        return {"rss_bytes": int(rss), "cpu_percent": round(cpu, 1), "uptime_s": round(time.time() - proc.create_time())}
    except psutil.Error:
        return empty


def claws_from_claims(claims: dict) -> list[tuple[int, str]]:
    """Port claim files (``{port: claw_id}``) as a sorted list of ``(port, claw_id)``."""
    return sorted((int(port), claw_id) for port, claw_id in claims.items())
