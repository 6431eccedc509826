#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_import_source
short_description: Fetch a claw's Cloudflare Containers export on the control node and check it as restore would
version_added: 0.3.0
description:
  - Runs on the control node. Brings the export O(src) - an C(.openclaw) directory as C(.tar), C(.tar.gz) or
    C(.tar.zst) - to a local file (a control-node path is read where it is; C(s3://bucket/key) is read with the farm's
    own S3 key pair, which never goes to a Mini; an C(https://) URL is downloaded with certificate checks) and reads it
    once without extracting anything.
  - Every member passes the checks a restore applies (M(mirascope.clawfarm.r2_archive) - no absolute names or C(..),
    no hard link outside the export, no devices or FIFOs, no sparse files), within O(max_entries) entries and
    O(max_bytes) content bytes; anything else fails naming the member, before anything is provisioned.
  - With O(config) and O(state_dir), also says which settings of the export's C(openclaw.json) the farm rewrites
    (gateway port, bind, auth, paths, logging) and which of the agent's it keeps (RV(plan)), as
    M(mirascope.clawfarm.claw_import) will. Values are never returned (an inline token stays out of every output).
  - Changes nothing but O(dest) (a new file, 0600); check mode fetches and reads too (a read of the source).
author:
  - Mirascope platform team (@mirascope)
requirements:
  - boto3 on the control node for an C(s3://) source; zstandard for a C(.tar.zst) export.
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Each run downloads the source again into a new O(dest).
options:
  src:
    description:
      - The export - an absolute path on the control node, C(s3://bucket/key) (on the farm's S3 endpoint
        O(endpoint_url)) or an C(https://) URL without credentials in it.
    type: str
    required: true
  dest:
    description:
      - The local file to write a downloaded export to (must not exist; made 0600). Not used for a path O(src).
      - Required for C(s3://) and C(https://) sources.
    type: path
  max_entries:
    description: The most tar members the export may have.
    type: int
    default: 1000000
  max_bytes:
    description: The most file content bytes the export may hold (and, compressed, download).
    type: int
    default: 53687091200
  config:
    description:
      - The farm's gateway config of the claw (filter C(mirascope.clawfarm.claw_gateway_config), as the claw role
        writes it), for RV(plan).
    type: dict
  state_dir:
    description: The claw's state directory on its Mini (C(/Users/claw-xxxxxxxx/.openclaw)), for RV(plan).
    type: path
  source_state_dir:
    description:
      - The state directory the export's config names its paths under (default - found from the config's workspace or
        log file, else C(/home/node/.openclaw) and the other usual container places).
    type: path
  endpoint_url:
    description: The farm's S3 endpoint (R2 C(https://<account_id>.r2.cloudflarestorage.com)), for an C(s3://) O(src).
    type: str
  region:
    description: S3 region; R2 uses V(auto).
    type: str
    default: auto
  access_key_id:
    description: The farm's S3 access key id (control node only). Never logged.
    type: str
  secret_access_key:
    description: The farm's S3 secret access key. Never logged.
    type: str
  ca_bundle:
    description: A CA bundle to verify the S3 endpoint or the https server with (default - the system's trust store).
    type: path
  timeout:
    description: Seconds without progress before a download fails.
    type: int
    default: 120
seealso:
  - module: mirascope.clawfarm.claw_import
"""

EXAMPLES = r"""
- name: Fetch and check the export
  mirascope.clawfarm.claw_import_source:
    src: s3://claw-exports/1a2b3c4d.tar.zst
    dest: /tmp/clawfarm-import-x/export
    endpoint_url: "{{ r2_endpoint_url }}"
    access_key_id: "{{ r2_access_key_id }}"
    secret_access_key: "{{ r2_secret_access_key }}"
  delegate_to: localhost
  register: claw_import_fetched

- name: What an import would keep and rewrite
  mirascope.clawfarm.claw_import_source:
    src: "{{ claw_import_fetched.path }}"
    config: "{{ 8120 | mirascope.clawfarm.claw_gateway_config('/Users/claw-1a2b3c4d/.openclaw') }}"
    state_dir: /Users/claw-1a2b3c4d/.openclaw
  delegate_to: localhost
"""

RETURN = r"""
kind:
  description: What O(src) is - V(path), V(s3) or V(https).
  returned: success
  type: str
path:
  description: The local file holding the export (O(src) itself for a path, else O(dest)).
  returned: success
  type: str
format:
  description: V(tar), V(gzip) or V(zstd) (from the file's first bytes, not its name).
  returned: success
  type: str
size:
  description: The export's size in bytes as fetched.
  returned: success
  type: int
sha256:
  description: SHA-256 of the export as fetched.
  returned: success
  type: str
entries:
  description: Tar members.
  returned: success
  type: int
files:
  description: Regular files.
  returned: success
  type: int
bytes:
  description: File content bytes.
  returned: success
  type: int
root:
  description: V(.openclaw) when the members sit under C(.openclaw/) (stripped on import), else empty.
  returned: success
  type: str
has_config:
  description: Whether the export has an C(openclaw.json).
  returned: success
  type: bool
plan:
  description: The config rewrite (dotted paths, never values).
  returned: when O(config) and O(state_dir) are given
  type: dict
  contains:
    rewritten:
      description: Settings the farm sets (its value replaces the export's, or a path moved under the claw's state dir).
      type: list
      elements: str
      sample: [gateway.auth, gateway.bind, gateway.port, agents.defaults.workspace, logging.file]
    kept:
      description: The agent's settings kept as exported (up to three levels deep).
      type: list
      elements: str
      sample: [agents.defaults.model, models.providers.anthropic]
    dropped:
      description: Files of the export that are not imported (the claw keeps its own C(.env)).
      type: list
      elements: str
    source_state_dir:
      description: The export's state directory its paths were moved from (null when not found in the config).
      type: str
"""

import hashlib
import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _import as imp
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2

CHUNK = 1024 * 1024


def _copy(body, dest: str, limit: int) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    size = 0
    try:
        while True:
            chunk = body.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise r2.ArchiveError(f"the export is larger than {limit} bytes (max_bytes); refusing it")
            r2._write_all(fd, chunk)
    except Exception:
        os.close(fd)
        os.unlink(dest)
        raise
    os.close(fd)


def fetch(p: dict, source: dict) -> str:
    """The local file of the export (downloaded to O(dest) for s3 and https)."""
    if source["kind"] == "path":
        st = os.stat(source["path"])
        if not stat.S_ISREG(st.st_mode):
            raise r2.ArchiveError(f"{source['path']} is not a regular file")
        return source["path"]
    if not p["dest"]:
        raise r2.ArchiveError("dest is required for an s3:// or https:// source")
    if source["kind"] == "s3":
        if not (p["endpoint_url"] and p["access_key_id"] and p["secret_access_key"]):
            raise r2.ArchiveError("an s3:// source needs the farm's endpoint_url, access_key_id and secret_access_key "
                                  "(r2_endpoint_url, r2_access_key_id, r2_secret_access_key)")
        client = r2.make_s3_client(p["endpoint_url"], p["access_key_id"], p["secret_access_key"], p["region"], p["ca_bundle"])
        try:
            body = client.get_object(Bucket=source["bucket"], Key=source["key"])["Body"]
        except Exception as exc:
            raise r2.ArchiveError(f"cannot read s3://{source['bucket']}/{source['key']}: {r2.describe_s3_error(exc)}")
        _copy(body, p["dest"], p["max_bytes"])
        return p["dest"]
    try:
        body = open_url(source["url"], method="GET", timeout=p["timeout"], validate_certs=True, follow_redirects="safe",
                        ca_path=p["ca_bundle"], http_agent="clawfarm-import")
    except Exception as exc:  # the URL may hold a signature: name only the host
        from urllib.parse import urlsplit

        raise r2.ArchiveError(f"cannot download the export from {urlsplit(source['url']).hostname}: "
                              f"{getattr(exc, 'code', '') or type(exc).__name__}")
    _copy(body, p["dest"], p["max_bytes"])
    return p["dest"]


def digest(path: str) -> tuple:
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="str", required=True),
            dest=dict(type="path"),
            max_entries=dict(type="int", default=imp.DEFAULT_MAX_ENTRIES),
            max_bytes=dict(type="int", default=imp.DEFAULT_MAX_BYTES),
            config=dict(type="dict"),
            state_dir=dict(type="path"),
            source_state_dir=dict(type="path"),
            endpoint_url=dict(type="str"),
            region=dict(type="str", default="auto"),
            access_key_id=dict(type="str", no_log=True),
            secret_access_key=dict(type="str", no_log=True),
            ca_bundle=dict(type="path"),
            timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
        required_together=[("config", "state_dir")],
    )
    p = module.params
    try:
        source = imp.parse_source(p["src"])
    except imp.ImportInputError as exc:
        module.fail_json(msg=f"claw_import_source: {exc}")
    try:
        path = fetch(p, source)
        size, sha = digest(path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as raw:
            fmt, stream = imp.tar_reader(raw)
            info = imp.inspect_stream(stream, imp.limits_for(p["max_entries"], p["max_bytes"]))
    except (r2.ArchiveError, OSError) as exc:
        module.fail_json(msg=f"claw_import_source ({source['kind']} source): {exc}")
    result = dict(changed=False, kind=source["kind"], path=path, format=fmt, size=size, sha256=sha,
                  entries=info["entries"], files=info["files"], bytes=info["bytes"], root=info["root"],
                  has_config=info["config"] is not None)
    if p["config"] is not None:
        try:
            farm = imp.check_farm_config(p["config"], p["state_dir"])
        except r2.ArchiveError as exc:
            module.fail_json(msg=f"claw_import_source: {exc}")
        _config, plan = imp.rewrite_config(info["config"], farm, p["state_dir"], p["source_state_dir"])
        result["plan"] = dict(plan, dropped=[name for name in imp.DROPPED if name in info["names"]])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
