"""A real OpenClaw gateway as an isolated claw on a sandbox Mini, through the operator's playbooks.

The tests run in file order and share one claw: provision, re-provision, crash, restart,
stop/start, reboot, deprovision.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from claw_invariants import Claw, ClawInvariants, seed
from conftest import recap, wait_for

CLAW_ID = "5eed0e2e-7a11-4c1a-9d2b-000000000042"
USER = "claw-5eed0e2e"
LABEL = f"com.mirascope.claw.{CLAW_ID}"
TOKEN = "e2e-token-Zq8xV3nR5tW7yB9dF2hJ4kL6mP8sU0wY1aC3"
API_KEY = "sk-ant-e2e-SECRET-7f3c9a1b5d2e8f4a6c0b"
CLAW = Claw(CLAW_ID)
# The invariant snapshot of the realistic claw right after provisioning (issue 14), for the day-2 steps below.
BASELINE: dict = {}


@pytest.fixture(scope="module")
def claw_vars(tmp_path_factory):
    path = tmp_path_factory.mktemp("vars") / "claw.yml"
    path.write_text(yaml.safe_dump({
        "gateway_token": TOKEN,
        "claw_env": {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": "https://proxy.example.invalid/v1",
                     "PRIMARY_MODEL_ID": "claude-sonnet-4"},
    }))
    path.chmod(0o600)
    return path


def status(mini) -> dict:
    result = mini.playbook("status", "-e", f"claw_id={CLAW_ID}", check=False)
    block = result.stdout.split("Show the claw's status", 1)[-1]
    fields = dict(line.strip().split(": ", 1) for line in block.splitlines() if ": " in line and line.startswith("        "))
    return {k: v.strip("'") for k, v in fields.items()}


def gateway_pid(mini):
    info = status(mini)
    return info.get("pid") if info.get("health") == "ok" else None


# -- bad input changes nothing ---------------------------------------------------------------

BAD_IDS = ["../../etc", "$(reboot)", "x; rm -rf /", "", "A" * 10240,
           "5eed0e2e-7a11-4c1a-9d2b-00000000004"]  # one hex digit short


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=["traversal", "subshell", "injection", "empty", "10kB", "short"])
def test_bad_claw_id_is_refused_and_changes_nothing(mini, bad_id):
    before = mini.snapshot()
    result = mini.playbook("provision", "-e", json.dumps({"claw_id": bad_id}), check=False)
    assert result.returncode != 0
    assert "claw_id" in result.stdout
    assert mini.snapshot() == before


def test_missing_claw_id_is_refused(mini):
    before = mini.snapshot()
    result = mini.playbook("provision", check=False)
    assert result.returncode != 0
    assert "claw_id is required" in result.stdout
    assert mini.snapshot() == before


def test_port_outside_the_minis_range_is_refused(mini):
    before = mini.snapshot()
    result = mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", "claw_port=9000", check=False)
    assert result.returncode != 0
    assert "claw_port 9000 is not a slot of this Mini" in result.stdout and "8100-9508" in result.stdout
    assert mini.snapshot() == before


def test_bad_claw_env_key_is_refused_without_showing_values(mini, tmp_path):
    before = mini.snapshot()
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"claw_env": {"BAD-KEY": "value-must-not-leak-123"}}))
    result = mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", f"@{bad}", check=False)
    assert result.returncode != 0
    assert "BAD-KEY" in result.stdout and "value-must-not-leak-123" not in result.stdout + result.stderr
    assert mini.snapshot() == before


def test_unknown_mini_is_refused(mini):
    result = mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", "mini=no-such-mini", check=False)
    assert result.returncode != 0
    assert "is not in the inventory" in result.stdout


# -- the lifecycle --------------------------------------------------------------------------------

def test_provision_brings_up_a_healthy_gateway(mini, claw_vars, tmp_path_factory, farm):
    result = mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", f"@{claw_vars}", "-vvv")
    (tmp_path_factory.getbasetemp() / "provision-vvv.log").write_text(result.stdout + result.stderr)
    assert "health ok" in result.stdout.replace("\n        ", " ")
    info = status(mini)
    assert info["health"] == "ok" and info["listening"] == "yes" and info["launchd_state"] == "running"
    assert info["user"] == USER and info["port"] == "8100" and int(info["uid"]) >= 600
    # A realistic claw: the three env keys above, the gateway's state after this real start, and months of data.
    seed(mini, CLAW)
    BASELINE.update(ClawInvariants.capture(mini, CLAW, cf=farm["cf"]))
    assert BASELINE["data_bytes"] > 2_000_000 and sorted(BASELINE["env"]) == ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "PRIMARY_MODEL_ID"]
    assert BASELINE["launchd"]["loaded"] and BASELINE["route"] == ["https://localhost:8100"] and BASELINE["state_db"] == {"has_tables": True}


def test_claw_user_is_hidden_non_admin_and_isolated(mini):
    record = mini.sh(f"dscl . -read /Users/{USER} IsHidden RealName UniqueID").stdout
    assert "IsHidden: 1" in record and CLAW_ID in record
    assert mini.sh(f"dseditgroup -o checkmember -m {USER} admin", check=False).returncode != 0
    assert mini.sh(f"stat -c '%a %U' /Users/{USER}").stdout.split() == ["700", USER]
    gateways = [line.split() for line in mini.sh("ps -eo user:32,comm").stdout.splitlines() if "openclaw-gatewa" in line]
    assert gateways and all(user == USER for user, _ in gateways)
    assert mini.sh("ss -ltnH 'sport = :8100'").stdout.count("127.0.0.1:8100") == 1
    assert "0.0.0.0:8100" not in mini.sh("ss -ltnH").stdout


def test_secrets_appear_in_no_plist_no_process_list_and_no_output(mini, tmp_path_factory):
    plist = mini.sh(f"cat /Library/LaunchDaemons/{LABEL}.plist").stdout
    assert "<key>UserName</key>" in plist and "<key>KeepAlive</key>" in plist
    processes = mini.sh("ps -eo args").stdout
    output = (tmp_path_factory.getbasetemp() / "provision-vvv.log").read_text()
    assert "ANTHROPIC_API_KEY" in output or "claw_env" in output  # the run did pass the variables
    for secret in (TOKEN, API_KEY):
        assert secret not in plist
        assert secret not in processes
        assert secret not in output
    env_file = f"/Users/{USER}/.openclaw/.env"
    assert mini.sh(f"stat -c '%a %U' {env_file}").stdout.split() == ["600", USER]
    assert TOKEN in mini.sh(f"cat {env_file}").stdout


def test_second_provision_changes_nothing(mini, claw_vars, farm):
    result = mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", f"@{claw_vars}")
    assert recap(result.stdout)[mini.name]["changed"] == 0
    ClawInvariants.assert_same(BASELINE, ClawInvariants.capture(mini, CLAW, cf=farm["cf"]), operation="re-provision (CLI)")


def test_wrong_token_is_refused_by_the_gateway(mini):
    # Over TLS to the claw's pinned certificate (docs/origin-tls.md), with the farm venv's Python (pyOpenSSL: the
    # gateway speaks TLS 1.3 only, a Mac's /usr/bin/python3 has none).
    tls = {"cafile": f"/var/db/mirascope-claw-tls/{USER}/cert.pem", "server_name": f"{USER}.claws.internal"}
    probe = ("import sys; sys.path.insert(0, '/tmp/probe'); import _gateway_probe as p; "
             f"print(p.probe_gateway(8100, 'wrong-token-0000000000000000000000000', tls={tls!r})['error'])")
    src = Path(__file__).resolve().parents[2] / "plugins/module_utils/_gateway_probe.py"
    mini.sh(f"mkdir -p /tmp/probe && cat > /tmp/probe/_gateway_probe.py <<'PY'\n{src.read_text()}\nPY")
    assert mini.sh(f"/opt/mirascope/python/bin/python3 -c \"{probe}\"").stdout.strip() == "AUTH_TOKEN_MISMATCH"


def test_launchd_restarts_a_killed_gateway(mini):
    old = status(mini)["pid"]
    mini.sh(f"kill -9 {old}")
    new = wait_for(lambda: (p := gateway_pid(mini)) and p != old and p, timeout=90)
    assert new and new != old


def test_restart_playbook_gives_a_new_healthy_process(mini):
    old = status(mini)["pid"]
    mini.playbook("restart", "-e", f"claw_id={CLAW_ID}")
    info = status(mini)
    assert info["health"] == "ok" and info["pid"] != old


def test_stop_and_start(mini):
    mini.playbook("stop", "-e", f"claw_id={CLAW_ID}")
    info = status(mini)
    assert info["listening"] == "no" and info["launchd_state"] == "not loaded"
    assert mini.sh("pgrep -x openclaw-gatewa", check=False).returncode != 0
    again = mini.playbook("stop", "-e", f"claw_id={CLAW_ID}")
    assert recap(again.stdout)[mini.name]["changed"] == 0
    mini.playbook("start", "-e", f"claw_id={CLAW_ID}")
    assert status(mini)["health"] == "ok"


def test_reboot_brings_the_claw_back(mini, farm):
    mini.reboot()
    assert wait_for(lambda: gateway_pid(mini), timeout=120)
    ClawInvariants.assert_same(BASELINE, ClawInvariants.capture(mini, CLAW, cf=farm["cf"]), operation="a reboot of the Mini")
    # /tmp is empty after a boot: the boot job (bootstrap.yml) recreated OpenClaw's shared temp root, owned by root,
    # and the claw's lock directory, owned by the claw.
    uid = mini.sh(f"id -u {USER}").stdout.strip()

    def tmp_dirs():
        return mini.sh(f"stat -c '%U %a' /tmp/openclaw /tmp/openclaw-state-locks-{uid}", check=False).stdout.split()

    assert wait_for(lambda: tmp_dirs() == ["root", "755", USER, "700"], timeout=30), tmp_dirs()
    assert wait_for(lambda: f"ready /tmp/openclaw-state-locks-{uid} for {USER}" in
                    mini.sh("cat /var/log/mirascope/com.mirascope.openclaw-tmp.log", check=False).stdout, timeout=30)
    # The pf boot job wrote its marker this boot (the sandbox's /var/run is a new tmpfs at every boot; the gate also
    # compares its time with the boot's), and the claw's start gate found it: the gateway, which the sandbox's launchd
    # starts before the pf boot job (it loads daemons in name order), did not listen before the tenant isolation rules.
    assert mini.sh("stat -c '%U:%F' /var/run/com.mirascope.pf.loaded").stdout.strip() == "root:regular empty file"
    assert "without the tenant network rules" not in mini.sh(f"cat /Library/Logs/mirascope/claws/{USER}/launchd.err.log").stdout


def test_boot_job_moves_aside_what_another_user_put_in_openclaws_place(mini):
    uid = mini.sh(f"id -u {USER}").stdout.strip()
    other, other_uid = "claw-0badc0de", "7301"
    mini.sh(f"dscl . -create /Users/{other} && dscl . -create /Users/{other} UniqueID {other_uid} && "
            f"dscl . -create /Users/{other} PrimaryGroupID 20")
    try:
        # The claw squats the other user's lock directory and owns the shared temp root (as if it started first).
        mini.sh(f"mkdir /tmp/openclaw-state-locks-{other_uid} && chown {USER} /tmp/openclaw-state-locks-{other_uid} && "
                f"mv /tmp/openclaw /tmp/openclaw.before-test && mkdir /tmp/openclaw && chown {USER} /tmp/openclaw")
        mini.sh("sh /opt/mirascope/bin/openclaw-tmp-dirs")
        owners = mini.sh(f"stat -c '%U %a' /tmp/openclaw /tmp/openclaw-state-locks-{other_uid} /tmp/openclaw-state-locks-{uid}").stdout.split()
        assert owners == ["root", "755", other, "700", USER, "700"]
        moved = mini.sh("ls -d /tmp/openclaw.moved-*/* /tmp/openclaw-state-locks-*.moved-*/*").stdout.split()
        assert len(moved) == 2 and all(mini.sh(f"stat -c %U {m}").stdout.strip() == USER for m in moved)
        # moved INTO root's fresh mktemp directories (0700), never to a name a tenant could plant a link at
        asides = mini.sh("stat -c '%U %a' -- /tmp/openclaw.moved-* /tmp/openclaw-state-locks-*.moved-*").stdout.split("\n")
        assert [a for a in asides if a] == ["root 700", "root 700"]
        assert gateway_pid(mini)
    finally:
        mini.sh(f"dscl . -delete /Users/{other}; rm -rf /tmp/openclaw-state-locks-{other_uid}* /tmp/openclaw.moved-* "
                "/tmp/openclaw.before-test", check=False)


def test_a_config_the_gateway_rejects_is_reported_as_exit_78(mini, claw_vars):
    config = f"/Users/{USER}/.openclaw/openclaw.json"
    mini.sh(f"python3 -c \"import json; p='{config}'; c=json.load(open(p)); c['gateway']['notAKey']=1; "
            f"json.dump(c, open(p, 'w'))\"")
    result = mini.playbook("restart", "-e", f"claw_id={CLAW_ID}", check=False)
    assert result.returncode != 0
    assert "config error (exit 78)" in result.stdout
    assert status(mini)["health"] == "config error (exit 78)"
    # provisioning again puts the configuration right and restarts the gateway
    mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", f"@{claw_vars}")
    assert status(mini)["health"] == "ok"


def test_check_mode_on_a_new_claw_changes_nothing(mini):
    before = mini.snapshot()
    result = mini.playbook("provision", "-e", "claw_id=0c0ffee0-1111-4222-8333-444444444444", "--check", "--diff")
    assert recap(result.stdout)[mini.name]["changed"] > 0
    assert mini.snapshot() == before


def test_deprovision_removes_job_and_user_and_keeps_the_home(mini):
    """archive=false: the foundation's tombstone (no R2 involved); archiving deprovision is in test_claw_backup.py."""
    mini.playbook("deprovision", "-e", f"claw_id={CLAW_ID}", "-e", "archive=false")
    assert mini.sh(f"dscl . -read /Users/{USER}", check=False).returncode == 56
    assert mini.sh(f"test -e /Library/LaunchDaemons/{LABEL}.plist", check=False).returncode != 0
    assert mini.sh(f"launchctl print system/{LABEL}", check=False).returncode == 113
    assert mini.sh("pgrep -x openclaw-gatewa", check=False).returncode != 0
    assert mini.sh(f"test -e /Users/{USER}", check=False).returncode != 0
    tombstones = mini.sh("ls /var/db/mirascope/tombstones").stdout.split()
    assert any(t.startswith(CLAW_ID) for t in tombstones)
    kept = [t for t in tombstones if t.startswith(CLAW_ID)][0]
    assert mini.sh("stat -c '%a %U' /var/db/mirascope/tombstones").stdout.split() == ["700", "root"]
    assert mini.sh(f"test -f /var/db/mirascope/tombstones/{kept}/.openclaw/openclaw.json", check=False).returncode == 0
    assert mini.sh("ls /var/db/mirascope/ports").stdout.strip() == ""
    again = mini.playbook("deprovision", "-e", f"claw_id={CLAW_ID}", "-e", "archive=false")
    assert recap(again.stdout)[mini.name]["changed"] == 0


