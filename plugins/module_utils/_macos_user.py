# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-free logic of the ``macos_user`` module (PRIVATE to the collection).

Everything here is a plain function over strings and dicts: the command lines the
module runs, the parsers for what ``dscl`` and ``sysadminctl`` print, and the
safety rules.  Facts follow docs/reference/macos-admin.md section 2.1-2.3 and
dscl(1), sysadminctl(8) (usage text); the choices about homes are in docs/macos-tcc.md.
"""

from __future__ import annotations

import os
import plistlib
import re
import stat
import time

from ansible_collections.mirascope.clawfarm.plugins.module_utils._claw_paths import replace_file
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandError

DSCL = "/usr/bin/dscl"
SYSADMINCTL = "/usr/sbin/sysadminctl"
DSEDITGROUP = "/usr/sbin/dseditgroup"
DSCACHEUTIL = "/usr/bin/dscacheutil"
LAUNCHCTL = "/bin/launchctl"
PS = "/bin/ps"
PKILL = "/usr/bin/pkill"

# Claw UIDs are never handed out twice on a Mini: a new one is above this root-only record of the highest claw UID
# ever given (and above every existing UID of the range), so a process left behind by a deleted claw can never own
# the next claw's files. See docs/claw-uids.md.
DEFAULT_UID_HIGH_WATER = "/var/db/mirascope/claw-uid-high-water"
KILL_ROUNDS = 50

DEFAULT_MANAGED_PATTERN = r"^claw-[0-9a-f]{8}$"
PROTECTED_UID_BELOW = 500
ADMIN_GROUP = "admin"
DSCL_RECORD_NOT_FOUND = 56  # DS Error: -14136 (eDSRecordNotFound)

# Attributes the module manages, as dscl names them.
MANAGED_ATTRIBUTES = ("UniqueID", "PrimaryGroupID", "NFSHomeDirectory", "UserShell", "RealName", "IsHidden")

_NSLOG_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+ sysadminctl\[\d+:[0-9a-fx]+\] ")
_ATTR_PREFIX = re.compile(r"^dsAttrType(?:Standard|Native):")


class UserSafetyError(Exception):
    """The module refuses to touch this account (protected, admin, or outside the managed pattern)."""


def validate_name(name: str, managed_pattern: str = DEFAULT_MANAGED_PATTERN) -> None:
    """Refuse a user name the module may not manage.

    Raises:
        UserSafetyError: the name is empty, starts with ``.``/``-``/``_``, is longer than
            244 bytes (macOS limit), or does not match ``managed_pattern`` (a Python regex,
            default ``^claw-[0-9a-f]{8}$``).  Nothing has run yet when this is raised.
    """
    if not name or not isinstance(name, str):
        raise UserSafetyError("user name is empty")
    if len(name.encode()) > 244:
        raise UserSafetyError("user name is longer than 244 bytes")
    if name[0] in ".-_":
        raise UserSafetyError(f"user name {name[:64]!r} starts with {name[0]!r}; macOS tools mishandle such names")
    if not re.search(managed_pattern, name):
        raise UserSafetyError(
            f"user name {name[:64]!r} does not match the managed pattern {managed_pattern!r}; "
            "this module only manages claw accounts (set managed_pattern only if you really mean to widen it)"
        )


def check_record_is_managed(record: dict, name: str, is_admin: bool) -> None:
    """Refuse to modify or delete an existing account that is not a managed claw user.

    Args:
        record: parsed ``dscl -plist . -read`` output (see :func:`parse_dscl_plist`).
        name: the record name, for the message.
        is_admin: whether the user is in the ``admin`` group.

    Raises:
        UserSafetyError: UID below 500 (system or role account) or membership of ``admin``.
    """
    uid = record_int(record, "UniqueID")
    if uid is not None and uid < PROTECTED_UID_BELOW:
        raise UserSafetyError(f"refusing to touch {name!r}: UID {uid} is below {PROTECTED_UID_BELOW} (a system account)")
    if is_admin:
        raise UserSafetyError(f"refusing to touch {name!r}: the user is an administrator (member of {ADMIN_GROUP!r})")


def check_real_name(record: dict, name: str, real_name) -> None:
    """Refuse an account whose ``RealName`` is not ``real_name`` (another claw with the same 8-hex prefix).

    ``real_name`` None or empty checks nothing.
    """
    current = record_str(record, "RealName")
    if real_name and current != real_name:
        raise UserSafetyError(
            f"user {name!r} exists with RealName {current!r}, not {real_name!r}: "
            "another claw whose id starts with the same 8 hex characters owns it. "
            "Pick another claw id; this module will not share or take over the account"
        )


# ---------------------------------------------------------------------------
# Parsers for real macOS output
# ---------------------------------------------------------------------------

def parse_dscl_plist(text: str) -> dict:
    """Parse ``dscl -plist . -read /Users/NAME [keys]`` into ``{attribute: [values]}``.

    Key prefixes ``dsAttrTypeStandard:``/``dsAttrTypeNative:`` are stripped; values stay
    lists of strings as dscl returns them.  Raises ``ValueError`` for non-plist text.
    """
    data = plistlib.loads(text.encode() if isinstance(text, str) else text)
    return {_ATTR_PREFIX.sub("", key): [str(v) for v in (value if isinstance(value, list) else [value])]
            for key, value in data.items()}


def parse_dscl_read(text: str) -> dict:
    """Parse plain ``dscl . -read`` output (``Key: value`` lines; multi-line values indented by a space).

    Returns ``{attribute: [values]}`` with key prefixes stripped.  ``No such key: X`` lines are ignored.
    """
    result: dict = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("No such key:"):
            continue
        if line.startswith(" ") and current:
            result[current].append(line.strip())
            continue
        key, _, value = line.partition(":")
        if key.startswith("dsAttrType"):
            sub_key, _, value = value.partition(":")
            key = f"{key}:{sub_key}"
        current = _ATTR_PREFIX.sub("", key)
        value = value.strip()
        result[current] = [value] if value else []
    return result


def parse_uid_list(text: str) -> dict:
    """Parse ``dscl . -list /Users UniqueID`` (``name<spaces>uid`` per line) into ``{name: uid}``."""
    users = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            try:
                users[parts[0]] = int(parts[-1])
            except ValueError:
                continue
    return users


def strip_nslog(text: str) -> list:
    """Return sysadminctl's stderr lines without their NSLog ``date time sysadminctl[pid:tid]`` prefix."""
    return [_NSLOG_PREFIX.sub("", line) for line in text.splitlines() if line.strip()]


