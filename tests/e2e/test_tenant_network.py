"""Tenant network isolation and the port plan (issue 16) on a sandbox Mini with two real gateways.

Each claw owns a port family (gateway, browser control +2, CDP +11..+110, docs/port-plan.md); the farm's pf anchor
(docs/tenant-network.md; in the sandbox the pfctl stand-in's nftables rules) lets only the claw's own user reach it,
root its gateway port. OpenClaw opens the control and CDP ports only when the browser runs, so processes of the claw's
own user listen on them here, as the browser would. The tests run in file order and share the two claws.
"""
from __future__ import annotations

import json
import shlex

import pytest
from conftest import CLAWS_DOMAIN, recap

A = "a11ce0e2-7a11-4c1a-9d2b-000000000016"
B = "b0b0e0e2-7a11-4c1a-9d2b-000000000016"
USER = {A: "claw-a11ce0e2", B: "claw-b0b0e0e2"}
GATEWAY = {A: 8100, B: 8228}
TAILNET_ADDRESS = "100.100.16.16"
CONNECT = ("/usr/bin/python3 -c 'import socket, sys\n"
           "try:\n    socket.create_connection((\"{host}\", {port}), timeout=3).close(); print(\"connected\")\n"
           "except OSError as exc:\n    print(type(exc).__name__)'")


def family(claw: str) -> dict:
    gateway = GATEWAY[claw]
    return {"gateway": gateway, "control": gateway + 2, "cdp": gateway + 11}


def connect(mini, port: int, user: str | None = None, host: str = "127.0.0.1") -> str:
    """``connected`` or the error's name (ConnectionRefusedError for a reset or a refusal), as ``user`` (None: root)."""
    command = CONNECT.format(host=host, port=port)
    if user:
        command = f"su -s /bin/sh {user} -c {shlex.quote(command)}"
    return mini.sh(command).stdout.strip()


