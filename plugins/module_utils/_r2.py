# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Claw archives in R2 (S3 API): streaming tar+zstd upload, verified restore, retention (PRIVATE).

Facts followed (docs/reference/cloudflare-r2.md section 3): R2 needs every multipart part except the last
to have the same size; botocore >= 1.36 must be told ``request_checksum_calculation`` /
``response_checksum_validation`` = ``when_required`` or it sends ``aws-chunked`` trailers over HTTPS that R2
rejects; ``DeleteObjects`` always carries a checksum header, so keys are deleted one by one; R2 has no object
tagging, so nothing here tags.  boto3/botocore API: https://boto3.amazonaws.com/v1/documentation/api/latest/reference/services/s3.html

Layout in a claw's bucket (``claw-backup-<claw_id>``)::

    backups/20261122T020000Z.tar.zst                 the archive (tar, PAX format, zstd-compressed)
    backups/20261122T020000Z.tar.zst.manifest.json   size, sha256, file count, parts...; written last
    archives/20261201T101500Z.tar.zst (+ manifest)   made by deprovision; never pruned

The manifest is the commit marker: an archive without one is incomplete and is never restored.
Pure functions (retention, key names, member checks, manifests, exact reads) have no boto3 dependency so
they are unit-tested without a server; the streaming functions take a boto3 S3 client.
"""

from __future__ import annotations

import collections
import errno
import fnmatch
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import threading
import time
from datetime import datetime, timezone

UTC = timezone.utc

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10000
MAX_COPY_SIZE = 5 * 1024 * MIB - 5 * MIB  # single CopyObject limit; larger archives keep metadata in the manifest only
SUFFIX = ".tar.zst"
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = "clawfarm-archive/1"
KEY_TIME = re.compile(r"(\d{8}T\d{6}Z)\.tar\.zst$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def connection_argument_spec() -> dict:
    """AnsibleModule argument spec of the S3 connection options (documented in doc fragment ``r2_connection``)."""
    return dict(
        endpoint_url=dict(type="str", required=True),
        region=dict(type="str", default="auto"),
        access_key_id=dict(type="str", required=True, no_log=True),
        secret_access_key=dict(type="str", required=True, no_log=True),
        ca_bundle=dict(type="path"),
    )


class ArchiveError(RuntimeError):
    """An archive could not be made, verified or restored; the message says which step and why."""


class BucketMissing(ArchiveError):
    """The bucket does not exist (and was not to be created)."""


# S3 error codes (botocore ``ClientError.response["Error"]["Code"]``) that say "no such thing". A HEAD request has no
# error body: botocore then gives the HTTP status as the code ("404").
NOT_FOUND_CODES = frozenset({"404", "NotFound", "NoSuchKey", "NoSuchBucket"})
BUCKET_MISSING_CODES = frozenset({"404", "NotFound", "NoSuchBucket"})


def error_code(exc) -> str | None:
    """The S3 error code of a botocore ClientError (``response["Error"]["Code"]``); None for any other exception."""
    response = getattr(exc, "response", None)
    code = (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None
    return None if code is None else str(code)


# ---- names and time ---------------------------------------------------------------------------------------------

def bucket_name(prefix: str, claw_id: str) -> str:
    """``claw-backup-<claw_id>`` (S3 bucket rules: 3-63 chars, lowercase letters, digits, '-')."""
    name = f"{prefix}{claw_id}".lower()
    if not re.match(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", name):
        raise ArchiveError(f"bucket name {name!r} is not a valid R2 bucket name (3-63 lowercase letters, digits, '-')")
    return name


def archive_key(prefix: str, when: datetime) -> str:
    """``<prefix><YYYYmmddTHHMMSSZ>.tar.zst`` for a UTC time; ``prefix`` like ``backups/``."""
    return f"{prefix}{when.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def key_time(key: str) -> datetime | None:
    """The UTC time in an archive key, or ``None`` when the key is not an archive."""
    match = KEY_TIME.search(key)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def manifest_key(key: str) -> str:
    return key + MANIFEST_SUFFIX


# ---- retention ------------------------------------------------------------------------------------------------

def select_retention(times, keep_daily: int = 7, keep_weekly: int = 4, keep_monthly: int = 3) -> set:
    """Which backup times a 7 daily / 4 weekly / 3 monthly policy keeps.

    Semantics (grandfather-father-son over the backups that exist, so gaps never empty the set):
    the newest backup of each of the ``keep_daily`` most recent UTC days that have a backup, of each of
    the ``keep_weekly`` most recent ISO weeks, and of each of the ``keep_monthly`` most recent months; the
    union of the three, plus always the newest backup.

    Args:
        times: iterable of aware ``datetime``.
    Returns:
        The subset of ``times`` to keep.
    """
    ordered = sorted(set(times), reverse=True)
    keep = set(ordered[:1])
    for count, period in ((keep_daily, lambda t: t.date()), (keep_weekly, lambda t: tuple(t.isocalendar())[:2]),
                          (keep_monthly, lambda t: (t.year, t.month))):
        seen = []
        for moment in ordered:
            bucket = period(moment)
            if bucket in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(bucket)
            keep.add(moment)
    return keep


def plan_prune(keys, keep_daily: int, keep_weekly: int, keep_monthly: int, complete: set) -> tuple[list, list]:
    """Split archive keys into ``(kept, deleted)`` by :func:`select_retention`.

    Only complete archives (key in ``complete``, i.e. with a manifest) count for retention.  Incomplete
    ones (an upload that died) are deleted when a newer complete archive exists, else kept.  Keys that are
    not archives are never touched.
    """
    archives = {k: key_time(k) for k in keys if key_time(k) is not None}
    done = {k: t for k, t in archives.items() if k in complete}
    keep_times = select_retention(done.values(), keep_daily, keep_weekly, keep_monthly)
    newest_done = max(done.values()) if done else None
    kept, deleted = [], []
    for key, moment in sorted(archives.items(), key=lambda kv: kv[1], reverse=True):
        if key in done:
            (kept if moment in keep_times else deleted).append(key)
        elif newest_done is not None and moment < newest_done:
            deleted.append(key)
        else:
            kept.append(key)
    return kept, deleted


def plan_age_prune(keys, cutoff: datetime) -> tuple[list, list]:
    """Split archive keys into ``(kept, deleted)`` by age: archives whose key time is before ``cutoff`` are deleted
    (complete or not); keys that are not archives (manifests, anything else) are never in either list."""
    kept, deleted = [], []
    for key in sorted((k for k in keys if key_time(k) is not None), key=key_time, reverse=True):
        (deleted if key_time(key) < cutoff else kept).append(key)
    return kept, deleted


def list_buckets(client, prefix: str) -> list:
    """Names of the buckets starting with ``prefix`` (ListBuckets: needs an account-level key, the control node's)."""
    try:
        return sorted(b["Name"] for b in client.list_buckets().get("Buckets", []) if b["Name"].startswith(prefix))
    except Exception as exc:
        raise ArchiveError(f"listing the buckets failed: {describe_s3_error(exc)}")


# ---- reading and hashing ------------------------------------------------------------------------------------------

def read_exact(stream, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at end of stream: loops over short reads (pipes, sockets,
    compressors), so every multipart part except the last has exactly the part size."""
    chunks, missing = [], size
    while missing > 0:
        chunk = stream.read(missing)
        if not chunk:
            break
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


class HashingReader:
    """A read-only stream that hashes (sha256) and counts what passes through it."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size) if size is not None and size >= 0 else self.raw.read()
        self.sha256.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True


def multipart_etag(part_md5s: list) -> str:
    """S3/R2 ETag of a multipart object: ``md5(concat(binary part md5s))-N`` (a single PUT's ETag is its md5 hex)."""
    digest = hashlib.md5(b"".join(m for m in part_md5s), usedforsecurity=False).hexdigest()
    return f"{digest}-{len(part_md5s)}"


# ---- client-side encryption ----------------------------------------------------------------------------------------
#
# STREAM (Hoang, Reyhanitabar, Rogaway, Vizar 2015: the online AEAD construction of age and Tink's streaming AEAD)
# over ChaCha20-Poly1305 from the ``cryptography`` package, as age's payload: the plaintext is cut into 64 KiB
# segments, segment i is sealed with nonce = 11-byte big-endian i || 1 byte "last segment" flag, so segments can
# be neither reordered, dropped, nor the stream truncated or extended.  The payload key is
# HKDF-SHA256(claw key, salt = 32 random bytes of this archive, info = ENCRYPTION_ALGORITHM): a fresh key per
# archive.  The object is ``header || sealed segments``; the header (magic, key id, salt) is every segment's
# associated data.  Memory: one segment.  docs/archive-encryption.md says why this and not age/pyrage.

ENCRYPTION_ALGORITHM = "clawfarm-stream-chacha20poly1305-hkdf-sha256/1"
ENCRYPTION_MAGIC = b"CLAWENC1"
SEGMENT = 64 * 1024
TAG = 16
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _crypto():
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError:
        raise ArchiveError("the cryptography package is not installed in the Python running this module; run "
                           "bootstrap.yml --tags python (the farm venv's requirements include it)")
    return hashes, ChaCha20Poly1305, HKDF


def decode_key(value, what: str = "archive key") -> bytes:
    """A 32-byte key from its base64 text (standard or URL-safe alphabet).

    Raises:
        ArchiveError: not base64, or not 32 bytes (the message never contains the value).
    """
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(str(value).strip().replace("+", "-").replace("/", "_").encode("ascii"))
    except (binascii.Error, ValueError, UnicodeError):
        raise ArchiveError(f"the {what} is not base64 text")
    if len(raw) != 32:
        raise ArchiveError(f"the {what} must be 32 bytes (44 base64 characters), got {len(raw)} bytes")
    return raw


def decode_keys(keys: dict | None) -> dict | None:
    """``{key_id: 32-byte key}`` from a module's ``encryption_keys`` (``{key_id: base64}``), or None."""
    if keys is None:
        return None
    return {str(k): decode_key(v, f"archive key {k}") for k, v in keys.items()}


def key_check(key: bytes) -> str:
    """A public fingerprint of an archive key (HMAC-SHA256 of a constant, 16 hex digits), recorded in manifests so a
    restore refuses a wrong key before it downloads anything; it reveals nothing about the key."""
    import hmac

    return hmac.new(key, b"clawfarm archive key check/1", hashlib.sha256).hexdigest()[:16]


def _payload_key(key: bytes, salt: bytes) -> bytes:
    hashes, _, hkdf = _crypto()
    return hkdf(algorithm=hashes.SHA256(), length=32, salt=salt, info=ENCRYPTION_ALGORITHM.encode()).derive(key)


def _nonce(counter: int, last: bool) -> bytes:
    if counter >= 1 << 88:
        raise ArchiveError("archive has too many encrypted segments")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class EncryptingWriter:
    """A write-only stream that seals what it is given (STREAM, see above) and writes it to ``raw``.

    Call :meth:`finish` once everything is written: it seals the last segment (marked last).  Buffers at most one
    segment."""

    def __init__(self, raw, key_id: str, key: bytes):
        if not KEY_ID.match(key_id or ""):
            raise ArchiveError(f"archive key id {key_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
        _, aead, _ = _crypto()
        salt = os.urandom(32)
        self.raw, self.counter, self.buffer, self.finished = raw, 0, bytearray(), False
        encoded = key_id.encode("ascii")
        self.header = ENCRYPTION_MAGIC + bytes([len(encoded)]) + encoded + salt
        self.aead = aead(_payload_key(key, salt))
        raw.write(self.header)

    def write(self, data) -> int:
        self.buffer += data
        while len(self.buffer) > SEGMENT:  # keep at least one byte back: only finish() knows the last segment
            self._seal(bytes(self.buffer[:SEGMENT]), last=False)
            del self.buffer[:SEGMENT]
        return len(data)

    def _seal(self, chunk: bytes, last: bool) -> None:
        self.raw.write(self.aead.encrypt(_nonce(self.counter, last), chunk, self.header))
        self.counter += 1

    def finish(self) -> None:
        if not self.finished:
            self._seal(bytes(self.buffer), last=True)
            self.buffer = bytearray()
            self.finished = True

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


def read_encryption_header(raw) -> tuple:
    """``(key_id, header bytes)`` read from the start of an encrypted archive object.

    Raises:
        ArchiveError: the object does not start with a clawfarm encryption header.
    """
    head = read_exact(raw, len(ENCRYPTION_MAGIC) + 1)
    if len(head) < len(ENCRYPTION_MAGIC) + 1 or head[: len(ENCRYPTION_MAGIC)] != ENCRYPTION_MAGIC:
        raise ArchiveError("the object is not a clawfarm encrypted archive (no encryption header)")
    rest = read_exact(raw, head[-1] + 32)
    if len(rest) != head[-1] + 32:
        raise ArchiveError("the encrypted archive's header is truncated")
    try:
        key_id = rest[: head[-1]].decode("ascii")
    except UnicodeDecodeError:
        raise ArchiveError("the encrypted archive's header has an invalid key id")
    return key_id, head + rest


class _LargeReads:
    """Serves small reads from 1 MiB reads of ``raw`` (an HTTP body): one request-level read per MiB, not per segment."""

    def __init__(self, raw):
        self.raw, self.buffer, self.pos = raw, b"", 0

    def read(self, size: int) -> bytes:
        if self.pos >= len(self.buffer):
            self.buffer, self.pos = read_exact(self.raw, MIB), 0
        data = self.buffer[self.pos:self.pos + size]
        self.pos += len(data)
        return data


class DecryptingReader:
    """A read-only stream that opens a STREAM-sealed archive (see :class:`EncryptingWriter`) read from ``raw``.

    Every segment is authenticated before any of its bytes are returned; a tampered, reordered, truncated or
    extended object raises :class:`ArchiveError`.  Reading to the end proves the last segment was the last."""

    def __init__(self, raw, keys: dict):
        _, aead, _ = _crypto()
        key_id, self.header = read_encryption_header(raw)
        if key_id not in keys:
            raise ArchiveError(f"the archive is encrypted with key {key_id!r}, which this restore was not given")
        self.raw = _LargeReads(raw)
        self.aead = aead(_payload_key(keys[key_id], self.header[-32:]))
        self.counter, self.out, self.pos, self.done = 0, b"", 0, False
        self.pending = read_exact(self.raw, SEGMENT + TAG)

    def _next(self) -> None:
        sealed = self.pending
        last = len(sealed) < SEGMENT + TAG
        if not last:
            self.pending = read_exact(self.raw, SEGMENT + TAG)
            last = not self.pending
        from cryptography.exceptions import InvalidTag

        try:
            self.out, self.pos = self.aead.decrypt(_nonce(self.counter, last), sealed, self.header), 0
        except InvalidTag:
            raise ArchiveError(f"encrypted segment {self.counter} does not authenticate: the object was altered or "
                               "truncated, or the key is wrong")
        self.counter += 1
        self.done = last

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while True:
                chunk = self.read(MIB)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        while self.pos >= len(self.out) and not self.done:
            self._next()
        data = self.out[self.pos:self.pos + size]
        self.pos += len(data)
        return data

    def readable(self) -> bool:
        return True


def encryption_record(key_id: str, key: bytes) -> dict:
    """The manifest's ``encryption`` entry: algorithm, key id and the key's public check value."""
    return {"algorithm": ENCRYPTION_ALGORITHM, "key_id": key_id, "key_check": key_check(key)}


def check_keys(manifest: dict, keys: dict | None) -> dict | None:
    """Which of ``keys`` (``{key_id: 32-byte key}``) opens the archive of ``manifest``: ``None`` for an unencrypted
    archive, else ``{key_id: key}``.

    Raises:
        ArchiveError: an unknown algorithm, a key id not given, or a key whose check value differs (the wrong key
        under that id) - before anything is downloaded or replaced.
    """
    record = manifest.get("encryption")
    if not record:
        return None
    name = manifest.get("key")
    if not isinstance(record, dict) or record.get("algorithm") != ENCRYPTION_ALGORITHM:
        raise ArchiveError(f"archive {name} is encrypted with an unknown algorithm "
                           f"{record.get('algorithm') if isinstance(record, dict) else record!r}; nothing was replaced")
    key_id = record.get("key_id")
    if not keys or key_id not in keys:
        raise ArchiveError(f"archive {name} is encrypted with key {key_id!r} of this claw, which was not given "
                           f"(given: {', '.join(sorted(keys)) if keys else 'none'}); restore it with the claw's key store "
                           "entry that still holds that key (and the farm key that opens it); nothing was replaced")
    if key_check(keys[key_id]) != record.get("key_check"):
        raise ArchiveError(f"the key given as {key_id!r} is not the key archive {name} was encrypted with (its check "
                           "value differs); nothing was replaced")
    return {key_id: keys[key_id]}


# ---- the tar stream ------------------------------------------------------------------------------------------------

def excluded(relpath: str, patterns) -> bool:
    """True when a path relative to the archived directory matches an exclude pattern.

    A pattern without '/' matches any path component (``node_modules`` anywhere); a pattern with '/'
    matches the end of the path (``Service Worker/CacheStorage``). Shell wildcards work in both.
    """
    parts = relpath.split("/")
    for pattern in patterns:
        if "/" in pattern:
            depth = pattern.count("/") + 1
            for start in range(0, max(len(parts) - depth + 1, 0)):
                if fnmatch.fnmatchcase("/".join(parts[start:start + depth]), pattern):
                    return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def _names():
    """uid/gid -> name lookups with a cache (the tar header's uname/gname)."""
    import grp
    import pwd

    def cached(lookup):
        names = {}

        def name(number):
            if number not in names:
                try:
                    names[number] = lookup(number)[0]  # pw_name / gr_name
                except KeyError:
                    names[number] = ""
            return names[number]
        return name

    return cached(pwd.getpwuid), cached(grp.getgrgid)


_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
SKIP_REASONS = ("changed", "special", "unsafe_name", "unsafe_link", "foreign")


def restorable_name(relpath: str) -> bool:
    """False for a path the restore refuses: control characters (including DEL) in any component."""
    return not _CONTROL.search(relpath)


def restorable_link(target: str) -> bool:
    """False for a symlink target the restore refuses: empty, longer than 4096 bytes, or with control characters.

    Absolute targets and ``..`` are kept as they are (a venv's ``python3 -> /usr/bin/python3``, npm's
    ``node_modules/.bin/x -> ../pkg/cli.js``): the restore never writes, chmods or chowns through a link, refuses any
    member under a link or over an earlier entry, and no root step follows links in a claw's home, so a link's
    target is inert data.  Dropping them would lose the tenant's data for no safety gain.
    """
    return bool(target) and len(target.encode("utf-8", "surrogateescape")) <= 4096 and not _CONTROL.search(target)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, stat.S_IFMT(a.st_mode)) == (b.st_dev, b.st_ino, stat.S_IFMT(b.st_mode))


class _Moved(Exception):
    """A directory on the walk's current path is no longer the one that was listed (renamed, swapped for another)."""


class _DirChain:
    """File descriptors of the directories along one path below a top directory, at most ``keep`` of them open.

    A walk through a tree of any depth holds a bounded number of descriptors (a tenant's 2000-deep chain of
    directories must not exhaust them: EMFILE would fail every backup of the claw).  Each directory of the path
    is reached with ``openat(parent, name, O_NOFOLLOW|O_DIRECTORY)`` and, when its ``stat`` was recorded, must show
    the same device, inode and type (:func:`_same`); the open descriptors are always the ``keep`` deepest ones (a
    contiguous suffix of the path).  When the walk climbs above them, :meth:`current` re-opens the path from the top
    directory the same way, verifying every level again (raising :class:`_Moved` when one was swapped), and keeps
    the ``keep`` deepest open again, so a walk of a chain of depth d costs about d*d/(2*keep) opens, never more fds.
    The top directory's descriptor belongs to the caller.
    """

    def __init__(self, top_fd: int, keep: int = 16):
        self.top, self.keep = top_fd, keep
        self.names, self.ids, self.fds = [], [], []
        self.low = 0  # fds[low:] are open, fds[:low] are closed

    def __len__(self) -> int:
        return len(self.names)

    def push(self, name: str, st: os.stat_result | None, fd: int) -> None:
        """Append a directory already opened (and verified) by the caller from :meth:`current`; the chain owns ``fd``."""
        self.names.append(name)
        self.ids.append(st)
        self.fds.append(fd)
        if len(self.fds) - self.low > self.keep:
            os.close(self.fds[self.low])
            self.fds[self.low] = None
            self.low += 1

    def pop(self) -> None:
        """Leave the deepest directory (closing its fd)."""
        fd = self.fds.pop()
        self.names.pop()
        self.ids.pop()
        if fd is not None:
            os.close(fd)
        self.low = min(self.low, len(self.fds))

    def current(self) -> int:
        """The fd of the deepest directory (the top's when the chain is empty), re-opened if it was closed.

        Raises:
            _Moved: a directory of the path is not the one recorded any more.
            OSError: an open failed (ENOENT, ELOOP, ENOTDIR when a directory was swapped; EACCES...).
        """
        if not self.fds:
            return self.top
        if self.low < len(self.fds):
            return self.fds[-1]
        depth = len(self.fds)
        first_kept = max(depth - self.keep, 0)
        fd, transient = self.top, None  # transient: an fd opened here that is not kept
        try:
            for index in range(depth):
                nxt = os.open(self.names[index], _OPEN_DIR, dir_fd=fd)
                if transient is not None:
                    os.close(transient)
                    transient = None
                if index >= first_kept:
                    self.fds[index] = nxt
                else:
                    transient = nxt
                if self.ids[index] is not None and not _same(os.fstat(nxt), self.ids[index]):
                    raise _Moved("/".join(self.names[: index + 1]))
                fd = nxt
        except BaseException:
            if transient is not None:
                os.close(transient)
            for index in range(first_kept, depth):
                if self.fds[index] is not None:
                    os.close(self.fds[index])
                    self.fds[index] = None
            raise
        self.low = first_kept
        return self.fds[-1]

    def goto(self, names) -> int:
        """Make the chain the path ``names`` (no verification: for a tree only this process writes) and return its fd."""
        names = list(names)
        common = min(len(names), len(self.names))
        if names[:common] != self.names[:common]:  # (compared in C first: most calls share the whole shorter path)
            common = 0
            while names[common] == self.names[common]:
                common += 1
        while len(self.names) > common:
            self.pop()
        for name in names[common:]:
            self.push(name, None, os.open(name, _OPEN_DIR, dir_fd=self.current()))
        return self.current()

    def close(self) -> None:
        """Close every fd the chain holds (not the top's)."""
        while self.fds:
            self.pop()


class _ExactReader:
    """Reads exactly ``size`` bytes from a file descriptor: pads with zeros if the file shrank (and says so),
    ignores what it grew by, so a file changing under the writer never breaks the tar stream."""

    def __init__(self, fd: int, size: int):
        self.fd, self.left, self.short = fd, size, False

    def read(self, size: int = -1) -> bytes:
        want = self.left if size is None or size < 0 else min(size, self.left)
        if want <= 0:
            return b""
        chunks, missing = [], want
        while missing and not self.short:
            data = os.read(self.fd, missing)
            if not data:
                self.short = True
                break
            chunks.append(data)
            missing -= len(data)
        if missing:
            chunks.append(b"\0" * missing)
        self.left -= want
        return b"".join(chunks)


def write_tar(src: str, fileobj, excludes, counters: dict, hook=None) -> None:
    """Write ``src`` as a PAX tar stream to ``fileobj``: the directory itself as ``.``, then everything under it,
    skipping excluded paths.  Symlinks are stored as links, files with several links as hard links to the first.

    Root reads a tree its tenant can change while it runs, so nothing here follows a link or a swapped entry:
    directories are walked through file descriptors (each opened ``O_NOFOLLOW|O_DIRECTORY`` relative to its verified
    parent; iteratively, holding a bounded number of fds at any depth, re-opening and re-verifying an ancestor when
    the walk climbs back to it: :class:`_DirChain`), every file is opened ``O_NOFOLLOW|O_NONBLOCK`` relative to its directory and its ``fstat`` must show the
    same device, inode and type as the ``lstat`` taken while listing.  Sockets are left out silently.  Skipped and
    counted in ``counters["skipped"]`` (never an error): entries that changed between the listing and the open
    (``changed``); FIFOs and devices (``special``); names with control characters (``unsafe_name``) and symlinks the
    restore would refuse - absolute, with ``..`` (``unsafe_link``); files that the owner of ``src`` neither owns nor
    could read as "other" (``foreign``: a hard link the tenant made to a root-only file - perhaps one root has since
    replaced by a rename, so its link count is 1 - would otherwise reach the tenant through its backup and restore).
    ``counters["skipped_paths"]`` lists the first 20 skipped paths.

    ``counters`` gets ``files`` (regular files), ``entries`` (tar members), ``bytes`` (file content bytes),
    ``skipped`` and ``skipped_paths``.  ``hook(relpath)``, if given, is called after an entry is listed and before it is
    opened (tests use it to race the writer).
    """
    counters.update(files=0, entries=0, bytes=0, skipped={reason: 0 for reason in SKIP_REASONS}, skipped_paths=[])
    uname, gname = _names()
    inodes = {}
    tail = max((pattern.count("/") + 1 for pattern in excludes), default=1)

    def skip(reason: str, rel: str) -> None:
        counters["skipped"][reason] += 1
        if len(counters["skipped_paths"]) < 20:
            counters["skipped_paths"].append(f"{rel} ({reason})")

    def header(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname, info.gname = uname(st.st_uid), gname(st.st_gid)
        info.mtime = st.st_mtime
        return info

    try:
        top = os.open(src, _OPEN_DIR)
    except OSError as exc:
        raise ArchiveError(f"cannot open {src} as a directory without following links: {exc.strerror}")
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def add(info: tarfile.TarInfo, data=None) -> None:
            tar.addfile(info, data)
            # a TarFile keeps every member it wrote (for reading back, which a stream never does): about 450 bytes a
            # member, 90 MiB for a 200,000-file home; memory must not grow with the member count
            tar.members.clear()
            counters["entries"] += 1

        def list_dir(dir_fd: int, rel_root: str, owner: int) -> list:
            """Add the entries of one directory (files read now); return its subdirectories, walked after."""
            with os.scandir(dir_fd) as listing:
                names = sorted(entry.name for entry in listing)
            subdirs = []
            for name in names:
                rel = rel_root + name
                # the parent's own path was checked when it was listed: only the windows ending here are new
                if excluded("/".join(rel.rsplit("/", tail)[-tail:]), excludes):
                    continue
                if not restorable_name(name):
                    skip("unsafe_name", repr(rel))
                    continue
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError as exc:
                    _raise_unless_swapped(exc, rel)
                    skip("changed", rel)
                    continue
                if hook:
                    hook(rel)
                arcname = "./" + rel
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append((name, rel, st))
                    add(_typed(header(arcname, st), tarfile.DIRTYPE))
                elif stat.S_ISLNK(st.st_mode):
                    try:
                        target = os.readlink(name, dir_fd=dir_fd)
                    except OSError as exc:  # no longer a link
                        _raise_unless_swapped(exc, rel)
                        skip("changed", rel)
                        continue
                    if not restorable_link(target):
                        skip("unsafe_link", rel)
                        continue
                    info = _typed(header(arcname, st), tarfile.SYMTYPE)
                    info.linkname = target
                    add(info)
                elif stat.S_ISREG(st.st_mode):
                    add_file(dir_fd, name, rel, arcname, st, owner)
                elif not stat.S_ISSOCK(st.st_mode):  # sockets are never data: left out without a word, as before
                    skip("special", rel)
            return subdirs

        def walk(top_fd: int, owner: int) -> None:
            """Depth-first, iteratively (no recursion limit), holding a bounded number of fds (:class:`_DirChain`)."""
            chain = _DirChain(top_fd)
            pending = [collections.deque(list_dir(top_fd, "", owner))]  # pending[i + 1] belongs to chain level i
            try:
                while pending:
                    if not pending[-1]:
                        pending.pop()
                        if pending:
                            chain.pop()
                        continue
                    name, rel, st = pending[-1].popleft()
                    try:
                        fd = os.open(name, _OPEN_DIR, dir_fd=chain.current())
                    except _Moved:  # a directory above was swapped since it was listed
                        skip("changed", rel + "/")
                        continue
                    except OSError as exc:
                        _raise_unless_swapped(exc, rel)
                        skip("changed", rel + "/")
                        continue
                    if not _same(os.fstat(fd), st):
                        os.close(fd)
                        skip("changed", rel + "/")
                        continue
                    chain.push(name, st, fd)
                    pending.append(collections.deque(list_dir(fd, rel + "/", owner)))
            finally:
                chain.close()

        def add_file(dir_fd, name, rel, arcname, st, owner) -> None:
            try:
                fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
            except OSError as exc:
                _raise_unless_swapped(exc, rel)
                skip("changed", rel)
                return
            try:
                fst = os.fstat(fd)
                if not _same(fst, st):
                    skip("changed", rel)
                    return
                if fst.st_uid != owner and not fst.st_mode & stat.S_IROTH:
                    skip("foreign", rel)
                    return
                if fst.st_nlink > 1:
                    inode = (fst.st_dev, fst.st_ino)
                    if inode in inodes:
                        info = _typed(header(arcname, fst), tarfile.LNKTYPE)
                        info.linkname = inodes[inode]
                        add(info)
                        return
                    inodes[inode] = arcname
                info = _typed(header(arcname, fst), tarfile.REGTYPE)
                info.size = fst.st_size
                reader = _ExactReader(fd, fst.st_size)
                add(info, reader)
                counters["files"] += 1
                counters["bytes"] += fst.st_size
                if reader.short:
                    skip("changed", rel + " (shrank while read; padded with zeros)")
            finally:
                os.close(fd)

        try:
            root = os.fstat(top)
            add(_typed(header(".", root), tarfile.DIRTYPE))
            walk(top, root.st_uid)
        finally:
            os.close(top)


# what an open/lstat/readlink of an entry swapped or removed since it was listed fails with (a link: ELOOP; not a
# directory or not a link any more: ENOTDIR, EINVAL; a socket: ENXIO on Linux, EOPNOTSUPP on macOS)
_SWAPPED = {errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EINVAL, errno.ENXIO, errno.EOPNOTSUPP}


def _raise_unless_swapped(exc: OSError, rel: str) -> None:
    """Re-raise an error that does not mean "the entry changed under us" (permissions, too many open files...): the
    backup fails and says where, rather than leaving data out under a wrong reason."""
    if exc.errno not in _SWAPPED:
        raise ArchiveError(f"reading {rel} failed: {exc.strerror} (errno {exc.errno})")


def _typed(info: tarfile.TarInfo, kind: bytes) -> tarfile.TarInfo:
    info.type = kind
    return info


DEFAULT_PART_SIZE = 16 * MIB  # 10000 parts: archives up to 160 GiB; see upload_directory for the memory it bounds
UPLOADERS = 2  # parts uploaded at once while the next one is compressed
ZSTD_THREADS = 0  # zstd in the walking thread: a worker thread (1) costs about 50 MiB more for little gain on 2 cores


class _Producer(threading.Thread):
    """Runs tar -> zstd into a pipe; errors are kept for the consumer to re-raise."""

    def __init__(self, src, excludes, level, write_fd, encryption=None):
        super().__init__(daemon=True)
        self.src, self.excludes, self.level, self.write_fd = src, excludes, level, write_fd
        self.encryption = encryption  # (key_id, key) or None
        self.error = None
        self.counters = {}

    def run(self):
        import zstandard

        try:
            with open(self.write_fd, "wb", buffering=1024 * 1024) as pipe:
                sink = EncryptingWriter(pipe, *self.encryption) if self.encryption else pipe
                compressor = zstandard.ZstdCompressor(level=self.level, write_checksum=True, threads=ZSTD_THREADS)
                with compressor.stream_writer(sink, closefd=False) as writer:
                    write_tar(self.src, writer, self.excludes, self.counters)
                if self.encryption:
                    sink.finish()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self.error = exc


def upload_directory(client, bucket: str, key: str, src: str, excludes=(), part_size: int = DEFAULT_PART_SIZE,
                     level: int = 3, metadata: dict | None = None, progress=None, encryption=None) -> dict:
    """Stream ``src`` as tar+zstd straight into ``s3://bucket/key``: no temporary file, memory bounded by a few parts.

    While :data:`UPLOADERS` parts go up (each in its own thread), the next part is compressed and read: memory is
    ``(UPLOADERS + 1) * part_size`` plus zstd's buffers, whatever the size of ``src``; compression and upload overlap.

    With ``encryption=(key_id, key)`` the zstd stream is sealed on the way (:class:`EncryptingWriter`, one 64 KiB
    segment of memory more); the object's sha256/size are then those of the sealed bytes.

    Parts are read with :func:`read_exact`, so all but the last have exactly ``part_size`` bytes (an R2 rule).
    A stream smaller than one part goes up with a single PutObject.  On any error the multipart upload is
    aborted and :class:`ArchiveError` raised; nothing is left behind but (at worst) an aborted upload that R2
    reaps after 7 days.

    Returns:
        ``{"size", "sha256", "etag", "md5", "parts", "part_size", "files", "entries", "content_bytes", "skipped",
        "skipped_paths", "duration"}``; size in bytes of the compressed object, duration in seconds; ``skipped`` counts
        what :func:`write_tar` left out (by reason), ``skipped_paths`` names the first 20.
    """
    if part_size < MIN_PART_SIZE:
        raise ArchiveError(f"part_size must be at least 5 MiB (R2/S3 minimum), got {part_size} bytes")
    if not os.path.isdir(src):
        raise ArchiveError(f"{src} is not a directory")
    if encryption:
        EncryptingWriter(io.BytesIO(), *encryption)  # checks the key id and that cryptography imports, before any upload
    content_type = "application/octet-stream" if encryption else "application/zstd"
    started = time.monotonic()
    read_fd, write_fd = os.pipe()
    producer = _Producer(src, list(excludes), level, write_fd, encryption)
    producer.start()
    sha256 = hashlib.sha256()
    whole_md5 = hashlib.md5(usedforsecurity=False)  # a server-side copy gives the object this plain-MD5 ETag
    size = 0
    part_md5s = []
    upload_id = None
    executor = None
    try:
        # parts are read into (UPLOADERS + 1) reused buffers: memory stays flat however many parts go up (a new
        # part-sized object per part grows the heap through the allocator's thresholds)
        with open(read_fd, "rb", buffering=0) as pipe:
            def read_part(buf: bytearray) -> int:
                view, filled = memoryview(buf), 0
                while filled < part_size:
                    count = pipe.readinto(view[filled:])
                    if not count:
                        break
                    filled += count
                sha256.update(view[:filled])
                whole_md5.update(view[:filled])
                return filled

            current = bytearray(part_size)
            filled = read_part(current)
            size += filled
            if filled < part_size:
                producer.join()
                if producer.error:
                    raise ArchiveError(f"reading {src} failed: {producer.error}")
                first = bytes(current[:filled])
                current = None
                md5 = hashlib.md5(first, usedforsecurity=False)
                client.put_object(Bucket=bucket, Key=key, Body=first, ContentMD5=_b64(md5.digest()),
                                  Metadata=metadata or {}, ContentType=content_type)
                etag = md5.hexdigest()
                parts = 1
            else:
                from concurrent.futures import ThreadPoolExecutor

                upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata or {},
                                                           ContentType=content_type)["UploadId"]

                def upload(number: int, body, md5: bytes) -> dict:
                    answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                                                ContentMD5=_b64(md5))
                    return {"PartNumber": number, "ETag": answer["ETag"]}

                executor = ThreadPoolExecutor(max_workers=UPLOADERS)
                pending = collections.deque()  # (future, its buffer)
                free = []
                completed = []
                number = 0
                while filled:
                    number += 1
                    if number > MAX_PARTS:
                        raise ArchiveError(f"archive exceeds {MAX_PARTS} parts of {part_size} bytes; raise part_size")
                    body = current if filled == part_size else bytes(current[:filled])  # the last part: exact size
                    md5 = hashlib.md5(body, usedforsecurity=False).digest()
                    part_md5s.append(md5)
                    while len(pending) >= UPLOADERS:  # bounded: at most UPLOADERS parts in flight
                        future, buf = pending.popleft()
                        completed.append(future.result())
                        free.append(buf)
                        if progress:
                            progress(size)
                    pending.append((executor.submit(upload, number, body, md5), current))
                    body = None
                    current = free.pop() if free else bytearray(part_size)
                    filled = read_part(current)
                    size += filled
                while pending:
                    completed.append(pending.popleft()[0].result())
                producer.join()
                if producer.error:
                    raise ArchiveError(f"reading {src} failed: {producer.error}")
                client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": completed})
                upload_id = None
                etag = multipart_etag(part_md5s)
                parts = len(completed)
    except Exception as exc:
        if executor is not None:  # no part may still be going up when the upload is aborted
            executor.shutdown(wait=True, cancel_futures=True)
        _abort(client, bucket, key, upload_id)
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"upload of s3://{bucket}/{key} failed: {describe_s3_error(exc)}")
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
        producer.join(timeout=5)
    return {"size": size, "sha256": sha256.hexdigest(), "etag": etag, "md5": whole_md5.hexdigest(), "parts": parts, "part_size": part_size,
            "files": producer.counters.get("files", 0), "entries": producer.counters.get("entries", 0),
            "content_bytes": producer.counters.get("bytes", 0), "skipped": producer.counters.get("skipped", {}),
            "skipped_paths": producer.counters.get("skipped_paths", []), "duration": round(time.monotonic() - started, 3)}


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _abort(client, bucket, key, upload_id):
    if upload_id:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - best effort; R2 reaps it after 7 days
            pass


