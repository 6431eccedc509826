# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Claw archives in R2 (S3 API): streaming tar+zstd upload, verified restore, retention (PRIVATE).

Facts followed (shared/reference/cloudflare-r2.md section 3): R2 needs every multipart part except the last
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

import fnmatch
import hashlib
import json
import os
import re
import shutil
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
DEFAULT_EXCLUDES = (
    ".cache", "node_modules", "Cache", "Code Cache", "GPUCache", "ShaderCache", "GrShaderCache",
    "component_crx_cache", "Service Worker/CacheStorage", "*.sock",
)


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


def write_tar(src: str, fileobj, excludes, counters: dict) -> None:
    """Write ``src`` as a PAX tar stream to ``fileobj``: the directory itself as ``.``, then everything under it in
    sorted order, skipping excluded paths, sockets and anything tar cannot represent.  Symlinks are stored as links.
    ``counters`` gets ``files`` (regular files), ``entries`` and ``bytes`` (file content bytes)."""
    counters.update(files=0, entries=0, bytes=0)
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def add(path: str, arcname: str) -> None:
            info = tar.gettarinfo(path, arcname)
            if info is None:  # socket or other unsupported type
                return
            counters["entries"] += 1
            if info.isreg():
                counters["files"] += 1
                counters["bytes"] += info.size
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)

        add(src, ".")
        for root, dirs, files in os.walk(src):
            rel_root = os.path.relpath(root, src)
            rel_root = "" if rel_root == "." else rel_root + "/"
            dirs[:] = sorted(d for d in dirs if not excluded(rel_root + d, excludes))
            for name in sorted(dirs) + sorted(files):
                rel = rel_root + name
                if name in files and excluded(rel, excludes):
                    continue
                add(os.path.join(root, name), "./" + rel)
            # os.walk does not descend into symlinked dirs; they were added as links above.


class _Producer(threading.Thread):
    """Runs tar -> zstd into a pipe; errors are kept for the consumer to re-raise."""

    def __init__(self, src, excludes, level, write_fd):
        super().__init__(daemon=True)
        self.src, self.excludes, self.level, self.write_fd = src, excludes, level, write_fd
        self.error = None
        self.counters = {}

    def run(self):
        import zstandard

        try:
            with open(self.write_fd, "wb", buffering=1024 * 1024) as pipe:
                compressor = zstandard.ZstdCompressor(level=self.level, write_checksum=True)
                with compressor.stream_writer(pipe, closefd=False) as writer:
                    write_tar(self.src, writer, self.excludes, self.counters)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self.error = exc


