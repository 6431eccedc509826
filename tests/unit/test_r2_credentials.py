"""Issue 17: per-claw R2 credentials on the control node (module_utils._r2_credentials), with a fake SDK client."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from types import SimpleNamespace

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2_credentials as creds

CLAW = "1a2b3c4d-0000-4000-8000-000000000001"
BUCKET = f"claw-backup-{CLAW}"
ACCOUNT = "0123456789abcdef0123456789abcdef"


class _Model(dict):
    def to_dict(self, mode="python"):
        return dict(self)


class APIStatusError(Exception):
    """Shaped like the SDK's errors: a status code and Cloudflare's error list."""

    __module__ = "cloudflare._exceptions"

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status_code, self.errors = status, [{"code": code, "message": message}]


class FakeClient:
    def __init__(self, refuse=False):
        self.tokens, self.refuse, self.calls = {}, refuse, []
        self.accounts = SimpleNamespace(tokens=SimpleNamespace(
            create=self._create, delete=self._delete,
            permission_groups=SimpleNamespace(list=self._groups)))

    def _groups(self, account_id, name=None):
        return [_Model(id="g-write", name=creds.PERMISSION_GROUP), _Model(id="g-other", name="Other")]

    def _create(self, account_id, name, policies):
        self.calls.append(("create", name, policies))
        if self.refuse:
            raise APIStatusError(403, 9109, "Unauthorized to access requested resource")
        token_id = f"tok{len(self.tokens)}"
        self.tokens[token_id] = policies
        return _Model(id=token_id, name=name, value=f"value-of-{token_id}")

    def _delete(self, token_id, account_id):
        self.calls.append(("delete", token_id))
        if token_id not in self.tokens:
            raise APIStatusError(404, 1003, "Invalid API Token")
        del self.tokens[token_id]
        return _Model(id=token_id)


def test_the_s3_pair_is_the_token_id_and_the_sha256_hex_of_its_value():
    assert creds.s3_key_pair("abc", "secret-value") == ("abc", hashlib.sha256(b"secret-value").hexdigest())
    assert creds.bucket_resource(ACCOUNT, BUCKET) == f"com.cloudflare.edge.r2.bucket.{ACCOUNT}_default_{BUCKET}"


def test_ensure_creates_one_scoped_token_stores_the_pair_0600_and_reuses_it(tmp_path):
    client = FakeClient()
    store = str(tmp_path / "store")
    result = creds.ensure(lambda: client, ACCOUNT, store, CLAW, BUCKET)
    assert result["changed"] and result["scope"] == "claw" and result["access_key_id"] == "tok0"
    assert result["secret_access_key"] == hashlib.sha256(b"value-of-tok0").hexdigest()
    (_, name, policies), = client.calls
    assert name == f"clawfarm-r2-{BUCKET}"
    assert policies == [{"effect": "allow", "permission_groups": [{"id": "g-write"}],
                         "resources": {creds.bucket_resource(ACCOUNT, BUCKET): "*"}}]
    path = result["credential_file"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(store).st_mode) == 0o700
    assert "value-of-tok0" not in open(path).read()
    again = creds.ensure(lambda: pytest.fail("no API call for a claw that has its pair"), ACCOUNT, store, CLAW, BUCKET)
    assert not again["changed"] and again["access_key_id"] == "tok0"
    assert creds.query(store, CLAW)["access_key_id"] == "tok0"


def test_a_refused_token_create_falls_back_to_the_farm_key_with_a_reason(tmp_path):
    result = creds.ensure(lambda: FakeClient(refuse=True), ACCOUNT, str(tmp_path), CLAW, BUCKET)
    assert result["scope"] == "farm" and result["access_key_id"] is None and not result["changed"]
    assert "farm-wide R2 key" in result["reason"] and "9109" in result["reason"]
    assert not os.path.exists(result["credential_file"])


def test_a_pair_that_fails_verification_is_revoked_and_not_stored(tmp_path):
    client = FakeClient()

    def verify(key_id, secret):
        raise creds.CredentialError("does not reach the bucket")

    with pytest.raises(creds.CredentialError):
        creds.ensure(lambda: client, ACCOUNT, str(tmp_path), CLAW, BUCKET, verify=verify)
    assert client.tokens == {} and ("delete", "tok0") in client.calls
    assert os.listdir(tmp_path) == []


def test_revoke_deletes_the_token_and_the_file_and_tolerates_a_token_already_gone(tmp_path):
    client = FakeClient()
    created = creds.ensure(lambda: client, ACCOUNT, str(tmp_path), CLAW, BUCKET)
    assert creds.revoke(lambda: client, ACCOUNT, str(tmp_path), CLAW, check_mode=True)["changed"]
    assert client.tokens
    gone = creds.revoke(lambda: client, ACCOUNT, str(tmp_path), CLAW)
    assert gone["revoked"] and gone["token_id"] == created["token_id"] and client.tokens == {}
    assert not os.path.exists(created["credential_file"])
    assert not creds.revoke(lambda: client, ACCOUNT, str(tmp_path), CLAW)["changed"]
    # A token someone deleted at Cloudflare already: the file still goes.
    creds.ensure(lambda: client, ACCOUNT, str(tmp_path), CLAW, BUCKET)
    client.tokens.clear()
    again = creds.revoke(lambda: client, ACCOUNT, str(tmp_path), CLAW)
    assert again["changed"] and not again["revoked"] and creds.query(str(tmp_path), CLAW)["scope"] == "farm"


@pytest.mark.parametrize("problem", ["mode", "other-claw", "other-bucket", "not-json", "link"])
def test_a_bad_credential_file_is_refused(tmp_path, problem):
    client = FakeClient()
    path = creds.ensure(lambda: client, ACCOUNT, str(tmp_path), CLAW, BUCKET)["credential_file"]
    doc = json.loads(open(path).read())
    if problem == "mode":
        os.chmod(path, 0o640)
    elif problem == "other-claw":
        creds.save(path, {**doc, "claw_id": "1a2b3c4d-0000-4000-8000-000000000002"})
    elif problem == "other-bucket":
        creds.save(path, {**doc, "bucket": "claw-backup-other"})
    elif problem == "not-json":
        with open(path, "w") as handle:
            handle.write("{")
    else:
        os.rename(path, path + ".real")
        os.symlink(path + ".real", path)
    with pytest.raises(creds.CredentialError):
        creds.ensure(lambda: client, ACCOUNT, str(tmp_path), CLAW, BUCKET)


def test_a_claw_id_that_is_not_a_uuid_never_becomes_a_path(tmp_path):
    with pytest.raises(creds.CredentialError):
        creds.store_path(str(tmp_path), "../../etc/passwd")
