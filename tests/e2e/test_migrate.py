"""Migration between sandbox Minis (fleet fl1-fl3, real rsync over SSH between their namespaces, real gateways).

Pre-copy: the claw keeps its data, token and hostname; the source keeps no user, plist or process; the route and the
DNS record follow it. A target that fails health leaves the claw healthy on the source. Minis that cannot reach each
other fall back to the R2 archive path.
"""
from __future__ import annotations

import re

import pytest
import yaml
from claw_invariants import Claw, ClawInvariants, FleetMini, realistic_claw
from conftest import CLAWS_DOMAIN, recap

CLAW = "a1b2c3d4-0f1e-4d2c-9b8a-7766554433e1"
USER = "claw-a1b2c3d4"
HOME = f"/Users/{USER}"
LABEL = f"com.mirascope.claw.{CLAW}"
HOSTNAME = f"claw-{CLAW}.{CLAWS_DOMAIN}"
MARKER = f"{HOME}/.openclaw/workspace/marker.txt"
# A migration places the claw anew: the Mini, its port and the route and DNS record that point at it change; nothing else.
MOVED = ("mini", "port", "route", "dns")


def capture(fleet, farm, name):
    return ClawInvariants.capture(FleetMini(fleet, None, name), Claw(CLAW), cf=farm["cf"])


def assert_moved(fleet, farm, before, target, method):
    """The claw on ``target`` is the claw that left: same data, owners, modes, settings and job; port, route and DNS agree."""
    after = capture(fleet, farm, target)
    ClawInvariants.assert_same(before, after, allowed=MOVED, operation=f"a migration by {method}")
    port = after["port"]["configured"]
    assert after["port"]["claimed"] == [port] and after["route"] == [f"https://localhost:{port}"]
    assert [record.split(".")[0] for record in after["dns"]] == [fleet.hosts[target]["cf_tunnel_id"]]


@pytest.fixture(scope="module")
def inventory(fleet):
    inventory = fleet.inventory("migrate")
    yield inventory
    for name in fleet.names:
        if fleet.sh(name, f"test -e /Library/LaunchDaemons/{LABEL}.plist", check=False).returncode == 0:
            fleet.playbook(inventory, "deprovision", "-e", f"claw_id={CLAW}", "-e", f"mini={name}", "-e", "archive=false",
                           "-e", "claw_purge_home=true")


def holder(fleet) -> list:
    """The Minis whose port claims hold the claw."""
    return [n for n in fleet.names if CLAW in fleet.sh(n, "cat /var/db/mirascope/ports/* 2>/dev/null", check=False).stdout]


def rule_port(fleet, name):
    rules = yaml.safe_load(fleet.sh(name, "cat /etc/cloudflared/config.yml").stdout)["ingress"]
    return next((r["service"] for r in rules if r.get("hostname") == HOSTNAME), None)


def cname(fleet, farm):
    [record] = [r for r in farm["cf"].records() if r["name"] == HOSTNAME]
    return record["content"].split(".")[0]


def healthy(fleet, inventory, name) -> bool:
    status = fleet.playbook(inventory, "status", "-e", f"claw_id={CLAW}", "-e", f"mini={name}")
    return status.returncode == 0 and re.search(r'^\s+health: ok$', status.stdout, re.MULTILINE) is not None


def report(output: str) -> re.Match:
    match = re.search(r"moved from (\S+) \(port (\d+)\) to (\S+) \(port (\d+)\) by (\w+): downtime ([\d.]+) s", " ".join(output.split()))
    assert match, output[-4000:]
    return match


