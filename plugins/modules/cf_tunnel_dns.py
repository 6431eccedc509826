#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cf_tunnel_dns
short_description: Manage the proxied CNAME that sends a hostname to a Cloudflare Tunnel
version_added: 0.2.0
description:
  - Makes O(hostname) a proxied CNAME to C(<tunnel_id>.cfargotunnel.com) (auto TTL) in the zone O(zone_id), or
    removes it, through the DNS records API of the official C(cloudflare) Python SDK
    (C(GET/POST/PUT/DELETE /zones/{zone_id}/dns_records)).
  - This is the DNS half of M(mirascope.clawfarm.cf_tunnel_ingress) (option C(dns)) for tunnels whose ingress is
    edited on the Mini (C(mode=local)) while the API is called from the control node (C(delegate_to=localhost)).
  - A CNAME pointing at another tunnel is updated (the claw moved Minis). A record pointing anywhere else, or an
    A/AAAA record on the name, is never changed or deleted; O(state=present) then fails and says so.
  - A create retried after a timeout that answers 81053/81058 is re-listed and counted as a success.
  - Runs no commands. API reference U(https://developers.cloudflare.com/api/resources/dns/subresources/records/).
author:
  - Mirascope platform team (@mirascope)
requirements:
  - The C(cloudflare) Python SDK (5.x) on the host running the module.
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm.cloudflare_api
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  hostname:
    description: The public hostname, inside O(domain).
    type: str
    required: true
  domain:
    description: The claws domain (or zone) the hostname must be inside, for example C(claws.example.com).
    type: str
    required: true
  tunnel_id:
    description: The tunnel's UUID; the CNAME target is C(<tunnel_id>.cfargotunnel.com).
    type: str
    required: true
  zone_id:
    description: The DNS zone id.
    type: str
    required: true
  state:
    description: V(present) creates or updates the CNAME, V(absent) deletes it if it points at O(tunnel_id).
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Point the claw's hostname at the Mini's tunnel
  mirascope.clawfarm.cf_tunnel_dns:
    hostname: claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com
    domain: claws.example.com
    tunnel_id: "{{ cf_tunnel_id }}"
    zone_id: "{{ cf_zone_id }}"
    api_token: "{{ cf_api_token }}"
  delegate_to: localhost
"""

RETURN = r"""
hostname:
  description: The record name, lowercased.
  returned: always
  type: str
action:
  description: What was (or in check mode would be) done, V(none), V(create), V(update) or V(delete).
  returned: always
  type: str
before:
  description: The CNAME before the task (null when there was none).
  returned: always
  type: dict
after:
  description: The CNAME after the task (null when absent).
  returned: always
  type: dict
  sample:
    name: claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com
    type: CNAME
    content: 6f1c0a6e-7d0e-4d55-9a40-0c1f3b3c8a11.cfargotunnel.com
    proxied: true
    ttl: 1
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

from ..module_utils import _cloudflare as cf
from ..module_utils import _ingress as ingress

TUNNEL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _diff_text(record):
    """One DNS record as diff text (name, type, content, proxied), or empty when there is none."""
    if not record:
        return ""
    return json.dumps({k: record.get(k) for k in ("name", "type", "content", "proxied")}, sort_keys=True) + "\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            hostname=dict(type="str", required=True),
            domain=dict(type="str", required=True),
            tunnel_id=dict(type="str", required=True),
            zone_id=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            **cf.api_argument_spec(),
        ),
        supports_check_mode=True,
    )
    p = module.params
    tunnel_id = (p["tunnel_id"] or "").strip().lower()
    try:
        hostname = ingress.validate_hostname(p["hostname"], p["domain"])
        if not TUNNEL_ID.match(tunnel_id):
            raise ingress.IngressError(f"tunnel_id {p['tunnel_id']!r} is not a tunnel UUID" if tunnel_id else "tunnel_id is empty")
        if not p["zone_id"].strip():
            raise ingress.IngressError("zone_id is empty")
        token = p["api_token"] or os.environ.get("CLOUDFLARE_API_TOKEN")
        if not token:
            raise ingress.IngressError("api_token is required (or set CLOUDFLARE_API_TOKEN)")
    except ingress.IngressError as exc:
        module.fail_json(msg=f"cf_tunnel_dns: {exc}")
    try:
        client = cf.make_client(token, p["api_base_url"], p["api_max_retries"], p["api_timeout"])
        call = cf.ensure_tunnel_cname if p["state"] == "present" else cf.remove_tunnel_cname
        result = call(client, p["zone_id"].strip(), hostname, tunnel_id, check_mode=module.check_mode)
    except cf.CloudflareError as exc:
        module.fail_json(msg=f"cf_tunnel_dns ({hostname}): {exc}", hostname=hostname)
    if result.get("skipped"):
        module.warn(result["skipped"])
    if module._diff:
        result["diff"] = {"before": _diff_text(result["before"]), "after": _diff_text(result["after"])}
    module.exit_json(hostname=hostname, **{k: v for k, v in result.items() if k != "skipped"})


if __name__ == "__main__":
    main()