def sysadminctl_errors(text: str) -> list:
    """Lines of sysadminctl output that report a failure (it may still exit 0)."""
    markers = ("error", "failed", "should be run as root", "not allowed", "### ")
    return [line for line in strip_nslog(text) if any(m in line.lower() for m in markers)]


def record_int(record: dict, key: str):
    """First value of ``key`` as int, or None."""
    values = record.get(key) or []
    try:
        return int(values[0])
    except (IndexError, ValueError):
        return None


def record_str(record: dict, key: str):
    """Values of ``key`` joined with a space (dscl splits RealName values with spaces), or None."""
    values = record.get(key)
    return " ".join(values) if values else None


def pick_uid(used_uids, first: int, last: int, high_water: int = 0, claw_uids=None) -> int:
    """The next claw UID: above ``high_water`` and above every claw UID in ``[first, last]``, not in ``used_uids``.

    UIDs are never reused: a UID once given to a claw (recorded in the high-water file, or held by a claw account
    today) is never returned again, even after that claw's user was deleted, so a process it left behind can never
    own the files of a later claw.  Other accounts inside the range (``used_uids`` that are not ``claw_uids``: a
    person's or a system account) are skipped one by one, they do not move the start; ``claw_uids`` None counts
    every used UID as a claw's.  UIDs outside the range do not matter.

    Raises:
        ValueError: the range is used up (every UID up to ``last`` was handed out once or is taken).
    """
    used = set(used_uids)
    claws = [uid for uid in (used if claw_uids is None else claw_uids) if first <= uid <= last]
    start = max([first, high_water + 1] + [u + 1 for u in claws])
    for uid in range(start, last + 1):
        if uid not in used:
            return uid
    raise ValueError(f"no unused UID left in {first}-{last}: UIDs up to {max([high_water] + claws)} were handed "
                     "out to claws before and are never reused, the rest are taken; widen uid_range "
                     "(claw_uid_range) to higher UIDs")


