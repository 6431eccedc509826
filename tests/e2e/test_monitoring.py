"""Fleet health, alerts and the backup schedule, end to end: the API service samples the sandbox Mini on a short
interval, alerts go to a Discord-style receiver on loopback, /metrics passes promtool."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from conftest import wait_for
from test_api import Service

CLAW_ID = "d4e5f6a7-b8c9-4dab-8cde-f0123456789a"
LABEL = f"com.mirascope.claw.{CLAW_ID}"
INTERVAL = 5


class Receiver:
    def __init__(self):
        self.messages = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                outer.messages.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/webhooks/1/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def contents(self) -> list[str]:
        return [m["content"] for m in self.messages]


def root_disk_percent() -> float:
    st = os.statvfs("/")
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return 100.0 * used / (used + st.f_bavail * st.f_frsize)


@pytest.fixture(scope="module")
def monitored(mini, tmp_path_factory):
    receiver = Receiver()
    svc = Service(tmp_path_factory.mktemp("monitor"), mini.inventory, mini.farm_vars)
    svc.env.update(CLAWFARM_API_HEALTH_INTERVAL=str(INTERVAL), CLAWFARM_API_DISCORD_WEBHOOK_URL=receiver.url,
                   CLAWFARM_API_BACKUP_SCHEDULE="off", CLAWFARM_API_ALERT_DISK_PERCENT=f"{root_disk_percent() + 0.5:.2f}")
    svc.start()
    yield svc, receiver
    svc.stop()
    receiver.server.shutdown()


def claw_health(svc) -> dict:
    return svc.call("GET", f"/v1/claws/{CLAW_ID}").json().get("health") or {}


def test_provision_is_announced_and_sampled(monitored, mini):
    svc, receiver = monitored
    job = svc.call("POST", "/v1/claws", json={"claw_id": CLAW_ID}).json()
    assert svc.wait_job(job["id"])["state"] == "succeeded"
    assert wait_for(lambda: claw_health(svc).get("health") == "ok", 6 * INTERVAL + 60, 1)
    assert wait_for(lambda: "[INFO] claw provisioned" in receiver.contents(), 30, 0.5)
    minis = svc.call("GET", "/v1/minis").json()
    [me] = [m for m in minis if m["name"] == mini.name]
    assert me["health"]["heartbeat"] == "ok" and me["health"]["mini"]["memory"]["total_bytes"] > 0


def test_a_stopped_gateway_raises_one_critical_alert_and_one_resolve(monitored, mini):
    svc, receiver = monitored
    # stopped, and launchd will not restart it; like macOS, bootout answers 36 while the job is still stopping
    assert mini.sh(f"launchctl bootout system/{LABEL}", check=False).returncode in (0, 36)
    assert wait_for(lambda: mini.sh(f"launchctl print system/{LABEL}", check=False).returncode == 113, 60, 0.5)
    assert wait_for(lambda: claw_health(svc).get("pid") is None, 3 * INTERVAL + 30, 1)
    assert wait_for(lambda: "[CRITICAL] gateway down (no pid)" in receiver.contents(), 3 * INTERVAL + 30, 1)
    wait_for(lambda: False, 2 * INTERVAL, 1)  # more samples while it is down: no more messages
    assert receiver.contents().count("[CRITICAL] gateway down (no pid)") == 1
    mini.sh(f"launchctl bootstrap system /Library/LaunchDaemons/{LABEL}.plist")
    assert wait_for(lambda: "[RESOLVED] gateway down (no pid)" in receiver.contents(), 6 * INTERVAL + 120, 1)
    assert receiver.contents().count("[RESOLVED] gateway down (no pid)") == 1


def test_a_full_disk_raises_a_warning(monitored, mini):
    svc, receiver = monitored
    st = os.statvfs("/")
    fill = int(st.f_blocks * st.f_frsize * 0.012)  # 1.2 % of the volume, past the threshold set 0.5 % above usage
    if st.f_bavail * st.f_frsize < 3 * fill:
        pytest.skip("not enough free disk to fill past the threshold safely")
    mini.sh(f"fallocate -l {fill} /var/tmp/clawfarm-disk-fill")
    try:
        assert wait_for(lambda: "[WARNING] disk almost full" in receiver.contents(), 3 * INTERVAL + 60, 1)
    finally:
        mini.sh("rm -f /var/tmp/clawfarm-disk-fill")
    assert wait_for(lambda: "[RESOLVED] disk almost full" in receiver.contents(), 3 * INTERVAL + 60, 1)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_metrics_and_alert_rules_pass_promtool(monitored):
    svc, _ = monitored
    text = svc.call("GET", "/metrics").text
    for name in ("clawfarm_mini_cpu_usage_ratio", "clawfarm_mini_disk_used_bytes", "clawfarm_claw_up", "clawfarm_claw_resident_memory_bytes",
                 "clawfarm_claw_launchd_runs", "clawfarm_mini_claws", "clawfarm_job_queue_depth"):
        assert f"\n{name}" in text, name
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = subprocess.run(["promtool", "check", "rules", "docs/prometheus-alerts.yml"], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    dashboard = open(os.path.join(os.path.dirname(__file__), "../../docs/grafana-dashboard.json")).read()
    used = {n for n in ("clawfarm_mini_cpu_usage_ratio", "clawfarm_claw_up", "clawfarm_claw_last_backup_timestamp_seconds")}
    assert all(n in dashboard for n in used)


def test_a_scheduled_backup_shows_in_the_claw_status(monitored, mini):
    svc, receiver = monitored
    svc.stop()
    svc.env["CLAWFARM_API_BACKUP_SCHEDULE"] = "every:15"
    svc.start()
    assert wait_for(lambda: (svc.call("GET", f"/v1/claws/{CLAW_ID}").json()["record"].get("last_backup") or {}).get("key"), 240, 2)
    record = svc.call("GET", f"/v1/claws/{CLAW_ID}").json()["record"]["last_backup"]
    assert record["key"].startswith("backups/") and record["size"] > 0 and record["finished_at"]
    assert "[INFO] backup success" in receiver.contents()
    # The backup stopped the gateway on purpose: no second page (the first came from the stopped-gateway test).
    assert receiver.contents().count("[CRITICAL] gateway down (no pid)") == 1
    svc.env["CLAWFARM_API_BACKUP_SCHEDULE"] = "off"
    job = svc.call("DELETE", f"/v1/claws/{CLAW_ID}", params={"archive": "false"}).json()
    assert svc.wait_job(job["id"])["state"] == "succeeded"
