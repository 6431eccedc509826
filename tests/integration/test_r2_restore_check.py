"""r2_archive_info's restore check (what the restore role runs before it stops the gateway) against moto: a read, never
a write module in check mode; it fails naming the check, and changes nothing in R2 or on disk."""

from __future__ import annotations

import base64
import os
import uuid


def key_text() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_restore_check_reads_and_names_what_fails(s3_server, run_module, tmp_path):
    home = tmp_path / "claw-home"
    (home / ".openclaw").mkdir(parents=True)
    (home / ".openclaw" / "notes.md").write_text("kept")
    name = f"claw-backup-{uuid.uuid4()}"
    key = key_text()
    archived = run_module("r2_archive", {"bucket": name, "src": str(home), "claw_id": "c", "encryption_keys": {"k1": key},
                                         "encryption_key_id": "k1", **s3_server.module_args()})
    assert archived["changed"] and archived["verified"], archived
    objects = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=name)["Contents"])

    args = {"bucket": name, "key": archived["key"], "dest": str(home), **s3_server.module_args()}
    ok = run_module("r2_archive_info", {**args, "encryption_keys": {"k1": key}})
    assert ok["changed"] is False and "archives" not in ok, ok
    assert ok["restore_check"] == {"key": archived["key"], "size": archived["size"], "files": archived["files"], "key_id": "k1"}

    no_key = run_module("r2_archive_info", args)
    assert no_key["failed"] and "k1" in no_key["msg"], no_key
    missing = run_module("r2_archive_info", {**args, "key": "backups/20000101T000000Z.tar.zst"})
    assert missing["failed"] and "no readable manifest" in missing["msg"], missing
    system = run_module("r2_archive_info", {**args, "dest": "/Users"})
    assert system["failed"] and "dest" in system["msg"], system
    alone = run_module("r2_archive_info", {"bucket": name, "key": archived["key"], **s3_server.module_args()})
    assert alone["failed"] and "dest" in alone["msg"], alone

    assert sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=name)["Contents"]) == objects
    assert (home / ".openclaw" / "notes.md").read_text() == "kept"
