#!/usr/bin/python3
"""Sandbox stand-in for TCC's Full Disk Access of SSH sessions ("Allow full disk access for remote users").

On macOS, TCC (Transparency, Consent and Control) denies processes without Full Disk Access the protected
places: the TCC databases' folder ``/Library/Application Support/com.apple.TCC``, and in every home
``Desktop``, ``Documents``, ``Downloads`` and ``Library/Mail`` & co.  Everything started from an SSH login
inherits Remote Login's grant; without it even root gets ``Operation not permitted`` (EPERM) there.

Here the grant is the absence of the flag file ``/var/run/sandbox-fda-missing`` (gone after a reboot, like the
enforcer: a reboot grants again).  ``revoke-remote-fda`` writes it and starts a small enforcer that holds
fanotify permission marks (``FAN_OPEN_PERM``) on those folders and answers ``FAN_DENY`` (the opener gets
EPERM) to every process that descends from sshd, as TCC does for remote sessions; everything else (launchd's
jobs, ``mini.py exec``) is allowed.  ``grant-remote-fda`` removes the flag and stops the enforcer.

    tcc.py boot                # create the TCC folder (macOS always has it)
    tcc.py revoke-remote-fda   # as if "Allow full disk access for remote users" were off
    tcc.py grant-remote-fda    # turned on again
    tcc.py status              # granted | revoked
"""
from __future__ import annotations

import ctypes
import glob
import os
import signal
import struct
import sys
import time

FLAG = "/var/run/sandbox-fda-missing"  # /var/run is fresh at every boot: a reboot grants again
PIDFILE = "/var/run/sandbox-tcc-enforcer.pid"
TCC_DIR = "/Library/Application Support/com.apple.TCC"
# Per-home folders TCC protects (the user template's Desktop, Documents, Downloads; Mail and Messages data).
HOME_PROTECTED = ("Desktop", "Documents", "Downloads", "Library/Mail", "Library/Messages", "Library/Safari")

FAN_CLASS_CONTENT = 0x04
FAN_CLOEXEC = 0x01
FAN_MARK_ADD = 0x01
FAN_OPEN_PERM = 0x00010000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ONDIR = 0x40000000
FAN_ALLOW = 0x01
FAN_DENY = 0x02
AT_FDCWD = -100
METADATA = struct.Struct("IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid


def protected_paths() -> list:
    """The TCC folder and the protected folders of every home under /Users that exist now."""
    paths = [TCC_DIR]
    for home in sorted(glob.glob("/Users/*")):
        if os.path.isdir(home) and not os.path.islink(home):
            paths += [os.path.join(home, sub) for sub in HOME_PROTECTED
                      if os.path.isdir(os.path.join(home, sub)) and not os.path.islink(os.path.join(home, sub))]
    return paths


def ensure_tcc_dir() -> None:
    """macOS ships /Library/Application Support/com.apple.TCC (root, 0755) with the system TCC.db."""
    os.makedirs(TCC_DIR, mode=0o755, exist_ok=True)
    database = os.path.join(TCC_DIR, "TCC.db")
    if not os.path.exists(database):
        with open(database, "wb"):
            pass
        os.chmod(database, 0o644)


def from_ssh(pid: int) -> bool:
    """Whether ``pid`` descends from sshd (an SSH session: Remote Login's grant is what counts)."""
    seen = 0
    while pid > 1 and seen < 64:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                data = handle.read()
        except OSError:
            return False
        comm = data[data.index("(") + 1:data.rindex(")")]
        if comm in ("sshd", "sshd-session"):
            return True
        pid = int(data[data.rindex(")") + 2:].split()[1])
        seen += 1
    return False


def mark(paths) -> int:
    """A fanotify group with open-permission marks on ``paths`` (and their direct children)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
    fan = libc.fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, os.O_RDONLY)
    if fan < 0:
        raise OSError(ctypes.get_errno(), "fanotify_init (the kernel needs CONFIG_FANOTIFY_ACCESS_PERMISSIONS)")
    for path in paths:
        if libc.fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN_PERM | FAN_ONDIR | FAN_EVENT_ON_CHILD, AT_FDCWD,
                              path.encode()) != 0:
            raise OSError(ctypes.get_errno(), f"fanotify_mark {path}")
    return fan


def serve(fan: int) -> None:
    """Answer every permission event on ``fan`` until the flag file is gone (then the marks go with the fd)."""
    me = os.getpid()
    while True:
        buffer = os.read(fan, 4096)
        offset = 0
        revoked = os.path.exists(FLAG)
        while offset + METADATA.size <= len(buffer):
            event_len, _, _, _, _, fd, pid = METADATA.unpack_from(buffer, offset)
            offset += event_len
            if fd < 0:
                continue
            deny = revoked and pid not in (0, me) and from_ssh(pid)
            os.write(fan, struct.pack("iI", fd, FAN_DENY if deny else FAN_ALLOW))
            os.close(fd)
        if not revoked:
            return


def start_enforcer() -> None:
    """Start the enforcer detached (double fork) and return once its marks are in place."""
    stop_enforcer()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.setsid()
        if os.fork() == 0:
            devnull = os.open("/dev/null", os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(devnull, target)
            try:
                fan = mark(protected_paths())
            except OSError as exc:
                os.write(write_end, str(exc).encode())
                os._exit(1)
            with open(PIDFILE, "w") as handle:
                handle.write(str(os.getpid()))
            os.write(write_end, b"ok")
            os.close(write_end)
            try:
                serve(fan)
            finally:
                os._exit(0)
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as ready:
        answer = ready.read().decode()
    if answer != "ok":
        raise SystemExit(f"tcc.py: the enforcer did not start: {answer or 'no answer'}")


def stop_enforcer() -> None:
    """Stop a running enforcer (its marks disappear with it)."""
    try:
        with open(PIDFILE) as handle:
            pid = int(handle.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return
    if pid > 1:
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
        except ProcessLookupError:
            pass
    os.unlink(PIDFILE)


def main(argv) -> int:
    command = argv[0] if argv else "status"
    if command == "boot":
        ensure_tcc_dir()
    elif command == "revoke-remote-fda":
        ensure_tcc_dir()
        os.makedirs(os.path.dirname(FLAG), exist_ok=True)
        open(FLAG, "w").close()
        start_enforcer()
    elif command == "grant-remote-fda":
        if os.path.exists(FLAG):
            os.unlink(FLAG)
        stop_enforcer()
    elif command == "status":
        print("revoked" if os.path.exists(FLAG) else "granted")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
