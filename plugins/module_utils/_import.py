# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Import of a claw exported from Cloudflare Containers (issue 17): an ``.openclaw`` directory as ``.tar``,
``.tar.gz`` or ``.tar.zst``.

Host-free parts (format detection, source parsing, the inspection of a tar stream, the gateway config rewrite) and
the Mini-side placement (:func:`import_export`). Every member passes restore's own checks (:func:`_r2.check_member`)
and is written by restore's own extractor (:func:`_r2.extract_stream`: nothing outside the staging directory, no
write through a link, entry and byte limits), ownership is set by :func:`_r2.chown_tree`; nothing here copies them.
Runs on CPython 3.9 (the Minis').
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import tarfile
from datetime import datetime, timezone

from . import _claw, _r2

ArchiveError = _r2.ArchiveError

FORMATS = ("tar", "gzip", "zstd")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CONFIG_NAME = "openclaw.json"
CONFIG_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_ENTRIES = 1_000_000
DEFAULT_MAX_BYTES = 50 * 1024 * _r2.MIB  # 50 GiB of file content
# Names of the export the farm never takes: the claw's .env stays the farm's (token and env from the request, or the
# claw's present ones), and the config is the rewritten one (the gateway's copy of the config it last started with
# holds the container's inline token and port: the gateway writes it again at its next start).
DROPPED = (".env", "openclaw.json.last-good")
# Where a container's gateway keeps its state when the config does not say (the official image runs as ``node``).
CONTAINER_STATE_DIRS = ("/home/node/.openclaw", "/root/.openclaw", "/data/.openclaw")
S3_SOURCE = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/([^\x00-\x1f\x7f]{1,1024})$")


class ImportInputError(ValueError):
    """A bad ``src`` (the message never shows more than the source's kind and a short form)."""


def parse_source(src) -> dict:
    """What kind of source ``src`` is: ``{"kind": "path", "path"}``, ``{"kind": "s3", "bucket", "key"}`` or
    ``{"kind": "https", "url"}``. A path must be absolute (on the control node); URLs must be ``https://`` with a
    host and no credentials; S3 keys must not contain ``..`` components or control characters.

    Raises:
        ImportInputError: anything else (``http://``, relative paths, ``file://``...).
    """
    if not isinstance(src, str) or not src or len(src) > 2048 or _r2._CONTROL.search(src):
        raise ImportInputError("src must be an absolute control-node path, s3://bucket/key or an https:// URL "
                               "(at most 2048 characters, no control characters)")
    if src.startswith("s3://"):
        match = S3_SOURCE.match(src)
        if not match or ".." in match.group(2).split("/") or match.group(2).startswith("/"):
            raise ImportInputError("src s3://bucket/key: the bucket must be a valid bucket name and the key a plain key "
                                   "(no '..' components, not starting with '/')")
        return {"kind": "s3", "bucket": match.group(1), "key": match.group(2)}
    if src.startswith("https://"):
        from urllib.parse import urlsplit

        parts = urlsplit(src)
        if not parts.hostname or parts.username or parts.password or " " in src:
            raise ImportInputError("src https:// URL must name a host and carry no credentials or spaces")
        return {"kind": "https", "url": src}
    if "://" in src:
        raise ImportInputError("src must be an absolute control-node path, s3://bucket/key or an https:// URL "
                               f"(not {src.split('://', 1)[0][:16]}://)")
    if not os.path.isabs(src):
        raise ImportInputError("src path must be absolute (a file on the control node)")
    return {"kind": "path", "path": os.path.normpath(src)}


def detect_format(head: bytes) -> str:
    """``tar``, ``gzip`` or ``zstd`` from an archive's first bytes (at least 512 for a plain tar).

    Raises:
        ArchiveError: anything else (bzip2, xz, zip, not an archive).
    """
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    kind = ("bzip2" if head.startswith(b"BZh") else "xz" if head.startswith(b"\xfd7zXZ") else
            "zip" if head.startswith(b"PK\x03\x04") else "unknown")
    raise ArchiveError(f"the export is not a .tar, .tar.gz or .tar.zst archive (found: {kind}); export with "
                       "tar -czf or tar --zstd -cf")


def open_stream(raw, fmt: str):
    """The tar byte stream of ``raw`` (a readable binary stream at its start) in format ``fmt``."""
    if fmt == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if fmt == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    if fmt == "tar":
        return raw
    raise ArchiveError(f"unknown export format {fmt!r}")


class _Head:
    """A stream whose first bytes were already read (for :func:`detect_format`) and are given back first."""

    def __init__(self, raw, head: bytes):
        self.raw, self.head = raw, head

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size is None or size < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            if len(data) < size:
                data += self.raw.read(size - len(data))
            return data
        return self.raw.read() if size is None or size < 0 else self.raw.read(size)

    def readable(self) -> bool:
        return True


def tar_reader(raw):
    """``(format, stream)``: the format of the export ``raw`` and its tar stream."""
    head = _r2.read_exact(raw, 512)
    fmt = detect_format(head)
    return fmt, open_stream(_Head(raw, head), fmt)


def limits_for(max_entries: int, max_bytes: int, free_bytes: int | None = None) -> dict:
    """Extraction limits of an export (it has no manifest): at most ``max_entries`` members and ``max_bytes`` file
    content bytes, and no more than the free space (one block per entry included) when ``free_bytes`` is given."""
    limit = int(max_bytes)
    if free_bytes is not None:
        limit = min(limit, max(0, int(free_bytes)))
    return {"entries": int(max_entries), "bytes": limit}


def state_root(names) -> tuple:
    """The path components the state dir's contents sit under in an export: ``(".openclaw",)`` when every member is
    ``.openclaw`` or under it (``tar -C ~ -cf x .openclaw``), else ``()`` (``tar -C ~/.openclaw -cf x .``)."""
    parts = [tuple(p for p in n.split("/") if p not in ("", ".")) for n in names]
    parts = [p for p in parts if p]
    if parts and all(p[0] == ".openclaw" for p in parts):
        return (".openclaw",)
    return ()


def inspect_stream(stream, limits: dict) -> dict:
    """Read an export's tar stream without writing anything: every member passes restore's checks
    (:func:`_r2.check_member`), the entry and content byte limits hold; ``openclaw.json`` (at most 1 MiB) is kept.

    Returns:
        ``{"entries", "files", "bytes", "root", "names", "config"}``: ``root`` the components stripped (see
        :func:`state_root`), ``names`` the state dir's top-level names, ``config`` the export's parsed config (None
        when it has none).
    Raises:
        ArchiveError: naming the member and the reason.
    """
    counts = {"entries": 0, "files": 0, "bytes": 0}
    names, configs = [], {}
    capped = _r2.CappedReader(stream, _r2.tar_stream_limit(limits))
    try:
        with tarfile.open(fileobj=capped, mode="r|") as tar:
            for member in tar:
                counts["entries"] += 1
                if counts["entries"] > limits["entries"]:
                    raise ArchiveError(f"the export has more than {limits['entries']} entries (claw_import_max_entries); "
                                       "refusing it")
                parts = tuple(_r2.check_member(member))
                names.append(member.name)
                if member.isreg():
                    counts["files"] += 1
                    counts["bytes"] += member.size
                    if counts["bytes"] > limits["bytes"]:
                        raise ArchiveError(f"the export holds more than {limits['bytes']} bytes of files (the limit or the "
                                           "free space on the Mini); refusing it")
                    if parts[-1:] == (CONFIG_NAME,) and len(parts) <= 2:
                        if member.size > CONFIG_MAX_BYTES:
                            raise ArchiveError(f"{member.name} is larger than {CONFIG_MAX_BYTES} bytes")
                        configs[parts] = tar.extractfile(member).read()
    except tarfile.TarError as exc:
        raise ArchiveError(f"the export is not a readable tar archive ({exc})")
    root = state_root(names)
    raw = configs.get(root + (CONFIG_NAME,))
    top = set()
    for name in names:
        parts = tuple(p for p in name.split("/") if p not in ("", "."))[len(root):]
        if parts:
            top.add(parts[0])
    return {**counts, "root": "/".join(root), "names": sorted(top),
            "config": parse_config(raw) if raw is not None else None}


def parse_config(raw: bytes) -> dict:
    """The export's ``openclaw.json`` as a dict (JSON; JSON5 comments and trailing commas are not accepted).

    Raises:
        ArchiveError: not UTF-8 JSON or not an object (the message never quotes the content: it may hold a token).
    """
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ArchiveError(f"the export's {CONFIG_NAME} is not UTF-8 JSON{where}; convert it to plain JSON "
                           "(no comments or trailing commas) before exporting")
    if not isinstance(config, dict):
        raise ArchiveError(f"the export's {CONFIG_NAME} is not a JSON object")
    return config


# ---- the gateway config --------------------------------------------------------------------------------------------

# What the farm owns in openclaw.json and how its sections replace the export's: _claw.farm_config_paths and
# _claw.merge_farm_config, shared with present.yml's write of the config (claw_paths merge_json).
farm_sections = _claw.farm_config_paths


def source_state_dir(config: dict, given: str | None = None) -> str | None:
    """The state dir the export's config names its paths under: ``given``, else the parent of
    ``agents.defaults.workspace`` (when it ends in ``/workspace``), else the grandparent of ``logging.file`` (when in
    ``logs/``), else None (then :data:`CONTAINER_STATE_DIRS` are tried)."""
    if given:
        return os.path.normpath(given)
    workspace = ((config.get("agents") or {}).get("defaults") or {}).get("workspace") if isinstance(config.get("agents"), dict) else None
    if isinstance(workspace, str) and os.path.isabs(workspace) and os.path.basename(os.path.normpath(workspace)) == "workspace":
        return os.path.dirname(os.path.normpath(workspace))
    log_file = (config.get("logging") or {}).get("file") if isinstance(config.get("logging"), dict) else None
    if isinstance(log_file, str) and os.path.isabs(log_file) and os.path.basename(os.path.dirname(log_file)) == "logs":
        return os.path.dirname(os.path.dirname(os.path.normpath(log_file)))
    return None


def _leaves(tree, prefix=()):
    if isinstance(tree, dict) and tree:
        for key in sorted(tree):
            yield from _leaves(tree[key], prefix + (str(key),))
    else:
        yield prefix, tree


def rewrite_config(config: dict | None, farm: dict, new_state_dir: str, old_state_dir: str | None = None) -> tuple:
    """The config the imported claw runs with, and what changed.

    ``farm`` is the farm's own config (the claw role renders it with :func:`_claw.gateway_config`): the sections it
    owns (:func:`farm_sections`) replace the export's. Every other string that is the export's state dir or a path under it (``old_state_dir``, or
    :func:`source_state_dir`, or one of :data:`CONTAINER_STATE_DIRS`) is moved under ``new_state_dir``; all else is
    kept as exported.

    Returns:
        ``(config, plan)``; ``plan`` is ``{"rewritten": [...], "kept": [...], "source_state_dir"}`` with dotted paths
        (never values: an inline token or the agent's API keys stay out of every message).
    """
    old = config if isinstance(config, dict) else {}
    new, rewritten = _claw.merge_farm_config(old, farm)  # a new dict: ``config`` is only read
    rewritten = set(rewritten)
    sections = farm_sections(farm)
    source = source_state_dir(old, old_state_dir)
    sources = [source] if source else list(CONTAINER_STATE_DIRS)
    target = os.path.normpath(new_state_dir)

    def move(value, path):
        if isinstance(value, dict):
            return {k: move(v, path + (str(k),)) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v, path + (str(i),)) for i, v in enumerate(value)]
        if isinstance(value, str):
            for prefix in sources:
                if prefix != target and (value == prefix or value.startswith(prefix + "/")):
                    rewritten.add(_claw.dotted_path(path))
                    return target + value[len(prefix):]
        return value

    for key in list(new):
        if (key,) not in sections:  # the farm's sections hold the farm's paths already
            new[key] = _move_except(new[key], (str(key),), move, sections)
    kept = set()
    for path, _value in _leaves(old):
        if not path or any(path[:len(owned)] == owned for owned in sections):
            continue
        if _claw.dotted_path(path) in rewritten:
            continue
        kept.add(_claw.dotted_path(path[:3]))
    return new, {"rewritten": sorted(rewritten), "kept": sorted(kept - rewritten), "source_state_dir": source}


