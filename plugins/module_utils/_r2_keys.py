# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-claw archive keys on the control node, kept encrypted under the farm key (PRIVATE).

One JSON file per claw, ``<key store>/<claw_id>.json`` (0600, in a 0700 directory)::

    {"format": "clawfarm-archive-keys/1", "claw_id": "...", "current": "k20261130T120000Z",
     "keys": {"k20261130T120000Z": {"created": "2026-11-30T12:00:00Z", "nonce": "<b64>", "wrapped": "<b64>"}}}

Each claw key (32 random bytes) is sealed with AES-256-GCM under the farm key (``r2_archive_farm_key``, 32 bytes
base64, kept in Ansible Vault), the claw id and key id as associated data, so a key file copied to another claw or
an entry renamed does not open.  Rotation adds a key and makes it current; old keys stay until an operator removes
them (archives sealed with a removed key can no longer be restored).  Control-node code only: never sent to a Mini
(the Mini gets one claw's unwrapped keys as a no_log module argument, for the task).
"""

from __future__ import annotations

import base64
import os
from datetime import datetime, timezone

from . import _claw
from ._private_json import read_private_json, write_private_json
from ._r2 import KEY_ID, ArchiveError, decode_key

STORE_FORMAT = "clawfarm-archive-keys/1"
_UTC = timezone.utc


def store_path(store: str, claw_id: str) -> str:
    """``<store>/<claw_id>.json`` for a valid claw id (a UUID: never a path)."""
    try:
        claw_id = _claw.validate_claw_id(claw_id)
    except _claw.ClawInputError as exc:
        raise ArchiveError(str(exc))
    return os.path.join(store, f"{claw_id}.json")


def _aad(claw_id: str, key_id: str) -> bytes:
    return f"{STORE_FORMAT}:{claw_id}:{key_id}".encode()


def _aesgcm(farm_key: bytes):
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise ArchiveError("the cryptography package is needed on the control node (pip install cryptography)")
    return AESGCM(farm_key)


def wrap(farm_key: bytes, claw_id: str, key_id: str, key: bytes) -> dict:
    """Seal one claw key under the farm key: ``{"nonce", "wrapped"}`` (base64)."""
    nonce = os.urandom(12)
    sealed = _aesgcm(farm_key).encrypt(nonce, key, _aad(claw_id, key_id))
    return {"nonce": base64.b64encode(nonce).decode(), "wrapped": base64.b64encode(sealed).decode()}


def unwrap(farm_key: bytes, claw_id: str, key_id: str, entry: dict) -> bytes:
    """Open one sealed claw key.

    Raises:
        ArchiveError: the farm key is not the one the store was written with, or the entry was altered or moved.
    """
    from cryptography.exceptions import InvalidTag

    try:
        return _aesgcm(farm_key).decrypt(base64.b64decode(entry["nonce"]), base64.b64decode(entry["wrapped"]),
                                         _aad(claw_id, key_id))
    except (InvalidTag, KeyError, TypeError, ValueError):
        raise ArchiveError(f"archive key {key_id} of claw {claw_id} does not open with r2_archive_farm_key: the farm "
                           "key is not the one this key store was written with (check the Vault), or the entry was altered")


def load(path: str, claw_id: str) -> dict | None:
    """The key file of a claw, or None when it has none.

    Raises:
        ArchiveError: unreadable, a link, not private, or not a key file of this claw.
    """
    doc = read_private_json(path, "key file", ArchiveError)
    if doc is None:
        return None
    if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT or doc.get("claw_id") != claw_id \
            or not isinstance(doc.get("keys"), dict) or doc.get("current") not in doc["keys"]:
        raise ArchiveError(f"key file {path} is not a {STORE_FORMAT} file of claw {claw_id}")
    return doc


def save(path: str, doc: dict) -> None:
    """Write a key file atomically, 0600 (its directory made 0700 when missing)."""
    write_private_json(path, doc)


def new_key_id(now: datetime, taken) -> str:
    """``k<UTC YYYYmmddTHHMMSSZ>`` (``-2``, ``-3``... when taken)."""
    base = "k" + now.astimezone(_UTC).strftime("%Y%m%dT%H%M%SZ")
    key_id, n = base, 1
    while key_id in taken:
        n += 1
        key_id = f"{base}-{n}"
    return key_id


def ensure(store: str, claw_id: str, farm_key_text: str, rotate: bool = False, create: bool = True,
           check_mode: bool = False, now: datetime | None = None) -> dict:
    """Make sure the claw has a current key (a new one with ``rotate``) and open all of its keys.

    Returns:
        ``{"changed", "path", "current", "key_ids", "keys"}``; ``keys`` maps key id to base64 key text (secret: for a
        no_log module argument only).  In check mode nothing is written; a key that would be made is not returned.
    Raises:
        ArchiveError: bad farm key, unreadable store, a key that does not open; or no key and ``create`` is false.
    """
    farm_key = decode_key(farm_key_text, "farm key (r2_archive_farm_key)")
    path = store_path(store, claw_id)
    claw_id = os.path.basename(path)[: -len(".json")]  # canonical (lowercase)
    doc = load(path, claw_id)
    changed = False
    if doc is None and not create:
        raise ArchiveError(f"claw {claw_id} has no archive keys in {store}; its encrypted archives cannot be opened "
                           "(restore the key file from the operator's backup of the key store)")
    if doc is None or rotate:
        changed = True
        if not check_mode:
            doc = doc or {"format": STORE_FORMAT, "claw_id": claw_id, "keys": {}}
            moment = now or datetime.now(_UTC)
            key_id = new_key_id(moment, doc["keys"])
            entry = wrap(farm_key, claw_id, key_id, os.urandom(32))
            entry["created"] = moment.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            doc["keys"][key_id] = entry
            doc["current"] = key_id
            save(path, doc)
    if doc is None:
        return {"changed": changed, "path": path, "current": None, "key_ids": [], "keys": {}}
    keys = {}
    for key_id, entry in sorted(doc["keys"].items()):
        if not KEY_ID.match(key_id):
            raise ArchiveError(f"key file {path} has an invalid key id {key_id!r}")
        keys[key_id] = base64.b64encode(unwrap(farm_key, claw_id, key_id, entry)).decode()
    return {"changed": changed, "path": path, "current": doc["current"], "key_ids": sorted(keys), "keys": keys}
