# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory plugin: the farm's Minis as the clawfarm API service knows them."""

from __future__ import annotations

DOCUMENTATION = r"""
name: farm
short_description: The farm's Minis as the clawfarm API service knows them
version_added: 0.2.0
author:
  - Mirascope (@mirascope)
description:
  - Reads the Minis from the clawfarm API service (C(GET /v1/minis), with a bearer token) and puts them in group
    C(minis), so an operator's C(ansible-playbook) sees the same fleet and the same statuses as the service and the
    playbooks it runs.
  - The source is the API, not the service's database, so the operator needs only the API's URL and a token (never
    the database credentials) and the service's view (the inventory file's Minis, the registered ones, the status and
    capacity set with C(PATCH /v1/minis/{name})) is computed in one place.
  - A Mini registered through C(POST /v1/minis) gets C(ansible_host) (its address), C(cf_tunnel_id),
    C(claw_max_per_mini), C(claw_base_port), C(mini_timezone) and C(mini_status). A Mini of the service's own
    inventory file gets only C(mini_status) and C(claw_max_per_mini) (the file keeps its connection settings; use
    this source after the file, C(-i inventory -i farm.yml), so the service's status wins).
  - Every record is checked with the collection's Mini validation (C(module_utils/_mini.py), the same the API uses);
    a record that fails is skipped with a warning, so no value the API returns can become a template or an SSH
    option.
  - Connection settings (C(ansible_user), C(ansible_become)) come from the operator's C(group_vars/minis.yml) as for
    any Mini.
  - The configuration file's name must end with C(farm.yml) or C(farm.yaml).
options:
  plugin:
    description: The name of this plugin; it makes the file this plugin's configuration.
    required: true
    type: str
    choices: [mirascope.clawfarm.farm]
  api_url:
    description: Base URL of the clawfarm API service (without C(/v1)).
    type: str
    required: true
    env:
      - name: CLAWFARM_API_URL
  api_token:
    description:
      - A bearer token of the service (one of C(CLAWFARM_API_TOKENS)). Better given in the environment than in the
        file; it is never shown.
    type: str
    required: true
    env:
      - name: CLAWFARM_API_TOKEN
  validate_certs:
    description: Verify the service's TLS certificate.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the service.
    type: int
    default: 30
  statuses:
    description: Only the Minis whose status is one of these (default all four).
    type: list
    elements: str
    default: [active, draining, offline, maintenance]
"""

EXAMPLES = r"""
# farm.yml (the token in the environment: CLAWFARM_API_TOKEN=...)
plugin: mirascope.clawfarm.farm
api_url: https://clawfarm-api.internal.example.com

# ansible-inventory -i inventory -i farm.yml --graph
# ansible-playbook -i inventory -i farm.yml playbooks/health.yml

# Only the Minis that take work
plugin: mirascope.clawfarm.farm
api_url: http://127.0.0.1:8080
statuses: [active, draining]
"""

import json

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.urls import open_url
from ansible.plugins.inventory import BaseInventoryPlugin

try:
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _mini
except ImportError:  # pragma: no cover - ansible-test's import sanity test without the collection on the path
    _mini = None

GROUP = "minis"


class InventoryModule(BaseInventoryPlugin):
    """See DOCUMENTATION."""

    NAME = "mirascope.clawfarm.farm"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("farm.yml", "farm.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        minis = self._fetch()
        statuses = set(self.get_option("statuses"))
        self.inventory.add_group(GROUP)
        for record in minis:
            try:
                name, host_vars = self.host_vars(record)
            except (ValueError, TypeError, KeyError) as exc:
                self.display.warning(f"mirascope.clawfarm.farm: skipped a Mini record: {to_native(exc)}")
                continue
            if host_vars.get("mini_status", "active") not in statuses:
                continue
            self.inventory.add_host(name, group=GROUP)
            for key, value in host_vars.items():
                self.inventory.set_variable(name, key, value)

    @staticmethod
    def host_vars(record):
        """``(name, host vars)`` of one record of ``GET /v1/minis`` (see DOCUMENTATION)."""
        fields = {k: record.get(k) for k in ("name", "address", "tunnel_id", "max_claws", "base_port", "timezone", "status")}
        if record.get("source") != "api":
            fields = {k: fields[k] for k in ("name", "max_claws", "status")}
        clean = _mini.validate_mini(fields, partial=record.get("source") != "api")
        name = clean.pop("name")
        return name, _mini.host_vars(clean)

    def _fetch(self):
        url = self.get_option("api_url").rstrip("/") + "/v1/minis"
        try:
            response = open_url(url, headers={"Authorization": f"Bearer {self.get_option('api_token')}", "Accept": "application/json"},
                                validate_certs=self.get_option("validate_certs"), timeout=self.get_option("timeout"),
                                follow_redirects="none")
            data = json.loads(response.read())
        except Exception as exc:  # HTTPError, URLError, a bad answer: the token is never in the message
            raise AnsibleError(f"mirascope.clawfarm.farm: could not read {url}: {to_native(exc)}")
        if not isinstance(data, list):
            raise AnsibleError(f"mirascope.clawfarm.farm: {url} did not answer with a list of Minis")
        return data
