"""The Minis the service knows: group ``minis`` of the operator's Ansible inventory (read with ``ansible-inventory
--list``) and the Minis registered through ``POST /v1/minis`` (table ``minis``, :class:`api.db.Mini`).

Per Mini only these host vars are used and shown: ``mini_status`` (active | draining | offline | maintenance,
default active), ``claw_max_per_mini`` and ``claw_base_port`` (default: the farm role's, :data:`api.config.DEFAULT_MAX_CLAWS`
and :data:`api.config.DEFAULT_BASE_PORT`), ``mini_timezone``
(IANA name for the nightly backup time, default UTC). A Mini's status and capacity set through
``PATCH /v1/minis/{name}`` (table ``mini_settings``) override the first two, here and in the playbooks
(:meth:`Inventory.override_sources`). A registered Mini reaches the playbooks through the same generated inventory
source: its address as ``ansible_host``, its tunnel id as ``cf_tunnel_id`` and the rest as above (the operator's
``group_vars/minis.yml`` still gives the connection user and options).
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from .config import DEFAULT_BASE_PORT, DEFAULT_MAX_CLAWS, REPO

log = logging.getLogger("clawfarm.api.inventory")
STATUSES = ("active", "draining", "offline", "maintenance")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a Mini name the API accepts (and a safe file name)


class Inventory:
    """Cached view of the inventory (refreshed every ``ttl`` seconds)."""

    def __init__(self, path: Path, ttl: float = 30.0, Session=None):
        self.path, self.ttl, self.Session = path, ttl, Session
        self._lock = threading.Lock()
        self._cached: dict | None = None
        self._read_at = 0.0

    def file_minis(self) -> dict[str, dict]:
        """The operator's inventory file's Minis (no API settings), cached for ``ttl`` seconds.

        Raises:
            RuntimeError: ansible-inventory failed (the message is its stderr).
        """
        with self._lock:
            if self._cached is None or time.monotonic() - self._read_at > self.ttl:
                self._cached = self._read()
                self._read_at = time.monotonic()
            return self._cached

    def registered(self) -> dict[str, dict]:
        """The Minis registered through the API (``source`` ``api``), as stored (re-checked with the collection's
        ``validate_mini``; a row that fails is left out and logged)."""
        if self.Session is None:
            return {}
        from .db import Mini
        from .validation import MiniInputError, mini

        out = {}
        with self.Session() as s:
            rows = s.query(Mini).all()
        for row in rows:
            try:
                record = mini.validate_mini({"name": row.name, "address": row.address, "tunnel_id": row.tunnel_id,
                                             "max_claws": row.max_claws, "base_port": row.base_port, "timezone": row.timezone,
                                             "status": row.status})
            except MiniInputError:
                log.error("registered Mini %r has an invalid record; left out", row.name[:64])
                continue
            out[row.name] = {**record, "source": "api"}
        return out

    def inventory_minis(self) -> dict[str, dict]:
        """The fleet without the API's settings: the inventory file's Minis (``source`` ``inventory``) and the
        registered ones (a name in both is the file's).

        Raises:
            RuntimeError: ansible-inventory failed (the message is its stderr).
        """
        return {**self.registered(), **self.file_minis()}

    def settings(self) -> dict[str, dict]:
        """``{name: {"status"?, "max_claws"?}}``: what ``PATCH /v1/minis/{name}`` set, for Minis of the inventory."""
        if self.Session is None:
            return {}
        from .db import MiniSetting

        known = self.inventory_minis()
        with self.Session() as s:
            rows = s.query(MiniSetting).all()
        return {row.name: {k: v for k, v in (("status", row.status), ("max_claws", row.max_claws)) if v is not None}
                for row in rows if row.name in known and NAME.fullmatch(row.name)}

    def minis(self) -> dict[str, dict]:
        """``{name: {"name", "status", "max_claws", "base_port", "timezone"}}`` for every host of group ``minis``,
        with the API's settings applied.

        Raises:
            RuntimeError: ansible-inventory failed (the message is its stderr).
        """
        minis = self.inventory_minis()
        settings = self.settings()
        return {name: {**info, **settings.get(name, {})} for name, info in minis.items()}

    def refresh(self) -> None:
        """Read the inventory file again at the next use."""
        with self._lock:
            self._cached = None

    def override_sources(self, directory: Path) -> list[str]:
        """The inventory sources for a playbook: the operator's inventory, then (when the API set any Mini's status
        or capacity) ``directory`` holding a generated inventory of those Minis whose ``host_vars`` set
        ``mini_status`` / ``claw_max_per_mini``: a later source's host_vars win, so the playbooks see what the
        service sees. Only validated values are written: a status of :data:`STATUSES`, an integer, and host names
        of the operator's own inventory."""
        import yaml

        from .validation import mini

        settings = self.settings()
        file_minis = self.file_minis()
        registered = {name: info for name, info in self.registered().items() if name not in file_minis}
        if not settings and not registered:
            return [str(self.path)]
        (directory / "host_vars").mkdir(parents=True, mode=0o700)
        names = sorted(set(settings) | set(registered))
        (directory / "hosts.yml").write_text(yaml.safe_dump({"minis": {"hosts": {name: None for name in names}}}))
        for name in names:
            values = settings.get(name, {})
            host_vars = mini.host_vars({k: v for k, v in registered.get(name, {}).items() if k != "source"})
            host_vars.update({k: v for k, v in (("mini_status", values.get("status")), ("claw_max_per_mini", values.get("max_claws")))
                              if v is not None})
            (directory / "host_vars" / f"{name}.yml").write_text(yaml.safe_dump({k: v for k, v in host_vars.items() if v is not None}))
        return [str(self.path), str(directory)]

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
                           "max_claws": int(hv.get("claw_max_per_mini", DEFAULT_MAX_CLAWS)),
                           "base_port": int(hv.get("claw_base_port", DEFAULT_BASE_PORT)),
                           "timezone": str(hv.get("mini_timezone", "UTC")), "source": "inventory",
                           "address": str(hv.get("ansible_host", name)), "tunnel_id": hv.get("cf_tunnel_id") or None}
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