def upload_directory(client, bucket: str, key: str, src: str, excludes=DEFAULT_EXCLUDES, part_size: int = 64 * MIB,
                     level: int = 3, metadata: dict | None = None, progress=None) -> dict:
    """Stream ``src`` as tar+zstd straight into ``s3://bucket/key``: no temporary file, memory bounded by one part.

    Parts are read with :func:`read_exact`, so all but the last have exactly ``part_size`` bytes (an R2 rule).
    A stream smaller than one part goes up with a single PutObject.  On any error the multipart upload is
    aborted and :class:`ArchiveError` raised; nothing is left behind but (at worst) an aborted upload that R2
    reaps after 7 days.

    Returns:
        ``{"size", "sha256", "etag", "md5", "parts", "part_size", "files", "entries", "content_bytes", "duration"}``;
        size in bytes of the compressed object, duration in seconds.
    """
    if part_size < MIN_PART_SIZE:
        raise ArchiveError(f"part_size must be at least 5 MiB (R2/S3 minimum), got {part_size} bytes")
    if not os.path.isdir(src):
        raise ArchiveError(f"{src} is not a directory")
    started = time.monotonic()
    read_fd, write_fd = os.pipe()
    producer = _Producer(src, list(excludes), level, write_fd)
    producer.start()
    sha256 = hashlib.sha256()
    whole_md5 = hashlib.md5(usedforsecurity=False)  # a server-side copy gives the object this plain-MD5 ETag
    size = 0
    part_md5s = []
    upload_id = None
    try:
        with open(read_fd, "rb", buffering=0) as pipe:
            first = read_exact(pipe, part_size)
            sha256.update(first)
            whole_md5.update(first)
            size += len(first)
            if len(first) < part_size:
                producer.join()
                if producer.error:
                    raise ArchiveError(f"reading {src} failed: {producer.error}")
                md5 = hashlib.md5(first, usedforsecurity=False)
                client.put_object(Bucket=bucket, Key=key, Body=first, ContentMD5=_b64(md5.digest()),
                                  Metadata=metadata or {}, ContentType="application/zstd")
                etag = md5.hexdigest()
                parts = 1
            else:
                upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata or {},
                                                           ContentType="application/zstd")["UploadId"]
                completed = []
                chunk = first
                number = 0
                while chunk:
                    number += 1
                    if number > MAX_PARTS:
                        raise ArchiveError(f"archive exceeds {MAX_PARTS} parts of {part_size} bytes; raise part_size")
                    md5 = hashlib.md5(chunk, usedforsecurity=False)
                    answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk,
                                                ContentMD5=_b64(md5.digest()))
                    completed.append({"PartNumber": number, "ETag": answer["ETag"]})
                    part_md5s.append(md5.digest())
                    if progress:
                        progress(size)
                    chunk = read_exact(pipe, part_size)
                    sha256.update(chunk)
                    whole_md5.update(chunk)
                    size += len(chunk)
                producer.join()
                if producer.error:
                    raise ArchiveError(f"reading {src} failed: {producer.error}")
                client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": completed})
                upload_id = None
                etag = multipart_etag(part_md5s)
                parts = len(completed)
    except ArchiveError:
        _abort(client, bucket, key, upload_id)
        raise
    except Exception as exc:
        _abort(client, bucket, key, upload_id)
        raise ArchiveError(f"upload of s3://{bucket}/{key} failed: {describe_s3_error(exc)}")
    finally:
        producer.join(timeout=5)
    return {"size": size, "sha256": sha256.hexdigest(), "etag": etag, "md5": whole_md5.hexdigest(), "parts": parts, "part_size": part_size,
            "files": producer.counters.get("files", 0), "entries": producer.counters.get("entries", 0),
            "content_bytes": producer.counters.get("bytes", 0), "duration": round(time.monotonic() - started, 3)}


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
                   created: datetime) -> dict:
    """The JSON sidecar written after an upload (the archive's commit marker)."""
    return {
        "format": MANIFEST_FORMAT, "bucket": bucket, "key": key, "claw_id": claw_id, "kind": kind,
        "created": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "compression": "zstd", "level": level,
        "size": result["size"], "sha256": result["sha256"], "etag": result["etag"], "parts": result["parts"],
        "part_size": result["part_size"], "files": result["files"], "entries": result["entries"],
        "content_bytes": result["content_bytes"], "src": src, "excludes": list(excludes),
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


def archive_and_verify(client, bucket: str, key: str, src: str, claw_id: str | None, kind: str, excludes=DEFAULT_EXCLUDES,
                       part_size: int = 64 * MIB, level: int = 3, progress=None) -> dict:
    """Upload, record metadata, write the manifest, then verify object and manifest against what was streamed.

    Verification: HEAD of the object (size, ETag computed from the part MD5s, sha256 metadata) and a GET of the
    manifest (size and sha256).  Any mismatch raises and the manifest is removed, so the archive never counts
    as complete.

    Returns:
        the manifest dict plus ``duration`` (s) and ``throughput`` (MiB/s of compressed bytes).
    """
    created = datetime.now(UTC)
    result = upload_directory(client, bucket, key, src, excludes, part_size, level,
                              metadata={"clawfarm-format": MANIFEST_FORMAT, "clawfarm-kind": kind}, progress=progress)
    meta = object_metadata(result, claw_id, kind)
    try:
        if result["size"] <= MAX_COPY_SIZE:
            client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, Metadata=meta,
                               MetadataDirective="REPLACE", ContentType="application/zstd")
        manifest = build_manifest(bucket, key, result, claw_id, kind, src, excludes, level, created)
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
    """Archives in a bucket, newest first: ``[{"key", "created", "kind", "size", "sha256", "files", "complete"}]``.

    Size/sha256/files come from the manifest; an archive without one is listed with ``complete: false``.
    A missing bucket gives an empty list.
    """
    try:
        keys = []
        for prefix in prefixes:
            keys.extend(list_keys(client, bucket, prefix))
    except Exception as exc:
        if _status(exc) == 404:
            return []
        raise ArchiveError(f"listing s3://{bucket} failed: {describe_s3_error(exc)}")
    present = set(keys)
    archives = []
    for key in keys:
        moment = key_time(key)
        if moment is None:
            continue
        entry = {"key": key, "created": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": key.split("/", 1)[0],
                 "size": None, "sha256": None, "files": None, "complete": False}
        if manifest_key(key) in present:
            try:
                doc = parse_manifest(client.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read(), key)
                entry.update(size=doc["size"], sha256=doc["sha256"], files=doc.get("files"), complete=True)
            except ArchiveError:
                pass
        archives.append(entry)
    archives.sort(key=lambda a: a["created"], reverse=True)
    return archives


