"""The Minis the service knows: group ``minis`` of the Ansible inventory, read with ``ansible-inventory --list``.

Per Mini only these host vars are used and shown: ``mini_status`` (active | draining | offline | maintenance,
default active), ``claw_max_per_mini`` (default 12), ``claw_base_port`` (default 8100), ``mini_timezone``
(IANA name for the nightly backup time, default UTC).
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from .config import REPO

STATUSES = ("active", "draining", "offline", "maintenance")


class Inventory:
    """Cached view of the inventory (refreshed every ``ttl`` seconds)."""

    def __init__(self, path: Path, ttl: float = 30.0):
        self.path, self.ttl = path, ttl
        self._lock = threading.Lock()
        self._cached: dict | None = None
        self._read_at = 0.0

    def minis(self) -> dict[str, dict]:
        """``{name: {"name", "status", "max_claws", "base_port"}}`` for every host of group ``minis``.

        Raises:
            RuntimeError: ansible-inventory failed (the message is its stderr).
        """
        with self._lock:
            if self._cached is None or time.monotonic() - self._read_at > self.ttl:
                self._cached = self._read()
                self._read_at = time.monotonic()
            return self._cached

    def _read(self) -> dict:
        binary = Path(sys.executable).parent / "ansible-inventory"
        proc = subprocess.run([str(binary), "-i", str(self.path), "--list"], capture_output=True, text=True, cwd=REPO,
                              env={"PATH": f"{binary.parent}:/usr/bin:/bin", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                                   "HOME": str(Path.home())}, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"ansible-inventory failed: {proc.stderr.strip()[:500]}")
        data = json.loads(proc.stdout)
        hostvars = data.get("_meta", {}).get("hostvars", {})
        minis = {}
        for name in data.get("minis", {}).get("hosts", []):
            hv = hostvars.get(name, {})
            status = hv.get("mini_status", "active")
            minis[name] = {"name": name, "status": status if status in STATUSES else "active",
                           "max_claws": int(hv.get("claw_max_per_mini", 12)), "base_port": int(hv.get("claw_base_port", 8100)),
                           "timezone": str(hv.get("mini_timezone", "UTC"))}
        return minis


def place(minis: dict[str, dict], load: dict[str, int]) -> str | None:
    """Pick the Mini for a new claw: ``active`` only, with a free slot, fewest claws first (then by name).

    Args:
        minis: from :meth:`Inventory.minis`.
        load: claws (present, plus provisions queued or running) per Mini name.
    Returns:
        The Mini's name, or None when no active Mini has room.
    """
    candidates = [m for m in minis.values() if m["status"] == "active" and load.get(m["name"], 0) < m["max_claws"]]
    if not candidates:
        return None
    return min(candidates, key=lambda m: (load.get(m["name"], 0), m["name"]))["name"]
