#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: mini_health
short_description: Sample a Mini's health and every claw's on it (CPU, memory, disks, processes, launchd, gateway handshake)
version_added: 0.2.0
description:
  - Host (psutil) - CPU percent over O(cpu_interval) seconds, load averages, memory used/total, disk used/total per
    mounted volume, uptime.
  - Claws are found from the Mini's port claims (C(<claim_dir>/<port>) holding the claw id). Per claw -
    C(launchctl print system/<label>) (state, pid, C(runs) = how often launchd started it, which reveals restart
    loops, last exit code), the process tree's RSS and CPU percent and its uptime (psutil), whether the port is
    listening, and the gateway's token-checked WebSocket C(connect) + C(health) handshake with its latency.
  - The token is read from the claw's C(.env) only if it is a regular file owned by the claw's uid with one link, and
    it is sent only when C(lsof) shows that the claw's launchd job (or a child of it) accepted the probe's connection;
    otherwise the claw's health is V(failed) or V(foreign listener) and the claw's C(health_error) in RV(claws) says what was found.
  - Read only; runs C(launchctl print) once per claw. Needs psutil (the farm venv from the C(mini_python) role).
  - The result follows the design's health JSON - C(mini) for the host, C(claws) one record per claw.
author:
  - Mirascope platform team (@mirascope)
requirements:
  - psutil on the host running the module.
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  claim_dir:
    description: Root-owned directory of the port claim files.
    type: path
    default: /var/db/mirascope/ports
  label_prefix:
    description: launchd label prefix of the claws.
    type: str
    default: com.mirascope.claw
  users_dir:
    description: Where claw homes live.
    type: path
    default: /Users
  cpu_interval:
    description: Seconds over which the host's CPU percent is measured.
    type: float
    default: 1.0
  handshake_timeout:
    description: Seconds allowed for each gateway handshake.
    type: float
    default: 5.0
  origin_tls_root:
    description:
      - Directory of the claws' origin TLS pairs (module M(mirascope.clawfarm.claw_origin_tls)). When
        C(<origin_tls_root>/<user>/cert.pem) exists (root's), the probe speaks TLS and trusts only that certificate;
        a listener without the claw's key fails the handshake and gets nothing. A claw without one (provisioned
        before origin TLS) is probed over plain WebSocket.
    type: path
    default: /var/db/mirascope-claw-tls
  connector_label:
    description: launchd label of the Mini's tunnel connector, reported as RV(connector). Empty - not checked.
    type: str
    default: com.cloudflare.cloudflared
seealso:
  - module: mirascope.clawfarm.claw_status
"""

EXAMPLES = r"""
- name: Sample the Mini
  mirascope.clawfarm.mini_health:
  vars:
    ansible_python_interpreter: /opt/mirascope/python/bin/python3
  register: sample
"""

RETURN = r"""
sampled_at:
  description: UNIX time of the sample (seconds).
  returned: always
  type: float
mini:
  description:
    - Host metrics - cpu_percent, load_avg (1, 5, 15 min), memory (used_bytes, total_bytes, percent),
      disks (mount, used_bytes, total_bytes, percent), uptime_s.
  returned: always
  type: dict
connector:
  description: The tunnel connector's launchd job - label, state (V(running), V(not loaded), ...), pid, runs. Null when not checked.
  returned: always
  type: dict
claws:
  description:
    - One record per claw - claw_id, label, port, pid, launchd_state, runs, last_exit_code, rss_bytes, cpu_percent,
      uptime_s, listening, health (ok, auth failed, starting, failed, not running, config error (exit 78),
      foreign listener), health_error (why it is not ok, e.g. which process holds the port), handshake_ms, version,
      browser (the claw's browser, docs/browser.md - running, chromium_pid, started_at, rss_bytes and processes of its
      process tree of the claw's uid, other_browsers; the gateway's rss_bytes includes it, being its parent).
  returned: always
  type: list
  elements: dict