# -- launchd as macOS behaves (issue 13) --------------------------------------------------------

BOOT_JOB = "com.mirascope.openclaw-tmp"
TMP_CLEANER = "/usr/local/libexec/sandbox-macos/bin/tmp_cleaner"


def launchd_print(mini, label: str) -> dict:
    """Top-level ``key = value`` lines of ``launchctl print system/<label>``."""
    out = mini.sh(f"launchctl print system/{label}").stdout
    return dict(line.strip().split(" = ", 1) for line in out.splitlines()
                if line.startswith("\t") and not line.startswith("\t\t") and " = " in line)


def gateway_log_count(mini, text: str) -> int:
    """How often the claw's gateway logged ``text`` (launchd's stdout/stderr files and the gateway's own logs)."""
    return int(mini.sh(f"cat /Library/Logs/mirascope/claws/{USER}/*.log /Users/{USER}/.openclaw/logs/*.log "
                       f"2>/dev/null | grep -c '{text}'", check=False).stdout.strip() or 0)


def test_restart_is_graceful_and_the_boot_job_outlives_the_nightly_tmp_cleaner(mini, claw_vars):
    """kickstart -k is a SIGKILL on macOS (and in the sandbox): a restart is launchctl kill SIGTERM, the gateway shuts
    down cleanly (exit 0, not signal 9) and launchd starts it again. The boot job runs every hour and keeps OpenClaw's
    /tmp directories fresh for macOS's nightly cleaner, and brings them back when the cleaner took them anyway."""
    mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", f"@{claw_vars}", check=True)
    old = status(mini)["pid"]
    clean_before = gateway_log_count(mini, "shutdown completed cleanly")
    result = mini.playbook("restart", "-e", f"claw_id={CLAW_ID}", "-v", check=True)
    # -v shows the task's result (YAML): its actions and every launchctl command line, none with -k
    assert "- kill SIGTERM" in result.stdout and all(line.strip() != "- -k" for line in result.stdout.splitlines())
    info = status(mini)
    assert info["health"] == "ok" and info["pid"] != old
    job = launchd_print(mini, LABEL)
    assert job["last exit code"] == "0" and "last terminating signal" not in job, job
    assert gateway_log_count(mini, "shutdown completed cleanly") > clean_before

    uid = mini.sh(f"id -u {USER}").stdout.strip()
    dirs = f"/tmp/openclaw /tmp/openclaw-state-locks-{uid}"

    def tmp_dirs():
        return mini.sh(f"stat -c '%U %a' {dirs}", check=False).stdout.split()

    def run_boot_job():
        """Its next StartInterval run, now (the interval is an hour; kickstart starts the same run)."""
        runs = int(launchd_print(mini, BOOT_JOB)["runs"])
        mini.sh(f"launchctl kickstart system/{BOOT_JOB}")
        assert wait_for(lambda: (j := launchd_print(mini, BOOT_JOB)) and int(j["runs"]) > runs
                        and j["state"] == "not running", timeout=60)

    assert launchd_print(mini, BOOT_JOB)["run interval"] == "3600 seconds"
    assert tmp_dirs() == ["root", "755", USER, "700"]
    # Untouched for 4 days; the job's hourly run touches them, so tonight's cleaner (3 days) leaves them.
    mini.sh(f"find {dirs} -exec touch -h -d '4 days ago' {{}} +")
    run_boot_job()
    mini.sh(TMP_CLEANER)
    assert tmp_dirs() == ["root", "755", USER, "700"]
    # A cleaner that takes everything (as after days with the job not loaded): the running gateway does not notice,
    # the job's next run recreates both with their owners, and a restart of the gateway finds its lock directory.
    assert gateway_pid(mini)
    mini.sh(f"{TMP_CLEANER} --age 0")
    assert tmp_dirs() == []
    assert gateway_pid(mini)
    run_boot_job()
    assert tmp_dirs() == ["root", "755", USER, "700"]
    old = status(mini)["pid"]
    mini.playbook("restart", "-e", f"claw_id={CLAW_ID}", check=True)
    info = status(mini)
    assert info["health"] == "ok" and info["pid"] != old
    mini.playbook("deprovision", "-e", f"claw_id={CLAW_ID}", "-e", "archive=false", check=True)