def describe_s3_error(exc: Exception) -> str:
    """``<Code>: <Message> (HTTP n)`` for a botocore ClientError, the text of anything else, with a hint."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{err.get('Code')}: {err.get('Message')} (HTTP {status})"
        if status in (401, 403):
            text += " - check the R2 access key, secret and the token's bucket permissions"
        return text
    text = f"{type(exc).__name__}: {exc}"
    if "Could not connect" in text or "EndpointConnectionError" in text or "Connect timeout" in text:
        text += " - R2 is unreachable from this Mini; check r2_endpoint_url and the network"
    return text


# ---- manifest and verification ------------------------------------------------------------------------------------

def build_manifest(bucket: str, key: str, result: dict, claw_id: str | None, kind: str, src: str, excludes, level: int,
                   created: datetime, encryption: dict | None = None) -> dict:
    """The JSON sidecar written after an upload (the archive's commit marker).

    ``entries`` (tar members) and ``content_bytes`` are the restore's limits (:func:`archive_limits`); ``encryption``
    is :func:`encryption_record` (algorithm, key id, key check) or None for an unencrypted archive."""
    return {
        "encryption": encryption, "format": MANIFEST_FORMAT, "bucket": bucket, "key": key, "claw_id": claw_id, "kind": kind,
        "created": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "compression": "zstd", "level": level,
        "size": result["size"], "sha256": result["sha256"], "etag": result["etag"], "parts": result["parts"],
        "part_size": result["part_size"], "files": result["files"], "entries": result["entries"],
        "content_bytes": result["content_bytes"], "src": src, "excludes": list(excludes),
        "skipped": result.get("skipped", {}), "skipped_paths": result.get("skipped_paths", []),
    }


def parse_manifest(text, key: str) -> dict:
    """Parse and check a manifest for ``key``.

    Raises:
        ArchiveError: not JSON, another format, another key, or a size/sha256 that is missing or malformed.
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ArchiveError(f"manifest of {key} is not JSON: {exc}")
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise ArchiveError(f"manifest of {key} has an unknown format {doc.get('format') if isinstance(doc, dict) else None!r}")
    if doc.get("key") != key:
        raise ArchiveError(f"manifest of {key} describes another key {doc.get('key')!r}")
    if not isinstance(doc.get("size"), int) or doc["size"] < 0:
        raise ArchiveError(f"manifest of {key} has no valid size")
    if not isinstance(doc.get("sha256"), str) or not re.match(r"^[0-9a-f]{64}$", doc["sha256"]):
        raise ArchiveError(f"manifest of {key} has no valid sha256")
    return doc


def object_metadata(result: dict, claw_id: str | None, kind: str) -> dict:
    """S3 user metadata (``x-amz-meta-*``) recorded on the archive object once its hash is known."""
    meta = {"clawfarm-format": MANIFEST_FORMAT, "clawfarm-kind": kind, "clawfarm-size": str(result["size"]),
            "clawfarm-sha256": result["sha256"], "clawfarm-files": str(result["files"])}
    if claw_id:
        meta["clawfarm-claw-id"] = claw_id
    return meta


def archive_and_verify(client, bucket: str, key: str, src: str, claw_id: str | None, kind: str, excludes=(),
                       part_size: int = DEFAULT_PART_SIZE, level: int = 3, progress=None, encryption=None) -> dict:
    """Upload, record metadata, write the manifest, then verify object and manifest against what was streamed.

    Verification: HEAD of the object (size, ETag computed from the part MD5s, sha256 metadata) and a GET of the
    manifest (size and sha256).  Any mismatch raises and the manifest is removed, so the archive never counts
    as complete.

    ``encryption=(key_id, key)`` seals the archive (:func:`upload_directory`); the manifest records algorithm, key id
    and the key's check value, never the key.

    Returns:
        the manifest dict plus ``duration`` (s) and ``throughput`` (MiB/s of compressed bytes).
    """
    created = datetime.now(UTC)
    record = encryption_record(*encryption) if encryption else None
    result = upload_directory(client, bucket, key, src, excludes, part_size, level,
                              metadata={"clawfarm-format": MANIFEST_FORMAT, "clawfarm-kind": kind}, progress=progress,
                              encryption=encryption)
    meta = object_metadata(result, claw_id, kind)
    if record:
        meta["clawfarm-key-id"] = record["key_id"]
    try:
        if result["size"] <= MAX_COPY_SIZE:
            client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, Metadata=meta,
                               MetadataDirective="REPLACE",
                               ContentType="application/octet-stream" if record else "application/zstd")
        manifest = build_manifest(bucket, key, result, claw_id, kind, src, excludes, level, created, record)
        client.put_object(Bucket=bucket, Key=manifest_key(key), Body=json.dumps(manifest, indent=2).encode(),
                          ContentType="application/json")
        head = client.head_object(Bucket=bucket, Key=key)
        stored = parse_manifest(client.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read(), key)
    except Exception as exc:
        raise ArchiveError(f"recording or verifying s3://{bucket}/{key} failed: {describe_s3_error(exc)}")
    problems = []
    if head.get("ContentLength") != result["size"]:
        problems.append(f"object size {head.get('ContentLength')} != streamed {result['size']}")
    etag = str(head.get("ETag", "")).strip('"')
    if etag and etag not in (result["etag"], result["md5"]):
        problems.append(f"object ETag {etag} matches neither the computed multipart ETag {result['etag']} nor the MD5 {result['md5']}")
    if result["size"] <= MAX_COPY_SIZE and head.get("Metadata", {}).get("clawfarm-sha256") != result["sha256"]:
        problems.append("object metadata sha256 differs from the streamed sha256")
    if stored["size"] != result["size"] or stored["sha256"] != result["sha256"]:
        problems.append("manifest size/sha256 differ from the streamed values")
    if problems:
        try:
            client.delete_object(Bucket=bucket, Key=manifest_key(key))
        except Exception:  # noqa: BLE001
            pass
        raise ArchiveError(f"verification of s3://{bucket}/{key} failed: " + "; ".join(problems))
    duration = max(result["duration"], 0.001)
    return {**manifest, "verified": True, "duration": result["duration"],
            "throughput": round(result["size"] / MIB / duration, 2)}


