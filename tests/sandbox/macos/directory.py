"""The sandbox Mini's local directory node: a Linux stand-in for macOS's dslocal store.

Records live where macOS keeps them, one plist per record under
/var/db/dslocal/nodes/Default/{users,groups}/<name>.plist, as ``{attribute: [values]}``
with dscl's attribute names (macOS stores its own internal key names; see README).
After every change :func:`sync_unix` regenerates /etc/passwd, /etc/group and
/etc/shadow so that the Linux kernel, sshd, sudo, ``id`` and ``ps`` see the same users.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import secrets

NODE = "/var/db/dslocal/nodes/Default"
KINDS = {"Users": "users", "Groups": "groups"}


def _dir(kind: str) -> str:
    return os.path.join(NODE, KINDS[kind])


def record_path(kind: str, name: str) -> str:
    return os.path.join(_dir(kind), f"{name}.plist")


def read(kind: str, name: str):
    try:
        with open(record_path(kind, name), "rb") as handle:
            return plistlib.load(handle)
    except FileNotFoundError:
        return None


def write(kind: str, name: str, record: dict) -> None:
    os.makedirs(_dir(kind), mode=0o700, exist_ok=True)
    path = record_path(kind, name)
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        plistlib.dump(record, handle)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def delete(kind: str, name: str) -> bool:
    try:
        os.unlink(record_path(kind, name))
        return True
    except FileNotFoundError:
        return False


def names(kind: str) -> list:
    try:
        return sorted(f[:-6] for f in os.listdir(_dir(kind)) if f.endswith(".plist"))
    except FileNotFoundError:
        return []


def all_records(kind: str) -> dict:
    return {n: read(kind, n) for n in names(kind)}


def first(record: dict, key: str, default=None):
    values = record.get(key) or []
    return values[0] if values else default


def set_password(name: str, password: str) -> None:
    """Store a salted SHA-512 of the password in a root-only shadow file (macOS: ShadowHashData)."""
    record = read("Users", name)
    salt = secrets.token_hex(8)
    digest = hashlib.sha512((salt + password).encode()).hexdigest()
    record["ShadowHashData"] = [f"sha512:{salt}:{digest}"]
    record["AuthenticationAuthority"] = [";ShadowHash;HASHLIST:<SALTED-SHA512-PBKDF2>"]
    write("Users", name, record)


def remote_session_lacks_full_disk_access() -> bool:
    """True for a process started from an SSH login while "Allow full disk access for remote users" is off.

    The grant is simulated by tcc.py (flag file /var/run/sandbox-fda-missing); macOS then refuses to delete
    directory records over SSH with eDSPermissionError (-14120), as reference 2.1/2.2 says.
    """
    import tcc
    return os.path.exists(tcc.FLAG) and tcc.from_ssh(os.getpid())


def seed_from_unix() -> None:
    """First boot: import /etc/passwd and /etc/group, then add macOS's staff (20) and admin (80) groups.

    Every boot: the folders every Mac has that the directory's users meet (TCC's folder, see tcc.py).
    """
    import tcc
    tcc.ensure_tcc_dir()
    if os.path.isdir(_dir("Users")) and names("Users"):
        return
    with open("/etc/passwd") as handle:
        for line in handle:
            parts = line.rstrip("\n").split(":")
            if len(parts) < 7:
                continue
            name, _, uid, gid, gecos, home, shell = parts[:7]
            write("Users", name, {"RecordName": [name], "UniqueID": [uid], "PrimaryGroupID": [gid],
                                  "RealName": [gecos.split(",")[0] or name], "NFSHomeDirectory": [home],
                                  "UserShell": [shell], "Password": ["*"]})
    with open("/etc/group") as handle:
        for line in handle:
            parts = line.rstrip("\n").split(":")
            if len(parts) < 4:
                continue
            name, _, gid, members = parts[:4]
            if gid in ("20", "80"):
                continue  # macOS owns these GIDs: staff and admin
            write("Groups", name, {"RecordName": [name], "PrimaryGroupID": [gid],
                                   "GroupMembership": [m for m in members.split(",") if m]})
    write("Groups", "staff", {"RecordName": ["staff"], "PrimaryGroupID": ["20"], "GroupMembership": []})
    write("Groups", "admin", {"RecordName": ["admin"], "PrimaryGroupID": ["80"], "GroupMembership": ["root"]})


def _clean(value: str) -> str:
    return str(value).replace(":", " ").replace("\n", " ")


def sync_unix() -> None:
    """Regenerate /etc/passwd, /etc/group and /etc/shadow from the directory."""
    users = all_records("Users")
    passwd, shadow = [], []
    for name, record in sorted(users.items(), key=lambda item: int(first(item[1], "UniqueID", "0") or 0)):
        uid, gid = first(record, "UniqueID"), first(record, "PrimaryGroupID")
        if uid is None or gid is None:
            continue  # a record without ids is not a Unix user yet
        passwd.append(":".join([name, "x", uid, gid, _clean(" ".join(record.get("RealName") or [name])),
                                first(record, "NFSHomeDirectory", "/var/empty"),
                                first(record, "UserShell", "/usr/bin/false")]))
        shadow.append(f"{name}:*:19000:0:99999:7:::")
    groups = []
    for name, record in sorted(all_records("Groups").items()):
        gid = first(record, "PrimaryGroupID")
        if gid is not None:
            members = [m for m in record.get("GroupMembership") or [] if m in users]
            groups.append(f"{name}:x:{gid}:{','.join(members)}")
    for path, lines, mode in (("/etc/passwd", passwd, 0o644), ("/etc/group", groups, 0o644),
                              ("/etc/shadow", shadow, 0o640)):
        tmp = path + ".sandbox-tmp"
        with open(tmp, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)


def processes_of(uid: int) -> list:
    """PIDs whose real UID is ``uid`` (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as handle:
                    for line in handle:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                pids.append(int(entry))
                            break
            except OSError:
                continue
    return pids
