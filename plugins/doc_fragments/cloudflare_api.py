# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the modules that call the Cloudflare API through the official SDK (PRIVATE to the collection)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_token:
    description:
      - Cloudflare API token (Account > Cloudflare Tunnel > Edit for tunnel configurations, Zone > DNS > Edit for records).
      - Defaults to the environment variable C(CLOUDFLARE_API_TOKEN). Never logged.
    type: str
  api_base_url:
    description: Base URL of the Cloudflare API (a local stand-in in tests).
    type: str
    default: https://api.cloudflare.com/client/v4
  api_max_retries:
    description: Retries of the SDK for 408, 409, 429, 5xx and connection errors (back-off, honouring C(retry-after)).
    type: int
    default: 2
  api_timeout:
    description: Timeout of one API request, in seconds.
    type: float
    default: 30
"""