# ---- listing, pruning, deleting ----------------------------------------------------------------------------------

def list_keys(client, bucket: str, prefix: str) -> list:
    """Every key under ``prefix`` (ListObjectsV2 paginator)."""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def list_archives(client, bucket: str, prefixes=("backups/", "archives/")) -> list:
    """Archives in a bucket, newest first: ``[{"key", "created", "kind", "size", "sha256", "files", "skipped",
    "key_id", "complete"}]`` (``key_id``: the claw key an encrypted archive needs, None when unencrypted).

    Size/sha256/files/skipped come from the manifest (``skipped``: what the backup left out, by reason; None for
    manifests older than that); an archive without one is listed with ``complete: false``.
    A missing bucket gives an empty list.
    """
    try:
        keys = []
        for prefix in prefixes:
            keys.extend(list_keys(client, bucket, prefix))
    except Exception as exc:
        if error_code(exc) in BUCKET_MISSING_CODES:
            return []
        raise ArchiveError(f"listing s3://{bucket} failed: {describe_s3_error(exc)}")
    present = set(keys)
    archives = []
    for key in keys:
        moment = key_time(key)
        if moment is None:
            continue
        entry = {"key": key, "created": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": key.split("/", 1)[0],
                 "size": None, "sha256": None, "files": None, "skipped": None, "key_id": None, "complete": False}
        if manifest_key(key) in present:
            try:
                doc = parse_manifest(client.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read(), key)
                entry.update(size=doc["size"], sha256=doc["sha256"], files=doc.get("files"), skipped=doc.get("skipped"),
                             key_id=(doc.get("encryption") or {}).get("key_id"), complete=True)
            except ArchiveError:
                pass
        archives.append(entry)
    archives.sort(key=lambda a: a["created"], reverse=True)
    return archives


