#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: r2_archive
short_description: Archive a directory to R2 (S3 API) as a verified tar+zstd stream, restore it, prune old archives
version_added: 0.2.0
description:
  - Runs on the Mini, with boto3 and zstandard (the farm venv from the C(mini_python) role).
  - O(state=present) streams O(src) as a PAX tar through zstd straight into a multipart upload to
    C(s3://<bucket>/<key>) - no temporary archive on the Mini's disk, memory bounded by three parts (two going up
    while the next is compressed, 3 x O(part_size)), whatever the size of O(src).
    Every part except the last has exactly O(part_size) bytes (an R2 rule). After the upload the object gets
    its size, sha256 and file count as user metadata (server-side CopyObject, archives up to 5 GiB) and a JSON
    manifest C(<key>.manifest.json) is written beside it. Then it is verified - a HEAD of the object (size, ETag
    recomputed from the part MD5s, sha256 metadata) and a read-back of the manifest - before the task succeeds.
    The manifest is the commit marker; an archive without one is never restored and is pruned later.
  - O(state=present) reads O(src) as root without ever following a link the tenant may plant or swap while it runs
    - directories are walked through file descriptors, every file is opened C(O_NOFOLLOW|O_NONBLOCK) and must be the
    entry that was listed (same device, inode and type). Left out and reported in RV(skipped) (never an error) -
    entries that changed between listing and reading, FIFOs and devices (sockets silently), names with control characters,
    symlinks whose target is empty or has control characters (the restore refuses them, so the backup stays restorable), and files
    that the owner of O(src) neither owns nor could read as other (a hard link to a file the tenant cannot read).
  - O(state=restored) reads the manifest, checks the free space beside O(dest) (content bytes plus a block per
    entry), streams the object through sha256 and zstd into a new root-owned 0700 staging directory beside O(dest)
    and extracts it member by member relative to directory file descriptors, never through a link and never over
    an existing entry. The whole restore is refused (nothing replaced) for an archive with - absolute names, C(..)
    components, control characters in a name or link target; empty or overlong symlink targets;
    hard links to anything but an earlier regular file of the archive; a name used twice (including a file or
    directory over an earlier link) or a member under a symlink or file; sparse members, devices, FIFOs and other
    special members; more entries or content bytes than its manifest records (archive bombs). setuid/setgid bits
    never survive. Each entry gets O(owner)/O(group) as it is made, without following links, while only root can
    reach the staging directory; then size and sha256 are compared with the manifest, the staging directory gets the
    archive's top mode and its owner last, and only then it is swapped into place. A failed, refused or corrupt restore leaves O(dest) untouched.
  - O(state=pruned) keeps, among complete archives under O(prefix), the newest of each of the O(keep_daily) most
    recent days, O(keep_weekly) most recent ISO weeks and O(keep_monthly) most recent months that have a backup
    (plus always the newest), and deletes the rest one key at a time (DeleteObjects always sends a checksum header R2
    may refuse). Incomplete archives older than the newest complete one are deleted too.
  - O(state=absent) deletes one archive (O(key)) and its manifest.
  - The S3 client uses path-style addressing, standard retries, and C(request_checksum_calculation) and
    C(response_checksum_validation) set to C(when_required), so no C(aws-chunked) checksum trailers are sent
    (R2 rejects them). No object tagging is used (R2 has none).
  - Runs no commands. API reference U(https://developers.cloudflare.com/r2/api/s3/api/),
    U(https://boto3.amazonaws.com/v1/documentation/api/latest/reference/services/s3.html).
author:
  - Mirascope platform team (@mirascope)
requirements:
  - boto3 >= 1.36 and zstandard on the host running the module (the farm venv).
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm.r2_connection
attributes:
  check_mode:
    support: full
    details: >-
      present and restored report what they would do (restored also reads the manifest and checks the free space);
      pruned lists what would be deleted; nothing is written.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: present makes a new timestamped archive on every run (a backup is an event); pruned and absent are idempotent.
options:
  state:
    description: V(present) archives, V(restored) restores, V(pruned) applies retention, V(absent) deletes one archive.
    type: str
    choices: [present, restored, pruned, absent]
    default: present
  bucket:
    description: The bucket, for a claw C(claw-backup-<claw_id>). Created when missing (O(create_bucket)).
    type: str
    required: true
  key:
    description:
      - The archive's key. O(state=present) defaults to C(<prefix><UTC YYYYmmddTHHMMSSZ>.tar.zst).
      - O(state=restored) defaults to the newest complete archive under O(prefix) (or under C(backups/) and
        C(archives/) when O(prefix) is not set). Required with O(state=absent).
    type: str
  prefix:
    description:
      - Key prefix of the archives, V(backups/) for nightly backups, V(archives/) for deprovision archives.
      - Default V(backups/) for O(state=present) and O(state=pruned); O(state=restored) looks under both.
    type: str
  src:
    description: The directory to archive (O(state=present)), for example the claw's home.
    type: path
  dest:
    description: The directory to restore into (O(state=restored)); it is replaced as a whole.
    type: path
  owner:
    description: User (name or uid) that owns every restored file.
    type: str
  group:
    description: Group (name or gid) of every restored file.
    type: str
  keep_previous:
    description: Keep the replaced directory as C(<dest>.pre-restore-<time>) instead of deleting it after the swap.
    type: bool
    default: false
  excludes:
    description:
      - Paths left out of the archive. A pattern without C(/) matches any path component, one with C(/) the end of
        a path; shell wildcards work.
      - By default nothing is left out. The claw role passes the farm's list, its C(claw_backup_excludes) (Chromium
        caches, C(.cache), C(node_modules), sockets), the one place that list is written.
    type: list
    elements: str
    default: []
  part_size:
    description:
      - Multipart part size in MiB (5-5000). Archives can reach 10,000 parts, so 16 MiB allows about 160 GiB
        (compressed); raise it for a larger home.
      - Peak memory is three part buffers (reused) plus zstd's and boto3's (about 130 MiB for the module at 16 MiB).
    type: int
    default: 16
  compression_level:
    description: zstd level (1-22). 3 is zstd's default, fast with a good ratio.
    type: int
    default: 3
  kind:
    description: Recorded in metadata and manifest (V(backup), V(archive)).
    type: str
    default: backup
  claw_id:
    description: The claw's id, recorded in metadata and manifest.
    type: str
  keep_daily:
    description: Days to keep (O(state=pruned)).
    type: int
    default: 7
  keep_weekly:
    description: ISO weeks to keep (O(state=pruned)).
    type: int
    default: 4
  keep_monthly:
    description: Months to keep (O(state=pruned)).
    type: int
    default: 3
  max_age_days:
    description:
      - With O(state=pruned), prune by age instead - delete every archive under O(prefix) whose key time is more than
        this many days old (complete or not), and keep the rest. For deprovision archives (V(archives/)) with
        C(claw_archive_retention_days); the caller makes sure the claw does not exist again.
    type: int
  create_bucket:
    description: Create O(bucket) when it does not exist (O(state=present)).
    type: bool
    default: true
  encryption_keys:
    description:
      - "The claw's archive keys, a dict of key id to base64 text of 32 bytes, from its entry in the control node's key
        store (module M(mirascope.clawfarm.r2_archive_key)); never logged. Only ever one claw's keys."
      - O(state=present) seals the archive with the key named by O(encryption_key_id) (STREAM over
        ChaCha20-Poly1305, a fresh HKDF-derived key per archive; see C(docs/archive-encryption.md)); the manifest
        records the algorithm, the key id and a check value of the key, never the key.
      - O(state=restored) opens an encrypted archive with the key its manifest names; a missing or wrong key is
        refused before anything is downloaded or replaced. Unencrypted archives restore without a key.
      - Without it O(state=present) writes an unencrypted archive (with a warning).
    type: dict
  encryption_key_id:
    description: Which of O(encryption_keys) seals new archives (the claw's current key); required with O(encryption_keys) for O(state=present).
    type: str
notes:
  - Consistency is the caller's job - stop the gateway first (the C(claw) role's backup does, and reports the downtime).
seealso:
  - module: mirascope.clawfarm.r2_archive_info
  - name: R2 S3 API compatibility
    description: What R2 supports of the S3 API.
    link: https://developers.cloudflare.com/r2/api/s3/api/
"""

EXAMPLES = r"""
- name: Back up a claw's home
  mirascope.clawfarm.r2_archive:
    bucket: claw-backup-1a2b3c4d-0000-4000-8000-000000000001
    src: /Users/claw-1a2b3c4d
    claw_id: 1a2b3c4d-0000-4000-8000-000000000001
    endpoint_url: https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com
    access_key_id: "{{ r2_access_key_id }}"
    secret_access_key: "{{ r2_secret_access_key }}"
  vars:
    ansible_python_interpreter: /opt/mirascope/python/bin/python3
  register: backup

- name: Restore the newest backup
  mirascope.clawfarm.r2_archive:
    state: restored
    bucket: claw-backup-1a2b3c4d-0000-4000-8000-000000000001
    dest: /Users/claw-1a2b3c4d
    owner: claw-1a2b3c4d
    group: staff
    endpoint_url: https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com
    access_key_id: "{{ r2_access_key_id }}"
    secret_access_key: "{{ r2_secret_access_key }}"

- name: Keep 7 daily, 4 weekly, 3 monthly backups
  mirascope.clawfarm.r2_archive:
    state: pruned
    bucket: claw-backup-1a2b3c4d-0000-4000-8000-000000000001
    endpoint_url: https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com
    access_key_id: "{{ r2_access_key_id }}"
    secret_access_key: "{{ r2_secret_access_key }}"
"""

RETURN = r"""
key:
  description: The archive's key (present, restored, absent).
  returned: when state is present, restored or absent
  type: str
  sample: backups/20261122T020000Z.tar.zst
size:
  description: Size of the compressed archive, in bytes.
  returned: when state is present or restored
  type: int
sha256:
  description: SHA-256 (hex) of the archive object.
  returned: when state is present or restored
  type: str
encryption:
  description: The manifest's record of the encryption (C(algorithm), C(key_id), C(key_check)); null when unencrypted.
  returned: when state is present
  type: dict
  sample: {algorithm: clawfarm-stream-chacha20poly1305-hkdf-sha256/1, key_id: k20261130T120000Z, key_check: 3f2a9c0d1e4b5a6c}
files:
  description: Regular files in the archive.
  returned: when state is present or restored
  type: int
content_bytes:
  description: Bytes of file content before compression.
  returned: when state is present
  type: int
entries:
  description: Tar members in the archive (the restore refuses an archive with more).
  returned: when state is present or restored
  type: int
skipped:
  description:
    - What the backup left out, by reason - C(changed) (swapped or removed between listing and reading, or shrank while
      read and padded with zeros), C(special) (FIFO, device), C(unsafe_name) (control characters),
      C(unsafe_link) (empty or control-character target), C(foreign) (neither owned by the owner of O(src) nor world-readable).
  returned: when state is present
  type: dict
  sample: {changed: 0, special: 1, unsafe_name: 0, unsafe_link: 2, foreign: 0}
skipped_paths:
  description: The first 20 paths left out, each with its reason.
  returned: when state is present
  type: list
  elements: str
  sample: ["venv/bin/python3 (unsafe_link)"]
parts:
  description: Multipart parts uploaded (1 for a single PUT).
  returned: when state is present
  type: int
duration:
  description: Seconds the upload (or restore) took.
  returned: when state is present or restored
  type: float
throughput:
  description: Compressed MiB per second of the upload.
  returned: when state is present
  type: float
verified:
  description: The object and manifest were read back and match what was streamed.
  returned: when state is present
  type: bool
bucket_created:
  description: The bucket did not exist and was created.
  returned: when state is present
  type: bool
dest:
  description: The restored directory.
  returned: when state is restored
  type: str
previous:
  description:
    - Where the replaced directory was kept (C(<dest>.pre-restore-<time>)) with O(keep_previous), or when this Python
      cannot delete a tree without following its links, or when deleting it failed (a warning says why); null when
      it was deleted or there was none.
  returned: when state is restored
  type: str
kept:
  description: Archive keys kept by the retention policy.
  returned: when state is pruned
  type: list
  elements: str
deleted:
  description: Archive keys deleted (in check mode, that would be deleted).
  returned: when state is pruned or absent
  type: list
  elements: str
"""

import grp
import pwd
from datetime import datetime, timedelta, timezone

UTC = timezone.utc

from ansible.module_utils.basic import AnsibleModule

from ..module_utils import _r2 as r2


def resolve_ids(owner, group):
    """Names or numbers to (uid, gid); None when not given. Raises ArchiveError for an unknown name."""
    uid = gid = None
    try:
        if owner not in (None, ""):
            uid = int(owner) if str(owner).isdigit() else pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise r2.ArchiveError(f"unknown owner {owner!r} (no such user)") from None
    try:
        if group not in (None, ""):
            gid = int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise r2.ArchiveError(f"unknown group {group!r} (no such group)") from None
    return uid, gid


def validate(p: dict) -> None:
    """Checks made before any request; raises ArchiveError."""
    if p["prefix"] is not None and (not p["prefix"] or p["prefix"].startswith("/") or ".." in p["prefix"].split("/")):
        raise r2.ArchiveError(f"prefix {p['prefix']!r} must be a relative key prefix such as backups/")
    if p["key"] is not None and (p["key"].startswith("/") or r2.key_time(p["key"]) is None):
        raise r2.ArchiveError(f"key {p['key']!r} is not an archive key (<prefix>YYYYmmddTHHMMSSZ.tar.zst)")
    if not 5 <= p["part_size"] <= 5000:
        raise r2.ArchiveError(f"part_size must be between 5 and 5000 MiB, got {p['part_size']}")
    if not 1 <= p["compression_level"] <= 22:
        raise r2.ArchiveError(f"compression_level must be between 1 and 22, got {p['compression_level']}")
    for name in ("keep_daily", "keep_weekly", "keep_monthly"):
        if p[name] < 0:
            raise r2.ArchiveError(f"{name} must not be negative")
    if p.get("max_age_days") is not None and p["max_age_days"] < 1:
        raise r2.ArchiveError(f"max_age_days must be at least 1, got {p['max_age_days']}")
    if p["state"] == "restored":
        try:
            r2.check_removable(p["dest"])
        except ValueError:
            raise r2.ArchiveError(f"dest {p['dest']!r} must be the directory to replace, such as a claw's home") from None
    if p.get("encryption_keys") is not None:
        if p["state"] == "present" and p["encryption_key_id"] not in p["encryption_keys"]:
            raise r2.ArchiveError(f"encryption_key_id {p['encryption_key_id']!r} must name one of encryption_keys "
                                  f"({', '.join(sorted(p['encryption_keys'])) or 'none given'})")
        for key_id in p["encryption_keys"]:
            if not r2.KEY_ID.match(str(key_id)):
                raise r2.ArchiveError(f"encryption key id {key_id!r} must be 1-64 letters, digits, '.', '_' or '-'")


def keys_of(p: dict) -> dict | None:
    """``{key_id: 32-byte key}`` from O(encryption_keys), or None."""
    return r2.decode_keys(p["encryption_keys"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "restored", "pruned", "absent"], default="present"),
            bucket=dict(type="str", required=True),
            key=dict(type="str", no_log=False),
            prefix=dict(type="str"),
            src=dict(type="path"),
            dest=dict(type="path"),
            owner=dict(type="str"),
            group=dict(type="str"),
            keep_previous=dict(type="bool", default=False),
            excludes=dict(type="list", elements="str", default=[]),
            part_size=dict(type="int", default=16),
            compression_level=dict(type="int", default=3),
            kind=dict(type="str", default="backup"),
            claw_id=dict(type="str"),
            keep_daily=dict(type="int", default=7),
            keep_weekly=dict(type="int", default=4),
            keep_monthly=dict(type="int", default=3),
            max_age_days=dict(type="int"),
            **r2.connection_argument_spec(),
            create_bucket=dict(type="bool", default=True),
            encryption_keys=dict(type="dict", no_log=True),
            encryption_key_id=dict(type="str", no_log=False),
        ),
        required_if=[("state", "present", ("src",)), ("state", "restored", ("dest",)), ("state", "absent", ("key",))],
        required_by={"encryption_key_id": ("encryption_keys",)},
        supports_check_mode=True,
    )
    p = module.params
    try:
        validate(p)
        client = r2.make_s3_client(p["endpoint_url"], p["access_key_id"], p["secret_access_key"], p["region"], p["ca_bundle"])
        result = run(module, p, client)
    except r2.ArchiveError as exc:
        module.fail_json(msg=f"r2_archive ({p['state']}, s3://{p['bucket']}/{p['key'] or p['prefix'] or ''}): {exc}")
    module.exit_json(**result)


def run(module, p, client) -> dict:
    state = p["state"]
    prefix = p["prefix"] or "backups/"
    if state == "present":
        key = p["key"] or r2.archive_key(prefix, datetime.now(UTC))
        if module.check_mode:
            return {"changed": True, "key": key, "msg": f"would archive {p['src']} to s3://{p['bucket']}/{key}"}
        keys = keys_of(p)
        encryption = (p["encryption_key_id"], keys[p["encryption_key_id"]]) if keys else None
        if not encryption:
            module.warn(f"archive s3://{p['bucket']}/{key} is NOT encrypted: no encryption_keys were given "
                        "(set r2_archive_farm_key and r2_archive_key_store, see docs/archive-encryption.md)")
        created = r2.ensure_bucket(client, p["bucket"], p["region"], p["create_bucket"])
        result = r2.archive_and_verify(client, p["bucket"], key, p["src"], p["claw_id"], p["kind"], p["excludes"],
                                       p["part_size"] * r2.MIB, p["compression_level"], encryption=encryption)
        return {"changed": True, "bucket_created": created, **{k: result[k] for k in (
            "key", "size", "sha256", "files", "entries", "content_bytes", "skipped", "skipped_paths", "parts", "duration",
            "throughput", "verified", "etag", "encryption")}}
    if state == "restored":
        key = p["key"]
        if not key:
            prefixes = (p["prefix"],) if p["prefix"] else ("backups/", "archives/")
            complete = [a for a in r2.list_archives(client, p["bucket"], prefixes) if a["complete"]]
            if not complete:
                raise r2.ArchiveError(f"no complete archive in s3://{p['bucket']} under {', '.join(prefixes)}: nothing to restore")
            key = complete[0]["key"]
        uid, gid = resolve_ids(p["owner"], p["group"])
        keys = keys_of(p)
        if module.check_mode:
            r2.check_restore(client, p["bucket"], key, p["dest"], keys)
            return {"changed": True, "key": key, "dest": p["dest"], "msg": f"would restore s3://{p['bucket']}/{key} into {p['dest']}"}
        result = r2.restore_archive(client, p["bucket"], key, p["dest"], uid, gid, p["keep_previous"], keys=keys)
        cleanup_error = result.pop("cleanup_error", None)
        if cleanup_error:
            module.warn(cleanup_error)
        return {"changed": True, **result}
    if state == "pruned":
        keys = r2.list_keys(client, p["bucket"], prefix) if _bucket_exists(client, p["bucket"]) else []
        complete = {k[: -len(r2.MANIFEST_SUFFIX)] for k in keys if k.endswith(r2.MANIFEST_SUFFIX)}
        if p["max_age_days"] is not None:
            kept, deleted = r2.plan_age_prune(keys, datetime.now(UTC) - timedelta(days=p["max_age_days"]))
        else:
            kept, deleted = r2.plan_prune([k for k in keys if not k.endswith(r2.MANIFEST_SUFFIX)], p["keep_daily"],
                                          p["keep_weekly"], p["keep_monthly"], complete)
        if not module.check_mode:
            for key in deleted:
                r2.delete_archive(client, p["bucket"], key)
        return {"changed": bool(deleted), "kept": kept, "deleted": deleted}
    existed = False
    if _bucket_exists(client, p["bucket"]):
        if module.check_mode:
            existed = p["key"] in r2.list_keys(client, p["bucket"], p["key"])
        else:
            existed = r2.delete_archive(client, p["bucket"], p["key"])
    return {"changed": existed, "key": p["key"], "deleted": [p["key"]] if existed else []}


def _bucket_exists(client, bucket) -> bool:
    try:
        r2.ensure_bucket(client, bucket, "", create=False)
        return True
    except r2.BucketMissing:
        return False


if __name__ == "__main__":
    main()