"""

import os
import pwd
import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ..module_utils import _browser, _claw, _origin_tls
from ..module_utils import _gateway_probe as probe
from ..module_utils import _health as health
from ..module_utils import _launchd as ld
from ..module_utils._command import CommandRunner

HEALTH_WORDS = {probe.HEALTHY: "ok", probe.AUTH_FAILED: "auth failed", probe.STARTING: "starting",
                probe.FOREIGN: "foreign listener"}


def claw_record(runner, psutil, port: int, claw_id: str, p: dict, tools: dict, processes=()) -> dict:
    """One claw's health record; the token goes only to the process the claw's launchd job runs."""
    ident = _claw.claw_identity(claw_id, p["label_prefix"], p["users_dir"])
    result = runner.run(ld.cmd_print(ld.service_target("system", ident["label"])))
    info = ld.parse_print(result.stdout) if result.rc == 0 else {}
    record = {"claw_id": claw_id, "label": ident["label"], "user": ident["user"], "port": port, "pid": info.get("pid"),
              "launchd_state": info.get("state") or "not loaded", "runs": info.get("runs"), "last_exit_code": info.get("last_exit_code")}
    record.update(health.process_sample(psutil, info.get("pid")))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            record["listening"] = True
    except OSError:
        record["listening"] = False
    record.update(health="not running", health_error=None, handshake_ms=None, version=None)
    if record["listening"]:
        try:
            uid = pwd.getpwnam(ident["user"]).pw_uid
        except KeyError:
            uid = None
        env_file = os.path.join(ident["state_dir"], ".env")
        try:
            token = _claw.read_token(env_file, uid)
        except _claw.DotenvRefused as exc:
            token, record["health_error"] = None, str(exc)
        if token:
            check = probe.ListenerCheck(runner.run, tools["lsof"], tools["ps"], ident["label"], uid,
                                        info.get("pid") if result.rc == 0 else None)
            started = time.monotonic()
            outcome = probe.probe_gateway(port, token, timeout=p["handshake_timeout"], verify=check,
                                          tls=_origin_tls.probe_tls(ident["user"], p.get("origin_tls_root") or _origin_tls.ROOT))
            record["handshake_ms"] = round((time.monotonic() - started) * 1000, 1)
            record["health"] = HEALTH_WORDS.get(outcome["result"], "failed")
            record["health_error"] = outcome["error"]
            record["version"] = outcome["version"]
        else:
            record["health"] = "failed"
            record["health_error"] = record["health_error"] or f"no {_claw.TOKEN_VAR} in {env_file}"
    elif record["last_exit_code"] == ld.EXIT_CONFIG:
        record["health"] = "config error (exit 78)"
    try:
        claw_uid = pwd.getpwnam(ident["user"]).pw_uid
    except KeyError:
        claw_uid = None
    record["browser"] = (None if claw_uid is None else
                         _browser.browser_status(processes, claw_uid, _claw.browser_user_data_dir(ident["state_dir"])))
    return record


def main():
    module = AnsibleModule(
        argument_spec=dict(
            claim_dir=dict(type="path", default="/var/db/mirascope/ports"),
            label_prefix=dict(type="str", default="com.mirascope.claw"),
            users_dir=dict(type="path", default="/Users"),
            cpu_interval=dict(type="float", default=1.0),
            handshake_timeout=dict(type="float", default=5.0),
            origin_tls_root=dict(type="path", default=_origin_tls.ROOT),
            connector_label=dict(type="str", default="com.cloudflare.cloudflared"),
        ),
        supports_check_mode=True,
    )
    try:
        import psutil
    except ImportError:
        module.fail_json(msg="mini_health needs psutil: run bootstrap.yml --tags python and run this module with the farm venv's Python")
    p = module.params
    runner = CommandRunner(module)
    sampled_at = time.time()
    mini = health.mini_sample(psutil, p["cpu_interval"])
    tools = {"lsof": module.get_bin_path("lsof", required=True, opt_dirs=["/usr/sbin"]),
             "ps": module.get_bin_path("ps", required=True, opt_dirs=["/bin"])}
    processes = _browser.psutil_processes(psutil)  # one look at the Mini's processes for every claw's browser
    claws = [claw_record(runner, psutil, port, claw_id, p, tools, processes)
             for port, claw_id in health.claws_from_claims(_claw.read_port_claims(p["claim_dir"]))]
    connector = None
    if p["connector_label"]:
        result = runner.run(ld.cmd_print(ld.service_target("system", p["connector_label"])))
        info = ld.parse_print(result.stdout) if result.rc == 0 else {}
        connector = {"label": p["connector_label"], "state": info.get("state") or "not loaded", "pid": info.get("pid"), "runs": info.get("runs")}
    module.exit_json(changed=False, sampled_at=sampled_at, mini=mini, connector=connector, claws=claws)


if __name__ == "__main__":
    main()