def delete_archive(client, bucket: str, key: str) -> bool:
    """Delete one archive and its manifest with per-key DeleteObject (never DeleteObjects). True if it existed."""
    try:
        client.head_object(Bucket=bucket, Key=key)
        existed = True
    except Exception as exc:
        if error_code(exc) not in NOT_FOUND_CODES:
            raise ArchiveError(f"HEAD s3://{bucket}/{key} failed: {describe_s3_error(exc)}")
        existed = False
    try:
        client.delete_object(Bucket=bucket, Key=manifest_key(key))
        if existed:
            client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise ArchiveError(f"deleting s3://{bucket}/{key} failed: {describe_s3_error(exc)} (a bucket lock forbids deletes?)")
    return existed


def ensure_bucket(client, bucket: str, region: str, create: bool = True) -> bool:
    """Make sure the bucket exists; returns True when it was created.

    Raises:
        BucketMissing: it is missing and ``create`` is false.
        ArchiveError: HEAD or CreateBucket failed.
    """
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except Exception as exc:
        # "400" (HEAD of a name S3 rejects) counts as missing: creating it then names the problem (InvalidBucketName).
        if error_code(exc) not in BUCKET_MISSING_CODES | {"400"}:
            raise ArchiveError(f"HEAD bucket {bucket} failed: {describe_s3_error(exc)}")
        if not create:
            raise BucketMissing(f"bucket {bucket} does not exist")
    try:
        kwargs = {} if region in ("us-east-1", "") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        client.create_bucket(Bucket=bucket, **kwargs)
    except Exception as exc:
        raise ArchiveError(f"creating bucket {bucket} failed: {describe_s3_error(exc)}")
    return True


