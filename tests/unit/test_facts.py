"""Anomaly detection on crafted fact sets (the unique-tuple contract) and capacity."""
from __future__ import annotations

import os

from ansible_collections.mirascope.clawfarm.plugins.module_utils import _facts

A = "1a2b3c4d-0000-4000-8000-000000000001"
B = "2b3c4d5e-0000-4000-8000-000000000002"


def claw(claw_id, port, token="t1", user=None, state_dir=None):
    user = user or f"claw-{claw_id[:8]}"
    return {"label": f"com.mirascope.claw.{claw_id}", "claw_id": claw_id, "user": user, "port": port,
            "state_dir": state_dir or f"/Users/{user}/.openclaw", "token_fingerprint": _facts.token_fingerprint(token)}


def expected(*ids):
    return {i: {"user": f"claw-{i[:8]}", "state_dir": f"/Users/claw-{i[:8]}/.openclaw"} for i in ids}


def kinds(found):
    return sorted(f["kind"] for f in found)


def test_a_clean_mini_has_no_anomaly():
    claws = [claw(A, 8100, "ta"), claw(B, 8101, "tb")]
    users = {"admin": 501, "claw-1a2b3c4d": 600, "claw-2b3c4d5e": 601}
    assert _facts.find_anomalies(claws, users, {8100: A, 8101: B}, expected=expected(A, B)) == []


def test_orphan_user_stray_plist_duplicated_port_shared_token_and_dir():
    claws = [claw(A, 8100, "same"), claw(B, 8100, "same", state_dir="/Users/claw-1a2b3c4d/.openclaw")]
    users = {"claw-1a2b3c4d": 600, "claw-99999999": 650}
    found = _facts.find_anomalies(claws, users, {8100: A}, expected=expected(A, B))
    assert kinds(found) == ["job_without_claim", "job_without_user", "plist_mismatch", "port_conflict", "shared_state_dir",
                            "shared_token", "user_without_job"]
    assert any("claw-99999999" in f["detail"] for f in found)
    assert all("same" not in f["detail"] for f in found), "a token never appears, only its fingerprint"


def test_claims_that_disagree():
    found = _facts.find_anomalies([claw(A, 8102)], {"claw-1a2b3c4d": 600}, {8100: A, 8105: B}, expected=expected(A))
    assert kinds(found) == ["claim_without_job", "port_mismatch"]


def test_plist_parsing_and_bad_labels():
    plist = {"UserName": "claw-1a2b3c4d", "ProgramArguments": ["/opt/openclaw/2026.9.6/bin/node", "x"],
             "EnvironmentVariables": {"OPENCLAW_STATE_DIR": "/Users/claw-1a2b3c4d/.openclaw"}}
    parsed = _facts.claw_from_plist("com.mirascope.claw", f"com.mirascope.claw.{A}", plist)
    assert parsed["claw_id"] == A and parsed["user"] == "claw-1a2b3c4d" and parsed["state_dir"].endswith(".openclaw")
    stray = _facts.claw_from_plist("com.mirascope.claw", "com.mirascope.claw.not-a-uuid", {})
    assert stray["claw_id"] is None
    assert kinds(_facts.find_anomalies([{**stray, "port": None}], {}, {})) == ["bad_label"]


def test_capacity():
    assert _facts.capacity({8100: A, 8484: B}, 8100, 4) == {"used": 2, "free_slots": 2, "free_ports": [8228, 8356]}
    # B still on the old consecutive layout (8103): its family 8103-8213 leaves slots 1-3 free, 2 claws of 4 room
    assert _facts.capacity({8100: A, 8103: B}, 8100, 4) == {"used": 2, "free_slots": 2, "free_ports": [8228, 8356]}


def test_gateway_port_never_blocks_or_floods_on_a_tenant_trap(tmp_path):
    """openclaw.json sits in the tenant's home: a FIFO or a link to /dev/zero there must not hang or flood root."""
    from ansible_collections.mirascope.clawfarm.plugins.modules import claw_facts

    config = tmp_path / "openclaw.json"
    config.write_text('{"gateway": {"port": 8101}}')
    assert claw_facts.gateway_port(str(tmp_path)) == 8101
    config.unlink()
    os.mkfifo(config)
    assert claw_facts.gateway_port(str(tmp_path)) is None
    config.unlink()
    config.symlink_to("/dev/zero")
    assert claw_facts.gateway_port(str(tmp_path)) is None
    assert claw_facts.gateway_port(None) is None


def test_a_route_is_pinned_only_over_tls_to_a_ca_pool():
    pinned = {"hostname": "h", "service": "https://localhost:8100",
              "originRequest": {"caPool": "/var/db/mirascope-claw-tls/claw-1a2b3c4d/cert.pem", "originServerName": "n"}}
    assert _facts.route_pinned(pinned)
    assert not _facts.route_pinned({"hostname": "h", "service": "http://localhost:8100"})
    assert not _facts.route_pinned({"hostname": "h", "service": "https://localhost:8100"})
    assert not _facts.route_pinned(dict(pinned, originRequest={"caPool": "/x", "noTLSVerify": True}))
    claws = [{"claw_id": "a", "route_present": True, "route_pinned": False},
             {"claw_id": "b", "route_present": True, "route_pinned": True}, {"claw_id": "c", "route_present": None, "route_pinned": None}]
    assert [(a["kind"], a["claw_id"]) for a in _facts.route_anomalies(claws)] == [("route_unpinned", "a")]
