# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for moving a claw between Minis (rsync over SSH with a per-migration key)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _migration


def _wrap(func):
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (_migration.MigrationError, ValueError, TypeError) as exc:
            raise AnsibleFilterError(f"{func.__name__}: {exc}")
    run.__doc__ = func.__doc__
    return run


class FilterModule:
    """``peer_address``, ``migration_ssh_command``, ``migration_remote``, ``migration_rsync_argv``, ``rsync_stats``,
    ``migration_authorized_key``, ``migration_known_hosts``, ``migration_resolve``, ``migration_expiry``,
    ``migration_receiver_command``, ``expired_migration_keys``."""

    def filters(self):
        return {
            "peer_address": _wrap(_migration.peer_address),
            "migration_ssh_command": _wrap(_migration.ssh_command),
            "migration_remote": _wrap(_migration.remote_spec),
            "migration_rsync_argv": _wrap(_migration.rsync_argv),
            "rsync_stats": _wrap(_migration.parse_rsync_stats),
            "migration_authorized_key": _wrap(_migration.authorized_key_line),
            "migration_known_hosts": _wrap(_migration.known_hosts_line),
            "migration_resolve": _wrap(_migration.resolve_addresses),
            "migration_expiry": _wrap(_migration.expiry_time),
            "migration_receiver_command": _wrap(_migration.receiver_command),
            "expired_migration_keys": _wrap(_migration.expired_migration_keys),
        }
