"""Fleet audit end to end: claw_facts on the sandbox Mini, a clean fleet exits 0, planted anomalies are named."""
from __future__ import annotations

import json

from conftest import latest_audit_report

CLAW_ID = "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b"
STRAY = "f0e1d2c3-b4a5-4968-8776-655443322110"


def test_clean_fleet_then_planted_anomalies(mini):
    mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", check=True)
    clean = mini.playbook("audit")
    assert clean.returncode == 0, clean.stdout[-3000:]
    out = " ".join(clean.stdout.split())
    assert f"{mini.name}: 1 claws" in out and "0 anomalies" in out
    report = latest_audit_report()["minis"][mini.name]
    [claw] = report["claws"]
    assert claw["claw_id"] == CLAW_ID and claw["listening"] and claw["route_present"] is True and claw["route_pinned"] is True
    assert claw["port"] == claw["claim_port"]
    assert "token" not in json.dumps(report).replace("token_fingerprint", "")

    # An orphan user, and a stray plist for a missing user whose gateway config takes the claw's port.
    mini.sh("dscl . -create /Users/claw-99999999 && dscl . -create /Users/claw-99999999 UniqueID 699")
    mini.sh(f"""mkdir -p /var/tmp/stray/.openclaw && echo '{{"gateway": {{"port": {claw['port']}}}}}' > /var/tmp/stray/.openclaw/openclaw.json
python3 -c 'import plistlib; plistlib.dump({{"Label": "com.mirascope.claw.{STRAY}", "UserName": "claw-f0e1d2c3",
  "ProgramArguments": ["/usr/bin/true"], "EnvironmentVariables": {{"OPENCLAW_STATE_DIR": "/var/tmp/stray/.openclaw"}}}},
  open("/Library/LaunchDaemons/com.mirascope.claw.{STRAY}.plist", "wb"))'""")
    # The claw's route as it was before origin TLS: plain http, no pin (the running connector is not restarted).
    mini.sh(f"""cp -p /etc/cloudflared/config.yml /var/tmp/config.yml.audit && python3 - <<'EOF'
import json
path = "/etc/cloudflared/config.yml"
doc = json.load(open(path))
for rule in doc["ingress"]:
    if rule.get("hostname", "").startswith("claw-{CLAW_ID}."):
        rule["service"] = rule["service"].replace("https://", "http://")
        rule.pop("originRequest", None)
json.dump(doc, open(path, "w"))
EOF""")
    try:
        dirty = mini.playbook("audit")
        out = " ".join(dirty.stdout.split())
        assert dirty.returncode != 0
        assert "user claw-99999999 has no claw LaunchDaemon" in out
        assert f"port {claw['port']} is used by" in out
        assert f"com.mirascope.claw.{STRAY} runs as missing user claw-f0e1d2c3" in out
        assert f"com.mirascope.claw.{STRAY} has no port claim" in out
        assert f"the tunnel route of {CLAW_ID} does not trust only its own certificate" in out
    finally:
        mini.sh(f"dscl . -delete /Users/claw-99999999; rm -rf /var/tmp/stray /Library/LaunchDaemons/com.mirascope.claw.{STRAY}.plist; "
                "mv /var/tmp/config.yml.audit /etc/cloudflared/config.yml")
    mini.playbook("deprovision", "-e", f"claw_id={CLAW_ID}", "-e", "archive=false", "-e", "claw_purge_home=true", check=True)
    assert mini.playbook("audit").returncode == 0
