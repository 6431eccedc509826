#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: claw_status
short_description: Report a claw's user, launchd job, port and token-checked gateway health; optionally wait for health
version_added: 0.1.0
description:
  - Reads the claw user's UID (C(getpwnam)), the launchd job with C(launchctl print system/<label>)
    (exit 113 = not loaded), whether the port accepts TCP connections on 127.0.0.1, and the gateway's
    health through its WebSocket handshake with the claw's own token followed by the C(health) call
    (docs/reference/openclaw-gateway.md 3.3). C(/healthz) is not used, because it answers without auth.
  - The token is read on the Mini from the claw's dotenv file (O(env_file)); it is never a module
    option, never on a command line, never returned. The file is read only if it is a regular file owned by the
    claw's uid with one link (opened with C(O_NOFOLLOW), checked with C(fstat)); a symlink or a hard link to another
    claw's file is refused and reported as C(health=failed).
  - The token is sent only to the claw's own gateway. On the probe's connection, before anything is sent, C(lsof)
    names the process that accepted it; it must run as the claw's uid and be the launchd job's pid (C(launchctl
    print)) or a descendant of it (C(ps)). Anything else (another claw listening on the port of a stopped gateway,
    a job launchd does not know) is reported as V(foreign listener) with what was found, and the token is not sent.
  - With O(wait_timeout) > 0 it polls until the gateway is healthy, and fails early with
    C(config error (exit 78)) when launchd reports that two runs in a row exited 78 (EX_CONFIG), instead
    of waiting for launchd's restart loop to time out. One exit 78 is not enough, because OpenClaw also exits 78
    when a startup step times out on a starved host, and the next run starts normally.
  - With O(state_dir), the claw's browser too (docs/browser.md) - the Chromium process of OpenClaw's managed profile
    (C(--user-data-dir=<state_dir>/browser/openclaw/user-data), no C(--type=)) running as the claw's uid, and the RSS
    of its process tree, read from C(ps). A process of another uid naming that directory is not the claw's browser.
  - Never changes anything.
author:
  - Mirascope platform team (@mirascope)
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
  label:
    description: The claw's launchd label.
    type: str
    required: true
  user:
    description: The claw's user name.
    type: str
    required: true
  port:
    description: The gateway's port on 127.0.0.1.
    type: int
    required: true
  env_file:
    description: The claw's dotenv file holding C(CLAW_GATEWAY_TOKEN).
    type: path
    required: true
  wait_timeout:
    description: Seconds to wait for health. V(0) reports the current status once.
    type: int
    default: 0
  fail_unhealthy:
    description: Fail when the gateway is not healthy after O(wait_timeout).
    type: bool
    default: false
  state_dir:
    description: The claw's OpenClaw state dir; given, RV(chromium_pid) and RV(browser) report its browser.
    type: path
  origin_tls_root:
    description:
      - Directory of the claws' origin TLS pairs (module M(mirascope.clawfarm.claw_origin_tls)). When
        C(<origin_tls_root>/<user>/cert.pem) exists (root's), the probe speaks TLS and trusts only that certificate;
        a listener without the claw's key fails the handshake and gets nothing. A claw without one (provisioned
        before origin TLS) is probed over plain WebSocket.
    type: path
    default: /var/db/mirascope-claw-tls
"""

EXAMPLES = r"""
- name: Wait until the claw answers its health check with its token
  mirascope.clawfarm.claw_status:
    label: com.mirascope.claw.1a2b3c4d-0000-4000-8000-000000000001
    user: claw-1a2b3c4d
    port: 8100
    env_file: /Users/claw-1a2b3c4d/.openclaw/.env
    wait_timeout: 120
    fail_unhealthy: true
  become: true
"""

RETURN = r"""
user:
  description: The claw's user name.
  returned: always
  type: str
uid:
  description: The user's UID, or null when the user does not exist.
  returned: always
  type: int
