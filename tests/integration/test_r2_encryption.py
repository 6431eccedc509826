"""Issue 17: client-side encryption of archives (r2_archive against moto S3): byte-identical round trip, no secret in
the stored bytes, a missing or wrong key refused before anything is replaced, old unencrypted archives still restore,
rotation keeps old archives restorable while their key is kept."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2

pytest.importorskip("cryptography")

MIB = 1024 * 1024
ENV_VALUES = ("sk-ant-api03-SECRETVALUE-0123456789", "gw-token-9f8e7d6c5b4a39281706")


def key_text() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def make_home(root) -> None:
    (root / ".openclaw" / "workspace").mkdir(parents=True)
    os.chmod(root, 0o700)
    (root / ".openclaw" / ".env").write_text(f"ANTHROPIC_API_KEY={ENV_VALUES[0]}\nCLAW_GATEWAY_TOKEN={ENV_VALUES[1]}\n")
    os.chmod(root / ".openclaw" / ".env", 0o600)
    (root / ".openclaw" / "workspace" / "notes.md").write_text("# notes\n" * 5000)
    (root / "data.bin").write_bytes(os.urandom(6 * MIB + 777))  # two 5 MiB parts, and many 64 KiB segments
    os.symlink(".openclaw/workspace/notes.md", root / "notes-link")


def tree(root) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
            else:
                with open(path, "rb") as handle:
                    out[rel] = ("file", oct(st.st_mode & 0o7777), hashlib.sha256(handle.read()).hexdigest())
    return out


def live(tmp_path):
    dest = tmp_path / "live"
    dest.mkdir()
    (dest / "current.txt").write_text("the claw's current data")
    return dest


def test_encrypted_round_trip_is_byte_identical_and_the_object_holds_no_env_value(s3_server, run_module, tmp_path):
    home = tmp_path / "home"
    make_home(home)
    name, key = f"claw-backup-{uuid.uuid4()}", key_text()
    args = {"bucket": name, **s3_server.module_args()}
    archived = run_module("r2_archive", {**args, "src": str(home), "claw_id": "c", "part_size": 5,
                                         "encryption_keys": {"k1": key}, "encryption_key_id": "k1"})
    assert archived["changed"] and archived["verified"] and archived["parts"] == 2, archived
    assert archived["encryption"] == {"algorithm": r2.ENCRYPTION_ALGORITHM, "key_id": "k1",
                                      "key_check": r2.key_check(base64.b64decode(key))}
    assert key not in json.dumps(archived) and not archived.get("warnings")

    client = s3_server.client()
    raw = client.get_object(Bucket=name, Key=archived["key"])["Body"].read()
    manifest = client.get_object(Bucket=name, Key=archived["key"] + ".manifest.json")["Body"].read()
    assert raw.startswith(r2.ENCRYPTION_MAGIC) and hashlib.sha256(raw).hexdigest() == archived["sha256"]
    for value in ENV_VALUES + (key,):
        for blob in (raw, manifest):
            assert value.encode() not in blob
    assert b"ANTHROPIC_API_KEY" not in raw and b"notes.md" not in raw  # names are sealed too
    assert json.loads(manifest)["encryption"]["key_id"] == "k1"
    head = client.head_object(Bucket=name, Key=archived["key"])
    assert head["Metadata"]["clawfarm-key-id"] == "k1"

    dest = tmp_path / "restored"
    restored = run_module("r2_archive", {**args, "state": "restored", "dest": str(dest), "owner": "0", "group": "0",
                                         "encryption_keys": {"k0": key_text(), "k1": key}})
    assert restored["changed"] and restored["key"] == archived["key"], restored
    assert tree(dest) == tree(home) and oct(os.stat(dest).st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("keys, match", [
    (None, "encrypted with key 'k1' of this claw, which was not given"),
    ({"k2": "other"}, "encrypted with key 'k1' of this claw, which was not given"),
    ({"k1": "wrong"}, "is not the key archive"),
])
def test_a_missing_or_wrong_key_is_refused_before_anything_is_replaced(s3_server, run_module, tmp_path, keys, match):
    home = tmp_path / "home"
    make_home(home)
    name = f"claw-backup-{uuid.uuid4()}"
    args = {"bucket": name, **s3_server.module_args()}
    run_module("r2_archive", {**args, "src": str(home), "encryption_keys": {"k1": key_text()}, "encryption_key_id": "k1"})
    dest = live(tmp_path)
    before = tree(dest)
    given = {k: key_text() for k in keys} if keys else None
    for check in (True, False):
        result = run_module("r2_archive", {**args, "state": "restored", "dest": str(dest),
                                           **({"encryption_keys": given} if given else {})}, check=check)
        assert result.get("failed") and match in result["msg"] and "nothing was replaced" in result["msg"], result
        assert tree(dest) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "live"]
        for value in given.values() if given else ():
            assert value not in json.dumps(result)


def test_a_tampered_or_truncated_encrypted_object_is_refused_and_dest_is_untouched(s3_server, run_module, tmp_path):
    home = tmp_path / "home"
    make_home(home)
    name, key = f"claw-backup-{uuid.uuid4()}", key_text()
    args = {"bucket": name, **s3_server.module_args()}
    archived = run_module("r2_archive", {**args, "src": str(home), "encryption_keys": {"k1": key}, "encryption_key_id": "k1"})
    client = s3_server.client()
    raw = client.get_object(Bucket=name, Key=archived["key"])["Body"].read()
    manifest = json.loads(client.get_object(Bucket=name, Key=archived["key"] + ".manifest.json")["Body"].read())
    dest = live(tmp_path)
    before = tree(dest)
    # cut at a segment boundary and make the manifest agree: only the "last segment" flag can tell
    header = len(r2.ENCRYPTION_MAGIC) + 1 + 2 + 32
    cut = raw[: header + 3 * (r2.SEGMENT + r2.TAG)]
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 1
    for body in (cut, bytes(flipped)):
        client.put_object(Bucket=name, Key=archived["key"], Body=body)
        client.put_object(Bucket=name, Key=archived["key"] + ".manifest.json", Body=json.dumps(
            {**manifest, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode())
        result = run_module("r2_archive", {**args, "state": "restored", "dest": str(dest), "encryption_keys": {"k1": key}})
        assert result.get("failed") and "does not authenticate" in result["msg"], result
        assert tree(dest) == before and sorted(p.name for p in tmp_path.iterdir()) == ["home", "live"]


def test_unencrypted_archives_still_restore_and_rotation_keeps_old_ones_restorable(s3_server, run_module, tmp_path):
    home = tmp_path / "home"
    make_home(home)
    name = f"claw-backup-{uuid.uuid4()}"
    args = {"bucket": name, **s3_server.module_args()}
    old = run_module("r2_archive", {**args, "src": str(home), "key": "backups/20261101T020000Z.tar.zst"})
    assert old["encryption"] is None and "NOT encrypted" in json.dumps(old.get("warnings")), old
    k1, k2 = key_text(), key_text()
    first = run_module("r2_archive", {**args, "src": str(home), "key": "backups/20261102T020000Z.tar.zst",
                                      "encryption_keys": {"k1": k1}, "encryption_key_id": "k1"})
    (home / "after-rotation.txt").write_text("new")
    second = run_module("r2_archive", {**args, "src": str(home), "key": "backups/20261103T020000Z.tar.zst",
                                       "encryption_keys": {"k1": k1, "k2": k2}, "encryption_key_id": "k2"})
    assert (first["encryption"]["key_id"], second["encryption"]["key_id"]) == ("k1", "k2")
    listing = run_module("r2_archive_info", {"bucket": name, **s3_server.module_args()})
    assert [a["key_id"] for a in listing["archives"]] == ["k2", "k1", None]
    kept = {"k1": k1, "k2": k2}
    for archived, keys in ((old, None), (old, kept), (first, kept), (second, kept)):
        dest = tmp_path / "restored"
        result = run_module("r2_archive", {**args, "state": "restored", "key": archived["key"], "dest": str(dest),
                                           **({"encryption_keys": keys} if keys else {})})
        assert result["changed"], result
        assert ((dest / "after-rotation.txt").exists()) == (archived is second)
        assert (dest / ".openclaw" / ".env").read_text().startswith("ANTHROPIC_API_KEY=")
    # k1 dropped from the store: archives sealed with it are refused, the newer ones still restore
    dropped = run_module("r2_archive", {**args, "state": "restored", "key": first["key"], "dest": str(dest),
                                        "encryption_keys": {"k2": k2}})
    assert dropped.get("failed") and "'k1'" in dropped["msg"], dropped


def test_bad_key_arguments_fail_before_any_request(run_module, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    base = {"bucket": "claw-backup-x00", "src": str(home), "endpoint_url": "http://127.0.0.1:9", "access_key_id": "unit-access-key-id",
            "secret_access_key": "unit-secret-access-key"}
    result = run_module("r2_archive", {**base, "encryption_keys": {"k1": key_text()}, "encryption_key_id": "k9"})
    assert result.get("failed") and "must name one of encryption_keys" in result["msg"], result
    short = base64.b64encode(b"short").decode()
    result = run_module("r2_archive", {**base, "encryption_keys": {"k1": short}, "encryption_key_id": "k1"})
    assert result.get("failed") and "must be 32 bytes" in result["msg"] and short not in json.dumps(result), result


def test_age_prune_of_deprovision_archives_and_bucket_listing(s3_server, run_module, tmp_path):
    """Issue 17 retention: archives/ older than max_age_days go (complete or not), younger ones and backups/ stay;
    the control node lists the claws' buckets by prefix."""
    from datetime import UTC, datetime, timedelta

    name = f"claw-backup-{uuid.uuid4()}"
    client = s3_server.client()
    r2.ensure_bucket(client, name, "auto")
    now = datetime.now(UTC)
    old = r2.archive_key("archives/", now - timedelta(days=91))
    young = r2.archive_key("archives/", now - timedelta(days=89))
    backup = r2.archive_key("backups/", now - timedelta(days=200))
    for key in (old, young, backup):
        client.put_object(Bucket=name, Key=key, Body=b"x")
        client.put_object(Bucket=name, Key=r2.manifest_key(key), Body=b"{}")
    args = {"bucket": name, "state": "pruned", "prefix": "archives/", "max_age_days": 90, **s3_server.module_args()}
    preview = run_module("r2_archive", args, check=True)
    assert preview["deleted"] == [old] and preview["kept"] == [young]
    assert len(r2.list_keys(client, name, "archives/")) == 4
    done = run_module("r2_archive", args)
    assert done["changed"] and done["deleted"] == [old]
    assert sorted(r2.list_keys(client, name, "")) == sorted([young, r2.manifest_key(young), backup, r2.manifest_key(backup)])
    assert not run_module("r2_archive", args)["changed"]
    listing = run_module("r2_archive_info", {"bucket_prefix": "claw-backup-", **s3_server.module_args()})
    assert name in listing["buckets"] and all(b.startswith("claw-backup-") for b in listing["buckets"])
