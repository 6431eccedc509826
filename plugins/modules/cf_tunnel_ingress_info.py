#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cf_tunnel_ingress_info
short_description: Read a Cloudflare Tunnel's ingress rules and whether a hostname is routed
version_added: 0.2.0
description:
  - Reads the ingress rules that M(mirascope.clawfarm.cf_tunnel_ingress) manages, from a locally managed tunnel's
    C(config.yml) (O(mode=local), on the Mini) or a remotely managed tunnel's configuration through the Cloudflare API
    (O(mode=api), usually on the control node), and says whether O(hostname) has a rule.
  - Changes nothing; takes no lock. Runs no commands.
author:
  - Mirascope platform team (@mirascope)
requirements:
  - O(mode=api) needs the C(cloudflare) Python SDK (5.x) on the host running the module.
  - O(mode=local) with a YAML (not JSON) config.yml needs PyYAML.
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm._info_module
  - mirascope.clawfarm.cloudflare_api
  - mirascope.clawfarm.cf_tunnel
options:
  hostname:
    description: A public hostname to look up (lowercased); RV(routed) and RV(rule) answer for it.
    type: str
  path:
    description: The path filter of the rule to look up (rules without one when omitted).
    type: str
seealso:
  - module: mirascope.clawfarm.cf_tunnel_ingress
"""

EXAMPLES = r"""
- name: Is the claw routed through the Mini's locally managed tunnel?
  mirascope.clawfarm.cf_tunnel_ingress_info:
    hostname: claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com
    config_path: "{{ cloudflared_config_path }}"
  register: route
  become: true

- name: Read a remotely managed tunnel's rules
  mirascope.clawfarm.cf_tunnel_ingress_info:
    mode: api
    account_id: "{{ cf_account_id }}"
    tunnel_id: "{{ cf_tunnel_id }}"
    api_token: "{{ cf_api_token }}"
  delegate_to: localhost
  register: rules
"""

RETURN = r"""
rules:
  description: The tunnel's ingress rules in order (API spelling), the catch-all last.
  returned: always
  type: list
  elements: dict
  sample: [{"hostname": "claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com", "service": "http://localhost:8100"}, {"service": "http_status:404"}]
hostname:
  description: O(hostname), lowercased (null without one).
  returned: always
  type: str
routed:
  description: Whether O(hostname) has a rule (false without O(hostname)).
  returned: always
  type: bool
rule:
  description: The rule of O(hostname) (and O(path)), or null.
  returned: always
  type: dict
version:
  description: The remote configuration's version (O(mode=api)).
  returned: when mode is api
  type: int
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _cloudflare as cf
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _ingress as ingress

try:
    import yaml
except ImportError:  # macOS's /usr/bin/python3 has no PyYAML; JSON config files still work
    yaml = None

TUNNEL_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def lookup(rules: list, hostname, path=None) -> dict:
    """``{"hostname", "routed", "rule"}`` for ``hostname`` (lowercased) in ``rules``; not routed without a hostname."""
    if not hostname:
        return {"hostname": None, "routed": False, "rule": None}
    name = hostname.strip().lower()
    rule = ingress.find_rule(rules, name, path)
    return {"hostname": name, "routed": rule is not None, "rule": rule}


def read_local(path: str) -> list:
    """The ingress rules of the config.yml at ``path``."""
    if not os.path.isfile(path):
        raise ingress.IngressError(f"{path} does not exist; the Mini's cloudflared connector is not set up (run bootstrap.yml --tags cloudflared)")
    with open(path, encoding="utf-8") as handle:
        return list(ingress.parse_config_text(handle.read(), yaml).get("ingress") or [])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            hostname=dict(type="str"),
            path=dict(type="str"),
            **ingress.tunnel_argument_spec(),
            **cf.api_argument_spec(),
        ),
        required_if=[("mode", "api", ("account_id", "tunnel_id"))],
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False}
    try:
        path = ingress.validate_path(p["path"])
        if p["mode"] == "local":
            rules = read_local(p["config_path"])
        else:
            tunnel_id = p["tunnel_id"].strip()
            if not TUNNEL_ID.match(tunnel_id):
                raise ingress.IngressError(f"tunnel_id {tunnel_id[:64]!r} is not a tunnel UUID")
            token = p["api_token"] or os.environ.get("CLOUDFLARE_API_TOKEN")
            if not token:
                raise ingress.IngressError("api_token is required with mode=api (or set CLOUDFLARE_API_TOKEN)")
            client = cf.make_client(token, p["api_base_url"], p["api_max_retries"], p["api_timeout"])
            version, config = cf.get_tunnel_config(client, p["account_id"], tunnel_id.lower())
            rules = cf._clean_rules(config.get("ingress"))
            result["version"] = version
    except (ingress.IngressError, cf.CloudflareError) as exc:
        module.fail_json(msg=f"cf_tunnel_ingress_info ({p['mode']}): {exc}")
    result.update(rules=rules, **lookup(rules, p["hostname"], path))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
