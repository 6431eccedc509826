"""cf_tunnel_ingress and cf_tunnel_dns run as real module processes: against a temporary config.yml (local
mode) and through the official cloudflare SDK against the local Cloudflare API stand-in (api mode)."""
from __future__ import annotations

import os
import stat
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

DOMAIN = "claws.example.com"


def host(n) -> str:
    return f"claw-{uuid.UUID(int=n)}.{DOMAIN}"


# ---- local mode -------------------------------------------------------------------------------------------------

CONFIG = """\
tunnel: 6f1c0a6e-7d0e-4d55-9a40-0c1f3b3c8a11
credentials-file: /etc/cloudflared/6f1c0a6e-7d0e-4d55-9a40-0c1f3b3c8a11.json
ingress:
  - hostname: ops.claws.example.com
    service: http://localhost:9000
    originRequest:
      connectTimeout: 10s
  - hostname: legacy.claws.example.com
    path: ^/v1
    service: http://localhost:9001
  - service: http_status:404
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(CONFIG)
    os.chmod(path, 0o640)
    return path


def local(config_file, **args):
    return {"hostname": host(1), "domain": DOMAIN, "service": "http://localhost:8100", "config_path": str(config_file), **args}


def test_local_add_update_remove(config_file, run_module):
    result = run_module("cf_tunnel_ingress", local(config_file), diff=True)
    assert result["changed"] and result["restart_needed"] and result["rule_present"], result
    doc = yaml.safe_load(config_file.read_text())
    assert [r.get("hostname") for r in doc["ingress"]] == ["ops.claws.example.com", "legacy.claws.example.com", host(1), None]
    assert doc["ingress"][0]["originRequest"] == {"connectTimeout": "10s"}
    assert doc["tunnel"] == "6f1c0a6e-7d0e-4d55-9a40-0c1f3b3c8a11" and list(doc)[:2] == ["tunnel", "credentials-file"]
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o640
    assert f"{host(1)} -> http://localhost:8100" in result["diff"]["after"]

    again = run_module("cf_tunnel_ingress", local(config_file))
    assert not again["changed"] and not again["restart_needed"]

    moved = run_module("cf_tunnel_ingress", local(config_file, service="http://localhost:8107"))
    assert moved["changed"]
    assert yaml.safe_load(config_file.read_text())["ingress"][2] == {"hostname": host(1), "service": "http://localhost:8107"}

    gone = run_module("cf_tunnel_ingress", local(config_file, state="absent"))
    assert gone["changed"] and not gone["rule_present"]
    assert yaml.safe_load(config_file.read_text()) == yaml.safe_load(CONFIG)
    assert not run_module("cf_tunnel_ingress", local(config_file, state="absent"))["changed"]


def test_local_concurrent_writers_all_land(config_file, run_module):
    """Twelve provisions on one Mini each add their claw's rule to the same config.yml at once (the full-Mini e2e
    lost two of them: each run read the file, added its rule and renamed its copy over the others' writes)."""
    for batch in range(3):  # three rounds of twelve: a lost update shows up in one of them without the lock
        numbers = range(100 * batch + 1, 100 * batch + 13)
        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(lambda n: run_module("cf_tunnel_ingress", local(config_file, hostname=host(n))), numbers))
        assert all(r["changed"] and not r.get("failed") for r in results), [r.get("msg") for r in results]
        rules = yaml.safe_load(config_file.read_text())["ingress"]
        assert {host(n) for n in numbers} <= {r.get("hostname") for r in rules}, f"round {batch}: a rule was lost"
    assert rules[-1] == {"service": "http_status:404"} and len(rules) == 2 + 36 + 1
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o640
    assert sorted(p.name for p in config_file.parent.iterdir()) == [".config.yml.lock", "config.yml"]


def test_local_check_mode_changes_nothing(config_file, run_module):
    result = run_module("cf_tunnel_ingress", local(config_file), check=True, diff=True)
    assert result["changed"] and host(1) in result["diff"]["after"]
    assert config_file.read_text() == CONFIG


def test_local_refuses_a_config_cloudflared_would_reject(tmp_path, run_module):
    path = tmp_path / "config.yml"
    broken = "ingress:\n  - service: http_status:404\n  - hostname: a.claws.example.com\n    service: http://localhost:1\n"
    path.write_text(broken)
    result = run_module("cf_tunnel_ingress", local(path))
    assert result.get("failed") and "Rule #1 is matching" in result["msg"]
    assert path.read_text() == broken


def test_local_missing_file_says_how_to_fix(tmp_path, run_module):
    result = run_module("cf_tunnel_ingress", local(tmp_path / "nope.yml"))
    assert result.get("failed") and "bootstrap.yml --tags cloudflared" in result["msg"]


