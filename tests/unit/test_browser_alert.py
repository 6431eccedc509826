"""The API's alert on a claw whose browser keeps crashing (issue 16, docs/browser.md)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml


def test_the_api_alerts_on_a_browser_that_keeps_starting():
    from api.alerts import AlertEngine, Rule, browser_crash_loop

    sent = []
    engine = AlertEngine([Rule("browser_crash_loop", "claw", "warning", "browser keeps crashing", 0,
                               browser_crash_loop(max_starts=4, window_seconds=1800), remembers=True)], sent.append)
    claw = "1a2b3c4d-0000-4000-8000-000000000001"

    def sample(started_at):
        return {"claws": [{"claw_id": claw, "browser": {"running": True, "started_at": started_at}}]}

    for t in (0, 60, 120):  # one browser, up for a while: nothing
        engine.evaluate("mini-01", sample(10), now=t)
    for t in range(180, 600, 60):  # a new browser at every sample: the fifth restart fires
        engine.evaluate("mini-01", sample(t - 1), now=t)
    assert [(m["rule"], m["state"]) for m in sent] == [("browser_crash_loop", "firing")]
    engine.evaluate("mini-01", sample(539), now=600 + 1800)  # stable for the whole window: resolved
    assert [(m["rule"], m["state"]) for m in sent] == [("browser_crash_loop", "firing"), ("browser_crash_loop", "resolved")]
    assert engine.evaluate("mini-01", {"claws": [{"claw_id": claw, "browser": None}]}, now=600 + 1800) == []
    assert engine.store.memory == {}  # nothing older than the window is kept


def test_the_browser_rule_remembers_in_the_alert_store_not_in_itself():
    """Two engines (two replicas) on one store, each with its own rules, each evaluating every other sample: the
    starts both saw count together and the alert fires once; a start time ahead of the API's clock (the Mini's clock
    is ahead) is kept and counted once the evaluation reaches it."""
    from api.alerts import AlertEngine, MemoryAlertStore, default_rules

    store, sent = MemoryAlertStore(), []
    engines = [AlertEngine(default_rules(), sent.append, store) for _ in range(2)]
    claw = "1a2b3c4d-0000-4000-8000-000000000002"

    def sample(started_at):
        return {"age_s": 5, "cpu_percent": 1, "memory": {"percent": 1}, "disks": [], "connector": None,
                "claws": [{"claw_id": claw, "pid": 1, "health": "ok", "browser": {"running": True, "started_at": started_at}}]}

    for i, t in enumerate(range(0, 300, 60)):  # five starts, each 2 s ahead of the API's clock
        engines[i % 2].evaluate("m1", sample(1000 + t + 2), now=1000 + t)
    assert sent == []  # the fifth start is not yet in the window
    engines[1].evaluate("m1", sample(1000 + 240 + 2), now=1000 + 250)
    assert [(m["rule"], m["state"], m["value"]) for m in sent] == [("browser_crash_loop", "firing", 5)]
    assert store.memory == {("browser_crash_loop", "m1", claw): [1002, 1062, 1122, 1182, 1242]}


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
