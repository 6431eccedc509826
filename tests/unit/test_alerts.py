"""Alert rules: fire once when a condition starts (after its duration), resolve once, nothing on flaps."""
from __future__ import annotations

from api.alerts import AlertEngine, default_rules, discord_payload

CLAW = "1a2b3c4d-0000-4000-8000-000000000001"


def sample(cpu=10.0, mem=40.0, disk=50.0, age=5, pid=123, health="ok", connector="running", backup_age=3600):
    return {"age_s": age, "cpu_percent": cpu, "memory": {"percent": mem}, "disks": [{"mount": "/", "percent": disk}],
            "connector": {"state": connector}, "claws": [{"claw_id": CLAW, "pid": pid, "health": health, "launchd_state": "running",
                                                         "last_backup_age_s": backup_age}]}


def engine():
    sent = []
    return AlertEngine(default_rules(), sent.append), sent


def test_healthy_samples_send_nothing():
    eng, sent = engine()
    for t in range(0, 600, 60):
        eng.evaluate("mini-01", sample(), now=t)
    assert sent == []


def test_gateway_down_fires_once_and_resolves_once():
    eng, sent = engine()
    eng.evaluate("mini-01", sample(), now=0)
    for t in (60, 120, 180):
        eng.evaluate("mini-01", sample(pid=None, health="not running"), now=t)
    eng.evaluate("mini-01", sample(), now=240)
    eng.evaluate("mini-01", sample(), now=300)
    assert [(m["rule"], m["state"], m["severity"], m["claw_id"]) for m in sent] == [
        ("gateway_down", "firing", "critical", CLAW), ("gateway_down", "resolved", "critical", CLAW)]


def test_cpu_needs_five_minutes_and_a_flap_sends_nothing():
    eng, sent = engine()
    for t in (0, 60, 120):  # 2 minutes high, then back to normal: a flap
        eng.evaluate("m", sample(cpu=95), now=t)
    eng.evaluate("m", sample(cpu=20), now=180)
    assert sent == []
    for t in range(240, 600, 60):  # high again for 6 minutes
        eng.evaluate("m", sample(cpu=95), now=t)
    assert [(m["rule"], m["state"]) for m in sent] == [("cpu_high", "firing")]
    assert sent[0]["value"] == 95


def test_disk_memory_tunnel_heartbeat_backup():
    eng, sent = engine()
    eng.evaluate("m", sample(disk=90, mem=95, connector="not running", age=400, backup_age=90000), now=0)
    assert sorted((m["rule"], m["severity"]) for m in sent) == [
        ("backup_failed", "warning"), ("disk_high", "warning"), ("heartbeat_missing", "critical"),
        ("memory_high", "warning"), ("tunnel_disconnected", "critical")]


def test_a_deprovisioned_claw_resolves_its_alerts():
    eng, sent = engine()
    eng.evaluate("m", sample(pid=None), now=0)
    gone = sample()
    gone["claws"] = []
    eng.evaluate("m", gone, now=60)
    assert [(m["rule"], m["state"]) for m in sent] == [("gateway_down", "firing"), ("gateway_down", "resolved")]


def test_discord_payload():
    body = discord_payload({"state": "firing", "rule": "gateway_down", "severity": "critical", "mini": "m", "claw_id": CLAW,
                            "value": "not running", "summary": "gateway down (no pid)"})
    assert body["content"] == "[CRITICAL] gateway down (no pid)"
    assert {f["name"]: f["value"] for f in body["embeds"][0]["fields"]} == {"Mini": "m", "Claw": CLAW, "Value": "not running"}
    assert body["allowed_mentions"] == {"parse": []}


def test_backup_schedule():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from api.monitor import backup_due

    def at(text, tz="UTC"):
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(tz)).timestamp()

    assert not backup_due("02:00", at("2026-11-22 01:59"), None)
    assert backup_due("02:00", at("2026-11-22 02:00"), None)
    assert not backup_due("02:00", at("2026-11-22 02:30"), at("2026-11-22 02:00"))
    assert backup_due("02:00", at("2026-11-23 02:01"), at("2026-11-22 02:00"))
    # Mini-local time: 02:00 in Los Angeles is 10:00 UTC.
    assert not backup_due("02:00", at("2026-11-22 09:59"), at("2026-11-21 10:00"), "America/Los_Angeles")
    assert backup_due("02:00", at("2026-11-22 10:00"), at("2026-11-21 10:00"), "America/Los_Angeles")
    assert backup_due("every:60", 1000.0, 930.0) and not backup_due("every:60", 1000.0, 950.0)
    assert not backup_due("off", 1000.0, None)