def listen_as(mini, user: str, port: int, host: str = "127.0.0.1") -> None:
    """A listener of ``user`` on ``port`` (the claw's browser stand-in), gone after 10 minutes or at the Mini's end."""
    server = (f"/usr/bin/python3 -c 'import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              f"s.bind((\"{host}\", {port})); s.listen(16); time.sleep(600)'")
    mini.sh(f"su -s /bin/sh {user} -c {shlex.quote(f'setsid {server} </dev/null >/dev/null 2>&1 &')}")
    mini.sh(f"for i in $(seq 50); do ss -ltnH 'sport = :{port}' | grep -q . && exit 0; sleep 0.1; done; exit 1")


def status(mini, claw: str) -> dict:
    result = mini.playbook("status", "-e", f"claw_id={claw}", check=False)
    block = result.stdout.split("Show the claw's status", 1)[-1]
    fields = dict(line.strip().split(": ", 1) for line in block.splitlines() if ": " in line and line.startswith("        "))
    return {k: v.strip("'") for k, v in fields.items()}


@pytest.fixture(scope="module")
def claws(mini):
    for claw in (A, B):
        result = mini.playbook("provision", "-e", f"claw_id={claw}", check=True)
        assert "health ok" in result.stdout.replace("\n        ", " ")
    yield mini
    mini.sh("pkill -f 'time.sleep\\(600\\)'", check=False)
    for claw in (A, B):
        mini.playbook("deprovision", "-e", f"claw_id={claw}", "-e", "archive=false", "-e", "claw_purge_home=true", check=False)


def test_each_claw_has_its_slots_port_family(claws):
    assert claws.sh("ls /var/db/mirascope/ports").stdout.split() == ["8100", "8228"]
    for claw in (A, B):
        info = status(claws, claw)
        assert info["health"] == "ok" and info["port"] == str(GATEWAY[claw])
        config = json.loads(claws.sh(f"cat /Users/{USER[claw]}/.openclaw/openclaw.json").stdout)
        assert config["gateway"]["port"] == GATEWAY[claw]
    anchor = claws.sh("cat /etc/pf.anchors/com.mirascope.clawfarm").stdout
    uid_a = claws.sh(f"id -u {USER[A]}").stdout.strip()
    assert f"pass out quick on lo0 proto tcp from any to any port 8100:8210 user {uid_a}\n" in anchor
    assert "block return out quick on lo0 proto tcp from any to any port 8228:8338\n" in anchor
    assert claws.sh("pfctl -s info").stdout.startswith("Status: Enabled")
    assert "table inet sandbox_pf" in claws.sh("nft list ruleset").stdout


def test_a_claw_cannot_reach_a_neighbours_gateway_control_or_cdp_port(claws):
    for claw in (A, B):  # the browsers' ports, held by each claw's own user as its Chromium would
        listen_as(claws, USER[claw], family(claw)["control"])
        listen_as(claws, USER[claw], family(claw)["cdp"])
    for kind, port in family(B).items():
        assert connect(claws, port, USER[A]) == "ConnectionRefusedError", f"claw A reached B's {kind} port {port}"
    for kind, port in family(A).items():
        assert connect(claws, port, USER[B]) == "ConnectionRefusedError", f"claw B reached A's {kind} port {port}"
    # not even another account of the Mini (the admin) reaches them
    assert connect(claws, family(B)["cdp"], "admin") == "ConnectionRefusedError"


def test_a_claw_reaches_its_own_ports(claws):
    for claw in (A, B):
        for kind, port in family(claw).items():
            assert connect(claws, port, USER[claw]) == "connected", f"{USER[claw]} could not reach its own {kind} port {port}"


def test_root_reaches_each_gateway_but_no_browser_port_and_health_still_passes(claws):
    for claw in (A, B):
        assert connect(claws, family(claw)["gateway"]) == "connected"
        assert connect(claws, family(claw)["control"]) == "ConnectionRefusedError"
        assert connect(claws, family(claw)["cdp"]) == "ConnectionRefusedError"
        assert status(claws, claw)["health"] == "ok"


def test_claw_users_cannot_reach_the_tailnet(claws):
    # A tailnet address on the Mini itself (the sandbox has no tailnet), served by root.
    claws.sh(f"ip addr add {TAILNET_ADDRESS}/32 dev lo")
    try:
        listen_as(claws, "root", 4242, TAILNET_ADDRESS)
        assert connect(claws, 4242, "admin", TAILNET_ADDRESS) == "connected"
        assert connect(claws, 4242, USER[A], TAILNET_ADDRESS) == "ConnectionRefusedError"
    finally:
        claws.sh(f"ip addr del {TAILNET_ADDRESS}/32 dev lo", check=False)


def test_audit_reports_a_stale_anchor_and_bootstrap_repairs_it(claws):
    claws.sh("echo 'pass out quick on lo0 proto tcp from any to any port 8228:8338 user 501' >> /etc/pf.anchors/com.mirascope.clawfarm")
    audit = claws.playbook("audit", check=False)
    assert audit.returncode != 0
    assert "/etc/pf.anchors/com.mirascope.clawfarm is stale" in audit.stdout
    check = claws.playbook("bootstrap", "--tags", "pf", "--check", "--diff", check=True)
    assert "user 501" in check.stdout and "user 501" in claws.sh("cat /etc/pf.anchors/com.mirascope.clawfarm").stdout
    fixed = claws.playbook("bootstrap", "--tags", "pf", check=True)
    assert recap(fixed.stdout)[claws.name]["changed"] >= 1
    assert "user 501" not in claws.sh("cat /etc/pf.anchors/com.mirascope.clawfarm").stdout
    assert "com.mirascope.pf" in claws.sh("launchctl print system/com.mirascope.pf").stdout
    again = claws.playbook("bootstrap", "--tags", "pf", check=True)
    assert recap(again.stdout)[claws.name]["changed"] == 0
    audit = claws.playbook("audit", check=False)
    for problem in ("com.mirascope.clawfarm is stale", "com.mirascope.clawfarm is not loaded", "pf is disabled"):
        assert problem not in audit.stdout, audit.stdout[-3000:]


def test_reprovision_moves_a_claw_off_the_old_layout(claws):
    """B as a claw provisioned before the port plan (claim and gateway on 8101, the old consecutive layout) moves to a
    free slot with a plain re-provision, its data, token and env intact."""
    home = f"/Users/{USER[B]}"
    claws.sh(f"su -s /bin/sh {USER[B]} -c 'echo kept-across-the-move > {home}/.openclaw/workspace/marker.txt'")
    # The old layout: B's claim and its gateway on 8101 (inside A's family), the anchor rewritten for it.
    claws.sh("mv /var/db/mirascope/ports/8228 /var/db/mirascope/ports/8101")
    claws.sh(f"/usr/bin/python3 -c 'import json; p = \"{home}/.openclaw/openclaw.json\"; c = json.load(open(p)); "
             "c[\"gateway\"][\"port\"] = 8101; open(p, \"w\").write(json.dumps(c))'")
    claws.sh(f"launchctl kickstart -k system/com.mirascope.claw.{B}")
    claws.playbook("bootstrap", "--tags", "pf", check=True)
    before = {"env": claws.sh(f"sha256sum {home}/.openclaw/.env").stdout.split()[0],
              "marker": claws.sh(f"cat {home}/.openclaw/workspace/marker.txt").stdout}
    for _ in range(30):
        info = status(claws, B)
        if info.get("health") == "ok":
            break
    assert info["port"] == "8101" and info["health"] == "ok"
    audit = claws.playbook("audit", check=False)
    assert "which is no slot's gateway port" in audit.stdout and "overlap" in audit.stdout

    moved = claws.playbook("provision", "-e", f"claw_id={B}", check=True)
    assert "health ok" in moved.stdout.replace("\n        ", " ")
    assert claws.sh("ls /var/db/mirascope/ports").stdout.split() == ["8100", "8228"]
    info = status(claws, B)
    assert info["port"] == "8228" and info["health"] == "ok"
    assert json.loads(claws.sh(f"cat {home}/.openclaw/openclaw.json").stdout)["gateway"]["port"] == 8228
    assert claws.sh(f"sha256sum {home}/.openclaw/.env").stdout.split()[0] == before["env"]  # token and env untouched
    assert claws.sh(f"cat {home}/.openclaw/workspace/marker.txt").stdout == before["marker"]
    route = claws.sh("cat /etc/cloudflared/config.yml").stdout
    assert f"claw-{B}.{CLAWS_DOMAIN}" in route and "https://localhost:8228" in route and "https://localhost:8101" not in route
    assert "block return out quick on lo0 proto tcp from any to any port 8228:8338\n" in claws.sh(
        "cat /etc/pf.anchors/com.mirascope.clawfarm").stdout
    assert connect(claws, 8228, USER[A]) == "ConnectionRefusedError" and connect(claws, 8228, USER[B]) == "connected"
    audit = claws.playbook("audit", check=False)
    assert audit.returncode == 0, audit.stdout[-3000:]