def test_precopy_migration_keeps_data_token_and_hostname(fleet, inventory, farm, tmp_path):
    token = realistic_claw(FleetMini(fleet, inventory, "fl1"), CLAW, tmp_path).token
    fleet.sh("fl1", f"echo marker-{CLAW} > {MARKER} && chown {USER}:$(stat -c %g {HOME}) {MARKER}")
    before = capture(fleet, farm, "fl1")
    assert cname(fleet, farm) == fleet.hosts["fl1"]["cf_tunnel_id"]

    dry = fleet.playbook(inventory, "migrate", "-e", f"claw_id={CLAW}", "--check", "--diff", check=True)
    # Check mode reports the port claim it would make on the target (changed) but writes nothing anywhere.
    assert "would move claw" in dry.stdout and all(r["failed"] == 0 for r in recap(dry.stdout).values())
    assert holder(fleet) == ["fl1"]
    assert all(fleet.sh(n, f"test -e {HOME}", check=False).returncode != 0 for n in ("fl2", "fl3"))

    moved = fleet.playbook(inventory, "migrate", "-e", f"claw_id={CLAW}", check=True)
    match = report(moved.stdout)
    source, target, method = match.group(1), match.group(3), match.group(5)
    assert (source, method) == ("fl1", "rsync") and target in ("fl2", "fl3")
    assert float(match.group(6)) < 120
    assert re.search(r"bytes moved: precopy \d+, delta \d+", " ".join(moved.stdout.split()))

    assert holder(fleet) == [target]
    assert_moved(fleet, farm, before, target, "rsync")
    again = fleet.playbook(inventory, "migrate", "-e", f"claw_id={CLAW}", "-e", f"target={target}", check=True)
    assert f"already on {target}: nothing to move" in again.stdout and all(r["changed"] == 0 for r in recap(again.stdout).values())
    assert fleet.sh(target, f"cat {MARKER}").stdout.strip() == f"marker-{CLAW}"
    env = fleet.sh(target, f"stat -c '%a %U' {HOME}/.openclaw/.env; grep -c '^CLAW_GATEWAY_TOKEN={token}$' {HOME}/.openclaw/.env").stdout.split("\n")
    assert env[0] == f"600 {USER}" and env[1] == "1"
    assert healthy(fleet, inventory, target)  # claw_status authenticates with the claw's (unchanged) token

    assert fleet.sh("fl1", f"dscl . -read /Users/{USER}", check=False).returncode != 0
    assert fleet.sh("fl1", f"test -e /Library/LaunchDaemons/{LABEL}.plist", check=False).returncode != 0
    assert fleet.sh("fl1", f"launchctl print system/{LABEL}", check=False).returncode != 0
    assert USER not in fleet.sh("fl1", "ps -eo user:32,args").stdout
    assert fleet.sh("fl1", f"test -e {HOME}", check=False).returncode != 0
    assert fleet.sh("fl1", f"ls /var/db/mirascope/tombstones | grep -c {CLAW}").stdout.strip() == "1"

    assert rule_port(fleet, "fl1") is None
    assert rule_port(fleet, target) == f"https://localhost:{match.group(4)}"
    assert cname(fleet, farm) == fleet.hosts[target]["cf_tunnel_id"]
    assert "claw-migrate" not in fleet.sh(target, "cat /Users/admin/.ssh/authorized_keys").stdout
    assert fleet.sh("fl1", f"test -e /var/db/mirascope/migrate/{CLAW}", check=False).returncode != 0


def test_target_that_fails_health_leaves_the_claw_on_the_source(fleet, inventory, farm):
    [source] = holder(fleet)
    before = capture(fleet, farm, source)
    target = next(n for n in ("fl2", "fl3") if n != source)
    claimed = fleet.sh(target, "ls /var/db/mirascope/ports 2>/dev/null", check=False).stdout.split()
    port = next(p for p in range(8100, 8100 + 12 * 128, 128) if str(p) not in claimed)  # the lowest free slot (port plan)
    # Something else already listens on the port the target will claim: the gateway there can never be healthy.
    fleet.sh(target, f"setsid python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\",{port})); s.listen(); time.sleep(600)' "
                     "</dev/null >/dev/null 2>&1 &")
    try:
        failed = fleet.playbook(inventory, "migrate", "-e", f"claw_id={CLAW}", "-e", f"target={target}", "-e", "claw_health_timeout=20")
    finally:
        fleet.sh(target, f"pkill -f 'bind\\(\\(.127.0.0.1.,{port}\\)\\)'", check=False)
    out = " ".join(failed.stdout.split())
    # The 20 s health wait bounds the target only; the rollback waits for the source's cold start on its own bound
    # (claw_migrate_rollback_timeout), so the failure reports the claw healthy on the source.
    assert failed.returncode != 0 and re.search(rf"{target} was cleaned up; the claw runs on {source} again \(health: ok\)", out), out[-4000:]
    assert holder(fleet) == [source] and healthy(fleet, inventory, source)
    ClawInvariants.assert_same(before, capture(fleet, farm, source), operation="a failed migration")
    assert fleet.sh(target, f"dscl . -read /Users/{USER}", check=False).returncode != 0
    assert fleet.sh(target, f"test -e /Library/LaunchDaemons/{LABEL}.plist || test -e {HOME}", check=False).returncode != 0
    assert rule_port(fleet, target) is None and rule_port(fleet, source) is not None
    assert cname(fleet, farm) == fleet.hosts[source]["cf_tunnel_id"]
    assert "claw-migrate" not in fleet.sh(target, "cat /Users/admin/.ssh/authorized_keys").stdout


def test_minis_that_cannot_reach_each_other_move_the_claw_through_r2(fleet, inventory, farm):
    [source] = holder(fleet)
    before = capture(fleet, farm, source)
    # Every Mini advertises an address nobody answers on: SSH from the source fails, the migration takes the R2 path.
    moved = fleet.playbook(inventory, "migrate", "-e", f"claw_id={CLAW}", "-e", "mini_peer_address=10.77.254.2", check=True)
    match = report(moved.stdout)
    target = match.group(3)
    assert match.group(1) == source and target != source and match.group(5) == "archive"
    assert "through an R2 archive instead" in " ".join(moved.stdout.split())
    assert fleet.sh(target, f"cat {MARKER}").stdout.strip() == f"marker-{CLAW}"
    assert holder(fleet) == [target] and healthy(fleet, inventory, target)
    assert cname(fleet, farm) == fleet.hosts[target]["cf_tunnel_id"]
    assert_moved(fleet, farm, before, target, "archive")
