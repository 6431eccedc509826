#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: r2_claw_credentials
short_description: A claw's own R2 key pair, from a Cloudflare API token scoped to the claw's bucket
version_added: 0.3.0
description:
  - Runs on the control node (C(delegate_to=localhost)); never on a Mini.
  - O(state=present) makes sure the claw's bucket exists (with the farm's R2 key, which stays on the control node),
    then, when the claw has no credentials yet, creates through the Cloudflare API an account API token whose one
    policy allows the permission group C(Workers R2 Storage Bucket Item Write) on that bucket only, derives its S3
    key pair (access key id = the token id, secret access key = the lowercase hex SHA-256 of the token value, as
    Cloudflare documents), checks that the pair reaches the bucket, and keeps it in C(<store>/<claw_id>.r2.json)
    (0600, directory 0700). The token value itself is never stored.
  - When the farm's API token may not create tokens (HTTP 401/403), nothing is created, RV(scope) is V(farm) and the
    run shows a warning; the caller keeps using the farm-wide key (the behaviour before per-claw credentials).
  - O(state=query) only reads the store. O(state=absent) revokes the claw's token and removes its file (run it
    after the claw's deprovision archive is verified).
  - Returns the pair for the claw's R2 tasks that follow; run it with C(no_log=true).
  - Runs no commands. See C(docs/r2-credentials.md).
author:
  - Mirascope platform team (@mirascope)
requirements:
  - cloudflare (the official SDK, v4 API through v5 of the package) and boto3 on the control node.
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm.cloudflare_api
  - mirascope.clawfarm.r2_connection
attributes:
  check_mode:
    support: full
    details: reports whether a token would be created or revoked; nothing is created, written or revoked.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  claw_id:
    description: The claw (UUID).
    type: str
    required: true
  bucket:
    description: The claw's bucket (C(claw-backup-<claw_id>)); the only resource the token may reach.
    type: str
    required: true
  account_id:
    description: The Cloudflare account that owns the bucket and the token (C(cf_account_id)).
    type: str
    required: true
  store:
    description: Directory of the credential files on the control node (C(r2_credential_store)).
    type: path
    required: true
  state:
    description: V(present) creates the claw's token when it has none, V(query) only reads, V(absent) revokes it.
    type: str
    choices: [present, query, absent]
    default: present
  verify_timeout:
    description: Seconds to wait for a new pair to reach the bucket (a new token can take a few seconds to work).
    type: int
    default: 60
notes:
  - The connection options (O(endpoint_url), O(access_key_id), O(secret_access_key)) are the farm's own R2 key; the
    module uses them only on the control node, to create the bucket.
"""

EXAMPLES = r"""
- name: Give the claw its own R2 key pair
  mirascope.clawfarm.r2_claw_credentials:
    claw_id: 1a2b3c4d-0000-4000-8000-000000000001
    bucket: claw-backup-1a2b3c4d-0000-4000-8000-000000000001
    account_id: "{{ cf_account_id }}"
    api_token: "{{ cf_api_token }}"
    store: "{{ r2_credential_store }}"
    endpoint_url: "{{ r2_endpoint_url }}"
    access_key_id: "{{ r2_access_key_id }}"
    secret_access_key: "{{ r2_secret_access_key }}"
  delegate_to: localhost
  no_log: true
  register: claw_r2

- name: Revoke it after the deprovision archive is verified
  mirascope.clawfarm.r2_claw_credentials:
    claw_id: 1a2b3c4d-0000-4000-8000-000000000001
    bucket: claw-backup-1a2b3c4d-0000-4000-8000-000000000001
    account_id: "{{ cf_account_id }}"
    api_token: "{{ cf_api_token }}"
    store: "{{ r2_credential_store }}"
    endpoint_url: "{{ r2_endpoint_url }}"
    access_key_id: "{{ r2_access_key_id }}"
    secret_access_key: "{{ r2_secret_access_key }}"
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
scope:
  description: V(claw) when the claw has its own pair, V(farm) when it has none (the caller uses the farm key).
  returned: always
  type: str
  sample: claw
access_key_id:
  description: The claw's access key id (the token id); null when RV(scope) is V(farm).
  returned: always
  type: str
secret_access_key:
  description: The claw's secret access key (secret - the task must run with no_log); null when RV(scope) is V(farm).
  returned: always
  type: str
token_id:
  description: The claw's Cloudflare API token id (for V(absent) - the one revoked).
  returned: always
  type: str
reason:
  description: Why the claw has no pair of its own (the API token may not create tokens); null otherwise.
  returned: always
  type: str
revoked:
  description: Whether a token was deleted at Cloudflare (V(absent) only; false when it was already gone).
  returned: when state is absent
  type: bool
credential_file:
  description: The claw's credential file.
  returned: always
  type: str
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ..module_utils import _cloudflare as cf
from ..module_utils import _r2 as r2
from ..module_utils import _r2_credentials as creds


def _verifier(p, sleep=time.sleep):
    def verify(access_key_id, secret):
        client = r2.make_s3_client(p["endpoint_url"], access_key_id, secret, p["region"], p["ca_bundle"], max_attempts=2)
        deadline = time.monotonic() + max(0, p["verify_timeout"])
        while True:
            try:
                client.list_objects_v2(Bucket=p["bucket"], MaxKeys=1)
                return
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise creds.CredentialError(f"the new key pair does not reach bucket {p['bucket']} after "
                                                f"{p['verify_timeout']} s: {r2.describe_s3_error(exc)}; the token was revoked")
                sleep(2)
    return verify


def main():
    module = AnsibleModule(
        argument_spec=dict(
            claw_id=dict(type="str", required=True),
            bucket=dict(type="str", required=True),
            account_id=dict(type="str", required=True),
            store=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "query", "absent"], default="present"),
            verify_timeout=dict(type="int", default=60),
            **cf.api_argument_spec(),
            **r2.connection_argument_spec(),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def client_factory():
        token = p["api_token"] or os.environ.get("CLOUDFLARE_API_TOKEN")
        if not token:
            raise creds.CredentialError("api_token is required (or set CLOUDFLARE_API_TOKEN)")
        try:
            return cf.make_client(token, p["api_base_url"], p["api_max_retries"], p["api_timeout"])
        except cf.CloudflareError as exc:
            raise creds.CredentialError(str(exc))

    try:
        if p["state"] == "query":
            result = creds.query(p["store"], p["claw_id"])
        elif p["state"] == "absent":
            result = creds.revoke(client_factory, p["account_id"], p["store"], p["claw_id"], check_mode=module.check_mode)
        else:
            if not module.check_mode:
                farm = r2.make_s3_client(p["endpoint_url"], p["access_key_id"], p["secret_access_key"], p["region"], p["ca_bundle"])
                r2.ensure_bucket(farm, p["bucket"], p["region"], create=True)
            result = creds.ensure(client_factory, p["account_id"], p["store"], p["claw_id"], p["bucket"],
                                  check_mode=module.check_mode, verify=_verifier(p))
    except (creds.CredentialError, r2.ArchiveError) as exc:
        module.fail_json(msg=f"r2_claw_credentials ({p['state']}, claw {p['claw_id']}): {exc}")
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