def read_high_water(path: str) -> int:
    """The highest claw UID ever handed out on this host, from ``path`` (0 when the file does not exist yet).

    The file must be a regular file (a link is not followed) owned by the user running the module (root) and not
    writable by others; it holds one decimal number.

    Raises:
        UserSafetyError: the file is a link, foreign, writable by others or does not hold a number.  Nothing is
            guessed then: a wrong value could hand out a UID a second time.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise UserSafetyError(f"cannot read the UID high-water mark {path}: {exc.strerror} (a link is refused); "
                              "replace it by a root-owned 0600 file holding the highest claw UID ever used") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise UserSafetyError(f"the UID high-water mark {path} must be a regular file of root, mode 0600; "
                                  "fix it (owner, mode) and run again")
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if not text.isdigit():
        raise UserSafetyError(f"the UID high-water mark {path} does not hold a number ({text[:20]!r}); write the "
                              "highest claw UID ever used on this Mini into it and run again")
    return int(text)


def write_high_water(path: str, uid: int) -> None:
    """Record ``uid`` as the highest claw UID handed out: a fresh 0600 file renamed over ``path`` (atomic).

    The parent directory is made 0700 when missing; it must be a directory of root that others cannot write to.
    The temporary name is random and created exclusively (``O_EXCL | O_NOFOLLOW``); rename never follows a link.
    """
    parent, name = os.path.split(path)
    try:
        if not os.path.lexists(parent):
            os.makedirs(parent, mode=0o700)
        dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UserSafetyError(f"cannot open {parent} for the UID high-water mark: {exc.strerror} (a link is refused); "
                              "it must be a directory of root that other users cannot write to") from None
    try:
        st = os.fstat(dfd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise UserSafetyError(f"{parent} must be a directory of root that other users cannot write to")
        replace_file(name, dfd, f"{int(uid)}\n".encode(), os.geteuid(), os.getegid(), 0o600)
        os.fsync(dfd)
    finally:
        os.close(dfd)


# ---------------------------------------------------------------------------
# cron (a claw's code may not schedule itself outside launchd)
# ---------------------------------------------------------------------------
# crontab(1) on macOS: /usr/lib/cron/cron.allow, when it exists, lists the only users who may use crontab; else
# /usr/lib/cron/cron.deny lists the users who may not (one name a line, no whitespace; other lines are ignored). A
# user's table is /usr/lib/cron/tabs/NAME, and cron runs the tables whether or not the user may still edit them.
# /usr/lib/cron is a link to /private/var/at, made by macOS.
CRON_DENY = "/usr/lib/cron/cron.deny"
CRON_TABS = "/usr/lib/cron/tabs"


def cron_deny_edit(text, name: str, denied: bool):
    """The new text of cron.deny with ``name`` listed (``denied``) or not, or None when ``text`` is right already.

    ``text`` is the file's content (None: no file). crontab compares whole lines, so only a line that is exactly
    ``name`` counts and is removed; every other line (other users, comments) is kept byte for byte. Lines end at
    ``"\n"`` only, as crontab(1) reads them: ``"name\r"`` is another line, which does not deny ``name``.
    """
    lines = (text or "").split("\n")
    if denied:
        if name in lines:
            return None
        body = text or ""
        return body + ("" if not body or body.endswith("\n") else "\n") + name + "\n"
    if name not in lines:
        return None
    return "\n".join(line for line in lines if line != name)


def _root_directory(path: str) -> str:
    """``path`` resolved (macOS makes /usr/lib/cron a link), checked to be root's and writable by nobody else."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise UserSafetyError(f"{path} ({real}): {exc.strerror}; macOS keeps cron's files there (crontab(1))") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise UserSafetyError(f"{path} ({real}) must be a directory of root that others cannot write to; fix its "
                              "owner and mode (root, 0755) and run again")
    return real


