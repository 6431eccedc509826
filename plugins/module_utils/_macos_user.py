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

DSCL = "/usr/bin/dscl"
SYSADMINCTL = "/usr/sbin/sysadminctl"
DSEDITGROUP = "/usr/sbin/dseditgroup"
DSCACHEUTIL = "/usr/bin/dscacheutil"

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


def pick_uid(used_uids, first: int, last: int) -> int:
    """Lowest UID in ``[first, last]`` not in ``used_uids``.  Raises ``ValueError`` when the range is full."""
    used = set(used_uids)
    for uid in range(first, last + 1):
        if uid not in used:
            return uid
    raise ValueError(f"no free UID in {first}-{last}; widen uid_range")


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
