"""r2_claw_credentials as a real module process: the official cloudflare SDK against the Cloudflare API stand-in,
the bucket made with the farm key in moto, the pair kept 0600 on the control node (issue 17)."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid

import pytest

CLAW = str(uuid.UUID(int=0x17))


@pytest.fixture
def args(cf_api, s3_server, tmp_path):
    bucket = f"claw-backup-{CLAW}"
    return {"claw_id": CLAW, "bucket": bucket, "account_id": cf_api.account_id, "api_token": cf_api.token,
            "api_base_url": cf_api.base_url, "store": str(tmp_path / "r2-credentials"), **s3_server.module_args(),
            "verify_timeout": 5}


def test_provision_creates_one_token_scoped_to_the_bucket_and_deprovision_revokes_it(args, cf_api, s3_server, run_module):
    result = run_module("r2_claw_credentials", args)
    assert result.get("failed") is not True, result
    assert result["changed"] and result["scope"] == "claw", result
    tokens = list(cf_api.state()["tokens"].values())
    assert len(tokens) == 1
    token = tokens[0]
    # The policy names only the claw's bucket, with the bucket-item write group.
    assert len(token["policies"]) == 1
    policy = token["policies"][0]
    assert policy["effect"] == "allow"
    assert list(policy["resources"]) == [f"com.cloudflare.edge.r2.bucket.{cf_api.account_id}_default_{args['bucket']}"]
    assert [g["id"] for g in policy["permission_groups"]] == ["2efd5506f9c8494dacb1fa10a3e7d5b6"]
    # S3 pair: access key id = token id, secret = sha256 hex of the token value (the value is never stored).
    assert result["access_key_id"] == token["id"] == result["token_id"]
    assert result["secret_access_key"] == hashlib.sha256(token["value"].encode()).hexdigest()
    path = result["credential_file"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(args["store"]).st_mode) == 0o700
    stored = json.loads(open(path).read())
    assert token["value"] not in json.dumps(stored)
    # The bucket exists (made with the farm key on the control node).
    assert args["bucket"] in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]

    again = run_module("r2_claw_credentials", args)
    assert not again["changed"] and again["access_key_id"] == result["access_key_id"], again
    assert len(cf_api.state()["tokens"]) == 1
    assert run_module("r2_claw_credentials", {**args, "state": "query"})["access_key_id"] == result["access_key_id"]

    check = run_module("r2_claw_credentials", {**args, "state": "absent"}, check=True)
    assert check["changed"] and len(cf_api.state()["tokens"]) == 1

    gone = run_module("r2_claw_credentials", {**args, "state": "absent"})
    assert gone["changed"] and gone["revoked"] and gone["token_id"] == token["id"], gone
    assert cf_api.state()["tokens"] == {}
    assert not os.path.exists(path)
    assert run_module("r2_claw_credentials", {**args, "state": "query"})["scope"] == "farm"
    assert not run_module("r2_claw_credentials", {**args, "state": "absent"})["changed"]


def test_a_token_that_may_not_create_tokens_falls_back_with_a_warning(args, cf_api, run_module):
    cf_api.control("tokens", {"forbid_create": True})
    result = run_module("r2_claw_credentials", args)
    assert result.get("failed") is not True, result
    assert result["scope"] == "farm" and not result["changed"] and result["access_key_id"] is None, result
    assert "farm-wide R2 key" in json.dumps(result), result
    assert cf_api.state()["tokens"] == {}
    assert not os.path.exists(result["credential_file"])


def test_a_pair_that_does_not_reach_the_bucket_is_revoked_and_fails(args, cf_api, run_module):
    # An endpoint nobody listens on: the farm key cannot make the bucket, so nothing is created at Cloudflare.
    result = run_module("r2_claw_credentials", {**args, "endpoint_url": "http://127.0.0.1:9"})
    assert result.get("failed") and "bucket" in result["msg"], result
    assert cf_api.state()["tokens"] == {}


def test_check_mode_creates_nothing(args, cf_api, run_module):
    result = run_module("r2_claw_credentials", args, check=True)
    assert result["changed"] and cf_api.state()["tokens"] == {}
    assert not os.path.exists(result["credential_file"])


def test_a_credential_file_readable_by_others_is_refused(args, cf_api, run_module):
    first = run_module("r2_claw_credentials", args)
    os.chmod(first["credential_file"], 0o644)
    result = run_module("r2_claw_credentials", args)
    assert result.get("failed") and "chmod 600" in result["msg"], result
    assert first["secret_access_key"] not in json.dumps(result)
