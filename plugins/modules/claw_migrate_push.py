#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_migrate_push
short_description: Push a claw's home to another Mini with rsync running as the claw, over root's migration key
version_added: 0.1.0
description:
  - >-
    Runs on the source Mini as root. The rsync client runs as the claw's user (its uid, its primary group, no
    supplementary groups, umask 077), so a link swapped in during the copy or a hard link to a file the claw cannot
    read reaches nothing the claw could not read itself.
  - >-
    Its remote shell (C(-e)) is O(relay), which holds no key. It passes rsync's remote command and byte stream
    through a socket inherited from this module. Root checks that command (a receiving C(rsync --server) into
    O(home) only) and runs C(ssh) with the migration key O(key) (root-only, 0600) on the other end, so the key
    never reaches the claw. On the target the key's forced command runs the receiver as the claw's user.
  - >-
    Files the claw cannot read make rsync exit with 23. With O(allow_unreadable) they are left out and listed in
    RV(unreadable) when they are the only errors (they are not the claw's data to move; the source home is kept
    in a tombstone). Exit codes in O(accept_rc) are also accepted (23 and 24 for the pre-copy while the gateway
    runs).
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: none
options:
  user:
    description: The claw's macOS user (must not be root; its home must be O(home)).
    type: str
    required: true
  home:
    description: The claw's home, copied into the same path on the target.
    type: path
    required: true
  host:
    description: The target Mini's peer address (IP literal or DNS name; its real sshd, never Tailscale SSH).
    type: str
    required: true
  port:
    description: The target's SSH port.
    type: int
    default: 22
  ssh_user:
    description: The target's transfer account (its authorized_keys holds the migration key).
    type: str
    required: true
  key:
    description: The migration's private key (owned by root, no access for group or others).
    type: path
    required: true
  known_hosts:
    description: The known_hosts file that pins the target's host key.
    type: path
    required: true
  relay:
    description: The relay program (root-owned file installed by the migration; see roles/claw/files/clawfarm-rsync-relay).
    type: path
    required: true
  excludes:
    description: rsync exclude patterns (relative to the home).
    type: list
    elements: str
    default: []
  timeout:
    description: rsync's I/O timeout in seconds.
    type: int
    default: 600
  accept_rc:
    description: rsync exit codes that count as success (besides 0).
    type: list
    elements: int
    default: []
  allow_unreadable:
    description: Exit code 23 counts as success when its only errors are files or directories the claw may not read.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Copy the home while the gateway still runs
  mirascope.clawfarm.claw_migrate_push:
    user: claw-1a2b3c4d
    home: /Users/claw-1a2b3c4d
    host: 100.64.0.12
    ssh_user: admin
    key: /var/db/mirascope/migrate/1a2b3c4d-0000-4000-8000-000000000001/id_ed25519
    known_hosts: /var/db/mirascope/migrate/1a2b3c4d-0000-4000-8000-000000000001/known_hosts
    relay: /opt/mirascope/libexec/clawfarm-rsync-relay
    excludes: [.cache, node_modules]
    accept_rc: [23, 24]
  become: true
"""

RETURN = r"""
exit_code:
  description: rsync's exit code (not C(rc), which Ansible would take for a failure when 23 or 24 is accepted).
  returned: always
  type: int
stats:
  description: Bytes on the wire each way, size of the changed files, number of files (parsed from C(--stats)).
  returned: always
  type: dict
  sample: {bytes_sent: 52310, bytes_received: 120, transferred_file_bytes: 51200, files: 25}
unreadable:
  description: Paths the claw may not read, left out of the copy.
  returned: always
  type: list
  elements: str
stdout:
  description: rsync's output (statistics).
  returned: always
  type: str
stderr:
  description: rsync's and ssh's error output.
  returned: always
  type: str
