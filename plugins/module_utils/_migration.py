# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a claw's home from one Mini to another with rsync over SSH (PRIVATE to the collection).

The source Mini pushes to the target with a key made for this one migration: the target's admin account accepts
it only from the source's resolved addresses, only until the migration's job would have ended (``expiry-time``),
with ``restrict`` (no pty, no forwarding) and a forced command that runs nothing but an ``rsync --server`` into the
claw's home; the source trusts only the target's real host key (read over Ansible's own connection, never learnt on
first use), and both are removed when the migration ends (a sweep removes keys a killed job left behind).

Both ends move the home with the claw's own privileges (the claw's code is hostile): on the source the rsync
client runs as the claw's user (module ``claw_migrate_push``), so a link swapped in mid-copy or a hard link to a file
the claw cannot read reaches nothing the claw could not read itself; its remote shell (``-e``) is a relay that
hands the byte stream to an ``ssh`` root started with the migration key (the key never leaves root). On the target
the forced command drops to the claw's user before ``rsync --server`` writes into its home (``sudo -n -u <claw>``),
so files arrive owned by the claw (owners are never taken from the stream) and a hostile sender can write only
what that claw could.

Works with the rsync that macOS ships (openrsync since macOS 15.4, rsync 2.6.9 before) and with rsync 3.x:
only options all three accept are used (``-rlptH``, ``--delete``, ``--exclude``, ``-e``, ``--stats``,
``--timeout``). See openrsync(1) and rsync(1).
"""

from __future__ import annotations

import ipaddress
import re

MIGRATION_KEY_COMMENT = "clawfarm-migrate"
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]+$")
_SAFE_USER = re.compile(r"^[a-z_][a-z0-9._-]{0,31}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/=]+$")


class MigrationError(ValueError):
    """Bad migration input (address, path, key); raised before any command runs."""


def peer_address(value: str) -> str:
    """Check the address one Mini uses to reach another (an IP literal or a DNS name).

    Raises:
        MigrationError: anything else (spaces, shell characters, a user@ prefix...).
    """
    text = str(value or "").strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _HOSTNAME.match(text):
        raise MigrationError(f"peer address {text!r} is neither an IP address nor a DNS name")
    return text.lower()


def _safe_path(value: str, what: str) -> str:
    if not _SAFE_PATH.match(str(value)) or ".." in str(value).split("/"):
        raise MigrationError(f"{what} {value!r} must be an absolute path without spaces or '..'")
    return str(value)


def ssh_command(key_path: str, known_hosts: str, port: int = 22, connect_timeout: int = 10) -> str:
    """The remote shell rsync runs (``-e``): key-only, batch mode, the pinned known_hosts file, keep-alives.

    Returns one string (rsync splits it on spaces, so the paths are checked to hold none).

    Raises:
        MigrationError: a path with spaces or ``..``, a port outside 1-65535.
    """
    if not 0 < int(port) < 65536:
        raise MigrationError(f"SSH port {port} is outside 1-65535")
    return (f"ssh -i {_safe_path(key_path, 'key path')} -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={_safe_path(known_hosts, 'known_hosts path')} "
            f"-o ConnectTimeout={int(connect_timeout)} -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -p {int(port)}")


def remote_spec(user: str, address: str, path: str) -> str:
    """``user@host:path`` for rsync; IPv6 literals in brackets.

    Raises:
        MigrationError: bad user name, address or path.
    """
    if not _SAFE_USER.match(str(user)):
        raise MigrationError(f"SSH user {user!r} is not a valid account name")
    host = peer_address(address)
    if ":" in host:
        host = f"[{host}]"
    return f"{user}@{host}:{_safe_path(path, 'destination')}"


def rsync_argv(src_dir: str, dest: str, ssh: str, excludes=(), timeout: int = 600, rsync_path: str = "rsync") -> list:
    """The rsync command line that mirrors ``src_dir``'s contents into ``dest`` (``host:dir``), run as the claw.

    ``-rlptH --delete``: recursive, symlinks as links, permissions, times, hard links; files gone from the source
    are deleted on the target so a second pass is an exact delta. No ``-o``/``-g``/``-D``: the receiver runs as the
    claw, whose files it makes are the claw's. ``ssh`` is the remote shell program (the relay of
    ``claw_migrate_push``). ``--stats`` feeds :func:`parse_rsync_stats`.

    Returns:
        argv list (no shell).
    """
    src = _safe_path(src_dir.rstrip("/"), "source directory") + "/"
    argv = ["rsync", "-rlptH", "--delete", "--stats", f"--timeout={int(timeout)}", "-e", ssh, f"--rsync-path={rsync_path}"]
    for pattern in excludes or ():
        argv.append(f"--exclude={pattern}")
    argv += [src, dest.rstrip("/") + "/"]
    return argv


_SERVER_WORD = re.compile(r"^[A-Za-z0-9._/=,:@+-]+$")


def relay_remote_command(argv, host: str, dest: str) -> str:
    """The command the claw-side rsync asked its remote shell to run, checked before root's ssh sends it.

    ``argv`` is what rsync gave its ``-e`` program (the relay passes it on): ``[<options>...] <host> rsync --server
    ... . <dest>/``. Only a receiving server (no ``--sender``) into exactly ``dest`` is accepted; the target's
    forced command checks the same again.

    Returns:
        The remote command, words joined by single spaces.

    Raises:
        MigrationError: no ``host`` word, not a receiving ``rsync --server`` into ``dest``, odd characters.
    """
    words = [str(word) for word in (argv or [])]
    if host not in words:
        raise MigrationError(f"the relay was not asked to reach {host!r}")
    command = words[words.index(host) + 1:]
    target = _safe_path(dest.rstrip("/"), "destination") + "/"
    if (len(command) < 4 or command[:2] != ["rsync", "--server"] or "--sender" in command
            or command[-2:] != [".", target] or not all(_SERVER_WORD.match(word) for word in command)):
        raise MigrationError(f"refused remote command {' '.join(command)[:300]!r}: only a receiving rsync --server "
                             f"into {target} is allowed")
    return " ".join(command)


_DENIED_PATH = re.compile(r'"([^"]+)"[^"]*Permission denied|(/\S+?):? .*Permission denied')


def unreadable_only(stderr: str):
    """When rsync's only errors were files or directories the claw may not read: their paths, else None.

    The source's rsync runs as the claw: a file it cannot read (a hard link to a neighbour's log, a mode it set
    itself) is not the claw's data to move and is left out (exit code 23). Any other error (I/O, disk full,
    "IO error encountered -- skipping file deletion" after an unreadable directory) returns None.

    Returns:
        Sorted paths, or None when another kind of error appears.
    """
    paths = set()
    for line in str(stderr or "").splitlines():
        text = line.strip()
        if not text:
            continue
        if "Permission denied" in text:
            match = _DENIED_PATH.search(text)
            if not match:
                return None
            paths.add(match.group(1) or match.group(2))
            continue
        if text.startswith("rsync error: some files/attrs were not transferred") or (
                text.startswith("openrsync") and "(code 23)" in text):
            continue
        return None
    return sorted(paths) if paths else None


def _number(text: str) -> int:
    return int(re.sub(r"[,.' ]", "", text))


def parse_rsync_stats(output: str) -> dict:
    """Read ``--stats`` output of rsync 3.x, rsync 2.6.9 or openrsync.

    Returns:
        ``{"bytes_sent": int, "bytes_received": int, "transferred_file_bytes": int|None, "files": int|None}``:
        bytes on the wire each way, the size of the files that changed, the number of files considered.
        Missing numbers are 0 (wire) or None.
    """
    def find(*patterns):
        for pattern in patterns:
            match = re.search(pattern, output, re.IGNORECASE | re.MULTILINE)
            if match:
                return _number(match.group(1))
        return None
    num = r"([\d][\d,.' ]*\d|\d)"
    return {
        "bytes_sent": find(rf"^Total bytes sent:\s*{num}", rf"\bsent\s+{num}\s+(?:bytes|B)\b") or 0,
        "bytes_received": find(rf"^Total bytes received:\s*{num}", rf"\breceived\s+{num}\s+(?:bytes|B)\b") or 0,
        "transferred_file_bytes": find(rf"^Total transferred file size:\s*{num}"),
        "files": find(rf"^Number of files:\s*{num}"),
    }


def resolve_addresses(address: str, resolver=None) -> list:
    """The IP addresses a peer's address stands for (an IP literal: itself; a name: what it resolves to).

    ``from=`` in authorized_keys matches names only with sshd's ``UseDNS`` (off by default), so a migration key is
    bound to the resolved addresses.

    Raises:
        MigrationError: a bad address, or a name that does not resolve.
    """
    import socket

    text = peer_address(address)
    try:
        return [str(ipaddress.ip_address(text))]
    except ValueError:
        pass
    try:
        infos = (resolver or socket.getaddrinfo)(text, None, 0, socket.SOCK_STREAM)
    except OSError as exc:
        raise MigrationError(f"cannot resolve {text}: {exc}") from None
    found = sorted({str(ipaddress.ip_address(info[4][0].split("%")[0])) for info in infos})
    if not found:
        raise MigrationError(f"{text} resolves to no address")
    return found


def expiry_time(lifetime: int, now: float | None = None) -> str:
    """``YYYYMMDDHHMMSSZ`` (UTC) ``lifetime`` seconds from now, for authorized_keys ``expiry-time``.

    Raises:
        MigrationError: a lifetime that is not a positive number of seconds.
    """
    import time

    seconds = int(lifetime)
    if seconds <= 0:
        raise MigrationError(f"the migration key's lifetime must be a positive number of seconds, not {lifetime!r}")
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime((time.time() if now is None else now) + seconds))


def receiver_command(receiver: str, dest: str, user: str | None = None) -> str:
    """The forced ``command=`` of a migration key: the receiver wrapper, the claw's user and its home.

    The wrapper (roles/claw/files/clawfarm-rsync-receive) runs only the reachability probe or an ``rsync --server``
    line (receiving, allowlisted options) whose destination is exactly ``dest``, as ``user`` (``sudo -n -u``;
    default: the home's last component, ``/Users/<user>``).

    Raises:
        MigrationError: a path with spaces, quotes or ``..``; a bad user name.
    """
    if user is None:
        user = str(dest).rstrip("/").rsplit("/", 1)[-1]
    if not _SAFE_USER.match(str(user)) or str(user) == "root":
        raise MigrationError(f"claw user {user!r} is not a valid account name")
    return f"{_safe_path(receiver, 'receiver')} {user} {_safe_path(dest.rstrip('/'), 'destination')}/"


def authorized_key_line(public_key: str, from_addresses, claw_id: str, command: str, expiry: str) -> str:
    """The target's authorized_keys line for one migration's key.

    ``restrict`` (no pty, forwarding or ~/.ssh/rc), ``command=`` (the receiver wrapper: nothing but the claw's
    rsync), ``from=`` the source's resolved addresses, ``expiry-time=`` the end of the migration's job, so a key
    left behind by a job that was killed stops working by itself (and :func:`expired_migration_keys` finds it).

    Raises:
        MigrationError: not a single OpenSSH public key, a bad address, command or expiry.
    """
    parts = str(public_key).split()
    if len(parts) < 2 or not _PUBLIC_KEY.match(" ".join(parts[:2])):
        raise MigrationError("the migration key is not an OpenSSH public key")
    addresses = [from_addresses] if isinstance(from_addresses, str) else list(from_addresses or [])
    if not addresses:
        raise MigrationError("the migration key needs the source's address (from=)")
    for index, address in enumerate(addresses):
        try:
            addresses[index] = str(ipaddress.ip_address(str(address).strip()))
        except ValueError:
            raise MigrationError(f"from= needs IP addresses (resolve {address!r} first): sshd does not match names "
                                 "unless UseDNS is on") from None
    words = str(command).split(" ")
    if len(words) != 3:
        raise MigrationError(f"forced command {command!r} must be '<receiver> <claw user> <destination>/'")
    receiver_command(words[0], words[2], words[1])
    if not _EXPIRY.match(str(expiry)):
        raise MigrationError(f"expiry {expiry!r} must be YYYYMMDDHHMM[SS]Z")
    claw = str(claw_id)
    if not re.match(r"^[0-9a-f-]{1,64}$", claw):
        raise MigrationError(f"claw id {claw_id!r} is not a claw id")
    options = ["restrict", f'command="{command}"', f'from="{",".join(addresses)}"', f'expiry-time="{expiry}"']
    return f"{','.join(options)} {parts[0]} {parts[1]} {MIGRATION_KEY_COMMENT}-{claw}"


_EXPIRY = re.compile(r"^\d{8}(\d{4}(\d{2})?)?Z$")
_KEY_LINE = re.compile(rf"\s{MIGRATION_KEY_COMMENT}-([0-9a-f-]+)\s*$")
_EXPIRY_OPTION = re.compile(r'(?:^|,)expiry-time="(\d{8})(\d{4})?(\d{2})?(Z?)"')


def expired_migration_keys(authorized_keys: str, now: float | None = None) -> list:
    """The claw ids of migration keys in an authorized_keys text that no longer work or never expire.

    A line ending in ``clawfarm-migrate-<claw id>`` is expired when its ``expiry-time`` has passed, or when it has
    none (a key from before expiry-time was set, left by a job that was killed). Other lines are never listed.

    Returns:
        Sorted claw ids (a sweep removes their lines).
    """
    import calendar
    import time

    moment = time.time() if now is None else now
    found = set()
    for line in str(authorized_keys or "").splitlines():
        match = _KEY_LINE.search(line)
        if not match:
            continue
        option = _EXPIRY_OPTION.search(line)
        if option is None:
            found.add(match.group(1))
            continue
        day, hm, sec, utc = option.groups()
        stamp = time.strptime(day + (hm or "0000") + (sec or "00"), "%Y%m%d%H%M%S")
        expires = calendar.timegm(stamp) if utc else time.mktime(stamp)
        if expires <= moment:
            found.add(match.group(1))
    return sorted(found)


def known_hosts_line(address: str, port: int, host_public_key: str) -> str:
    """A known_hosts line that pins the target's host key (``[host]:port`` when the port is not 22).

    Raises:
        MigrationError: bad address or not an OpenSSH public key.
    """
    parts = str(host_public_key).split()
    if len(parts) < 2 or not _PUBLIC_KEY.match(" ".join(parts[:2])):
        raise MigrationError("the target's host key is not an OpenSSH public key")
    host = peer_address(address)
    name = host if int(port) == 22 else f"[{host}]:{int(port)}"
    return f"{name} {parts[0]} {parts[1]}"
