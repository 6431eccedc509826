# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which tunnel the ingress modules work on: the local config.yml or a remotely managed tunnel (PRIVATE to the
collection); argument spec in module_utils/_ingress.py ``tunnel_argument_spec``."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  mode:
    description:
      - V(local) works on O(config_path) on the host (a locally managed tunnel); V(api) on the remotely managed tunnel
        O(tunnel_id) through the Cloudflare API.
    type: str
    choices: [local, api]
    default: local
  config_path:
    description: The locally managed tunnel's configuration file (O(mode=local)). It must exist.
    type: path
    default: /etc/cloudflared/config.yml
  account_id:
    description: Cloudflare account id (O(mode=api)).
    type: str
  tunnel_id:
    description: The tunnel's UUID (O(mode=api)).
    type: str
"""
