# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Root making a claw's directories and root-managed files without ever following a link (PRIVATE).

A claw's home belongs to its tenant, whose code runs as the claw user: any entry in it may be replaced by a
symlink (or a hard link, a FIFO...) at any moment. Root therefore never acts on a path inside it. Everything here
walks from a trusted root-owned parent with directory file descriptors:

* each component is opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's descriptor, and its
  ``fstat`` must match the ``lstat`` taken before (same device and inode), so a link or a swap is seen, never
  followed;
* owner and mode are set with ``fchown``/``fchmod`` on the opened descriptor;
* a directory is made with ``mkdir`` relative to its parent's descriptor and then opened the same way;
* a file is written to a fresh temporary name (``O_CREAT | O_EXCL | O_NOFOLLOW``) and renamed over the old name
  (``rename`` replaces a link or a hard link's name, it never writes through it); an old file is read only when
  it is a regular file of the claw with one link.

A symlink or a non-directory where a directory must be is refused, naming the link and its target, before
anything is changed. The claw's lock directory in ``/tmp`` (sticky, world-writable: any local user may create
any name there first) is kept only when it is a real directory of the claw's uid (or root's, then given to the
claw); anything else is moved aside INTO a fresh directory of root with a random name
(``<name>.moved-<random hex>/<name>``: made with ``mkdir``, which never follows a link and fails when the name is
taken, so no neighbour can plant it first) and a new one is made.

Runs on CPython 3.9 (macOS's /usr/bin/python3): only ``os`` calls with ``dir_fd`` that macOS supports.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import time

from . import _claw

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
MAX_FILE_BYTES = 1 << 20


class PathRefused(Exception):
    """A tenant-controlled path is not what it must be (a link, a file, a foreign owner): nothing was done
    through it."""


def validate_relative(path: str) -> str:
    """Check a path relative to the claw's home: no leading ``/``, no ``..``/``.``/empty parts, no control characters.

    Raises:
        PathRefused: the path is not a plain relative path.
    """
    text = str(path)
    parts = text.split("/")
    if (not text or text.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 or ord(c) == 127 for c in text)):
        raise PathRefused(f"{text!r} must be a relative path inside the claw's home (no '..', no empty parts)")
    return text


_CONTROL = {c: f"\\x{c:02x}" for c in list(range(0x00, 0x20)) + list(range(0x7f, 0xa0)) if c not in (0x09, 0x0a)}


def escape_control(text) -> str:
    """Tenant-derived text as it may reach an operator's terminal: control characters written as ``\\xNN``.

    C0 controls (but tab and newline), DEL and the C1 range (U+0080-U+009F, where 8-bit CSI lives) are escaped, so
    an ESC sequence in a claw's file or link target cannot move the cursor, retitle or rewrite the terminal when a
    diff or a message is shown. Everything else is kept as it is.
    """
    return str(text).translate(_CONTROL)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def _lstat(name: str, dir_fd: int):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _link_target(name: str, dir_fd: int) -> str:
    """A link's target as messages show it (the tenant chose it: control characters escaped, cut at 200)."""
    try:
        return escape_control(os.readlink(name, dir_fd=dir_fd)[:200])
    except OSError:
        return "?"


def _refuse_not_dir(shown: str, name: str, dir_fd: int, st) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise PathRefused(f"{shown} is a symlink to {_link_target(name, dir_fd)}; remove it or re-provision after "
                          f"moving it aside (nothing was done through it)")
    raise PathRefused(f"{shown} is {_kind(st.st_mode)}, not a directory; remove it or re-provision after moving it "
                      f"aside (nothing was done through it)")