def read_cron_deny(path: str = CRON_DENY):
    """cron.deny's text (None when there is none). The file must be root's regular file (a link is not followed).

    Raises:
        UserSafetyError: its directory or the file is not root's, or the file is not a regular file.
    """
    real = os.path.join(_root_directory(os.path.dirname(path)), os.path.basename(path))
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserSafetyError(f"cannot read {path}: {exc.strerror} (a link is refused); make it a regular file of "
                              "root, 0644") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0:
            raise UserSafetyError(f"{path} must be a regular file of root; fix it and run again")
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def write_cron_deny(path: str, text: str) -> None:
    """Replace cron.deny with ``text``: a fresh root 0644 file renamed over it (never written through a link)."""
    dfd = os.open(_root_directory(os.path.dirname(path)), os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        replace_file(os.path.basename(path), dfd, text.encode("utf-8", "surrogateescape"), 0, 0, 0o644)
        os.fsync(dfd)
    finally:
        os.close(dfd)


def cron_table(name: str, tabs_dir: str = CRON_TABS):
    """The path of ``name``'s crontab when one exists (any kind of entry, not followed), else None."""
    path = os.path.join(_root_directory(tabs_dir), name)
    return path if os.path.lexists(path) else None


# ---------------------------------------------------------------------------
# Processes of a user (deprovision leaves nothing running)
# ---------------------------------------------------------------------------

def cmd_bootout_domain(domain: str, uid: int) -> list:
    """``launchctl bootout user/UID`` or ``gui/UID``: the user's launchd domain, so its agents are not restarted.

    A domain that does not exist answers 3, 112, 113 or 125 (reference 2.4); any answer is fine, the process list
    is what counts.
    """
    return [LAUNCHCTL, "bootout", f"{domain}/{uid}"]


def cmd_list_processes() -> list:
    """Every process with its effective UID, real UID and state (ps(1): ``pid``, ``uid``, ``ruid``, ``stat``).

    One ``-o`` per keyword: a header after ``=`` may run to the end of its argument, so ``pid=,uid=`` is not portable.
    """
    return [PS, "-A", "-o", "pid=", "-o", "uid=", "-o", "ruid=", "-o", "stat="]


def cmd_pkill(signal_name: str, uid: int, real: bool) -> list:
    """``pkill -SIGNAL -U UID`` (real UID) or ``-u UID`` (effective UID); exit 0 when some matched, 1 when none."""
    return [PKILL, f"-{signal_name}", "-U" if real else "-u", str(uid)]


def parse_processes(text: str, uid: int) -> list:
    """``[(pid, stat)]`` of the processes whose real or effective UID is ``uid``, from :func:`cmd_list_processes`.

    Zombies (state ``Z``) are left out: they are dead, hold no files and only wait for their parent to reap them.
    """
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        try:
            pid, euid, ruid = int(parts[0]), int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if uid in (euid, ruid) and not parts[3].startswith("Z"):
            found.append((pid, parts[3]))
    return found


def list_user_processes(runner, uid: int) -> list:
    """``[(pid, stat)]`` of the live processes of ``uid`` (real or effective), read with ``ps``."""
    result = runner.run(cmd_list_processes())
    if result.rc not in (0, 1):
        raise CommandError(result, "ps could not list the processes")
    return parse_processes(result.stdout, uid)


def kill_user_processes(runner, uid: int, rounds: int = KILL_ROUNDS, pause: float = 0.1, sleep=None) -> list:
    """Leave no process of ``uid`` running; return the pids that were found (and killed).

    The user's launchd domains (``user/UID``, ``gui/UID``) are booted out first, so launchd restarts nothing of the
    user's.  Then, until ``ps`` shows no live process of the UID (real or effective): ``pkill -STOP`` (a stopped
    process cannot fork a new one), ``pkill -KILL``, a short pause for the kernel to finish.  A claw's code may have
    double-forked or ``setsid``-ed processes that outlived its gateway job; they go too.

    Raises:
        UserSafetyError: processes still live after ``rounds`` rounds; names their pids. Nothing was deleted.
        CommandError: ``ps`` or ``pkill`` failed (not "nothing matched").
    """
    if uid is None or uid < PROTECTED_UID_BELOW:
        raise UserSafetyError(f"refusing to kill the processes of UID {uid}: below {PROTECTED_UID_BELOW}")
    for domain in ("user", "gui"):
        runner.run(cmd_bootout_domain(domain, uid))
    seen = []
    for _round in range(rounds):
        live = list_user_processes(runner, uid)
        if not live:
            return seen
        seen += [pid for pid, _ in live if pid not in seen]
        for signal_name in ("STOP", "KILL"):
            for real in (True, False):
                result = runner.run(cmd_pkill(signal_name, uid, real))
                if result.rc not in (0, 1):
                    raise CommandError(result, f"pkill could not signal the processes of UID {uid}")
        (sleep or time.sleep)(pause)
    live = list_user_processes(runner, uid)
    if not live:
        return seen
    pids = " ".join(str(pid) for pid, _ in live)
    raise UserSafetyError(
        f"processes of UID {uid} still run after {rounds} rounds of SIGKILL: pids {pids}; nothing was deleted. "
        f"Look at them (ps -o pid,ppid,stat,command -p {pids.replace(' ', ',')}), kill them and run again")


def current_view(record: dict) -> dict:
    """Comparable view of an existing record: ``{uid, gid, home, shell, real_name, hidden}``."""
    return {
        "uid": record_int(record, "UniqueID"),
        "gid": record_int(record, "PrimaryGroupID"),
        "home": record_str(record, "NFSHomeDirectory"),
        "shell": record_str(record, "UserShell"),
        "real_name": record_str(record, "RealName"),
        "hidden": record_str(record, "IsHidden") in ("1", "YES", "true"),
    }


_VIEW_TO_ATTRIBUTE = {
    "gid": "PrimaryGroupID",
    "home": "NFSHomeDirectory",
    "shell": "UserShell",
    "real_name": "RealName",
    "hidden": "IsHidden",
}


def attribute_value(key: str, value) -> str:
    """dscl text for one view value (``hidden`` becomes ``1``/``0``)."""
    if key == "hidden":
        return "1" if value else "0"
    return str(value)


def changed_attributes(current: dict, desired: dict) -> dict:
    """``{dscl attribute: new value}`` for every desired field that differs.

    ``desired`` has the keys of :func:`current_view` except ``uid``; ``None`` means
    "leave as is".  A UID is never changed on an existing user (files would be orphaned).
    """
    changes = {}
    for key, attribute in _VIEW_TO_ATTRIBUTE.items():
        want = desired.get(key)
        if want is not None and current.get(key) != want:
            changes[attribute] = attribute_value(key, want)
    return changes


# ---------------------------------------------------------------------------
# Command lines (pinned by unit tests)
# ---------------------------------------------------------------------------

def cmd_read(name: str) -> list:
    """Read a record: exit 56 when the user does not exist."""
    return [DSCL, "-plist", ".", "-read", f"/Users/{name}"]


def cmd_list_uids() -> list:
    """List every local user with its UniqueID."""
    return [DSCL, ".", "-list", "/Users", "UniqueID"]


def cmd_search_uid(uid: int) -> list:
    """Find records holding ``uid`` (re-check right before creating)."""
    return [DSCL, ".", "-search", "/Users", "UniqueID", str(uid)]


def cmd_checkmember(name: str, group: str = ADMIN_GROUP) -> list:
    """Membership test: stdout ``yes NAME is a member of GROUP`` and exit 0 when a member."""
    return [DSEDITGROUP, "-o", "checkmember", "-m", name, group]


def cmd_create(name: str, attribute: str | None = None, value: str | None = None) -> list:
    """``dscl . -create`` of the record, or of one attribute (replacing its values)."""
    argv = [DSCL, ".", "-create", f"/Users/{name}"]
    if attribute is not None:
        argv += [attribute, value]
    return argv


def create_sequence(name: str, uid: int, gid: int, home: str, shell: str, real_name: str, hidden: bool) -> list:
    """Ordered dscl commands creating a user record; UniqueID is set right after the record.

    The password is not part of this sequence: it goes through :func:`passwd_script` on stdin.
    """
    return [
        cmd_create(name),
        cmd_create(name, "UniqueID", str(uid)),
        cmd_create(name, "PrimaryGroupID", str(gid)),
        cmd_create(name, "NFSHomeDirectory", home),
        cmd_create(name, "UserShell", shell),
        cmd_create(name, "RealName", real_name),
        cmd_create(name, "IsHidden", "1" if hidden else "0"),
    ]


def cmd_dscl_interactive() -> list:
    """``dscl -q .`` reads commands from stdin (dscl(1): leading dashes optional, ``quit`` ends)."""
    return [DSCL, "-q", "."]


def passwd_script(name: str, password: str) -> str:
    """stdin for :func:`cmd_dscl_interactive` that sets the password, so it never appears in ``ps``."""
    return f"-passwd /Users/{name} {password}\n-quit\n"


def cmd_delete_user(name: str) -> list:
    """``sysadminctl -deleteUser`` keeping the home: the module handles the home itself afterwards.

    macOS may move a kept home aside to ``/Users/NAME (Deleted)``; :func:`find_moved_home` finds it again.
    """
    return [SYSADMINCTL, "-deleteUser", name, "-keepHome"]


def cmd_delete_record(name: str) -> list:
    """Fallback when sysadminctl reports success but the record is still there."""
    return [DSCL, ".", "-delete", f"/Users/{name}"]


def cmd_flush_cache() -> list:
    """Flush the directory cache so getpwnam/id see the change."""
    return [DSCACHEUTIL, "-flushcache"]


# ---------------------------------------------------------------------------
# Homes (docs/macos-tcc.md)
# ---------------------------------------------------------------------------

def directory_identity(path: str):
    """``(st_dev, st_ino)`` of ``path`` when it is a real directory (links are not followed), else None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)


def deleted_home_name(home: str) -> str:
    """Where ``sysadminctl -deleteUser -keepHome`` may move a home: ``/Users/NAME (Deleted)``."""
    return f"{home.rstrip('/')} (Deleted)"


def find_moved_home(home: str, identity) -> str | None:
    """Path of the directory ``identity`` (from :func:`directory_identity`) beside ``home``, or None.

    A rename within one file system keeps the inode, so the home is found again wherever ``sysadminctl``
    renamed it inside the home's parent directory (``/Users``), whatever the suffix.  ``/Users NAME (Deleted)``
    is looked at first; entries are read with ``lstat`` (a link never matches).
    """
    if identity is None:
        return None
    parent = os.path.dirname(home.rstrip("/")) or "/"
    candidates = [deleted_home_name(home)]
    try:
        candidates += sorted(os.path.join(parent, entry) for entry in os.listdir(parent))
    except FileNotFoundError:
        return None
    for candidate in candidates:
        if directory_identity(candidate) == identity:
            return candidate
    return None