port:
  description: The gateway port.
  returned: always
  type: int
label:
  description: The launchd label.
  returned: always
  type: str
loaded:
  description: Whether launchd knows the job.
  returned: always
  type: bool
launchd_state:
  description: C(state) from C(launchctl print) (V(running), V(spawn scheduled), ...) or V(not loaded).
  returned: always
  type: str
pid:
  description: The gateway's PID, or null.
  returned: always
  type: int
last_exit_code:
  description: The job's last exit code (null if it never exited).
  returned: always
  type: int
runs:
  description: How many times launchd has spawned the job since it was loaded (null when not loaded).
  returned: always
  type: int
listening:
  description: Whether 127.0.0.1:<port> accepts connections.
  returned: always
  type: bool
health:
  description: V(ok), V(failed), V(config error (exit 78)), V(auth failed), V(starting), V(not running), or
    V(foreign listener) (the port is held by a process that is not the claw's launchd job; the token was not sent).
  returned: always
  type: str
health_error:
  description: Why the health check failed (the gateway's error code, the transport error, a refused C(.env), or
    which process holds the port, e.g. C(port 8102 held by pid 4242 of user claw-0a1b2c3d, not com.mirascope.claw.<id>)).
  returned: always
  type: str
version:
  description: OpenClaw version the gateway reported, when healthy.
  returned: always
  type: str
chromium_pid:
  description: PID of the claw's browser (the design's C(chromiumPid)), or null when it does not run or O(state_dir) is not given.
  returned: always
  type: int
browser:
  description:
    - The claw's browser - running (bool), chromium_pid, started_at (UNIX seconds, null from C(ps)), rss_bytes and processes
      (its process tree of the claw's uid), other_browsers (browser processes of the claw's uid on another profile).
      Null without O(state_dir).
  returned: always
  type: dict
waited:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

import pwd
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _browser, _claw, _origin_tls
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _gateway_probe as probe
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _launchd as ld
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandRunner

HEALTH_WORDS = {probe.HEALTHY: "ok", probe.AUTH_FAILED: "auth failed", probe.STARTING: "starting",
                probe.FOREIGN: "foreign listener"}


def snapshot(runner: CommandRunner, p: dict, tools: dict) -> dict:
    """One look at the claw: user, launchd job, port, and the token-checked health of the process holding the port.

    ``tools`` holds the paths of ``lsof`` and ``ps`` (see :class:`probe.ListenerCheck`).
    """
    try:
        uid = pwd.getpwnam(p["user"]).pw_uid
    except KeyError:
        uid = None
    result = runner.run(ld.cmd_print(ld.service_target("system", p["label"])))
    info = ld.parse_print(result.stdout) if result.rc == 0 else {}
    listening = probe.port_accepts(p["port"], timeout=1.0)
    status = {
        "user": p["user"], "uid": uid, "port": p["port"], "label": p["label"],
        "loaded": result.rc == 0, "launchd_state": info.get("state") or "not loaded",
        "pid": info.get("pid"), "last_exit_code": info.get("last_exit_code"), "runs": info.get("runs"),
        "listening": listening, "health": "not running", "health_error": None, "version": None,
    }
    if listening:
        try:
            token = _claw.read_token(p["env_file"], uid)
        except _claw.DotenvRefused as exc:
            token, status["health_error"] = None, str(exc)
        if token is None:
            status.update(health="failed", health_error=status["health_error"] or f"no {_claw.TOKEN_VAR} in {p['env_file']}")
        else:
            check = probe.ListenerCheck(runner.run, tools["lsof"], tools["ps"], p["label"], uid,
                                        info.get("pid") if result.rc == 0 else None)
            outcome = probe.probe_gateway(p["port"], token, verify=check, tls=_origin_tls.probe_tls(p["user"], p.get("origin_tls_root") or _origin_tls.ROOT))
            status["health"] = HEALTH_WORDS.get(outcome["result"], "failed")
            status["health_error"] = outcome["error"]
            status["version"] = outcome["version"]
    if status["health"] != "ok" and status["last_exit_code"] == ld.EXIT_CONFIG and not listening:
        status["health"] = "config error (exit 78)"
    status["browser"] = browser(runner, tools["ps"], uid, p.get("state_dir"))
    status["chromium_pid"] = (status["browser"] or {}).get("chromium_pid")
    return status


