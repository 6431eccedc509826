"""R2 errors are told apart by botocore's S3 error code (``ClientError.response["Error"]["Code"]``), never by the
words of a message; r2_archive's option constraints are in its argument spec."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2
from ansible_collections.mirascope.clawfarm.plugins.modules import r2_archive
from botocore.exceptions import ClientError


def client_error(code: str, status: int, operation: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class Client:
    """An S3 client whose calls raise the given errors (or return empty answers)."""

    def __init__(self, **errors):
        self.errors, self.calls = errors, []

    def __getattr__(self, name):
        def call(**kwargs):
            self.calls.append(name)
            if name in self.errors:
                raise self.errors[name]
            return {"Contents": [], "IsTruncated": False}
        return call

    def get_paginator(self, name):
        client = self

        class Paginator:
            def paginate(self, **kwargs):
                if name in client.errors:
                    raise client.errors[name]
                return iter([{"Contents": []}])
        return Paginator()


def test_error_code():
    assert r2.error_code(client_error("NoSuchBucket", 404, "ListObjectsV2")) == "NoSuchBucket"
    assert r2.error_code(client_error("404", 404, "HeadBucket")) == "404"
    assert r2.error_code(RuntimeError("NoSuchBucket")) is None
    assert r2.error_code(ValueError()) is None


def test_a_missing_bucket_is_known_by_its_code():
    with pytest.raises(r2.BucketMissing):
        r2.ensure_bucket(Client(head_bucket=client_error("404", 404, "HeadBucket")), "b", "auto", create=False)
    created = Client(head_bucket=client_error("NoSuchBucket", 404, "HeadBucket"))
    assert r2.ensure_bucket(created, "b", "auto") is True and "create_bucket" in created.calls
    assert r2.list_archives(Client(list_objects_v2=client_error("NoSuchBucket", 404, "ListObjectsV2")), "b") == []


def test_other_errors_are_not_a_missing_bucket_whatever_their_message():
    denied = client_error("AccessDenied", 403, "HeadBucket", "the bucket does not exist or you may not see it")
    with pytest.raises(r2.ArchiveError) as caught:
        r2.ensure_bucket(Client(head_bucket=denied), "b", "auto", create=False)
    assert not isinstance(caught.value, r2.BucketMissing) and "AccessDenied" in str(caught.value)
    with pytest.raises(r2.ArchiveError):
        r2_archive._bucket_exists(Client(head_bucket=denied), "b")
    assert r2_archive._bucket_exists(Client(head_bucket=client_error("404", 404, "HeadBucket")), "b") is False
    assert r2_archive._bucket_exists(Client(), "b") is True
    with pytest.raises(r2.ArchiveError, match="AccessDenied"):
        r2.list_archives(Client(list_objects_v2=client_error("AccessDenied", 403, "ListObjectsV2", "does not exist")), "b")


def test_deleting_a_missing_archive_deletes_only_its_manifest():
    client = Client(head_object=client_error("404", 404, "HeadObject"))
    assert r2.delete_archive(client, "b", "backups/20260101T000000Z.tar.zst") is False
    assert client.calls == ["head_object", "delete_object"]
    with pytest.raises(r2.ArchiveError, match="AccessDenied"):
        r2.delete_archive(Client(head_object=client_error("AccessDenied", 403, "HeadObject")), "b", "k")


def test_unknown_owner_or_group_is_named():
    with pytest.raises(r2.ArchiveError, match="unknown owner 'no-such-user-x'"):
        r2_archive.resolve_ids("no-such-user-x", None)
    with pytest.raises(r2.ArchiveError, match="unknown group 'no-such-group-x'"):
        r2_archive.resolve_ids("0", "no-such-group-x")
    assert r2_archive.resolve_ids("0", "0") == (0, 0)


@pytest.mark.parametrize("args, missing", [
    ({"state": "present"}, "src"), ({"state": "restored"}, "dest"), ({"state": "absent"}, "key"),
    ({"state": "present", "src": "/tmp/x", "encryption_key_id": "k1"}, "encryption_keys"),
])
def test_option_constraints_are_in_the_argument_spec(args, missing, capsys):
    connection = {"endpoint_url": "http://127.0.0.1:9", "access_key_id": "AKIDTESTONLY", "secret_access_key": "SECRETTESTONLY"}
    with patch_module_args({"bucket": "b", **connection, **args}), pytest.raises(SystemExit):
        r2_archive.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and missing in result["msg"], result


@pytest.mark.parametrize("args, missing", [
    ({"state": "present"}, "service"), ({"state": "absent", "mode": "api"}, "account_id"),
    ({"state": "absent", "dns": True}, "zone_id"),
])
def test_cf_tunnel_ingress_constraints_are_in_the_argument_spec(args, missing, capsys):
    from ansible_collections.mirascope.clawfarm.plugins.modules import cf_tunnel_ingress

    with patch_module_args({"hostname": "claw-x.claws.example.com", "domain": "claws.example.com", **args}), \
            pytest.raises(SystemExit):
        cf_tunnel_ingress.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and missing in result["msg"], result