# ---- restore ---------------------------------------------------------------------------------------------------

DEFAULT_MAX_ENTRIES = 10_000_000  # bound for manifests written before entries/content_bytes were recorded
BLOCK = 4096  # per-entry allowance in the free-space estimate (one filesystem block)


def _member_parts(name: str, what: str = "name") -> list:
    """Path components of a member name (``.`` and empty ones dropped), or ArchiveError for an unsafe name."""
    if _CONTROL.search(name):
        raise ArchiveError(f"archive member {name!r} has control characters in its {what}")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"archive member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r} contains '..'")
    return parts


def check_member(member: tarfile.TarInfo, staging: str = "") -> list:
    """Refuse a tar member that is not plain, position-independent data; returns its path components.

    Refused: names with control characters, absolute names, ``..`` components; symlinks whose target is empty,
    overlong or has control characters (other targets, absolute or with ``..``, are inert data: see
    :func:`restorable_link`); hard links whose target name is unsafe; sparse members; devices, FIFOs and other special
    types.  ``staging`` is unused (kept for callers of the older signature): the extractor, not this check, makes
    sure nothing is written through a link.

    Raises:
        ArchiveError: naming the member and the reason.
    """
    name = member.name
    parts = _member_parts(name)
    if member.issparse() or member.type == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse") for k in member.pax_headers):
        raise ArchiveError(f"archive member {name!r} is a sparse file (clawfarm archives never contain one)")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ArchiveError(f"archive member {name!r} is a device, FIFO or other special file")
    if member.issym():
        link = member.linkname
        if not restorable_link(link):
            raise ArchiveError(f"archive member {name!r} is a symlink with an empty, overlong or control-character target")
    if member.islnk():
        link = member.linkname
        if _CONTROL.search(link) or link.startswith("/") or ".." in link.split("/") or not _member_parts(link, "link"):
            raise ArchiveError(f"archive member {name!r} is a hard link outside the destination ({link!r})")
    if not parts and not member.isdir():
        raise ArchiveError(f"archive member {name!r} names the destination itself but is not a directory")
    return parts


def archive_limits(manifest: dict, free_bytes: int) -> dict:
    """Extraction limits for an archive: ``{"entries", "bytes"}``.

    Manifests record the tar members (``entries``) and file content bytes (``content_bytes``) of the archive; an
    archive may not exceed them.  Manifests without them get :data:`DEFAULT_MAX_ENTRIES` entries and the free space.

    Raises:
        ArchiveError: the manifest's values are malformed, or the destination filesystem has less free space than
        the content needs (``content_bytes`` plus one block per entry).
    """
    entries, content = manifest.get("entries"), manifest.get("content_bytes")
    for label, value in (("entries", entries), ("content_bytes", content)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ArchiveError(f"manifest of {manifest.get('key')} has an invalid {label} {value!r}")
    if entries is None or content is None:
        return {"entries": DEFAULT_MAX_ENTRIES if entries is None else entries,
                "bytes": free_bytes if content is None else min(content, free_bytes)}
    needed = content + entries * BLOCK
    if needed > free_bytes:
        raise ArchiveError(f"the destination filesystem has {free_bytes // MIB} MiB free but the archive needs about "
                           f"{needed // MIB + 1} MiB ({content} bytes in {entries} entries); free space first")
    return {"entries": entries, "bytes": content}


def free_space(path: str) -> int:
    """Bytes available to root's use on the filesystem holding ``path`` (statvfs f_bavail * f_frsize)."""
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


class _Staging:
    """Directory-fd access to a staging tree that only this process writes (root-owned, 0700): walks never follow
    a link (each component opened ``O_NOFOLLOW|O_DIRECTORY`` from its parent's fd) and hold a bounded number of fds
    along the last path used (:class:`_DirChain`), so members in archive order cost one open each at any depth."""

    def __init__(self, root_fd: int):
        self.root_fd = root_fd
        self.chain = _DirChain(root_fd)

    def dir_fd(self, parts) -> int:
        """The fd of the directory ``parts`` (owned by this object: valid until the next call)."""
        return self.chain.goto(parts)

    def open_dir(self, parts) -> int:
        """A new fd for the directory ``parts`` (the caller closes it)."""
        return os.dup(self.dir_fd(parts))

    def drop(self) -> None:
        self.chain.close()


class CappedReader:
    """A read-only stream that raises :class:`ArchiveError` once more than ``limit`` bytes passed through it: bounds
    what tarfile reads, headers included (a PAX or long-name header's data is read into memory whole)."""

    def __init__(self, raw, limit: int):
        self.raw, self.limit, self.size = raw, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size) if size is not None and size >= 0 else self.raw.read()
        self.size += len(data)
        if self.size > self.limit:
            raise ArchiveError(f"the archive's tar stream exceeds {self.limit} bytes, more than its manifest's entries and "
                               "content bytes allow; refusing it (an archive bomb or a corrupt archive)")
        return data

    def readable(self) -> bool:
        return True


def tar_stream_limit(limits: dict) -> int:
    """Upper bound of a tar stream's size for extraction limits: the content plus 64 KiB of headers per entry
    (PAX records for long names) plus 1 MiB of end padding."""
    return (limits.get("bytes") or 0) + limits["entries"] * 64 * 1024 + MIB


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_ZERO_BLOCK = bytes(512)
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX_NUMBERS = {"size": int, "uid": int, "gid": int, "mtime": float}
_PAX_NAMES = {"path": "name", "linkpath": "linkname", "uname": "uname", "gname": "gname"}


def _tar_text(field: bytes) -> str:
    end = field.find(b"\0")
    return (field if end < 0 else field[:end]).decode("utf-8", "surrogateescape")


def _tar_number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # base-256 (GNU, star)
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[:1] == b"\xff" else value
    end = field.find(b"\0")
    text = (field if end < 0 else field[:end]).strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise ArchiveError(f"a tar header has an invalid number field {text[:20]!r}: corrupt archive")


