"""The API's alert on a claw whose browser keeps crashing (issue 16, docs/browser.md)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml


def test_the_api_alerts_on_a_browser_that_keeps_starting():
    from api.alerts import AlertEngine, Rule, browser_crash_loop

    now = [0.0]
    sent = []
    engine = AlertEngine([Rule("browser_crash_loop", "claw", "warning", "browser keeps crashing", 0,
                               browser_crash_loop(max_starts=4, window_seconds=1800, clock=lambda: now[0]))], sent.append)
    claw = "1a2b3c4d-0000-4000-8000-000000000001"

    def sample(started_at):
        return {"claws": [{"claw_id": claw, "browser": {"running": True, "started_at": started_at}}]}

    for t in (0, 60, 120):  # one browser, up for a while: nothing
        now[0] = t
        engine.evaluate("mini-01", sample(10), now=t)
    for t in range(180, 600, 60):  # a new browser at every sample: the fifth restart fires
        now[0] = t
        engine.evaluate("mini-01", sample(t - 1), now=t)
    assert [(m["rule"], m["state"]) for m in sent] == [("browser_crash_loop", "firing")]
    now[0] = 600 + 1800  # stable for the whole window: resolved
    engine.evaluate("mini-01", sample(539), now=now[0])
    assert [(m["rule"], m["state"]) for m in sent] == [("browser_crash_loop", "firing"), ("browser_crash_loop", "resolved")]
    assert engine.evaluate("mini-01", {"claws": [{"claw_id": claw, "browser": None}]}, now=now[0]) == []


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_prometheus_alerts_on_a_browser_that_keeps_starting(tmp_path):
    """ClawfarmClawBrowserCrashLoop (docs/prometheus-alerts.yml): a new start time at every sample fires, a steady one not."""
    repo = Path(__file__).resolve().parents[2]
    series = [{"series": 'clawfarm_claw_browser_start_timestamp_seconds{mini="m1",claw_id="crashing"}', "values": "0+60x40"},
              {"series": 'clawfarm_claw_browser_start_timestamp_seconds{mini="m1",claw_id="steady"}', "values": "60x40"}]
    firing = [{"exp_labels": {"severity": "warning", "mini": "m1", "claw_id": "crashing"},
               "exp_annotations": {"summary": "Claw crashing: its browser started more than 4 times in 30 minutes (it keeps crashing)"}}]
    test = {"rule_files": [str(repo / "docs/prometheus-alerts.yml")], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [{"eval_time": "30m", "alertname": "ClawfarmClawBrowserCrashLoop", "exp_alerts": firing}]}]}
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
