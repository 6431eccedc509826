#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: r2_archive_info
short_description: List a claw's archives in R2 with date, size, sha256 and whether each is complete
version_added: 0.2.0
description:
  - Lists the archives made by M(mirascope.clawfarm.r2_archive) in a bucket (ListObjectsV2, paginated) and reads each
    archive's manifest for its size, sha256 and file count. An archive without a manifest (an upload that died) is
    listed with C(complete=false) and is never restored.
  - A missing bucket gives an empty list. Read only; runs no commands.
  - With O(key) and O(dest), instead checks what a restore of that archive into O(dest) would check before it
    changes anything (RV(restore_check)) - the manifest is readable and valid, an encrypted archive's key is among
    O(encryption_keys) and is the right one, the directory holding O(dest) exists and has room - and fails saying
    which check failed.
  - Uses the same client settings as M(mirascope.clawfarm.r2_archive) (path-style, C(when_required) checksums).
author:
  - Mirascope platform team (@mirascope)
requirements:
  - boto3 >= 1.36 on the host running the module.
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm.r2_connection
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  bucket:
    description: The bucket, for a claw C(claw-backup-<claw_id>). One of O(bucket) and O(bucket_prefix) is required.
    type: str
  bucket_prefix:
    description:
      - Instead of one bucket's archives, list the buckets whose names start with this (ListBuckets, an
        account-level key - the control node's own, never a Mini's), in RV(buckets). V(claw-backup-) for every claw.
    type: str
  prefixes:
    description: Key prefixes to list.
    type: list
    elements: str
    default: [backups/, archives/]
  key:
    description: The archive to check a restore of (with O(dest)).
    type: str
  dest:
    description: The directory a restore of O(key) would replace, such as a claw's home.
    type: path
  encryption_keys:
    description: The claw's archive keys (key id to base64 key, as M(mirascope.clawfarm.r2_archive) takes them), for an encrypted O(key).
    type: dict
seealso:
  - module: mirascope.clawfarm.r2_archive
"""

EXAMPLES = r"""
- name: List a claw's archives
  mirascope.clawfarm.r2_archive_info:
    bucket: claw-backup-1a2b3c4d-0000-4000-8000-000000000001
    endpoint_url: https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com
    access_key_id: "{{ r2_access_key_id }}"
    secret_access_key: "{{ r2_secret_access_key }}"
  register: claw_archives
"""

RETURN = r"""
archives:
  description: Archives, newest first.
  returned: when O(bucket) is given without O(key)
  type: list
  elements: dict
  contains:
    key:
      description: Object key.
      type: str
      sample: backups/20261122T020000Z.tar.zst
    created:
      description: UTC time from the key (ISO 8601).
      type: str
    kind:
      description: First key component, V(backups) or V(archives).
      type: str
    size:
      description: Compressed size in bytes (from the manifest; null when incomplete).
      type: int
    sha256:
      description: SHA-256 of the object (from the manifest).
      type: str
    files:
      description: Regular files in the archive.
      type: int
    skipped:
      description:
        - What the backup left out, by reason (see RV(mirascope.clawfarm.r2_archive#module:skipped)); null for
          archives made before this was recorded, or incomplete ones.
      type: dict
      sample: {changed: 0, special: 0, unsafe_name: 0, unsafe_link: 1, foreign: 0}
    key_id:
      description: The id of the claw key an encrypted archive needs (its manifest's); null when unencrypted.
      type: str
    complete:
      description: The archive has a valid manifest.
      type: bool
latest:
  description: The newest complete archive (null when there is none).
  returned: when O(bucket) is given without O(key)
  type: dict
restore_check:
  description: The archive O(key) can be restored into O(dest) - its key, size, file count and encryption key id.
  returned: when O(key) is given
  type: dict
  sample: {key: backups/20261122T020000Z.tar.zst, size: 73400320, files: 1204, key_id: null}
buckets:
  description: Bucket names starting with O(bucket_prefix), sorted.
  returned: when O(bucket_prefix) is given
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ..module_utils import _r2 as r2


def restore_check(client, p: dict) -> dict:
    """What a restore of O(key) into O(dest) checks before it changes anything (_r2.check_restore); raises ArchiveError."""
    if r2.key_time(p["key"]) is None:
        raise r2.ArchiveError(f"key {p['key']!r} is not an archive key (<prefix>YYYYmmddTHHMMSSZ.tar.zst)")
    try:
        r2.check_removable(p["dest"])
    except ValueError:
        raise r2.ArchiveError(f"dest {p['dest']!r} must be the directory a restore replaces, such as a claw's home") from None
    manifest, _limits = r2.check_restore(client, p["bucket"], p["key"], p["dest"], r2.decode_keys(p["encryption_keys"]))
    return {"key": p["key"], "size": manifest.get("size"), "files": manifest.get("files"),
            "key_id": (manifest.get("encryption") or {}).get("key_id")}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bucket=dict(type="str"),
            bucket_prefix=dict(type="str"),
            prefixes=dict(type="list", elements="str", default=["backups/", "archives/"]),
            key=dict(type="str", no_log=False),
            dest=dict(type="path"),
            encryption_keys=dict(type="dict", no_log=True),
            **r2.connection_argument_spec(),
        ),
        supports_check_mode=True,
        required_one_of=[("bucket", "bucket_prefix")],
        mutually_exclusive=[("bucket", "bucket_prefix"), ("bucket_prefix", "key")],
        required_together=[("key", "dest")],
        required_by={"encryption_keys": ("key",)},
    )
    p = module.params
    try:
        client = r2.make_s3_client(p["endpoint_url"], p["access_key_id"], p["secret_access_key"], p["region"], p["ca_bundle"])
        if p["bucket_prefix"] is not None:
            module.exit_json(changed=False, buckets=r2.list_buckets(client, p["bucket_prefix"]))
        if p["key"] is not None:
            module.exit_json(changed=False, restore_check=restore_check(client, p))
        archives = r2.list_archives(client, p["bucket"], tuple(p["prefixes"]))
    except r2.ArchiveError as exc:
        module.fail_json(msg=f"r2_archive_info (s3://{p['bucket'] or p['bucket_prefix'] + '*'}): {exc}")
    latest = next((a for a in archives if a["complete"]), None)
    module.exit_json(changed=False, archives=archives, latest=latest)


if __name__ == "__main__":
    main()