class _TarReader:
    """A strict, fast reader of a tar stream (ustar, PAX, GNU long names): yields ``tarfile.TarInfo`` members in order,
    with the same names, types, links, sizes and PAX headers ``tarfile`` (stream mode) would give, at a fraction of
    its per-member cost (a small home's restore is mostly per-member work).  Differences: a header with a bad
    checksum, a truncated header or member, and an empty stream raise :class:`ArchiveError` (``tarfile`` stops
    silently after the first member).  PAX and GNU long-name data are read whole, like ``tarfile`` does: the caller
    bounds the stream (:class:`CappedReader`).

    After a member is yielded its data is read with :meth:`read` (what is left unread is skipped)."""

    def __init__(self, raw):
        self.raw, self.buf, self.pos, self.left, self.pad = raw, b"", 0, 0, 0

    def _take(self, size: int) -> bytes:
        """``size`` bytes (fewer only at the end of the stream)."""
        end = self.pos + size
        if end <= len(self.buf):
            data = self.buf[self.pos:end]
            self.pos = end
            return data
        chunks, missing = [self.buf[self.pos:]], size - (len(self.buf) - self.pos)
        self.buf, self.pos = b"", 0
        while missing > 0:
            chunk = self.raw.read(max(missing, MIB))
            if not chunk:
                break
            if len(chunk) > missing:
                chunks.append(chunk[:missing])
                self.buf = chunk
                self.pos = missing
                missing = 0
            else:
                chunks.append(chunk)
                missing -= len(chunk)
        return b"".join(chunks)

    def _exact(self, size: int, what: str) -> bytes:
        data = self._take(size)
        if len(data) != size:
            raise ArchiveError(f"the tar stream ends inside {what}: truncated archive")
        return data

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current member's data."""
        size = min(size, self.left)
        data = self._exact(size, "a member's data") if size > 0 else b""
        self.left -= len(data)
        return data

    def extractfile(self, member) -> _TarReader:
        return self

    def _skip(self) -> None:
        while self.left:
            self.read(MIB)
        if self.pad:
            self._exact(self.pad, "a member's padding")
            self.pad = 0

    def _meta(self, size: int) -> bytes:
        data = self._exact(size, "an extended header")
        self._exact(-size % 512, "an extended header's padding")
        return data

    @staticmethod
    def _check(block: bytes) -> bytes:
        """The header's type, once its checksum is right."""
        checksum = _tar_number(block[148:156])
        if checksum != 256 + sum(block) - sum(block[148:156]):
            import struct

            if checksum != 256 + sum(struct.unpack_from("148b8x356b", block)):
                raise ArchiveError("a tar header has a bad checksum: corrupt or not a tar archive")
        return block[156:157]

    @staticmethod
    def _header(block: bytes) -> tarfile.TarInfo:
        """A member's header (checked by :meth:`_check`)."""
        info = tarfile.TarInfo(_tar_text(block[0:100]))
        info.mode, info.uid, info.gid = _tar_number(block[100:108]), _tar_number(block[108:116]), _tar_number(block[116:124])
        info.size, info.mtime = _tar_number(block[124:136]), _tar_number(block[136:148])
        info.type = block[156:157]
        info.linkname = _tar_text(block[157:257])
        info.uname, info.gname = _tar_text(block[265:297]), _tar_text(block[297:329])
        prefix = _tar_text(block[345:500])
        if info.type == tarfile.AREGTYPE and info.name.endswith("/"):
            info.type = tarfile.DIRTYPE
        if info.isdir():
            info.name = info.name.rstrip("/")
        if prefix and info.type not in tarfile.GNU_TYPES:
            info.name = prefix + "/" + info.name
        return info

    @staticmethod
    def _pax_records(data: bytes) -> dict:
        records, pos = {}, 0
        while pos < len(data):
            space = data.find(b" ", pos)
            try:
                length = int(data[pos:space]) if space > pos else 0
            except ValueError:
                length = 0
            end = pos + length
            record = data[space + 1:end - 1] if length > 0 else b""
            if length <= 0 or end > len(data) or data[end - 1:end] != b"\n" or b"=" not in record:
                raise ArchiveError("a tar PAX header has a malformed record: corrupt archive")
            keyword, _, value = record.partition(b"=")
            try:
                key = keyword.decode("utf-8")
            except UnicodeDecodeError:
                raise ArchiveError("a tar PAX header has a keyword that is not UTF-8: corrupt archive")
            records[key] = value.decode("utf-8", "surrogateescape")
            pos = end
        return records

    def __iter__(self):
        global_headers, count = {}, 0
        while True:
            pax, long_name, long_link = {}, None, None
            while True:
                self._skip()
                block = self._take(512)
                if not block or block == _ZERO_BLOCK:
                    if not count and not block:
                        raise ArchiveError("the tar stream is empty: not a clawfarm archive")
                    return
                if len(block) < 512:
                    raise ArchiveError("the tar stream ends inside a header: truncated archive")
                count += 1
                kind = self._check(block)
                if kind in _META_TYPES:  # an extended header: only its size matters (no TarInfo made)
                    data = self._meta(_tar_number(block[124:136]))
                    if kind == tarfile.XGLTYPE:
                        global_headers.update(self._pax_records(data))
                    elif kind in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
                        pax.update(self._pax_records(data))
                    elif kind == tarfile.GNUTYPE_LONGNAME:
                        long_name = _tar_text(data)
                    else:
                        long_link = _tar_text(data)
                else:
                    info = self._header(block)
                    break
            if long_name is not None:
                info.name = long_name
            if long_link is not None:
                info.linkname = long_link
            headers = {**global_headers, **pax}
            for keyword, value in headers.items():
                if keyword in _PAX_NUMBERS:
                    try:
                        value = _PAX_NUMBERS[keyword](value)
                    except ValueError:
                        value = 0
                    setattr(info, keyword, value)
                elif keyword in _PAX_NAMES:
                    setattr(info, _PAX_NAMES[keyword], value.rstrip("/") if keyword == "path" else value)
            info.pax_headers = headers
            if info.isdir():
                info.name = info.name.rstrip("/")
            if info.size < 0:
                raise ArchiveError(f"archive member {info.name!r} has a negative size: corrupt archive")
            self.left = info.size if info.isreg() or info.type not in tarfile.SUPPORTED_TYPES else 0
            self.pad = -self.left % 512
            yield info


def extract_stream(fileobj, staging: str, limits: dict | None = None, owner: tuple | None = None) -> dict:
    """Extract a tar stream into ``staging`` (created here, 0700, root's) safely by construction.

    Each member passes :func:`check_member`, then is created relative to the file descriptor of its parent
    directory, itself reached component by component with ``O_NOFOLLOW|O_DIRECTORY``: nothing is ever written
    through a link or over an existing entry (files ``O_CREAT|O_EXCL|O_NOFOLLOW``, ``mkdir``, ``symlink`` and
    ``link`` all fail on an existing name).  Refused: a member whose name was used before (duplicates, or a
    directory, file or link over an earlier one), a member under a symlink or file, a hard link to anything but an
    earlier regular member, more members than ``limits["entries"]`` or more content bytes than ``limits["bytes"]``.
    Files get their mode without setuid/setgid/sticky bits, directories without setuid/setgid (applied after all
    members are in); the archive's ``.`` mode is not applied to ``staging`` (it stays 0700) but returned as
    ``root_mode`` for the final swap.  ``owner`` (``(uid, gid)``), if given, becomes the owner of every entry as it
    is made, never through a link: a file by its own descriptor (``fchown``), a symlink itself (``fchownat`` with
    ``AT_SYMLINK_NOFOLLOW`` in its parent's descriptor), a directory by its descriptor once every member is in;
    ``staging`` itself stays root's (the caller hands it over last, after its checks: :func:`chown_tree` with
    ``children=False``), so nobody but root can reach an entry before then.  Without ``owner`` ownership is left to
    the caller (:func:`chown_tree`).

    Speed (a small home's restore is per-member work): the stream is parsed by :class:`_TarReader` and small files
    are created by :class:`_Writers` threads, while this thread keeps every check and makes every directory and link;
    a file is created with its mode (``fchmod`` only when the umask took bits off), and Python's cyclic garbage
    collector is paused meanwhile (the members make no reference cycles; with boto3 loaded every collection walks
    hundreds of thousands of objects).

    Returns:
        ``{"entries", "files", "bytes", "root_mode"}`` (``root_mode`` None when the archive has no ``.`` member).

    Raises:
        ArchiveError: naming the member and the reason; what was extracted stays in ``staging`` for the caller to
        remove.
    """
    import gc

    limits = limits or {"entries": DEFAULT_MAX_ENTRIES, "bytes": None}
    umask = os.umask(0o077)  # read it (no other thread of this process makes files now) ...
    os.umask(umask)  # ... and put it back
    os.mkdir(staging, 0o700)
    root_fd = os.open(staging, _OPEN_DIR)
    st = os.fstat(root_fd)
    if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        os.close(root_fd)
        raise ArchiveError(f"staging directory {staging} is not private to this process")
    tree = _Staging(root_fd)
    counts = {"entries": 0, "files": 0, "bytes": 0, "root_mode": None}
    seen = {}  # path tuple -> "dir" | "file" | "link" | "implicit" (a parent made before its own member)
    dirs = []  # (parts, mode, mtime) applied once every member is in
    made = {"owner": owner, "umask": umask}  # how files are finished (:func:`_finish_file`)
    collecting = gc.isenabled()
    gc.disable()
    writers = _Writers(made=made)
    try:
        tar = _TarReader(fileobj)
        for member in tar:
            counts["entries"] += 1
            if counts["entries"] > limits["entries"]:
                raise ArchiveError(f"archive has more than the {limits['entries']} entries its manifest records; "
                                   "refusing it (an archive bomb or a corrupt archive)")
            parts = tuple(check_member(member))
            _extract_member(tar, member, parts, tree, seen, dirs, counts, limits, writers, made)
        writers.wait()
        if owner is not None:  # the parents made before their own member (or without one) get the owner too
            dirs.extend((parts, None, None) for parts, kind in seen.items() if kind == "implicit")
        # descendants before their ancestors (a prefix sorts first), consecutive paths share most of the chain
        for parts, mode, mtime in sorted(dirs, key=lambda d: d[0], reverse=True):
            fd = tree.dir_fd(parts)
            if owner is not None:
                os.fchown(fd, *owner)
            if mode is not None:
                os.fchmod(fd, mode)
                _set_mtime(fd, mtime)
    finally:
        writers.close()
        tree.drop()
        os.close(root_fd)
        if collecting:
            gc.enable()
    return counts


_UTIME_FD = os.utime in os.supports_fd


def _set_mtime(fd: int, mtime) -> None:
    if _UTIME_FD:
        os.utime(fd, (mtime, mtime))


_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
SMALL_FILE = 256 * 1024  # files up to this size are written by the writer threads (:class:`_Writers`)
# Writers beside the extracting thread and the read-ahead: one per core left, at most 4.  On two cores one writer is
# faster than four (fewer GIL hand-offs and no threads spinning on the same directory's lock in the kernel).
WRITERS = max(1, min(4, (os.cpu_count() or 2) - 1))
BATCH_FILES, BATCH_BYTES = 64, MIB  # a writer's batch: consecutive small files of one directory


def _open_new(parent_fd: int, leaf: str, mode: int, name: str) -> int:
    """Create ``leaf`` in ``parent_fd`` with ``mode`` (less the umask): ``O_CREAT|O_EXCL|O_NOFOLLOW``, never over an
    entry, never through a link (inside the private staging directory nobody else can reach it yet)."""
    try:
        return os.open(leaf, _CREATE_FILE, mode, dir_fd=parent_fd)
    except FileExistsError:
        raise ArchiveError(f"archive member {name!r} names an entry that already exists (two members differing only "
                           "in case or Unicode normalization?); refusing to replace it")


def _finish_file(fd: int, mode: int, mtime, owner: tuple | None = None, umask: int = 0o777) -> None:
    """Give a file made by :func:`_open_new` its whole mode (``fchmod`` only when the umask took bits off), its owner
    (through its descriptor) and its mtime (last)."""
    if mode & umask:
        os.fchmod(fd, mode)
    if owner is not None:
        os.fchown(fd, *owner)
    _set_mtime(fd, mtime)


