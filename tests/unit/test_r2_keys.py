"""Issue 17: per-claw archive keys on the control node, sealed under the farm key (module_utils._r2_keys)."""
from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime

import pytest

pytest.importorskip("cryptography")
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2  # noqa: E402
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2_keys as keys  # noqa: E402

CLAW = "1a2b3c4d-0000-4000-8000-000000000001"
OTHER = "1a2b3c4d-0000-4000-8000-000000000002"
T1 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
T2 = datetime(2026, 12, 30, 12, 0, 0, tzinfo=UTC)


def farm() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_first_key_is_made_once_sealed_private_and_never_in_the_file(tmp_path):
    store, farm_key = str(tmp_path / "keys"), farm()
    first = keys.ensure(store, CLAW, farm_key, now=T1)
    assert first["changed"] and first["current"] == "k20261130T120000Z" and list(first["keys"]) == [first["current"]]
    again = keys.ensure(store, CLAW, farm_key, now=T2)
    assert not again["changed"] and again["keys"] == first["keys"]
    path = tmp_path / "keys" / f"{CLAW}.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    text = path.read_text()
    assert first["keys"][first["current"]] not in text and farm_key not in text
    assert len(r2.decode_key(first["keys"][first["current"]])) == 32


def test_rotation_adds_a_current_key_and_keeps_the_old_one(tmp_path):
    store, farm_key = str(tmp_path), farm()
    first = keys.ensure(store, CLAW, farm_key, now=T1)
    rotated = keys.ensure(store, CLAW, farm_key, rotate=True, now=T2)
    assert rotated["changed"] and rotated["current"] == "k20261230T120000Z"
    assert rotated["key_ids"] == ["k20261130T120000Z", "k20261230T120000Z"]
    assert rotated["keys"]["k20261130T120000Z"] == first["keys"]["k20261130T120000Z"]
    same_second = keys.ensure(store, CLAW, farm_key, rotate=True, now=T2)
    assert same_second["current"] == "k20261230T120000Z-2"


def test_check_mode_writes_nothing_and_query_needs_a_key_file(tmp_path):
    store, farm_key = str(tmp_path / "keys"), farm()
    preview = keys.ensure(store, CLAW, farm_key, check_mode=True)
    assert preview["changed"] and preview["keys"] == {} and not os.path.exists(store)
    with pytest.raises(r2.ArchiveError, match="has no archive keys"):
        keys.ensure(store, CLAW, farm_key, create=False)


def test_a_wrong_farm_key_or_a_key_file_moved_to_another_claw_does_not_open(tmp_path):
    store, farm_key = str(tmp_path), farm()
    keys.ensure(store, CLAW, farm_key, now=T1)
    with pytest.raises(r2.ArchiveError, match="does not open with r2_archive_farm_key"):
        keys.ensure(store, CLAW, farm(), create=False)
    doc = json.loads((tmp_path / f"{CLAW}.json").read_text())
    doc["claw_id"] = OTHER
    (tmp_path / f"{OTHER}.json").write_text(json.dumps(doc))
    os.chmod(tmp_path / f"{OTHER}.json", 0o600)
    with pytest.raises(r2.ArchiveError, match="does not open"):
        keys.ensure(store, OTHER, farm_key, create=False)


@pytest.mark.parametrize("claw_id", ["../etc/passwd", "x", "", CLAW + "/.."])
def test_claw_ids_are_uuids_never_paths(tmp_path, claw_id):
    with pytest.raises(r2.ArchiveError, match="claw_id"):
        keys.ensure(str(tmp_path), claw_id, farm())


def test_bad_farm_keys_and_loose_files_are_refused_without_echoing_them(tmp_path):
    with pytest.raises(r2.ArchiveError, match="must be 32 bytes") as info:
        keys.ensure(str(tmp_path), CLAW, "c2hvcnQ=")
    assert "c2hvcnQ" not in str(info.value)
    keys.ensure(str(tmp_path), CLAW, farm_key := farm())
    os.chmod(tmp_path / f"{CLAW}.json", 0o644)
    with pytest.raises(r2.ArchiveError, match="readable by others"):
        keys.ensure(str(tmp_path), CLAW, farm_key)
    os.unlink(tmp_path / f"{CLAW}.json")
    os.symlink("/etc/passwd", tmp_path / f"{CLAW}.json")
    with pytest.raises(r2.ArchiveError, match="cannot read the key file"):
        keys.ensure(str(tmp_path), CLAW, farm_key)


def test_stream_round_trip_and_every_tampering_is_refused():
    import io

    key = os.urandom(32)
    for size in (0, 1, r2.SEGMENT - 1, r2.SEGMENT, r2.SEGMENT + 1, 3 * r2.SEGMENT):
        data = os.urandom(size)
        out = io.BytesIO()
        writer = r2.EncryptingWriter(out, "k1", key)
        for start in range(0, size, 10000):
            writer.write(data[start:start + 10000])
        writer.finish()
        sealed = out.getvalue()
        assert r2.DecryptingReader(io.BytesIO(sealed), {"k1": key}).read() == data
        header = len(r2.ENCRYPTION_MAGIC) + 1 + 2 + 32
        bad = [sealed[:-1], sealed + b"\0", sealed[: header + r2.SEGMENT + r2.TAG] if size > r2.SEGMENT else sealed[:-r2.TAG]]
        for tampered in bad:
            with pytest.raises(r2.ArchiveError, match="does not authenticate"):
                r2.DecryptingReader(io.BytesIO(tampered), {"k1": key}).read()
        with pytest.raises(r2.ArchiveError, match="does not authenticate"):
            r2.DecryptingReader(io.BytesIO(sealed), {"k1": os.urandom(32)}).read()
        with pytest.raises(r2.ArchiveError, match="was not given"):
            r2.DecryptingReader(io.BytesIO(sealed), {"k2": key})