def _status(exc) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def delete_archive(client, bucket: str, key: str) -> bool:
    """Delete one archive and its manifest with per-key DeleteObject (never DeleteObjects). True if it existed."""
    try:
        client.head_object(Bucket=bucket, Key=key)
        existed = True
    except Exception as exc:
        if _status(exc) != 404:
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
        ArchiveError: it is missing and ``create`` is false, or HEAD/CreateBucket failed.
    """
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except Exception as exc:
        if _status(exc) not in (404, 400) or not create:
            if _status(exc) in (404, 400):
                raise ArchiveError(f"bucket {bucket} does not exist")
            raise ArchiveError(f"HEAD bucket {bucket} failed: {describe_s3_error(exc)}")
    try:
        kwargs = {} if region in ("us-east-1", "") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        client.create_bucket(Bucket=bucket, **kwargs)
    except Exception as exc:
        raise ArchiveError(f"creating bucket {bucket} failed: {describe_s3_error(exc)}")
    return True


# ---- restore ---------------------------------------------------------------------------------------------------

def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_member(member: tarfile.TarInfo, staging: str) -> str:
    """Refuse a tar member that could land outside ``staging`` or is not plain data; returns its target path.

    Refused: absolute names, ``..`` components, names whose parent resolves (through symlinks already extracted)
    outside ``staging``, symlinks with absolute targets or targets resolving outside, hard links outside,
    device files, FIFOs and other special types.

    Raises:
        ArchiveError: naming the member and the reason.
    """
    name = member.name
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"archive member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r} contains '..'")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ArchiveError(f"archive member {name!r} is a device, FIFO or other special file")
    root = os.path.realpath(staging)
    target = os.path.join(root, *parts) if parts else root
    parent = os.path.realpath(os.path.dirname(target)) if parts else root
    if not _inside(root, parent):
        raise ArchiveError(f"archive member {name!r} would be written through a link outside the destination")
    if member.issym():
        link = member.linkname
        if link.startswith("/"):
            raise ArchiveError(f"archive member {name!r} is a symlink to an absolute path {link!r}")
        resolved = os.path.normpath(os.path.join(os.path.dirname(target), link))
        if not _inside(root, resolved) or not _inside(root, os.path.realpath(resolved)):
            raise ArchiveError(f"archive member {name!r} is a symlink pointing outside the destination ({link!r})")
    if member.islnk():
        link_parts = [p for p in member.linkname.split("/") if p not in ("", ".")]
        if member.linkname.startswith("/") or ".." in link_parts:
            raise ArchiveError(f"archive member {name!r} is a hard link outside the destination ({member.linkname!r})")
        if not _inside(root, os.path.realpath(os.path.join(root, *link_parts))):
            raise ArchiveError(f"archive member {name!r} is a hard link outside the destination ({member.linkname!r})")
    return target


def extract_stream(fileobj, staging: str) -> dict:
    """Extract a tar stream into ``staging`` (created, 0700) after :func:`check_member` on each member.

    Modes are kept except setuid/setgid; ownership is left to the caller. Returns ``{"entries", "files"}``.
    """
    os.makedirs(staging, mode=0o700)
    counts = {"entries": 0, "files": 0}
    extract_kwargs = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            check_member(member, staging)
            member.mode &= ~(stat.S_ISUID | stat.S_ISGID)
            counts["entries"] += 1
            if member.isreg():
                counts["files"] += 1
            if member.name in (".", "./"):
                os.chmod(staging, member.mode & 0o7777)
                continue
            tar.extract(member, staging, set_attrs=True, numeric_owner=True, **extract_kwargs)
    return counts


def chown_tree(path: str, uid: int, gid: int) -> None:
    """``chown -R -h uid:gid path`` (links themselves, never their targets)."""
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def restore_archive(client, bucket: str, key: str, dest: str, uid: int | None, gid: int | None,
                    keep_previous: bool = False, now: datetime | None = None) -> dict:
    """Download, verify and extract an archive beside ``dest``, then swap it in.

    Steps: read the manifest (an archive without one is refused); stream the object through sha256 and zstd
    into a staging directory next to ``dest``; drain and compare size and sha256 with the manifest; fix
    ownership; then rename ``dest`` aside and the staging directory into place, and delete the old tree (or keep
    it as ``<dest>.pre-restore-<time>`` with ``keep_previous``).  Any failure before the swap removes the staging
    directory and leaves ``dest`` untouched.

    Returns:
        ``{"key", "size", "sha256", "files", "entries", "dest", "previous", "duration"}``.
    """
    import zstandard

    started = time.monotonic()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    parent, base = os.path.split(os.path.normpath(dest))
    staging = os.path.join(parent, f".{base}.restore-{stamp}")
    try:
        manifest = parse_manifest(client.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read(), key)
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(f"archive s3://{bucket}/{key} has no readable manifest ({describe_s3_error(exc)}); "
                           "it is incomplete or not a clawfarm archive, refusing to restore it")
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        hashing = HashingReader(body)
        reader = zstandard.ZstdDecompressor().stream_reader(hashing, read_across_frames=True)
        counts = extract_stream(reader, staging)
        while read_exact(hashing, MIB):  # drain anything after the tar end (padding) so the hash covers the object
            pass
        if hashing.size != manifest["size"] or hashing.sha256.hexdigest() != manifest["sha256"]:
            raise ArchiveError(f"s3://{bucket}/{key} does not match its manifest (size {hashing.size} vs {manifest['size']}, "
                               "sha256 differs): the object is corrupt; nothing was replaced")
        if uid is not None and gid is not None:
            chown_tree(staging, uid, gid)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
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
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if previous and not keep_previous:
        shutil.rmtree(previous)
        previous = None
    return {"key": key, "size": manifest["size"], "sha256": manifest["sha256"], "files": counts["files"],
            "entries": counts["entries"], "dest": dest, "previous": previous, "duration": round(time.monotonic() - started, 3)}


def make_s3_client(endpoint_url: str, access_key_id: str, secret_access_key: str, region: str = "auto",
                   ca_bundle: str | None = None, max_attempts: int = 5):
    """A boto3 S3 client configured for R2: path-style addressing, standard retries, and both checksum settings
    ``when_required`` (no ``aws-chunked`` trailers, no default CRC32 on uploads; shared/reference/cloudflare-r2.md 3.5).

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