def _create_file(parent_fd: int, leaf: str, data: bytes, mode: int, mtime, name: str, owner: tuple | None = None,
                 umask: int = 0o777) -> None:
    """Create ``leaf`` in ``parent_fd`` (:func:`_open_new`), write ``data``, set mode, owner and mtime
    (:func:`_finish_file`)."""
    fd = _open_new(parent_fd, leaf, mode, name)
    try:
        if data:
            _write_all(fd, data)
        _finish_file(fd, mode, mtime, owner, umask)
    finally:
        os.close(fd)


class _Writers:
    """A few threads that create the small files of an extraction, so the per-file system calls (create, write, chmod,
    utime, close: most of a small home's restore) run beside the tar parsing, on every core.

    The tar stream is still read in order by one thread, which checks every member and makes every directory, link and
    large file itself.  Files go to the writers in batches of consecutive files of one directory: a batch carries a
    duplicated fd of that (verified, private) directory and the files' names, bytes, modes and times.  Memory: at most
    ``depth`` batches of at most :data:`BATCH_BYTES` queued, plus the one being filled.  When the queue is full, and in
    :meth:`wait`, the extracting thread writes batches itself instead of waiting for a writer (on two cores the writer
    is what the parsing waits for).  :meth:`wait` returns once every submitted file exists (before a hard link to one,
    and before directory modes are applied); the first error of a writer is raised by the next :meth:`submit` or
    :meth:`wait`."""

    def __init__(self, count: int = 0, depth: int = 8, made: dict | None = None):
        import queue

        self.made = made or {}  # _create_file's owner and umask
        self.jobs = queue.Queue(maxsize=depth)
        self.error = None
        self.key, self.fd, self.batch, self.bytes = None, None, [], 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count or WRITERS)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                self._write(job)
            except BaseException as exc:  # noqa: BLE001 - raised in the extracting thread
                if self.error is None:
                    self.error = exc
            finally:
                self.jobs.task_done()

    def _write(self, job) -> None:
        """Create a batch's files (in a writer, or in the extracting thread); closes the batch's directory fd."""
        fd, batch = job
        try:
            for item in batch:
                if self.error is not None:
                    break
                _create_file(fd, *item, **self.made)
        finally:
            os.close(fd)

    def _help(self) -> None:
        """Write the queued batches in this (the extracting) thread until the queue is empty."""
        import queue

        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            try:
                if job is None:  # (never queued before close)
                    return
                self._write(job)
            finally:
                self.jobs.task_done()

    def _raise(self) -> None:
        if self.error is not None:  # stays set: the writers skip the jobs still queued
            raise self.error

    def _flush(self) -> None:
        import queue

        if self.batch:
            job, self.batch, self.bytes = (self.fd, self.batch), [], 0
            self.fd = None
            try:
                self.jobs.put_nowait(job)
            except queue.Full:  # the writers are behind: this thread writes the batch rather than wait
                try:
                    self._write(job)
                except BaseException as exc:
                    if self.error is None:
                        self.error = exc  # the writers skip what is still queued
                    raise
        elif self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.key = None

    def submit(self, key: tuple, parent_fd: int, leaf: str, data: bytes, mode: int, mtime, name: str) -> None:
        """Queue a file ``leaf`` of the directory ``key`` (its path components), whose fd is ``parent_fd`` (the
        caller's: a batch takes a duplicate of it)."""
        self._raise()
        if key != self.key or len(self.batch) >= BATCH_FILES or self.bytes + len(data) > BATCH_BYTES:
            self._flush()
            self.key, self.fd = key, os.dup(parent_fd)
        self.batch.append((leaf, data, mode, mtime, name))
        self.bytes += len(data)

    def wait(self) -> None:
        self._flush()
        self._help()
        self.jobs.join()
        self._raise()

    def close(self) -> None:
        """Finish what is queued and stop the threads (always called, also after an error: the batch being filled is
        dropped)."""
        self.batch = []
        self._flush()
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()


def _extract_member(tar, member, parts, tree, seen, dirs, counts, limits, writers=None, made=None) -> None:
    made = made or {}
    owner = made.get("owner")
    name = member.name
    if not parts:  # the archived directory itself
        if counts["root_mode"] is not None:
            raise ArchiveError(f"archive member {name!r} appears twice (the archive's top directory)")
        counts["root_mode"] = stat.S_IMODE(member.mode) & 0o777
        return
    if parts in seen and not (seen[parts] == "implicit" and member.isdir()):
        raise ArchiveError(f"archive member {name!r} appears twice (a later member may not replace an earlier one)")
    # Only the nearest ancestor already in the archive matters: an entry is only ever made under a directory, so every
    # ancestor above a recorded directory is one too (checking each prefix would cost depth^2 per member).
    depth = len(parts) - 1
    while depth and parts[:depth] not in seen:
        depth -= 1
    kind = seen.get(parts[:depth]) if depth else None
    if kind in ("link", "file"):
        raise ArchiveError(f"archive member {name!r} lies under {'/'.join(parts[:depth])!r}, which is a "
                           f"{'symlink' if kind == 'link' else 'file'} in the archive")
    parent = _ensure_parents(tree, parts[:-1], seen, name, depth + 1)
    leaf = parts[-1]
    try:
        if member.isdir():
            if seen.get(parts) != "implicit":
                os.mkdir(leaf, 0o700, dir_fd=parent)
            seen[parts] = "dir"
            dirs.append((parts, stat.S_IMODE(member.mode) & 0o1777, member.mtime))
        elif member.issym():
            os.symlink(member.linkname, leaf, dir_fd=parent)
            if owner is not None:  # the link itself (fchownat AT_SYMLINK_NOFOLLOW), in the private staging tree
                os.chown(leaf, *owner, dir_fd=parent, follow_symlinks=False)
            seen[parts] = "link"
        elif member.islnk():
            target = tuple(_member_parts(member.linkname, "link"))
            if seen.get(target) != "file":
                raise ArchiveError(f"archive member {name!r} is a hard link to {member.linkname!r}, which is not an "
                                   "earlier regular file of the archive")
            if writers is not None:
                writers.wait()  # the target may still be in a writer's queue
            parent = os.dup(parent)  # the tree's fd is only valid until its next use
            try:
                os.link(target[-1], leaf, src_dir_fd=tree.dir_fd(target[:-1]), dst_dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)
            seen[parts] = "hardlink"
        else:
            counts["bytes"] += member.size
            if limits.get("bytes") is not None and counts["bytes"] > limits["bytes"]:
                raise ArchiveError(f"archive holds more than the {limits['bytes']} content bytes its manifest records "
                                   "(or the free space allows); refusing it (an archive bomb or a corrupt archive)")
            seen[parts] = "file"
            if writers is not None and member.size <= SMALL_FILE:
                data = tar.extractfile(member).read(member.size)
                if len(data) != member.size:
                    raise ArchiveError(f"archive member {name!r} is truncated")
                writers.submit(parts[:-1], parent, leaf, data, stat.S_IMODE(member.mode) & 0o777, member.mtime, name)
                counts["files"] += 1
                return
            mode = stat.S_IMODE(member.mode) & 0o777
            fd = _open_new(parent, leaf, mode, name)
            try:
                source = tar.extractfile(member)
                left = member.size
                while left > 0:
                    chunk = source.read(min(left, MIB))
                    if not chunk:
                        raise ArchiveError(f"archive member {name!r} is truncated")
                    _write_all(fd, chunk)
                    left -= len(chunk)
                _finish_file(fd, mode, member.mtime, **made)
            finally:
                os.close(fd)
            counts["files"] += 1
    except FileExistsError:
        raise ArchiveError(f"archive member {name!r} names an entry that already exists (two members differing only "
                           "in case or Unicode normalization?); refusing to replace it")


def _ensure_parents(tree, parents, seen, name, start: int = 1) -> int:
    """The fd of a member's parent directory, creating missing parents (0700) as implicit directories (those from
    ``start`` components on: the shorter prefixes are known to exist)."""
    for depth in range(start, len(parents) + 1):
        prefix = parents[:depth]
        if prefix in seen:
            continue
        fd = tree.dir_fd(prefix[:-1])
        try:
            os.mkdir(prefix[-1], 0o700, dir_fd=fd)
        except FileExistsError:
            raise ArchiveError(f"archive member {name!r}: its parent {'/'.join(prefix)!r} already exists as another "
                               "entry (case or Unicode normalization clash?)")
        seen[prefix] = "implicit"
    try:
        return tree.dir_fd(parents)
    except OSError as exc:
        raise ArchiveError(f"archive member {name!r}: its parent {'/'.join(parents)!r} is not a directory "
                           f"({exc.strerror}); nothing is written through a link")


def chown_tree(path: str, uid: int, gid: int, root_mode: int | None = None, children: bool = True) -> None:
    """``chown -R -h uid:gid path`` without ever following a link, the top directory last.

    Walks with directory fds (each subdirectory opened ``O_NOFOLLOW|O_DIRECTORY`` from its parent), changes every
    entry with ``fchownat(AT_SYMLINK_NOFOLLOW)``; the top directory is chmod'ed to ``root_mode`` (if given) and
    chowned last, so while a root-owned 0700 staging directory is being handed over its new owner cannot enter it
    and swap anything under the walk.  ``children=False``: only the top (the entries got their owner as they were
    made: :func:`extract_stream` with ``owner``).
    """
    top = os.open(path, _OPEN_DIR)
    try:
        if children:
            _chown_children(top, uid, gid)
        if root_mode is not None:
            os.fchmod(top, root_mode)
        os.fchown(top, uid, gid)
    finally:
        os.close(top)


def _chown_children(top_fd: int, uid: int, gid: int) -> None:
    """Chown everything under ``top_fd`` (each directory as soon as it is opened), never following a link."""
    def changed(name):
        raise ArchiveError(f"{name} changed while its ownership was being set")

    for event, fd, name, _ in walk_tree(top_fd, changed):
        if event == "dir":
            os.fchown(fd, uid, gid)
        elif event == "entry":
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)


def _listdir(dir_fd: int) -> list:
    with os.scandir(dir_fd) as listing:
        return [entry.name for entry in listing]


def walk_tree(top_fd: int, changed):
    """Every entry under the directory ``top_fd``, depth first, never following a link: the one walker of the trees a
    tenant made (ownership, removal, size).  Iterative, with a bounded number of fds at any depth (:class:`_DirChain`).

    Yields ``(event, fd, name, st)``:
      ``"dir"``   a subdirectory, opened ``O_NOFOLLOW|O_DIRECTORY`` from its parent and checked to be the one ``st``
                  describes; ``fd`` is its own descriptor (the walk's), its entries follow;
      ``"leave"`` after a subdirectory's entries; ``fd`` is its parent's descriptor (``st`` None);
      ``"entry"`` anything else (``fd`` is its directory's descriptor).
    ``changed(name)`` is called when a subdirectory was swapped between its ``stat`` and its ``open``: it raises, or
    returns to leave that directory out.  ``top_fd`` stays the caller's.

    Raises:
        _Moved: a directory on the current path was swapped (:meth:`_DirChain.current`).
    """
    chain = _DirChain(top_fd)
    pending = [collections.deque(_listdir(top_fd))]
    try:
        while pending:
            if not pending[-1]:
                pending.pop()
                if pending:
                    name = chain.names[-1]
                    chain.pop()
                    yield "leave", chain.current(), name, None
                continue
            name = pending[-1].popleft()
            dir_fd = chain.current()
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                yield "entry", dir_fd, name, st
                continue
            fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
            if not _same(os.fstat(fd), st):
                os.close(fd)
                changed(name)
                continue
            chain.push(name, st, fd)
            yield "dir", fd, name, st
            pending.append(collections.deque(_listdir(fd)))
    finally:
        chain.close()


