"""The claw's route through the Mini's Cloudflare Tunnel, end to end on the sandbox Mini.

Local mode: the rule lives in the Mini's real /etc/cloudflared/config.yml, the connector is a real launchd job
(a stand-in program; see tests/sandbox/README.md) restarted through the role's handler, and the DNS record is
made through the official SDK against the local Cloudflare API stand-in.
"""
from __future__ import annotations

import json
import stat
from pathlib import Path

from conftest import CLAWS_DOMAIN, recap

CLAW_ID = "5e1f0c2a-9b7d-4c3e-8f21-0a6b4c8d2e10"
HOSTNAME = f"claw-{CLAW_ID}.{CLAWS_DOMAIN}"
# Where provision.yml saves a new claw's token on the control node (claw_token_file's default).
TOKEN_FILE = Path(__file__).resolve().parents[2] / "secrets" / f"{CLAW_ID}.token"


def token_on_mini(mini) -> str:
    env = mini.sh(f"cat /Users/claw-{CLAW_ID[:8]}/.openclaw/.env").stdout
    return next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("CLAW_GATEWAY_TOKEN="))


def connector(mini) -> dict:
    """What the running connector loaded at its last start."""
    return json.loads(mini.sh("cat /var/run/cloudflared-standin.json").stdout)


def config_rules(mini) -> list:
    import yaml

    return yaml.safe_load(mini.sh("cat /etc/cloudflared/config.yml").stdout)["ingress"]


def cname(farm) -> list:
    return [r for r in farm["cf"].records() if r["name"] == HOSTNAME]


def test_bootstrap_runs_the_connector_and_is_idempotent(mini):
    assert "state = running" in mini.sh("launchctl print system/com.cloudflare.cloudflared").stdout
    assert mini.sh("stat -c '%a %U' /etc/cloudflared /etc/cloudflared/config.yml").stdout.split("\n")[:2] == ["700 root", "600 root"]
    again = mini.playbook("bootstrap", check=True)
    assert recap(again.stdout)[mini.name]["changed"] == 0, again.stdout[-3000:]


def test_provision_adds_exactly_one_rule_and_restarts_the_connector(mini, farm):
    before = connector(mini)
    result = mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", check=True)
    assert f"hostname {HOSTNAME}" in " ".join(result.stdout.split()), result.stdout[-3000:]
    rules = config_rules(mini)
    mine = [r for r in rules if r.get("hostname") == HOSTNAME]
    assert len(mine) == 1 and mine[0]["service"].startswith("https://localhost:81")
    assert rules[-1] == {"service": "http_status:404"}
    loaded = connector(mini)
    assert loaded["pid"] != before["pid"], "the connector was not restarted after its config.yml changed"
    assert [r.get("hostname") for r in loaded["ingress"]] == [r.get("hostname") for r in rules]
    [record] = cname(farm)
    assert record["content"] == f"{farm['tunnel_id']}.cfargotunnel.com" and record["proxied"] is True
    # No gateway_token given: a new one, saved on the control node (0600) before it reached the Mini (the claw_env
    # action writes it to a pending file first and renames it once the Mini took it); nothing pending is left.
    assert f"token saved to {TOKEN_FILE}" in " ".join(result.stdout.split())
    assert stat.S_IMODE(TOKEN_FILE.stat().st_mode) == 0o600 and TOKEN_FILE.read_text() == token_on_mini(mini) + "\n"
    assert not list(TOKEN_FILE.parent.glob(f"{TOKEN_FILE.name}.pending-*"))


def test_reprovision_changes_nothing_and_keeps_the_connector_running(mini, farm):
    before = connector(mini)
    result = mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", check=True)
    assert recap(result.stdout)[mini.name]["changed"] == 0, result.stdout[-4000:]
    assert connector(mini)["pid"] == before["pid"]
    assert len([r for r in config_rules(mini) if r.get("hostname") == HOSTNAME]) == 1
    # The claw keeps its token: the saved one is left as it is, and no pending file stays behind.
    assert TOKEN_FILE.read_text() == token_on_mini(mini) + "\n"
    assert not list(TOKEN_FILE.parent.glob(f"{TOKEN_FILE.name}.pending-*"))
    assert len(cname(farm)) == 1


def test_health_playbook_samples_the_mini_and_the_claw(mini):
    result = mini.playbook("health", check=True)
    out = " ".join(result.stdout.split())
    assert f"{mini.name}: cpu " in out and "1 claws" in out
    assert f"{CLAW_ID} port 81" in out and "health ok (" in out and " runs " in out
    assert recap(result.stdout)[mini.name]["changed"] == 0


def test_status_reports_the_route(mini):
    result = mini.playbook("status", "-e", f"claw_id={CLAW_ID}", check=True)
    assert "route: present" in result.stdout and HOSTNAME in result.stdout
    assert recap(result.stdout)[mini.name]["changed"] == 0


def test_deprovision_removes_the_rule_and_the_dns_record(mini, farm):
    mini.playbook("deprovision", "-e", f"claw_id={CLAW_ID}", check=True)
    rules = config_rules(mini)
    assert all(r.get("hostname") != HOSTNAME for r in rules) and rules[-1] == {"service": "http_status:404"}
    assert all(r.get("hostname") != HOSTNAME for r in connector(mini)["ingress"])
    assert cname(farm) == []
    again = mini.playbook("deprovision", "-e", f"claw_id={CLAW_ID}", check=True)
    assert recap(again.stdout)[mini.name]["changed"] == 0, again.stdout[-3000:]


def test_a_new_claw_that_never_becomes_healthy_leaves_no_dns_record(mini, farm):
    """The DNS record and the ingress rule are set while the gateway starts: when the start fails (here: a 1 s health
    timeout, shorter than any cold start), the record and the rule this provision created are taken back (the
    connector restarted without the rule), and the failure says why."""
    claw_id = "5e1f0c2a-0000-4c3e-8f21-0a6b4c8d2e11"
    hostname = f"claw-{claw_id}.{CLAWS_DOMAIN}"
    result = mini.playbook("provision", "-e", f"claw_id={claw_id}", "-e", "claw_health_timeout=1")
    try:
        assert result.returncode != 0 and recap(result.stdout)[mini.name]["failed"] == 1, result.stdout[-3000:]
        out = " ".join(result.stdout.split())
        assert "Remove the DNS record this provision created" in out and "not healthy" in out, out[-3000:]
        assert [r for r in farm["cf"].records() if r["name"] == hostname] == []
        # the ingress rule was added while the gateway started: it is taken back too, from the file and the connector
        assert "Remove the ingress rule this provision added" in out, out[-3000:]
        assert all(r.get("hostname") != hostname for r in config_rules(mini))
        assert all(r.get("hostname") != hostname for r in connector(mini)["ingress"])
    finally:
        mini.playbook("deprovision", "-e", f"claw_id={claw_id}", "-e", "archive=false", "-e", "claw_purge_home=true",
                      check=True)
