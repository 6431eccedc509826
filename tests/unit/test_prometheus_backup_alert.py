"""Issue 17: ClawfarmBackupFailed (docs/prometheus-alerts.yml) fires for a claw never backed up 24 h after its
provision, not for a claw backed up or (re-)provisioned within 24 h; checked with ``promtool test rules``."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# Evaluated at t = 3 days (259200 s); time() is then 259200. Series values are UNIX times.
CASES = {
    "never-backed-up": {"provisioned": 86400, "backup": None, "fires": True},
    "backed-up-1h-ago": {"provisioned": 86400, "backup": 255600, "fires": False},
    "resubscribed-1h-ago": {"provisioned": 255600, "backup": 10, "fires": False},
    "old-record-no-provision-time": {"provisioned": None, "backup": 86400, "fires": True},
    "provisioned-1h-ago": {"provisioned": 255600, "backup": None, "fires": False},
}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_backup_alert_counts_from_the_provision(tmp_path):
    series = []
    for claw, case in CASES.items():
        for metric, key in (("clawfarm_claw_provisioned_timestamp_seconds", "provisioned"),
                            ("clawfarm_claw_last_backup_timestamp_seconds", "backup")):
            if case[key] is not None:
                series.append({"series": f'{metric}{{mini="m1",claw_id="{claw}"}}', "values": f"{case[key]}x360"})
    firing = [{"exp_labels": {"severity": "warning", "mini": "m1", "claw_id": claw},
               "exp_annotations": {"summary": f"Claw {claw}: no successful backup for over 24 hours"}}
              for claw, case in CASES.items() if case["fires"]]
    test = {"rule_files": [str(REPO / "docs/prometheus-alerts.yml")], "evaluation_interval": "1m",
            "tests": [{"interval": "12m", "input_series": series,
                       "alert_rule_test": [{"eval_time": "72h", "alertname": "ClawfarmBackupFailed", "exp_alerts": firing}]}]}
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