def _open_dir(shown: str, name: str, dir_fd: int, before):
    """Open ``name`` (a directory entry of ``dir_fd``) without following a link; it must be the inode ``before``."""
    try:
        fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            st = _lstat(name, dir_fd)
            if st is not None:
                _refuse_not_dir(shown, name, dir_fd, st)
        raise PathRefused(f"cannot open {shown}: {exc.strerror}; it changed while being checked, run again") from None
    st = os.fstat(fd)
    if before is not None and (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise PathRefused(f"{shown} was replaced while being checked (a running process swaps it); run again")
    return fd, st


def open_trusted_dir(path: str, group_write_gids=()):
    """Open a root-owned directory that no other user may write to (except a sticky one such as /tmp).

    The path itself may go through root-owned links (macOS's /tmp -> private/tmp). Group write is allowed when the
    directory's group is one of ``group_write_gids`` (groups no claw user is a member of, such as admin).

    Raises:
        PathRefused: missing, not a directory, not root's, or writable by others without the sticky bit.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise PathRefused(f"cannot open {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    writable = st.st_mode & (0o002 if st.st_gid in group_write_gids else 0o022)
    if st.st_uid != 0 or (writable and not st.st_mode & stat.S_ISVTX):
        os.close(fd)
        raise PathRefused(f"{path} must be a root-owned directory that other users cannot write to "
                          f"(owner uid {st.st_uid}, group {st.st_gid}, mode {stat.S_IMODE(st.st_mode):04o})")
    return fd


def _mkdir_at(shown: str, name: str, dir_fd: int, mode: int):
    """Make the directory ``name`` in ``dir_fd`` with ``mkdir`` (never follows a link); a name someone else made
    meanwhile is left to the caller's checks. Returns ``(lstat of what is there, whether this call made it)``.

    Raises:
        PathRefused: the name vanished right after (a running process removes it).
    """
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
        made = True
    except FileExistsError:
        made = False
    st = _lstat(name, dir_fd)
    if st is None:
        raise PathRefused(f"{shown} vanished while being created (a running process removes it); run again")
    return st, made


def _needs(st, uid: int, gid: int, mode: int) -> list:
    out = []
    if st.st_uid != uid or st.st_gid != gid:
        out.append(f"owner {st.st_uid}:{st.st_gid} -> {uid}:{gid}")
    if stat.S_IMODE(st.st_mode) != mode:
        out.append(f"mode {stat.S_IMODE(st.st_mode):04o} -> {mode:04o}")
    return out


def _tree(directories) -> list:
    """Every directory to manage, parents first (a listed ``a/b`` brings ``a``)."""
    seen = []
    for path in directories:
        parts = validate_relative(path).split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in seen:
                seen.append(sub)
    return seen


def _walk(home: str, uid: int, gid: int, directories, mode: int, apply: bool, actions: list) -> dict:
    """Check (``apply=False``) or create/repair (``apply=True``) the directories; returns ``{rel: fd}`` of the
    directories that exist (the caller closes them). Read-only checks run before anything is changed."""
    parent, base = os.path.split(home.rstrip("/"))
    pfd = open_trusted_dir(parent or "/")
    fds = {}
    try:
        st = _lstat(base, pfd)
        if st is None:
            raise PathRefused(f"the claw's home {home} does not exist; create the claw's user first")
        if not stat.S_ISDIR(st.st_mode):
            _refuse_not_dir(home, base, pfd, st)
        hfd, hst = _open_dir(home, base, pfd, st)
        fds[""] = hfd
        if hst.st_uid != uid:
            raise PathRefused(f"the claw's home {home} belongs to uid {hst.st_uid}, not to the claw (uid {uid}); "
                              "re-provision after fixing its owner")
        for rel in _tree(directories):
            head, _, name = rel.rpartition("/")
            dfd = fds.get(head)
            shown = f"{home}/{rel}"
            if dfd is None:  # parent will be created (check mode)
                actions.append(f"create {shown} ({uid}:{gid} {mode:04o})")
                continue
            st = _lstat(name, dfd)
            if st is None:
                if not apply:
                    actions.append(f"create {shown} ({uid}:{gid} {mode:04o})")
                    continue
                st, made = _mkdir_at(shown, name, dfd, mode)
                if made:
                    actions.append(f"create {shown} ({uid}:{gid} {mode:04o})")
            if not stat.S_ISDIR(st.st_mode):
                _refuse_not_dir(shown, name, dfd, st)
            if st.st_uid not in (uid, 0):
                raise PathRefused(f"{shown} belongs to uid {st.st_uid}, not to the claw (uid {uid}); move it aside and "
                                  "re-provision")
            fd, fst = _open_dir(shown, name, dfd, st)
            fds[rel] = fd
            todo = _needs(fst, uid, gid, mode)
            if todo and not any(a.startswith(f"create {shown} ") for a in actions):
                actions.append(f"repair {shown}: {', '.join(todo)}")
            if apply and todo:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    finally:
        os.close(pfd)
    return fds


def read_at_most(fd: int, limit: int) -> bytes:
    """What ``fd`` holds, read in chunks until its end or until more than ``limit`` bytes were read (a file that grows
    while it is read never floods root); the caller compares ``len()`` with ``limit``."""
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _read_own_file(name: str, dfd: int, uid: int):
    """``(lstat, bytes or None)`` of a file root may replace: bytes only for a regular file of ``uid`` with one link."""
    st = _lstat(name, dfd)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_uid != uid or st.st_nlink != 1 or st.st_size > MAX_FILE_BYTES:
        return st, None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dfd)
    except OSError:
        return st, None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode) or fst.st_nlink != 1:
            return st, None
        return fst, read_at_most(fd, MAX_FILE_BYTES)
    finally:
        os.close(fd)


def replace_file(name: str, dfd: int, data: bytes, uid: int, gid: int, mode: int) -> None:
    """Write ``data`` to a fresh temporary name in the directory ``dfd`` and rename it over ``name``.

    The temporary file is created ``O_CREAT | O_EXCL | O_NOFOLLOW`` relative to ``dfd``, owned ``uid``/``gid`` and
    given ``mode`` (permission bits) on its descriptor before any byte is written, then ``fsync``ed and renamed: a
    symlink, hard link or FIFO at ``name`` is replaced, never written through.  Used for every file root writes in a
    claw's state dir (``openclaw.json``, ``.env``).

    Raises:
        OSError: from the create, write or rename; the temporary file is removed.
    """
    tmp = f".{name}.clawfarm-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600,
                 dir_fd=dfd)
    try:
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise


MAX_JSON_DEPTH = 32  # an OpenClaw config nests a few levels; deeper is refused before any copy or re-indent


def json_depth(value) -> int:
    """How deep containers nest in a parsed JSON value (``{}`` is 1), walked without recursion."""
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return depth


def parse_json_object(data: bytes):
    """The tenant's JSON file ``data`` as a dict, or None when it is not a plain JSON object.

    Plain JSON only: no NaN/Infinity (nor numbers that overflow to it), integers of at most 4300 digits (a hostile
    file cannot make root's parse slow), nesting of at most :data:`MAX_JSON_DEPTH` (root copies and re-indents it).
    """
    import math

    def bounded_int(text):
        if len(text) > 4300:
            raise ValueError("integer too long")
        return int(text)

    def finite_float(text):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("number out of range")
        return value

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(data.decode("utf-8"), parse_int=bounded_int, parse_float=finite_float,
                           parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or json_depth(value) > MAX_JSON_DEPTH:
        return None
    return value


def json_text(value: dict) -> bytes:
    """``value`` as the farm writes a merged JSON file: 2-space indent (as OpenClaw writes its config), sorted keys,
    a trailing newline; compact instead when indenting could make it larger than :data:`MAX_FILE_BYTES`."""
    compact = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(compact) * (1 + 2 * json_depth(value)) > MAX_FILE_BYTES:
        return (compact + "\n").encode()
    return (json.dumps(value, indent=2, sort_keys=True, separators=(",", ": "), allow_nan=False) + "\n").encode()


def _plan_file(home: str, rel: str, dfd, data: bytes, uid: int, gid: int, mode: int, farm=None):
    """``(action or None, before text or None, bytes to write, after text, aside)`` for one file; refuses a directory
    in its place. ``aside`` is None or ``(name, bytes)``: the old content to keep under a new name first. With
    ``farm`` (the farm's part of a JSON config, merge_json) an existing JSON object of the claw keeps every setting
    outside the farm's sections (:func:`_claw.merge_farm_config`), and the texts are :func:`_claw.farm_config_view`
    (never the agent's values); a file that is not plain JSON is replaced and kept aside (``aside``)."""
    shown = f"{home}/{rel}"
    name = rel.rpartition("/")[2]
    after = data.decode("utf-8", "replace") if farm is None else _claw.farm_config_view(farm, farm)
    if dfd is None:
        return f"write {shown} (new)", None, data, after, None
    st, old = _read_own_file(name, dfd, uid)
    if st is None:
        return f"write {shown} (new)", None, data, after, None
    if stat.S_ISDIR(st.st_mode):
        raise PathRefused(f"{shown} is a directory, not a file; move it aside and re-provision")
    if stat.S_ISLNK(st.st_mode):
        return f"replace {shown} (a symlink to {_link_target(name, dfd)}; the link is replaced, never followed)", None, data, after, None
    if old is None:
        why = (f"{_kind(st.st_mode)}" if not stat.S_ISREG(st.st_mode) else
               f"owned by uid {st.st_uid}" if st.st_uid != uid else
               f"{st.st_nlink} hard links" if st.st_nlink != 1 else "too large")
        return f"replace {shown} ({why}; replaced, never written through)", None, data, after, None
    todo = _needs(st, uid, gid, mode)
    if farm is not None:
        current = parse_json_object(old)
        if current is None:  # JSON5 comments, say: the customer's file is kept beside, never dropped
            aside = f"{name}.replaced-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
            return (f"write {shown} (content: not a plain JSON object, replaced by the farm's settings; the old file is "
                    f"kept as {aside})", "(not shown: not a plain JSON object)\n", data, after, (aside, old))
        merged, rewritten = _claw.merge_farm_config(current, farm)
        before, after = _claw.farm_config_view(current, farm), _claw.farm_config_view(merged, farm)
        if not _claw.same_json(merged, current):
            return f"write {shown} (the farm's settings: {', '.join(rewritten)}; the agent's kept)", before, json_text(merged), after, None
        if todo:
            return f"write {shown} ({', '.join(todo)})", before, old, after, None
        return None, before, old, after, None
    text = escape_control(old.decode("utf-8", "replace"))  # the tenant's bytes, shown in the diff
    if old != data:
        return f"write {shown} (content)", text, data, after, None
    if todo:
        return f"write {shown} ({', '.join(todo)})", text, data, after, None
    return None, text, data, after, None


def ensure_claw_tree(home: str, uid: int, gid: int, directories=(), files=(), mode: int = 0o700,
                     check_mode: bool = False, lstat=()) -> dict:
    """Create or repair directories inside a claw's home and write root-managed files there, never following a link.

    Args:
        home: the claw's home (its parent must be root-owned and not writable by others).
        uid, gid: the claw's owner and group for everything made or repaired.
        directories: paths relative to ``home`` (parents are included); each gets ``uid:gid`` and ``mode``.
        files: ``[{"path": relative path, "content": str, "mode": int, "merge_json": bool}]``; the parent must be in
            ``directories``. With ``merge_json`` the content is the farm's part of a JSON config (a JSON object): a
            file that is the claw's own JSON object keeps every setting outside the farm's sections
            (:func:`_claw.merge_farm_config`) and is written only when the merge changes it; the report's texts
            show the farm's sections and only the names of the rest (the agent's settings may hold secrets).
        mode: the directories' mode.
        check_mode: only report what would change.
        lstat: paths relative to ``home`` (their directory must be in ``directories``) to look at after the rest is
            done, without following a link and without opening them (the caller decides whether to trust a file).

    Returns:
        ``{"changed": bool, "actions": [str], "files": {rel: {"before": str|None, "after": str}},
        "lstat": {rel: {"type": "file"|"directory"|"symlink"|"other"|"missing", "uid": int|None, "links": int|None}}}``
        (keyed by each path asked for; ``missing`` when there is no such entry, or its directory does not exist yet in
        check mode).

    Raises:
        PathRefused: a link or a non-directory where a directory must be, a foreign owner, a race; raised before
        anything is changed when the tenant left the link in place.
    """
    home = str(home).rstrip("/")
    if not home.startswith("/"):
        raise PathRefused(f"the claw's home {home!r} must be an absolute path")
    managed = _tree(directories)
    specs = []
    for item in files:
        rel = validate_relative(item["path"])
        head = rel.rpartition("/")[0]
        if head and head not in managed:
            raise PathRefused(f"{rel}: its directory {head} must be listed in directories")
        content = item["content"]
        data = content.encode() if isinstance(content, str) else bytes(content)
        farm = None
        if item.get("merge_json"):
            farm = parse_json_object(data)
            if farm is None:
                raise PathRefused(f"{rel}: merge_json needs content that is a JSON object")
        specs.append((rel, data, int(item.get("mode", 0o600)), farm))
    looked_at = []
    for item in lstat:
        rel = validate_relative(item)
        head = rel.rpartition("/")[0]
        if head and head not in managed:
            raise PathRefused(f"{rel}: its directory {head} must be listed in directories")
        looked_at.append(rel)
    for apply in ((False,) if check_mode else (False, True)):
        actions = []
        fds = _walk(home, uid, gid, managed, mode, apply, actions)
        try:
            report = {}
            for rel, data, fmode, farm in specs:
                dfd = fds.get(rel.rpartition("/")[0])
                action, before, write, after, aside = _plan_file(home, rel, dfd, data, uid, gid, fmode, farm)
                report[rel] = {"before": before, "after": after}
                if action:
                    actions.append(action)
                    if apply:
                        if aside:
                            replace_file(aside[0], dfd, aside[1], uid, gid, fmode)
                        replace_file(rel.rpartition("/")[2], dfd, write, uid, gid, fmode)
            entries = {rel: _entry(rel, fds.get(rel.rpartition("/")[0])) for rel in looked_at}
        finally:
            for fd in fds.values():
                os.close(fd)
        if not actions:
            break
    return {"changed": bool(actions), "actions": actions, "files": report, "lstat": entries}


def _entry(rel: str, dfd) -> dict:
    """``{"type", "uid", "links"}`` of ``rel``'s last component in the directory ``dfd`` (lstat, never followed)."""
    st = _lstat(rel.rpartition("/")[2], dfd) if dfd is not None else None
    if st is None:
        return {"type": "missing", "uid": None, "links": None}
    kind = ("file" if stat.S_ISREG(st.st_mode) else "directory" if stat.S_ISDIR(st.st_mode) else
            "symlink" if stat.S_ISLNK(st.st_mode) else "other")
    return {"type": kind, "uid": st.st_uid, "links": st.st_nlink}


def make_aside_dir(name: str, pfd: int):
    """Make a fresh directory of root, mode 0700, named ``<name>.moved-<16 random hex>`` in the directory ``pfd``.

    ``mkdir`` fails on any existing name (a link included, never followed), so a name a neighbour planted first is
    skipped for another random one; the new directory is opened ``O_NOFOLLOW`` and must be the one just made (root's,
    same inode). Returns ``(aside name, descriptor)``.

    Raises:
        PathRefused: no fresh name could be made (ten random names taken).
    """
    for _attempt in range(10):
        aside = f"{name}.moved-{secrets.token_hex(8)}"
        try:
            os.mkdir(aside, 0o700, dir_fd=pfd)
        except FileExistsError:
            continue
        st = _lstat(aside, pfd)
        if st is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        try:
            fd, _ = _open_dir(aside, aside, pfd, st)
        except PathRefused:
            continue
        os.fchmod(fd, 0o700)
        return aside, fd
    raise PathRefused(f"cannot make a fresh directory to move {name} aside: every random name was taken")


def ensure_lock_dir(path: str, uid: int, gid: int, mode: int = 0o700, check_mode: bool = False) -> dict:
    """Make ``path`` (in a root-owned sticky directory such as /tmp) a real directory of ``uid``, never following a link.

    A directory of ``uid`` is kept (its mode repaired); a root-owned directory is given to ``uid``; anything else
    (a symlink, a file, a directory of another uid, which another tenant may have made first) is moved aside INTO a
    fresh root directory with an unpredictable name (:func:`make_aside_dir`, so it becomes
    ``<path>.moved-<random hex>/<name>``) and a new directory is made with ``mkdir`` and checked with ``fstat``.

    Returns:
        ``{"changed": bool, "actions": [str], "moved_aside": [str]}``.

    Raises:
        PathRefused: the parent is not a trusted directory, or the name keeps being taken by someone else.
    """
    parent, name = os.path.split(str(path).rstrip("/"))
    if not parent.startswith("/") or not name or name in (".", ".."):
        raise PathRefused(f"lock directory {path!r} must be an absolute path")
    pfd = open_trusted_dir(parent)
    actions, moved = [], []
    try:
        for _attempt in range(3):
            st = _lstat(name, pfd)
            if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid in (uid, 0):
                if check_mode:
                    todo = _needs(st, uid, gid, mode)
                    if todo:
                        actions.append(f"repair {path}: {', '.join(todo)}")
                    break
                try:
                    fd, fst = _open_dir(path, name, pfd, st)
                except PathRefused:
                    continue
                try:
                    todo = _needs(fst, uid, gid, mode)
                    if todo:
                        actions.append(f"repair {path}: {', '.join(todo)}")
                        os.fchown(fd, uid, gid)
                        os.fchmod(fd, mode)
                finally:
                    os.close(fd)
                break
            if st is not None:
                what = (f"a symlink to {_link_target(name, pfd)}" if stat.S_ISLNK(st.st_mode) else
                        f"a directory of uid {st.st_uid}" if stat.S_ISDIR(st.st_mode) else
                        f"{_kind(st.st_mode)} of uid {st.st_uid}")
                if check_mode:
                    aside = f"{path}.moved-<random>/{name}"
                    moved.append(f"{path} was {what}: moved aside to {aside}")
                    actions.append(f"move {path} ({what}) aside to {aside}")
                    actions.append(f"create {path} ({uid}:{gid} {mode:04o})")
                    break
                aside_name, afd = make_aside_dir(name, pfd)
                try:
                    os.rename(name, name, src_dir_fd=pfd, dst_dir_fd=afd)
                except FileNotFoundError:  # gone meanwhile: nothing to move, look again
                    os.rmdir(aside_name, dir_fd=pfd)
                    continue
                finally:
                    os.close(afd)
                aside = f"{parent}/{aside_name}/{name}"
                moved.append(f"{path} was {what}: moved aside to {aside}")
                actions.append(f"move {path} ({what}) aside to {aside}")
            elif check_mode:
                actions.append(f"create {path} ({uid}:{gid} {mode:04o})")
                break
            try:
                os.mkdir(name, mode, dir_fd=pfd)
            except FileExistsError:
                continue  # someone took the name meanwhile: look again
            actions.append(f"create {path} ({uid}:{gid} {mode:04o})")
            st = _lstat(name, pfd)
            if st is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
                continue
            fd, _ = _open_dir(path, name, pfd, st)
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            break
        else:
            raise PathRefused(f"{path} keeps being taken by another process; find who creates it (ls -la {parent}) "
                              "and run again")
    finally:
        os.close(pfd)
    return {"changed": bool(actions), "actions": actions, "moved_aside": moved}


# Groups whose write permission on a parent directory is trusted: wheel (0) and admin (80, the Mac's admins; a claw
# user is never a member). macOS ships some of /Library's directories group-writable by admin.
TRUSTED_WRITE_GIDS = (0, 80)


def ensure_root_dir(path: str, mode: int = 0o755, check_mode: bool = False) -> dict:
    """Make ``path`` a directory of root (``0:0``, ``mode``), with any missing parents, never following a link.

    For directories outside every home that launchd opens as root (a claw's launchd log directory,
    ``/Library/Logs/mirascope/claws/<user>``). The deepest existing parent is opened as a whole path (root-owned
    links such as macOS's ``/var -> private/var`` are followed there) and must be root's and not writable by other
    users (group write only for wheel or admin, :data:`TRUSTED_WRITE_GIDS`); from it, every missing directory is made
    with ``mkdir`` relative to its parent's descriptor, opened ``O_NOFOLLOW`` and given ``0:0`` and ``mode``. An
    existing ``path`` is kept when it is a real directory of root (its owner and mode repaired).

    Returns:
        ``{"changed": bool, "actions": [str]}`` (``create <dir> (0:0 0755)`` / ``repair <dir>: ...`` lines).

    Raises:
        PathRefused: ``path`` not absolute; a parent not trusted; a link, a non-directory or a directory of another
        user at ``path`` or a parent made meanwhile.
    """
    path = str(path).rstrip("/")
    names = path.split("/")[1:]
    if not path.startswith("/") or not names or any(name in ("", ".", "..") for name in names):
        raise PathRefused(f"directory {path!r} must be an absolute path without '.' or '..'")
    depth = len(names) - 1
    while depth > 0 and not os.path.lexists("/" + "/".join(names[:depth])):
        depth -= 1
    fd = open_trusted_dir("/" + "/".join(names[:depth]), TRUSTED_WRITE_GIDS)
    actions = []
    try:
        for i in range(depth, len(names)):
            name = names[i]
            shown = "/" + "/".join(names[:i + 1])
            st = _lstat(name, fd)
            if st is None:
                if check_mode:
                    actions.extend(f"create /{'/'.join(names[:j + 1])} (0:0 {mode:04o})" for j in range(i, len(names)))
                    break
                st, made = _mkdir_at(shown, name, fd, 0o700)  # root's alone until its owner and mode are set below
                if made:
                    actions.append(f"create {shown} (0:0 {mode:04o})")
            if not stat.S_ISDIR(st.st_mode):
                _refuse_not_dir(shown, name, fd, st)
            if st.st_uid != 0:
                raise PathRefused(f"{shown} belongs to uid {st.st_uid}, not to root; move it aside and run again")
            sub, sst = _open_dir(shown, name, fd, st)
            os.close(fd)
            fd = sub
            todo = _needs(sst, 0, 0, mode)
            if todo and not (actions and actions[-1].startswith(f"create {shown} ")):
                actions.append(f"repair {shown}: {', '.join(todo)}")
            if todo and not check_mode:
                os.fchown(fd, 0, 0)
                os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return {"changed": bool(actions), "actions": actions}