@pytest.mark.parametrize("args, message", [
    (dict(hostname="claw-1.other.com"), "outside the domain"),
    (dict(service="http://10.1.2.3:8100"), "not a loopback URL"),
    (dict(path="(x"), "not a valid regular expression"),
    (dict(hostname="*.claws.example.com"), "wildcards are not allowed"),
])
def test_local_bad_input_changes_nothing(config_file, run_module, args, message):
    result = run_module("cf_tunnel_ingress", local(config_file, **args))
    assert result.get("failed") and message in result["msg"]
    assert config_file.read_text() == CONFIG


# ---- api mode ---------------------------------------------------------------------------------------------------

def api(cf, tunnel_id, tmp_path, n=1, **args):
    return {"mode": "api", "hostname": host(n), "domain": DOMAIN, "service": f"http://localhost:{8100 + n}", "account_id": cf.account_id,
            "tunnel_id": tunnel_id, "api_token": cf.token, "api_base_url": cf.base_url, "lock_dir": str(tmp_path / "locks"), **args}


def test_api_add_and_remove_with_dns(cf_api, run_module, tmp_path):
    tunnel = cf_api.add_tunnel(config={"ingress": [{"hostname": "ops.claws.example.com", "service": "http://localhost:9000",
                                                    "originRequest": {"connectTimeout": 10}}, {"service": "http_status:404"}],
                                       "warp-routing": {"enabled": False}, "originRequest": {"noTLSVerify": False}})
    zone = cf_api.add_zone("example.com")
    args = api(cf_api, tunnel, tmp_path, dns=True, zone_id=zone)

    preview = run_module("cf_tunnel_ingress", args, check=True, diff=True)
    assert preview["changed"] and preview["dns"]["action"] == "create"
    assert len(cf_api.ingress(tunnel)) == 2 and cf_api.records() == []

    result = run_module("cf_tunnel_ingress", args, diff=True)
    assert result["changed"] and result["version_after"] == 2 and result["attempts"] == 1
    rules = cf_api.ingress(tunnel)
    assert [r.get("hostname") for r in rules] == ["ops.claws.example.com", host(1), None]
    state = cf_api.state()["tunnels"][tunnel]
    assert state["config"]["warp-routing"] == {"enabled": False} and state["config"]["originRequest"] == {"noTLSVerify": False}
    assert rules[0]["originRequest"] == {"connectTimeout": 10}
    [record] = cf_api.records()
    assert (record["name"], record["type"], record["content"], record["proxied"]) == (host(1), "CNAME", f"{tunnel}.cfargotunnel.com", True)

    again = run_module("cf_tunnel_ingress", args)
    assert not again["changed"] and cf_api.state()["tunnels"][tunnel]["version"] == 2

    removed = run_module("cf_tunnel_ingress", {**args, "state": "absent"})
    assert removed["changed"] and removed["dns"]["action"] == "delete"
    assert [r.get("hostname") for r in cf_api.ingress(tunnel)] == ["ops.claws.example.com", None]
    assert cf_api.records() == []
    assert not run_module("cf_tunnel_ingress", {**args, "state": "absent"})["changed"]


def test_api_twelve_concurrent_writers_all_land(cf_api, run_module, tmp_path):
    tunnel = cf_api.add_tunnel()
    cf_api.control("faults", {"global_delay": 0.05})  # widen every GET/PUT window
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda n: run_module("cf_tunnel_ingress", api(cf_api, tunnel, tmp_path, n)), range(1, 13)))
    assert all(r["changed"] and not r.get("failed") for r in results), [r.get("msg") for r in results]
    hostnames = [r.get("hostname") for r in cf_api.ingress(tunnel)]
    assert sorted(h for h in hostnames if h) == sorted(host(n) for n in range(1, 13))
    assert hostnames[-1] is None and len(hostnames) == 13


def test_api_writers_without_a_shared_lock_heal_by_read_back(cf_api, run_module, tmp_path):
    """Two control nodes (separate lock dirs) racing: the read-back-and-retry still lands every rule."""
    tunnel = cf_api.add_tunnel()
    cf_api.control("faults", {"global_delay": 0.05})
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda n: run_module("cf_tunnel_ingress", api(cf_api, tunnel, tmp_path, n, lock_dir=str(tmp_path / f"l{n}"))),
                                range(1, 7)))
    assert all(not r.get("failed") for r in results), [r.get("msg") for r in results]
    assert sorted(h for h in (r.get("hostname") for r in cf_api.ingress(tunnel)) if h) == sorted(host(n) for n in range(1, 7))


def test_api_retries_429_and_5xx(cf_api, run_module, tmp_path):
    tunnel = cf_api.add_tunnel()
    cf_api.fault("/configurations$", status=429, count=1, method="GET", retry_after=0.1)
    cf_api.fault("/configurations$", status=502, count=1, method="PUT")
    result = run_module("cf_tunnel_ingress", api(cf_api, tunnel, tmp_path))
    assert result["changed"] and not result.get("failed"), result
    log = [(e["method"], e["path"].rsplit("/", 1)[-1]) for e in cf_api.state()["log"]]
    assert log.count(("GET", "configurations")) >= 3 and log.count(("PUT", "configurations")) == 2
    assert [r.get("hostname") for r in cf_api.ingress(tunnel)] == [host(1), None]