def _move_except(value, path, move, sections):
    """``move`` over ``value`` but for the farm's own sections below it (agents.defaults.workspace...)."""
    if isinstance(value, dict):
        return {k: (v if path + (str(k),) in sections else _move_except(v, path + (str(k),), move, sections))
                for k, v in value.items()}
    return move(value, path)


def check_farm_config(farm, state_dir: str) -> dict:
    """The farm's config of the claw as the role rendered it: a mapping with a gateway port and the claw's workspace.

    Raises:
        ArchiveError: anything else (it is the role's output, never the request's).
    """
    gateway = farm.get("gateway") if isinstance(farm, dict) else None
    workspace = ((farm.get("agents") or {}).get("defaults") or {}).get("workspace") if isinstance(farm, dict) else None
    if not isinstance(gateway, dict) or not isinstance(gateway.get("port"), int) or workspace != f"{state_dir}/workspace":
        raise ArchiveError("config must be the farm's gateway config of this claw (claw_gateway_config: a gateway port "
                           "and the workspace in the claw's state dir)")
    return farm


# ---- on the Mini ------------------------------------------------------------------------------------------------

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_archive(path: str) -> int:
    """A read fd of the uploaded export: a regular file owned by this process's user, opened without following a link.

    Raises:
        ArchiveError: missing, a link, not a regular file, or another user's.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ArchiveError(f"cannot open the export {path}: {exc.strerror}")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise ArchiveError(f"the export {path} is not a regular file of this user (uid {os.geteuid()})")
    return fd


def inspect_file(path: str, limits: dict) -> dict:
    """:func:`inspect_stream` of the export file ``path`` (``format`` added)."""
    fd = open_archive(path)
    with os.fdopen(fd, "rb") as raw:
        fmt, stream = tar_reader(raw)
        return {"format": fmt, **inspect_stream(stream, limits)}


def _read_config(root_fd: int) -> dict | None:
    try:
        fd = os.open(CONFIG_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=root_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ArchiveError(f"the export's {CONFIG_NAME} is not a regular file ({exc.strerror})")
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ArchiveError(f"the export's {CONFIG_NAME} is not a regular file")
        raw = handle.read(CONFIG_MAX_BYTES + 1)
    if len(raw) > CONFIG_MAX_BYTES:
        raise ArchiveError(f"the export's {CONFIG_NAME} is larger than {CONFIG_MAX_BYTES} bytes")
    return parse_config(raw)


def _write_config(root_fd: int, config: dict) -> None:
    tmp = f".{CONFIG_NAME}.import"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=root_fd)
    try:
        _r2._write_all(fd, (json.dumps(config, indent=4, sort_keys=True) + "\n").encode())
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.replace(tmp, CONFIG_NAME, src_dir_fd=root_fd, dst_dir_fd=root_fd)


def _drop(root_fd: int, name: str) -> bool:
    try:
        st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(name, _OPEN_DIR, dir_fd=root_fd)
        try:
            for event, dir_fd, entry, _stat in _r2.walk_tree(fd, lambda n: None):
                if event == "leave":
                    os.rmdir(entry, dir_fd=dir_fd)
                elif event == "entry":
                    os.unlink(entry, dir_fd=dir_fd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=root_fd)
    else:
        os.unlink(name, dir_fd=root_fd)
    return True


def import_export(archive: str, home: str, state_rel: str, uid: int, gid: int, farm: dict, limits: dict | None = None,
                  old_state_dir: str | None = None, now: datetime | None = None) -> dict:
    """Place the export ``archive`` (on this host) as the claw's state dir ``<home>/<state_rel>``.

    Extracts with restore's extractor into a new root-private staging directory beside the home (in the users
    directory, which the tenant cannot write), strips a leading ``.openclaw/``, rewrites ``openclaw.json``
    (:func:`rewrite_config` with ``farm``, the farm's config of the claw), drops :data:`DROPPED`, hands the tree to
    the claw (:func:`_r2.chown_tree`, top directory 0700, last), then renames the claw's present state dir aside
    (``<state_rel>.pre-import-<time>`` in the home) and the new one into place, both relative to directory fds (no
    link is followed). Any failure before the swap removes the staging directory and leaves the claw as it was.

    Returns:
        ``{"format", "entries", "files", "bytes", "root", "plan", "dropped", "previous"}``; ``previous`` the path of the
        replaced state dir (None when there was none), for the caller to take the claw's settings from and remove.
    Raises:
        ArchiveError: why nothing was replaced.
    """
    if "/" in state_rel or state_rel in ("", ".", ".."):
        raise ArchiveError(f"state dir {state_rel!r} must be one name in the home")
    limits = limits or limits_for(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    users, base = os.path.split(os.path.normpath(home))
    staging = os.path.join(users, f".{base}.import-{stamp}")
    if os.path.lexists(staging):
        raise ArchiveError(f"{staging} already exists (an import of the same second, or a leftover); remove it and retry")
    limits = dict(limits, bytes=min(limits["bytes"], _r2.free_space(users)))
    fd = open_archive(archive)
    result = {}
    try:
        with os.fdopen(fd, "rb") as raw:
            fmt, stream = tar_reader(raw)
            try:
                counts = _r2.extract_stream(_r2.CappedReader(stream, _r2.tar_stream_limit(limits)), staging, limits)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ArchiveError(f"the export is not a readable {fmt} tar archive ({exc})")
        staging_fd = os.open(staging, _OPEN_DIR)
        try:
            entries = sorted(os.listdir(staging_fd))
            stripped = entries == [".openclaw"] and stat.S_ISDIR(os.stat(".openclaw", dir_fd=staging_fd, follow_symlinks=False).st_mode)
            root_fd = os.open(".openclaw", _OPEN_DIR, dir_fd=staging_fd) if stripped else os.dup(staging_fd)
            try:
                state_dir = os.path.join(os.path.normpath(home), state_rel)
                config, plan = rewrite_config(_read_config(root_fd), farm, state_dir, old_state_dir)
                _write_config(root_fd, config)
                dropped = [name for name in DROPPED if _drop(root_fd, name)]
            finally:
                os.close(root_fd)
        finally:
            os.close(staging_fd)
        root_path = os.path.join(staging, ".openclaw") if stripped else staging
        _r2.chown_tree(root_path, uid, gid, 0o700)
        result = {"format": fmt, "entries": counts["entries"], "files": counts["files"], "bytes": counts["bytes"],
                  "root": ".openclaw" if stripped else "", "plan": plan, "dropped": dropped}
    except Exception:
        _r2._discard(staging)
        raise
    result["previous"] = _swap(home, state_rel, uid, staging, stripped, stamp)
    return result


def _swap(home: str, state_rel: str, uid: int, staging: str, stripped: bool, stamp: str) -> str | None:
    users, base = os.path.split(os.path.normpath(home))
    users_fd = os.open(users, _OPEN_DIR)
    try:
        home_fd = os.open(base, _OPEN_DIR, dir_fd=users_fd)
        try:
            if os.fstat(home_fd).st_uid != uid:
                raise ArchiveError(f"{home} is not the claw's (uid {uid}); nothing was replaced")
            src_fd = os.open(os.path.basename(staging), _OPEN_DIR, dir_fd=users_fd) if stripped else os.dup(users_fd)
            src_name = ".openclaw" if stripped else os.path.basename(staging)
            try:
                previous = f"{state_rel}.pre-import-{stamp}"
                try:
                    os.rename(state_rel, previous, src_dir_fd=home_fd, dst_dir_fd=home_fd)
                except FileNotFoundError:
                    previous = None
                try:
                    os.rename(src_name, state_rel, src_dir_fd=src_fd, dst_dir_fd=home_fd)
                except OSError:
                    if previous:
                        os.rename(previous, state_rel, src_dir_fd=home_fd, dst_dir_fd=home_fd)
                    raise
            finally:
                os.close(src_fd)
        finally:
            os.close(home_fd)
    except Exception:
        _r2._discard(staging)
        raise
    finally:
        os.close(users_fd)
    if stripped:
        _r2._discard(staging)
    return os.path.join(os.path.normpath(home), previous) if previous else None
