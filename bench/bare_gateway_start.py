#!/usr/bin/python3
"""Mini-side half of bench/provision_bench.py: the baseline, a bare first start of the installed OpenClaw gateway.

Runs inside a (sandbox) Mini as root with the Mini's Python (3.9):

    /usr/bin/python3 bench/bare_gateway_start.py NODE ENTRY USER PORT [restart]

Makes a fresh state dir (``/var/tmp/bare-gateway-<random>``, the user's, 0700) holding the same ``openclaw.json`` a
claw gets (``_claw.gateway_config``), starts ``NODE ENTRY gateway run`` as USER with a new token in its environment
(never in argv), and polls the gateway's token-checked health call (``_gateway_probe.probe_gateway``, every 0.1 s)
until it answers ``ok``. Prints one JSON line ``{"seconds": float, "result": str}`` (seconds from spawn to the first
healthy answer; ``result`` other than ``ok`` when it gave up after 120 s), then stops the gateway and removes the
state dir. No launchd, no start gate, no Ansible: what a provision is compared with. With ``restart`` the gateway
is started, stopped and started again on the same state dir, and the second (warm) start is timed: what a
migration's downtime is compared with.
"""
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

UTILS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins", "module_utils")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(UTILS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    node, entry, user, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    probe = _load("_gateway_probe")
    claw = _load("_claw")
    account = pwd.getpwnam(user)
    state = tempfile.mkdtemp(prefix="bare-gateway-", dir="/var/tmp")
    for sub in ("", "workspace", "logs", "tmp", "cache"):
        path = os.path.join(state, sub)
        os.makedirs(path, exist_ok=True)
        os.chown(path, account.pw_uid, account.pw_gid)
        os.chmod(path, 0o700)
    config = os.path.join(state, "openclaw.json")
    with open(config, "w") as handle:
        json.dump(claw.gateway_config(port, state), handle)
    os.chown(config, account.pw_uid, account.pw_gid)
    token = secrets.token_urlsafe(32)
    env = {"HOME": state, "USER": user, "LOGNAME": user, "PATH": os.path.dirname(node) + ":/usr/bin:/bin",
           "TMPDIR": os.path.join(state, "tmp"), "XDG_CACHE_HOME": os.path.join(state, "cache"),
           "OPENCLAW_STATE_DIR": state, "OPENCLAW_SUPERVISOR_MODE": "external", "OPENCLAW_DISABLE_BONJOUR": "1",
           "OPENCLAW_NO_AUTO_UPDATE": "1", claw.TOKEN_VAR: token, "LANG": "en_US.UTF-8"}  # as the claw's job

    def drop():
        os.setsid()
        os.setgid(account.pw_gid)
        os.setgroups([account.pw_gid])
        os.setuid(account.pw_uid)

    def start_until_healthy():
        started = time.monotonic()
        gateway = subprocess.Popen([node, entry, "gateway", "run"], env=env, cwd=state, preexec_fn=drop,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = "timeout"
        while time.monotonic() - started < 120 and gateway.poll() is None:
            if probe.probe_gateway(port, token, timeout=2.0)["result"] == probe.HEALTHY:
                result = "ok"
                break
            time.sleep(0.1)
        if gateway.poll() is not None:
            result = "exited %s" % gateway.returncode
        return gateway, time.monotonic() - started, result

    def stop(gateway):
        try:
            os.killpg(gateway.pid, signal.SIGTERM)
            gateway.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(gateway.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    gateway = None
    try:
        gateway, seconds, result = start_until_healthy()
        if len(sys.argv) > 5 and sys.argv[5] == "restart" and result == "ok":
            stop(gateway)
            gateway, seconds, result = start_until_healthy()
    finally:
        if gateway is not None:
            stop(gateway)
        shutil.rmtree(state, ignore_errors=True)
    print(json.dumps({"seconds": round(seconds, 3), "result": result}))


if __name__ == "__main__":
    main()