SYSTEM_DIRS = ("/", "/Users", "/var", "/private", "/opt")


def check_removable(path: str) -> None:
    """Refuse to delete a system directory (a claw's home is below one of them).

    Raises:
        ValueError: ``path`` is empty, relative, or (as it is, or resolved) one of :data:`SYSTEM_DIRS`.
    """
    if not path or not os.path.isabs(path):
        raise ValueError(f"refusing to remove {path!r}: not an absolute path")
    for candidate in (os.path.normpath(path), os.path.realpath(path)):
        if candidate in SYSTEM_DIRS:
            raise ValueError(f"refusing to remove {path!r} ({candidate} is a system directory)")


def remove_tree(path: str) -> None:
    """``rm -rf path`` without following any link, iteratively with a bounded number of fds, at any depth.

    ``shutil.rmtree`` (CPython 3.9) holds one fd per level and recurses, so a tenant's deep chain of directories would
    make it fail (EMFILE, RecursionError).  Every directory is opened ``O_NOFOLLOW|O_DIRECTORY`` from its parent and
    verified (:class:`_DirChain`); links are unlinked, never followed.

    Raises:
        OSError: an entry could not be removed (an immutable flag...); what could be removed is gone.
    """
    parent, base = os.path.split(os.path.normpath(path))

    def changed(name):
        raise OSError(errno.ESTALE, f"{name} changed while being removed")

    top = os.open(parent or ".", _OPEN_DIR)
    fd = None
    try:
        st = os.stat(base, dir_fd=top, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(base, dir_fd=top)
            return
        fd = os.open(base, _OPEN_DIR, dir_fd=top)
        if not _same(os.fstat(fd), st):
            changed(path)
        for event, dir_fd, name, _ in walk_tree(fd, changed):
            if event == "leave":
                os.rmdir(name, dir_fd=dir_fd)
            elif event == "entry":
                os.unlink(name, dir_fd=dir_fd)
        os.rmdir(base, dir_fd=top)
    except _Moved as exc:
        raise OSError(errno.ESTALE, f"{exc} changed while being removed")
    finally:
        if fd is not None:
            os.close(fd)
        os.close(top)


def _discard(path: str) -> None:
    """Remove a staging tree, best effort (:func:`remove_tree`)."""
    try:
        remove_tree(path)
    except OSError:
        pass


class _Prefetch:
    """A read-only stream that reads ``raw`` ahead in its own thread (``depth`` chunks of ``chunk`` bytes at most), so
    the download, hash, decryption and decompression below run beside the extraction above.

    :meth:`stop` ends the thread (it reads nothing more of ``raw``) before the caller reads ``raw`` itself again."""

    def __init__(self, raw, chunk: int = MIB, depth: int = 4):
        import queue

        self.raw, self.chunk, self.queue = raw, chunk, queue.Queue(maxsize=depth)
        self.stopping, self.error, self.buffer, self.pos, self.eof = False, None, b"", 0, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping:
                data = self.raw.read(self.chunk)
                self.queue.put(data)
                if not data:
                    return
        except BaseException as exc:  # noqa: BLE001 - raised in the reading thread
            self.error = exc
            self.queue.put(b"")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while True:
                chunk = self.read(MIB)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        if self.pos >= len(self.buffer):
            if self.eof:
                return b""
            self.buffer, self.pos = self.queue.get(), 0
            if not self.buffer:
                self.eof = True
                if self.error is not None:
                    raise self.error
                return b""
        data = self.buffer[self.pos:self.pos + size]
        self.pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def stop(self) -> None:
        self.stopping = True
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.05)
            except Exception:  # noqa: BLE001 - queue.Empty: the thread is between two reads
                pass
        self.thread.join()


def check_restore(client, bucket: str, key: str, dest: str, keys: dict | None = None) -> tuple:
    """What a restore checks before it writes anything (check mode runs just this): the manifest is readable and
    valid, an encrypted archive's key is among ``keys`` and is the right one (:func:`check_keys`), the directory
    that holds ``dest`` exists, and the free space there is enough (:func:`archive_limits`).

    Returns:
        ``(manifest, limits)``.
    Raises:
        ArchiveError: saying which check failed and what to do.
    """
    try:
        manifest = parse_manifest(client.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read(), key)
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(f"archive s3://{bucket}/{key} has no readable manifest ({describe_s3_error(exc)}); "
                           "it is incomplete or not a clawfarm archive, refusing to restore it")
    check_keys(manifest, keys)
    parent = os.path.dirname(os.path.normpath(dest))
    try:
        free = free_space(parent)
    except OSError as exc:
        raise ArchiveError(f"cannot restore into {dest}: its parent directory {parent} is not usable ({exc.strerror})")
    return manifest, archive_limits(manifest, free)


def restore_archive(client, bucket: str, key: str, dest: str, uid: int | None, gid: int | None,
                    keep_previous: bool = False, now: datetime | None = None, keys: dict | None = None) -> dict:
    """Download, verify and extract an archive beside ``dest``, then swap it in.

    An encrypted archive (its manifest names the key id) needs that key in ``keys`` (``{key_id: 32-byte key}``): a
    missing or wrong key is refused before anything is downloaded; every segment is authenticated before its bytes
    reach the extractor; unencrypted archives (older ones) restore as before.

    Steps: read the manifest (an archive without one is refused) and take the extraction limits from it
    (:func:`archive_limits`, which also checks the free space beside ``dest``); stream the object through sha256 and
    zstd into a new root-owned 0700 staging directory next to ``dest`` with :func:`extract_stream` (nothing can
    land outside it; every entry gets ``uid``/``gid`` as it is made, never through a link); drain and compare size
    and sha256 with the manifest; give the staging directory the archive's top mode and its owner last, after those
    checks (:func:`chown_tree` of the top only); then rename
    ``dest`` aside and the staging directory into place, and delete the old tree without following its links (or
    keep it as ``<dest>.pre-restore-<time>`` with ``keep_previous``) with :func:`remove_tree`.  Any failure before the
    swap removes the staging directory and leaves ``dest`` untouched.

    Returns:
        ``{"key", "size", "sha256", "files", "entries", "dest", "previous", "cleanup_error", "duration"}``;
        ``cleanup_error`` says why the replaced directory could not be deleted (the restore itself succeeded).
    """
    import zstandard

    started = time.monotonic()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    parent, base = os.path.split(os.path.normpath(dest))
    staging = os.path.join(parent, f".{base}.restore-{stamp}")
    manifest, limits = check_restore(client, bucket, key, dest, keys)
    opening = check_keys(manifest, keys)
    if os.path.lexists(staging):
        raise ArchiveError(f"{staging} already exists (a restore of the same second, or a leftover); remove it and retry")
    ahead = None
    owner = (uid, gid) if uid is not None and gid is not None else None
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        hashing = HashingReader(body)
        plain = DecryptingReader(hashing, opening) if opening else hashing
        reader = zstandard.ZstdDecompressor().stream_reader(plain, read_across_frames=True)
        ahead = _Prefetch(reader)  # download, hash, decrypt and decompress beside the extraction
        counts = extract_stream(CappedReader(ahead, tar_stream_limit(limits)), staging, limits, owner)
        ahead.stop()
        while read_exact(plain, MIB):  # drain anything after the tar end (padding, the last sealed segment) so the
            pass  # hash covers the object and the decryption has seen the segment marked last
        while read_exact(hashing, MIB):
            pass
        if hashing.size != manifest["size"] or hashing.sha256.hexdigest() != manifest["sha256"]:
            raise ArchiveError(f"s3://{bucket}/{key} does not match its manifest (size {hashing.size} vs {manifest['size']}, "
                               "sha256 differs): the object is corrupt; nothing was replaced")
        if owner is not None:
            chown_tree(staging, uid, gid, counts["root_mode"], children=False)
        elif counts["root_mode"] is not None:
            os.chmod(staging, counts["root_mode"])
    except Exception as exc:
        if ahead is not None:
            ahead.stop()
        _discard(staging)
        if isinstance(exc, ArchiveError):
            raise
        if isinstance(exc, (tarfile.TarError, zstandard.ZstdError)):
            raise ArchiveError(f"s3://{bucket}/{key} is not a readable tar+zstd archive ({exc}): corrupt; nothing was replaced")
        raise ArchiveError(f"restoring s3://{bucket}/{key} failed: {describe_s3_error(exc)}; nothing was replaced")
    previous = None
    if os.path.lexists(dest):
        previous = os.path.join(parent, f"{base}.pre-restore-{stamp}")
        os.rename(dest, previous)
    try:
        os.rename(staging, dest)
    except OSError:
        if previous:
            os.rename(previous, dest)
        _discard(staging)
        raise
    cleanup_error = None
    if previous and not keep_previous:
        # the replaced home is the tenant's: remove_tree walks it by directory fds, never follows its links and holds a
        # bounded number of fds at any depth (shutil.rmtree recurses with one fd per level)
        try:
            remove_tree(previous)
            previous = None
        except OSError as exc:  # e.g. an immutable flag the tenant set: the restore itself is done, say what is left
            cleanup_error = f"the replaced directory was kept as {previous}: deleting it failed ({exc}); remove it by hand"
    return {"key": key, "size": manifest["size"], "sha256": manifest["sha256"], "files": counts["files"],
            "entries": counts["entries"], "dest": dest, "previous": previous, "cleanup_error": cleanup_error,
            "duration": round(time.monotonic() - started, 3)}


def make_s3_client(endpoint_url: str, access_key_id: str, secret_access_key: str, region: str = "auto",
                   ca_bundle: str | None = None, max_attempts: int = 5):
    """A boto3 S3 client configured for R2: path-style addressing, standard retries, and both checksum settings
    ``when_required`` (no ``aws-chunked`` trailers, no default CRC32 on uploads; docs/reference/cloudflare-r2.md 3.5).

    Raises:
        ArchiveError: boto3 is not installed in the module's Python (run bootstrap's mini_python role).
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ArchiveError("boto3 is not installed in the Python running this module; run bootstrap.yml --tags python "
                           "and run r2_archive with ansible_python_interpreter set to the farm venv")
    config = Config(region_name=region, signature_version="s3v4", retries={"mode": "standard", "max_attempts": max_attempts},
                    request_checksum_calculation="when_required", response_checksum_validation="when_required",
                    s3={"addressing_style": "path"}, connect_timeout=10, read_timeout=120)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, aws_access_key_id=access_key_id,
                                          aws_secret_access_key=secret_access_key, config=config,
                                          verify=ca_bundle if ca_bundle else True)
