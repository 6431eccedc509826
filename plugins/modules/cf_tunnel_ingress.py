#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cf_tunnel_ingress
short_description: Manage one Cloudflare Tunnel ingress rule (and its DNS CNAME) in a config.yml or through the API
version_added: 0.2.0
description:
  - Adds, updates or removes the ingress rule for one public hostname of a Cloudflare Tunnel, leaving every
    other rule exactly as it was, in order. A new rule goes immediately before the catch-all; the catch-all
    (service C(http_status:404) when none exists) always stays last.
  - The resulting rule list is validated with the rules cloudflared applies (C(cloudflared tunnel ingress validate),
    see C(ingress/ingress.go)); a configuration cloudflared would reject is refused and nothing is written.
  - O(mode=local) edits a locally managed tunnel's C(config.yml) on the host running the module. The file is
    written atomically (temporary file and rename) with its owner and mode kept. Runs on one host take turns (an
    exclusive lock on C(.config.yml.lock) beside the file), so concurrent changes of different rules all land (twelve
    provisions on one Mini at once). cloudflared does B(not) reload
    C(config.yml) by itself (not on change, not on SIGHUP), so the module returns RV(restart_needed) and the
    caller restarts the connector (for example M(mirascope.clawfarm.launchd_service) O(state=restarted), a graceful
    C(launchctl kill SIGTERM), through a handler). Reading a YAML file needs PyYAML in the module's Python; a file in JSON form (valid YAML) does not.
  - O(mode=api) edits a remotely managed tunnel through the official C(cloudflare) Python SDK
    (C(GET)/C(PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations)). The PUT replaces the whole
    configuration and has no precondition, so the module serialises writers to one tunnel on this host with an
    exclusive lock file in O(lock_dir), reads the configuration back after each write, and redoes the cycle when
    the read-back lacks its change (another writer raced it). Run it on the control node (C(delegate_to=localhost)),
    where the SDK is installed. Connectors pick up a new configuration version live; no restart is needed.
  - O(dns=true) also manages the proxied CNAME C(<hostname>) to C(<tunnel_id>.cfargotunnel.com) in O(zone_id)
    through the DNS records API, in either mode. A CNAME pointing at another tunnel is updated (the claw moved);
    a record pointing anywhere else is never changed or deleted.
  - The SDK retries 408, 409, 429 and 5xx answers O(api_max_retries) times with back-off, honouring C(retry-after).
  - On errors, invalid input (hostname outside O(domain), a wildcard, a non-loopback service, an invalid path regexp,
    an empty tunnel id) fails before anything is read or written; API failures name the call, the HTTP status and
    Cloudflare's error codes.
  - Runs no commands.
    Reference U(https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/configure-tunnels/local-management/configuration-file/)
    and U(https://developers.cloudflare.com/api/resources/zero_trust/subresources/tunnels/subresources/cloudflared/subresources/configurations/methods/update/).
author:
  - Mirascope platform team (@mirascope)
requirements:
  - O(mode=api) or O(dns=true) need the C(cloudflare) Python SDK (5.x) on the host running the module.
  - O(mode=local) with a YAML (not JSON) config.yml needs PyYAML.
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
  - mirascope.clawfarm.cloudflare_api
  - mirascope.clawfarm.cf_tunnel
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: A rule-level diff (one line per rule, before and after).
  idempotent:
    support: full
options:
  hostname:
    description:
      - Public hostname of the rule, for example C(claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com).
      - Lowercased. Must be inside O(domain), without a port.
    type: str
    required: true
  domain:
    description: The claws domain (or zone) every managed hostname must be inside, for example C(claws.example.com).
    type: str
    required: true
  service:
    description:
      - Origin of the rule, an C(http://), C(https://), C(ws://) or C(wss://) URL on the host's loopback with a port
        and no path, for example C(http://localhost:8100). Required with O(state=present).
    type: str
  path:
    description: Optional path filter, an unanchored Go regular expression (use C(^/api(/|$)) style anchors).
    type: str
  origin_request:
    description: Per-rule C(originRequest) settings (API spelling, for example C(connectTimeout), C(noTLSVerify)).
    type: dict
  allow_wildcard:
    description: Accept a leading C(*.) wildcard in O(hostname). Claws never need one.
    type: bool
    default: false
  state:
    description: V(present) adds or updates the rule; V(absent) removes it (and the CNAME with O(dns=true)).
    type: str
    choices: [present, absent]
    default: present
  tunnel_id:
    description: The tunnel's UUID. Required with O(mode=api) and with O(dns=true).
    type: str
  lock_dir:
    description: Directory of the per-tunnel lock files that serialise configuration writes on this host (O(mode=api)).
    type: path
    default: /tmp/clawfarm-locks
  dns:
    description: Also manage the proxied CNAME O(hostname) to C(<tunnel_id>.cfargotunnel.com) in O(zone_id).
    type: bool
    default: false
  zone_id:
    description: The DNS zone id holding O(hostname) (O(dns=true)).
    type: str
notes:
  - Two runs adding different hostnames to the same tunnel at once are safe from one control node (lock) and
    self-healing across control nodes (read-back and retry); a writer outside clawfarm (the dashboard) can still
    lose its own edit, which the module reports as a warning when it sees the version jump.
seealso:
  - name: cloudflared ingress rules
    description: Rule matching and validation.
    link: https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/configure-tunnels/local-management/ingress/
"""

EXAMPLES = r"""
- name: Route a claw through the Mini's locally managed tunnel
  mirascope.clawfarm.cf_tunnel_ingress:
    hostname: claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com
    domain: claws.example.com
    service: http://localhost:8100
  become: true
  notify: Restart cloudflared

- name: Route a claw through a remotely managed tunnel, with its DNS record
  mirascope.clawfarm.cf_tunnel_ingress:
    mode: api
    hostname: claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com
    domain: claws.example.com
    service: http://localhost:8100
    account_id: "{{ cf_account_id }}"
    tunnel_id: "{{ cf_tunnel_id }}"
    api_token: "{{ cf_api_token }}"
    dns: true
    zone_id: "{{ cf_zone_id }}"
  delegate_to: localhost

- name: Remove the route
  mirascope.clawfarm.cf_tunnel_ingress:
    hostname: claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com
    domain: claws.example.com
    state: absent
"""

RETURN = r"""
hostname:
  description: The rule's hostname, lowercased.
  returned: always
  type: str
  sample: claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com
rules_before:
  description: The tunnel's ingress rules before the task (API spelling).
  returned: always
  type: list
  elements: dict
rules_after:
  description: The ingress rules after the task (in check mode, what they would be).
  returned: always
  type: list
  elements: dict
  sample: [{"hostname": "claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com", "service": "http://localhost:8100"}, {"service": "http_status:404"}]
rule_present:
  description: Whether the hostname's rule exists after the task.
  returned: always
  type: bool
restart_needed:
  description: O(mode=local) only - the file changed and the connector must be restarted to apply it.
  returned: always
  type: bool
version_before:
  description: The remote configuration version before the task (O(mode=api)).
  returned: when mode is api
  type: int
version_after:
  description: The remote configuration version after the task (O(mode=api)).
  returned: when mode is api
  type: int
attempts:
  description: Read-modify-write cycles needed (O(mode=api)); more than 1 means another writer raced this one.
  returned: when mode is api
  type: int
dns:
  description: The CNAME action (V(none), V(create), V(update), V(delete)) and the record before and after.
  returned: when dns is true
  type: dict
  sample:
    action: create
    changed: true
    after:
      name: claw-1a2b3c4d-0000-4000-8000-000000000001.claws.example.com
      type: CNAME
      content: 6f1c0a6e-7d0e-4d55-9a40-0c1f3b3c8a11.cfargotunnel.com
      proxied: true
"""

import contextlib
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ..module_utils import _cloudflare as cf
from ..module_utils import _ingress as ingress
from ..module_utils._command import exclusive_lock

try:
    import yaml
except ImportError:  # macOS's /usr/bin/python3 has no PyYAML; JSON config files still work
    yaml = None

TUNNEL_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def validate_params(p: dict) -> dict:
    """Validate every option before anything is read; returns the normalised rule fields."""
    hostname = ingress.validate_hostname(p["hostname"], p["domain"], p["allow_wildcard"])
    path = ingress.validate_path(p["path"])
    service = None
    if p["state"] == "present":
        if not p["service"]:
            raise ingress.IngressError("service is required with state=present, e.g. http://localhost:8100")
        service = ingress.validate_loopback_service(p["service"])
    tunnel_id = (p["tunnel_id"] or "").strip()
    if p["mode"] == "api" or p["dns"]:
        if not tunnel_id:
            raise ingress.IngressError("tunnel_id is empty; it is required with mode=api and with dns=true")
        if not TUNNEL_ID.match(tunnel_id):
            raise ingress.IngressError(f"tunnel_id {tunnel_id!r} is not a tunnel UUID")
        if not (p["api_token"] or os.environ.get("CLOUDFLARE_API_TOKEN")):
            raise ingress.IngressError("api_token is required with mode=api and with dns=true (or set CLOUDFLARE_API_TOKEN)")
    if p["mode"] == "api" and not (p["account_id"] or "").strip():
        raise ingress.IngressError("account_id is required with mode=api")
    if p["dns"] and not (p["zone_id"] or "").strip():
        raise ingress.IngressError("zone_id is required with dns=true")
    return {"hostname": hostname, "path": path, "service": service, "tunnel_id": tunnel_id.lower()}


def transform_for(p: dict, fields: dict):
    if p["state"] == "present":
        rule = ingress.make_rule(fields["hostname"], fields["service"], fields["path"], p["origin_request"])
        return lambda rules: ingress.merge_rule(rules, rule)
    return lambda rules: ingress.remove_rule(rules, fields["hostname"], fields["path"])


def run_local(module: AnsibleModule, p: dict, transform) -> dict:
    path = p["config_path"]
    if not os.path.isfile(path):
        raise ingress.IngressError(f"{path} does not exist; the Mini's cloudflared connector is not set up (run bootstrap.yml --tags cloudflared)")
    directory = os.path.dirname(path) or "."
    # Several runs on one Mini (twelve provisions at once) each read the file, change their rule and rename their
    # copy into place: without the lock the last rename drops the others' rules. Check mode writes nothing, locks nothing.
    lock = contextlib.nullcontext() if module.check_mode else exclusive_lock(
        os.path.join(directory, "." + os.path.basename(path) + ".lock"), what=f"this change to {path}")
    with lock:
        with open(path, encoding="utf-8") as handle:
            doc = ingress.parse_config_text(handle.read(), yaml)
        before = list(doc.get("ingress") or [])
        after = transform(before)
        ingress.validate_ingress(after)
        changed = not ingress.rules_equal(before, after)
        if changed and not module.check_mode:
            doc["ingress"] = after
            fd, tmp = tempfile.mkstemp(prefix=".config.", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(ingress.dump_config_text(doc, yaml))
            module.atomic_move(tmp, path)  # keeps the file's owner and mode
    return {"changed": changed, "rules_before": before, "rules_after": after, "restart_needed": changed}


def run_api(module: AnsibleModule, p: dict, fields: dict, client, transform) -> dict:
    tunnel = cf.get_tunnel(client, p["account_id"], fields["tunnel_id"])
    if tunnel.get("remote_config") is False or tunnel.get("config_src") == "local":
        raise ingress.IngressError(f"tunnel {fields['tunnel_id']} is locally managed (config_src local): edit its config.yml with mode=local")

    def checked(rules):
        result = transform(rules)
        ingress.validate_ingress(result)
        return result

    with cf.tunnel_lock(p["lock_dir"], fields["tunnel_id"]):
        outcome = cf.update_tunnel_ingress(client, p["account_id"], fields["tunnel_id"], checked, check_mode=module.check_mode)
    for warning in outcome["warnings"]:
        module.warn(warning)
    return {"changed": outcome["changed"], "rules_before": outcome["before"], "rules_after": outcome["after"], "restart_needed": False,
            "version_before": outcome["version_before"], "version_after": outcome["version_after"], "attempts": outcome["attempts"]}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            hostname=dict(type="str", required=True),
            domain=dict(type="str", required=True),
            service=dict(type="str"),
            path=dict(type="str"),
            origin_request=dict(type="dict"),
            allow_wildcard=dict(type="bool", default=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            **ingress.tunnel_argument_spec(),
            **cf.api_argument_spec(),
            lock_dir=dict(type="path", default="/tmp/clawfarm-locks"),
            dns=dict(type="bool", default=False),
            zone_id=dict(type="str"),
        ),
        # validate_params also refuses empty values (these constraints see only missing ones)
        required_if=[("state", "present", ("service",)), ("mode", "api", ("account_id", "tunnel_id")),
                     ("dns", True, ("zone_id", "tunnel_id"))],
        supports_check_mode=True,
    )
    p = module.params
    try:
        fields = validate_params(p)
    except ingress.IngressError as exc:
        module.fail_json(msg=f"cf_tunnel_ingress: {exc}", hostname=p["hostname"])
    transform = transform_for(p, fields)
    client = None
    try:
        if p["mode"] == "api" or p["dns"]:
            client = cf.make_client(p["api_token"] or os.environ["CLOUDFLARE_API_TOKEN"], p["api_base_url"], p["api_max_retries"], p["api_timeout"])
        if p["mode"] == "local":
            result = run_local(module, p, transform)
        else:
            result = run_api(module, p, fields, client, transform)
        if p["dns"]:
            dns_call = cf.ensure_tunnel_cname if p["state"] == "present" else cf.remove_tunnel_cname
            result["dns"] = dns_call(client, p["zone_id"], fields["hostname"], fields["tunnel_id"], check_mode=module.check_mode)
            if result["dns"].get("skipped"):
                module.warn(result["dns"]["skipped"])
            result["changed"] = result["changed"] or result["dns"]["changed"]
    except (ingress.IngressError, cf.CloudflareError) as exc:
        module.fail_json(msg=f"cf_tunnel_ingress ({p['mode']}, {fields['hostname']}): {exc}", hostname=fields["hostname"])
    result["hostname"] = fields["hostname"]
    result["rule_present"] = ingress.find_rule(result["rules_after"], fields["hostname"], fields["path"]) is not None
    if module._diff:
        result["diff"] = ingress.rules_diff(result["rules_before"], result["rules_after"],
                                            p["config_path"] if p["mode"] == "local" else f"tunnel {fields['tunnel_id']} ingress")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
