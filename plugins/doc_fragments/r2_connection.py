# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options of the R2 (S3 API) modules (PRIVATE to the collection)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  endpoint_url:
    description: S3 endpoint, for R2 C(https://<account_id>.r2.cloudflarestorage.com).
    type: str
    required: true
  region:
    description: Region; R2 uses V(auto).
    type: str
    default: auto
  access_key_id:
    description: R2 access key id. Never logged.
    type: str
    required: true
  secret_access_key:
    description: R2 secret access key. Never logged.
    type: str
    required: true
  ca_bundle:
    description: A CA bundle file to verify the endpoint's certificate with (default - the system's trust store).
    type: path
"""