"""

import json
import os
import pwd
import select
import signal
import socket
import stat
import subprocess
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _migration

# rsync is told to reach this placeholder: the relay reports it back with the remote command, root replaces it with
# the real address (rsync never resolves or connects to anything itself).
PLACEHOLDER_HOST = "clawfarm-migration-target"
MAX_HEADER = 65536
# The relay sends its command as soon as rsync starts it; a claw holding it back is stopped after this long.
HEADER_TIMEOUT = 30


def _read_header(sock, timeout: float) -> bytes:
    """The relay's first line (rsync's argv for its remote shell), read byte by byte so no stream byte is taken.

    Waits at most ``timeout`` seconds in all (the relay runs as the claw, which could hold it back); the socket stays
    blocking for ssh.
    """
    data = bytearray()
    deadline = time.monotonic() + timeout
    while len(data) < MAX_HEADER:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            return bytes(data)
        byte = sock.recv(1)
        if not byte:
            return bytes(data)
        if byte == b"\n":
            return bytes(data)
        data += byte
    return bytes(data)


def _kill_group(proc) -> None:
    """Kill rsync and its relay (their own session, started here) so no pipe stays open."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def _check_key(module, path: str) -> None:
    try:
        st = os.lstat(path)
    except OSError as exc:
        module.fail_json(msg=f"migration key {path}: {exc.strerror}; re-run the migration (it makes a new key)")
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        module.fail_json(msg=f"migration key {path} must be a regular file owned by root with mode 0600 "
                             f"(found uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}); nothing was copied")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            user=dict(type="str", required=True),
            home=dict(type="path", required=True),
            host=dict(type="str", required=True),
            port=dict(type="int", default=22),
            ssh_user=dict(type="str", required=True),
            key=dict(type="path", required=True, no_log=False),
            known_hosts=dict(type="path", required=True),
            relay=dict(type="path", required=True),
            excludes=dict(type="list", elements="str", default=[]),
            timeout=dict(type="int", default=600),
            accept_rc=dict(type="list", elements="int", default=[]),
            allow_unreadable=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    home = p["home"].rstrip("/")
    try:
        host = _migration.peer_address(p["host"])
        ssh = _migration.ssh_command(p["key"], p["known_hosts"], p["port"]).split(" ")
        _migration.remote_spec(p["ssh_user"], host, home)  # checks the account name and the home
        remote_login = f"{p['ssh_user']}@{host}"
        argv = _migration.rsync_argv(home, f"{PLACEHOLDER_HOST}:{home}", p["relay"],
                                     p["excludes"], p["timeout"])
    except _migration.MigrationError as exc:
        module.fail_json(msg=f"{exc}; nothing was copied")
    try:
        account = pwd.getpwnam(p["user"])
    except KeyError:
        module.fail_json(msg=f"claw user {p['user']} does not exist on this Mini; nothing was copied")
    if account.pw_uid == 0 or account.pw_dir.rstrip("/") != home:
        module.fail_json(msg=f"user {p['user']} (uid {account.pw_uid}, home {account.pw_dir}) is not the claw whose home "
                             f"is {home}; nothing was copied")
    _check_key(module, p["key"])
    relay = os.lstat(p["relay"])
    if not stat.S_ISREG(relay.st_mode) or relay.st_uid != 0 or relay.st_mode & 0o022:
        module.fail_json(msg=f"relay {p['relay']} must be a root-owned file writable by root only; re-run the migration")
    empty = {"bytes_sent": 0, "bytes_received": 0, "transferred_file_bytes": None, "files": None}
    if module.check_mode:
        module.exit_json(changed=True, exit_code=0, stats=empty, unreadable=[], stdout="", stderr="")

    ours, theirs = socket.socketpair()
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": home, "LC_ALL": "C",
           "CLAWFARM_RELAY_FD": str(theirs.fileno())}
    rsync = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                             env=env, user=account.pw_uid, group=account.pw_gid, extra_groups=[], umask=0o077,
                             pass_fds=(theirs.fileno(),), start_new_session=True)
    theirs.close()
    ssh_proc = None
    refused = ""
    with tempfile.TemporaryFile() as ssh_err:
        try:
            header = _read_header(ours, HEADER_TIMEOUT)
            if not header:
                try:
                    rsync.wait(timeout=10)  # rsync ended before it ran its remote shell: its error says why
                except subprocess.TimeoutExpired:
                    refused = "its remote shell sent no command in time"
                    _kill_group(rsync)
            else:
                try:
                    remote = _migration.relay_remote_command(json.loads(header.decode("utf-8", "replace")),
                                                             PLACEHOLDER_HOST, home)
                except (ValueError, _migration.MigrationError) as exc:
                    refused = str(exc)
                    _kill_group(rsync)
                else:
                    ssh_proc = subprocess.Popen(ssh + [remote_login, remote], stdin=ours.fileno(), stdout=ours.fileno(),
                                                stderr=ssh_err, cwd="/", start_new_session=True)
        finally:
            ours.close()
        out, err = rsync.communicate()
        if ssh_proc is not None:
            try:
                ssh_proc.wait(timeout=max(30, p["timeout"]))
            except subprocess.TimeoutExpired:
                ssh_proc.kill()
                ssh_proc.wait()
        ssh_err.seek(0)
        ssh_text = ssh_err.read(16384).decode("utf-8", "replace")
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace") + ssh_text
    rc = rsync.returncode
    result = dict(exit_code=rc, stats=_migration.parse_rsync_stats(stdout), unreadable=[], stdout=stdout, stderr=stderr)
    if refused:
        module.fail_json(msg=f"the claw's rsync asked for something else than its copy ({refused}); nothing was sent",
                         changed=False, **result)
    if rc == 0 or rc in p["accept_rc"]:
        module.exit_json(changed=True, **result)
    unreadable = _migration.unreadable_only(err.decode("utf-8", "replace")) if rc == 23 else None
    if p["allow_unreadable"] and unreadable:
        result["unreadable"] = unreadable
        module.warn(f"left out {len(unreadable)} path(s) of {home} the claw may not read: {', '.join(unreadable[:10])}")
        module.exit_json(changed=True, **result)
    module.fail_json(msg=f"rsync of {home} to {host} failed (exit {rc}): {stderr.strip()[-1500:]}. The claw still runs "
                         "on this Mini or is put back.", changed=True, **result)


if __name__ == "__main__":
    main()