def browser(runner: CommandRunner, ps: str, uid, state_dir):
    """The claw's browser from ``ps`` (None without a state dir or a user)."""
    if not state_dir or uid is None:
        return None
    result = runner.run([ps, "-axww", "-o", "pid=,ppid=,uid=,rss=,command="])
    return _browser.browser_status(_browser.ps_processes(result.stdout), uid, _claw.browser_user_data_dir(state_dir.rstrip("/")))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            label=dict(type="str", required=True),
            user=dict(type="str", required=True),
            port=dict(type="int", required=True),
            env_file=dict(type="path", required=True),
            wait_timeout=dict(type="int", default=0),
            fail_unhealthy=dict(type="bool", default=False),
            state_dir=dict(type="path"),
            origin_tls_root=dict(type="path", default=_origin_tls.ROOT),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        ld.validate_label(p["label"])
    except ld.LaunchdError as exc:
        module.fail_json(msg=str(exc))
    runner = CommandRunner(module)
    tools = {"lsof": module.get_bin_path("lsof", required=True, opt_dirs=["/usr/sbin"]),
             "ps": module.get_bin_path("ps", required=True, opt_dirs=["/bin"])}
    started = time.monotonic()
    status = snapshot(runner, p, tools)
    first_config_error_runs = None
    while status["health"] != "ok" and time.monotonic() - started < p["wait_timeout"]:
        if status["health"] == "config error (exit 78)":
            if first_config_error_runs is None:
                first_config_error_runs = status["runs"]
            # The run seen first and the next one both exited 78 (launchd has spawned a third): a real config error.
            if status["runs"] is None or first_config_error_runs is None or status["runs"] - first_config_error_runs >= 2:
                break
        else:
            first_config_error_runs = None
        # A look costs launchctl, lsof and ps. While the port does not accept connections, a cheap connect every
        # 0.2 s finds the moment it does (then look at once), with a look every 2 s to see an exit or a config error.
        # A gateway that accepts but is not healthy yet (its startup sidecars run for a second or two after it
        # listens) is looked at every 0.3 s, so the wait ends within a look of the gateway's readiness.
        time.sleep(0.3 if status["listening"] else 0.2)
        next_look = time.monotonic() + 1.8
        while time.monotonic() < next_look and time.monotonic() - started < p["wait_timeout"] \
                and not probe.port_accepts(p["port"]):
            time.sleep(0.2)
        status = snapshot(runner, p, tools)
    status["waited"] = round(time.monotonic() - started, 1)
    if p["fail_unhealthy"] and status["health"] != "ok":
        hints = {
            "config error (exit 78)": "OpenClaw rejected its configuration (exit 78, EX_CONFIG); launchd keeps restarting it. "
                                      "Read /Library/Logs/mirascope/claws/<user>/launchd.err.log",
            "auth failed": "the gateway refused the claw's token; check CLAW_GATEWAY_TOKEN in the claw's .env",
            "not running": "the gateway does not listen; read /Library/Logs/mirascope/claws/<user>/launchd.err.log and `launchctl print`",
            "foreign listener": "another process holds the claw's port: stop it (see health_error), then start the claw",
        }
        module.fail_json(msg=f"claw {p['label']} is not healthy after {status['waited']} s: {status['health']}"
                             f" ({status['health_error'] or 'no detail'}). {hints.get(status['health'], '')}".strip(),
                         **status)
    module.exit_json(changed=False, **status)


if __name__ == "__main__":
    main()