def test_api_gives_up_with_a_clear_message(cf_api, run_module, tmp_path):
    tunnel = cf_api.add_tunnel()
    cf_api.fault("/configurations$", status=503, count=10, method="GET")
    result = run_module("cf_tunnel_ingress", api(cf_api, tunnel, tmp_path, api_max_retries=1))
    assert result.get("failed") and "GET tunnel configuration failed (HTTP 503)" in result["msg"]
    assert cf_api.state()["tunnels"][tunnel]["version"] == 1


def test_api_bad_token_and_locally_managed_tunnel(cf_api, run_module, tmp_path):
    tunnel = cf_api.add_tunnel()
    bad = run_module("cf_tunnel_ingress", api(cf_api, tunnel, tmp_path, api_token="wrong-token"))
    assert bad.get("failed") and "HTTP 403" in bad["msg"] and "permissions" in bad["msg"]
    assert "wrong-token" not in str(bad)
    local_tunnel = cf_api.add_tunnel(remote_config=False)
    refused = run_module("cf_tunnel_ingress", api(cf_api, local_tunnel, tmp_path))
    assert refused.get("failed") and "locally managed" in refused["msg"]


def test_api_token_never_in_output(cf_api, run_module, tmp_path):
    tunnel = cf_api.add_tunnel()
    result = run_module("cf_tunnel_ingress", api(cf_api, tunnel, tmp_path), diff=True)
    assert cf_api.token not in str(result)


def test_dns_module_local_mode_companion(cf_api, run_module):
    tunnel, other_tunnel = str(uuid.uuid4()), str(uuid.uuid4())
    zone = cf_api.add_zone("example.com")
    args = {"hostname": host(5), "domain": DOMAIN, "tunnel_id": tunnel, "zone_id": zone, "api_token": cf_api.token, "api_base_url": cf_api.base_url}
    assert run_module("cf_tunnel_dns", args)["action"] == "create"
    assert run_module("cf_tunnel_dns", args)["action"] == "none"
    moved = run_module("cf_tunnel_dns", {**args, "tunnel_id": other_tunnel}, diff=True)
    assert moved["action"] == "update" and other_tunnel in moved["diff"]["after"]
    # Removing for the old tunnel leaves the record that now points at the new one.
    assert not run_module("cf_tunnel_dns", {**args, "state": "absent"})["changed"]
    assert len(cf_api.records()) == 1
    assert run_module("cf_tunnel_dns", {**args, "tunnel_id": other_tunnel, "state": "absent"})["action"] == "delete"
    assert cf_api.records() == []


def test_dns_never_touches_a_foreign_record(cf_api, run_module):
    import httpx

    zone = cf_api.add_zone("example.com")
    httpx.post(f"{cf_api.base_url}/zones/{zone}/dns_records", headers={"Authorization": f"Bearer {cf_api.token}"},
               json={"type": "A", "name": host(6), "content": "192.0.2.1", "ttl": 300}).raise_for_status()
    args = {"hostname": host(6), "domain": DOMAIN, "tunnel_id": str(uuid.uuid4()), "zone_id": zone, "api_token": cf_api.token,
            "api_base_url": cf_api.base_url}
    result = run_module("cf_tunnel_dns", args)
    assert result.get("failed") and "already has a A record" in result["msg"]
    assert not run_module("cf_tunnel_dns", {**args, "state": "absent"})["changed"]
    assert len(cf_api.records()) == 1


def test_api_a_pinned_origin_round_trips(cf_api, run_module, tmp_path):
    """A claw's route as the claw role sets it (docs/origin-tls.md): https to the gateway, trusting only its certificate.
    The official SDK carries originRequest's caPool and originServerName to the API unchanged, and a second run is
    no change."""
    tunnel = cf_api.add_tunnel(config={"ingress": [{"service": "http_status:404"}]})
    pin = {"caPool": "/var/db/mirascope-claw-tls/claw-1a2b3c4d/cert.pem", "originServerName": "claw-1a2b3c4d.claws.internal"}
    args = api(cf_api, tunnel, tmp_path, service="https://localhost:8101", origin_request=pin)
    assert run_module("cf_tunnel_ingress", args)["changed"]
    [rule, _] = cf_api.ingress(tunnel)
    assert rule == {"hostname": host(1), "service": "https://localhost:8101", "originRequest": pin}
    assert not run_module("cf_tunnel_ingress", args)["changed"]
    # a route from before origin TLS (plain http, no pin) is replaced in place
    plain = api(cf_api, tunnel, tmp_path, n=2)
    run_module("cf_tunnel_ingress", plain)
    upgraded = run_module("cf_tunnel_ingress", {**plain, "service": "https://localhost:8102", "origin_request": pin})
    assert upgraded["changed"] and cf_api.ingress(tunnel)[1]["originRequest"] == pin
