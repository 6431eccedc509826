"""Read-only modules claw_port_info and cf_tunnel_ingress_info: what they report, that they change nothing, and that
bad input fails before anything is read. Run as Ansible runs them (a subprocess with a JSON args file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.mirascope.clawfarm.plugins.modules import cf_tunnel_ingress_info, claw_port_info

REPO = Path(__file__).resolve().parents[2]
CLAW = "1a2b3c4d-0000-4000-8000-000000000001"
OTHER = "5e6f7a8b-0000-4000-8000-000000000002"
HOST = f"claw-{CLAW}.claws.example.com"


def run(tmp_path, module: str, check=False, **params) -> dict:
    params.update(_ansible_check_mode=check)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    env = dict(os.environ, PYTHONPATH=str(REPO / ".collections"))
    env.pop("CLOUDFLARE_API_TOKEN", None)
    done = subprocess.run([sys.executable, str(REPO / "plugins/modules" / f"{module}.py"), str(args_file)], capture_output=True, text=True,
                          env=env)
    return json.loads(done.stdout)


def snapshot(directory: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mode) for p in sorted(directory.iterdir())}


def test_claims_report():
    claims = {8101: CLAW, 8100: OTHER, 9000: OTHER}
    assert claw_port_info.claims_report(claims, 8100, 12, CLAW) == {
        "used_ports": {"8100": OTHER, "8101": CLAW, "9000": OTHER}, "free_slots": 10, "port": 8101}
    assert claw_port_info.claims_report({}, 8100, 12)["port"] is None
    assert claw_port_info.claims_report({8100: OTHER}, 8100, 12, CLAW)["port"] is None


def test_claw_port_info_reads_claims_and_changes_nothing(tmp_path):
    claims = tmp_path / "ports"
    claims.mkdir(mode=0o700)
    (claims / "8100").write_text(OTHER + "\n")
    (claims / "8103").write_text(CLAW + "\n")
    before = snapshot(claims)
    result = run(tmp_path, "claw_port_info", base_port=8100, max_claws=12, claim_dir=str(claims), claw_id=CLAW.upper())
    assert result["changed"] is False
    assert result["used_ports"] == {"8100": OTHER, "8103": CLAW}
    assert result["free_slots"] == 10
    assert result["port"] == 8103
    assert snapshot(claims) == before


def test_claw_port_info_without_a_claim_dir_reports_an_empty_mini(tmp_path):
    result = run(tmp_path, "claw_port_info", base_port=8100, max_claws=4, claim_dir=str(tmp_path / "absent"))
    assert (result["used_ports"], result["free_slots"], result["port"]) == ({}, 4, None)
    assert not (tmp_path / "absent").exists()


def test_claw_port_info_needs_the_range_and_a_valid_claw_id(tmp_path):
    result = run(tmp_path, "claw_port_info", claim_dir=str(tmp_path))
    assert result["failed"] and "missing required arguments: base_port, max_claws" in result["msg"]
    result = run(tmp_path, "claw_port_info", base_port=8100, max_claws=12, claim_dir=str(tmp_path), claw_id="../../etc")
    assert result["failed"] and "claw_id" in result["msg"]


def test_lookup():
    rules = [{"hostname": HOST, "service": "http://localhost:8100"}, {"service": "http_status:404"}]
    assert cf_tunnel_ingress_info.lookup(rules, HOST.upper()) == {"hostname": HOST, "routed": True, "rule": rules[0]}
    assert cf_tunnel_ingress_info.lookup(rules, HOST, "^/api")["routed"] is False
    assert cf_tunnel_ingress_info.lookup(rules, None) == {"hostname": None, "routed": False, "rule": None}


def test_cf_tunnel_ingress_info_reads_a_local_config_and_changes_nothing(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(f"tunnel: t\ningress:\n  - hostname: {HOST}\n    service: http://localhost:8100\n  - service: http_status:404\n")
    os.chmod(config, 0o600)
    before = config.read_bytes()
    result = run(tmp_path, "cf_tunnel_ingress_info", hostname=HOST, config_path=str(config))
    assert result["changed"] is False
    assert result["rules"] == [{"hostname": HOST, "service": "http://localhost:8100"}, {"service": "http_status:404"}]
    assert (result["hostname"], result["routed"], result["rule"]) == (HOST, True, result["rules"][0])
    missing = run(tmp_path, "cf_tunnel_ingress_info", hostname=f"claw-{OTHER}.claws.example.com", config_path=str(config))
    assert (missing["routed"], missing["rule"]) == (False, None)
    assert config.read_bytes() == before and oct(config.stat().st_mode & 0o777) == "0o600"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".config.")]


def test_cf_tunnel_ingress_info_names_a_missing_config_and_the_fix(tmp_path):
    result = run(tmp_path, "cf_tunnel_ingress_info", config_path=str(tmp_path / "nope.yml"))
    assert result["failed"]
    assert "nope.yml does not exist" in result["msg"] and "bootstrap.yml --tags cloudflared" in result["msg"]


def test_cf_tunnel_ingress_info_api_mode_checks_its_input_before_any_call(tmp_path):
    result = run(tmp_path, "cf_tunnel_ingress_info", mode="api", tunnel_id="6ff42ae2-765d-4adf-8112-31c55c1551ef")
    assert result["failed"] and "mode is api but all of the following are missing: account_id" in result["msg"]
    result = run(tmp_path, "cf_tunnel_ingress_info", mode="api", account_id="a" * 32, tunnel_id="not-a-uuid; rm -rf /", api_token="x",
                 api_base_url="http://127.0.0.1:9")
    assert result["failed"] and "is not a tunnel UUID" in result["msg"]
    result = run(tmp_path, "cf_tunnel_ingress_info", mode="api", account_id="a" * 32, tunnel_id="6ff42ae2-765d-4adf-8112-31c55c1551ef",
                 api_base_url="http://127.0.0.1:9")
    assert result["failed"] and "api_token is required" in result["msg"]



def test_claw_facts_sets_host_facts_and_needs_the_range(tmp_path, monkeypatch, capsys):
    """claw_facts is read-only and returns what it reads as host facts too (clawfarm_claws, _capacity, _anomalies)."""
    import pytest
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.mirascope.clawfarm.plugins.modules import claw_facts

    class NoCommands:  # no dscl or launchctl here: no users, no jobs
        def __init__(self, module):
            pass

        def run(self, argv):
            return type("Result", (), {"rc": 1, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(claw_facts, "CommandRunner", NoCommands)
    claims = tmp_path / "ports"
    claims.mkdir(mode=0o700)
    (claims / "8100").write_text(CLAW + "\n")
    before = snapshot(claims)
    args = dict(base_port=8100, max_claws=4, claim_dir=str(claims), launch_daemons_dir=str(tmp_path / "LaunchDaemons"),
                users_dir=str(tmp_path / "Users"))
    with patch_module_args(args), pytest.raises(SystemExit):
        claw_facts.main()
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] is False, result
    assert result["ansible_facts"] == {"clawfarm_claws": result["claws"], "clawfarm_capacity": result["capacity"],
                                       "clawfarm_anomalies": result["anomalies"]}
    assert result["capacity"]["used"] == 1 and result["anomalies"] and snapshot(claims) == before  # a claim without a job
    with patch_module_args({"claim_dir": str(claims)}), pytest.raises(SystemExit):
        claw_facts.main()
    missing = json.loads(capsys.readouterr().out)
    assert missing["failed"] and "base_port" in missing["msg"] and "max_claws" in missing["msg"]
