"""bootstrap.yml end to end: a fresh sandbox Mini, idempotence, check mode, SSH hardening that cannot lock
the operator out, FileVault, and an OpenClaw upgrade that moves every claw one at a time."""
from __future__ import annotations

import subprocess
import sys

import pytest
from claw_invariants import Claw, ClawInvariants, realistic_claw
from conftest import REPO, Mini, recap

FRESH = "e2e2"
OLDER_OPENCLAW = "2026.9.5"
UPGRADE_CLAWS = ["0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6", "1e2f3a4b-5c6d-4e7f-8a81-92a3b4c5d6e7"]


@pytest.fixture(scope="module")
def fresh_mini(tmp_path_factory, farm, mini):
    """A second sandbox Mini with nothing of the farm on it (macOS base only)."""
    inventory = tmp_path_factory.mktemp("fresh") / "hosts.yml"
    subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "down", FRESH, "--purge"], check=True)
    subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "up", FRESH, "--inventory", str(inventory)],
                   check=True, capture_output=True)
    node = Mini(FRESH, inventory, mini.farm_vars)
    yield node
    subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "down", FRESH, "--purge"], check=False)


def test_check_mode_on_a_fresh_mini_shows_changes_without_failing(fresh_mini):
    result = fresh_mini.playbook("bootstrap", "--check", "--diff")
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap(result.stdout)[FRESH]["changed"] > 0
    assert fresh_mini.sh("test -e /opt/mirascope", check=False).returncode != 0, "check mode created a directory"
    assert fresh_mini.sh("test -e /etc/ssh/sshd_config.d/000-mirascope.conf", check=False).returncode != 0


def test_filevault_off_is_refused_with_a_clear_message(fresh_mini):
    fresh_mini.sh("mkdir -p /var/db/sandbox && echo Off > /var/db/sandbox/filevault")
    try:
        result = fresh_mini.playbook("bootstrap")
    finally:
        fresh_mini.sh("rm -f /var/db/sandbox/filevault")
    assert result.returncode != 0 and "FileVault is not on" in " ".join(result.stdout.split())


def test_bootstrapped_mini_is_hardened_and_idempotent(mini):
    """The session Mini was bootstrapped from fresh by the fixture; a second run and --check change nothing."""
    again = mini.playbook("bootstrap", check=True)
    assert recap(again.stdout)[mini.name]["changed"] == 0, again.stdout[-4000:]
    checked = mini.playbook("bootstrap", "--check", "--diff", check=True)
    assert recap(checked.stdout)[mini.name]["changed"] == 0, checked.stdout[-4000:]
    effective = mini.sh("/usr/sbin/sshd -T").stdout
    assert "passwordauthentication no" in effective and "permitrootlogin no" in effective
    assert mini.sh("scutil --get LocalHostName").stdout.strip() == mini.name
    pmset = mini.sh("pmset -g").stdout
    assert " sleep                0" in pmset and " autorestart          1" in pmset
    assert mini.sh("systemsetup -getrestartpowerfailure").stdout.strip() == "Restart After Power Failure: On"
    assert mini.sh("stat -c '%a %U' /var/db/mirascope/ports").stdout.strip() == "700 root"
    # The runtime's compile cache seed (one warm-up start at its install): root's, read-only, regular files only.
    seed = "/opt/openclaw/2026.9.6/compile-cache"
    assert mini.sh(f"stat -c '%a %U' {seed}").stdout.strip() == "755 root"
    assert int(mini.sh(f"find {seed} -type f | wc -l").stdout) > 1000
    assert mini.sh(f"find {seed} ! -user root -o -perm /022 -o ! -type f ! -type d").stdout == ""
    assert [n for n in mini.sh("ls -A /opt/openclaw /opt/openclaw/2026.9.6").stdout.split() if n.startswith(".c")] == [
        ".clawfarm-runtime.json"]  # no warm-up or staging directory left


def test_a_broken_sshd_setting_is_never_installed(mini):
    before = mini.sh("cat /etc/ssh/sshd_config.d/000-mirascope.conf").stdout
    result = mini.playbook("bootstrap", "--tags", "ssh", "-e", '{"mini_base_sshd_settings": {"PasswordAuthentication": "maybe"}}')
    assert result.returncode != 0 and "failed to validate" in result.stdout
    assert mini.sh("cat /etc/ssh/sshd_config.d/000-mirascope.conf").stdout == before
    # The operator is not locked out: the next run logs in and changes nothing.
    assert recap(mini.playbook("bootstrap", "--tags", "ssh", check=True).stdout)[mini.name]["changed"] == 0


def plist_prefix(mini, claw_id: str) -> str:
    plist = mini.sh(f"cat /Library/LaunchDaemons/com.mirascope.claw.{claw_id}.plist").stdout
    return next(v for v in ("2026.9.5", "2026.9.6") if f"/opt/openclaw/{v}/" in plist)


def claw_version(mini, claw_id: str) -> str | None:
    status = mini.playbook("status", "-e", f"claw_id={claw_id}").stdout
    return status.split("version: ", 1)[1].split()[0] if "health: ok" in status and "version: " in status else None


# A runtime upgrade changes the job's runtime paths (program, PATH), nothing else.
UPGRADE_CHANGES = ("launchd.program", "launchd.environment.PATH")


def test_openclaw_upgrade_moves_every_claw_one_at_a_time(mini, tmp_path):
    before = {}
    for claw_id in UPGRADE_CLAWS:
        realistic_claw(mini, claw_id, tmp_path, "-e", f"openclaw_runtime_version={OLDER_OPENCLAW}")
        assert claw_version(mini, claw_id) == OLDER_OPENCLAW
        before[claw_id] = ClawInvariants.capture(mini, Claw(claw_id))
    # The inventory pins 2026.9.6 (role default): bootstrap --tags openclaw moves the claws, one after the other.
    out = mini.playbook("bootstrap", "--tags", "openclaw", check=True).stdout
    order = [out.index(f"claw {c} on {mini.name}") for c in UPGRADE_CLAWS]
    assert order == sorted(order)
    for claw_id in UPGRADE_CLAWS:
        assert plist_prefix(mini, claw_id) == "2026.9.6" and claw_version(mini, claw_id) == "2026.9.6"
        after = ClawInvariants.capture(mini, Claw(claw_id))
        ClawInvariants.assert_same(before[claw_id], after, allowed=UPGRADE_CHANGES, operation="the runtime upgrade")
        assert after["launchd"]["program"][0].startswith("/opt/openclaw/2026.9.6/")
        # The start gate removed the old runtime's compile cache and seeded the new one's (docs/gateway-start-gate.md).
        cache = f"{Claw(claw_id).home}/.openclaw/tmp/node-compile-cache/openclaw"
        assert mini.sh(f"ls {cache}").stdout.split() == ["2026.9.6"]
        assert "seeded the compile cache from the runtime's" in mini.sh(
            f"cat /Library/Logs/mirascope/claws/{Claw(claw_id).user}/launchd.err.log").stdout


def test_a_bad_version_stops_at_the_first_claw(mini):
    """OpenClaw refuses to run on a state database a newer build wrote (exit 78): a downgrade is a bad version."""
    first, second = UPGRADE_CLAWS
    before = {c: ClawInvariants.capture(mini, Claw(c)) for c in UPGRADE_CLAWS}
    result = mini.playbook("bootstrap", "--tags", "openclaw", "-e", f"openclaw_runtime_version={OLDER_OPENCLAW}")
    assert result.returncode != 0 and "config error (exit 78)" in result.stdout
    assert plist_prefix(mini, first) == OLDER_OPENCLAW
    assert plist_prefix(mini, second) == "2026.9.6" and claw_version(mini, second) == "2026.9.6", "the second claw was touched"
    # Back on the pinned version, the first claw is healthy again (its data was never migrated).
    mini.playbook("bootstrap", "--tags", "openclaw", check=True)
    assert claw_version(mini, first) == "2026.9.6"
    for claw_id in UPGRADE_CLAWS:  # the failed step left both claws as they were (data, settings, job)
        ClawInvariants.assert_same(before[claw_id], ClawInvariants.capture(mini, Claw(claw_id)), operation="a refused downgrade")
    for claw_id in UPGRADE_CLAWS:
        mini.playbook("deprovision", "-e", f"claw_id={claw_id}", "-e", "archive=false", "-e", "claw_purge_home=true", check=True)


def test_no_full_disk_access_over_ssh_fails_early_with_the_fix_and_changes_nothing(fresh_mini):
    """Remote Login without "Allow full disk access for remote users": TCC answers the SSH session's probe of its
    folder "Operation not permitted" (tests/sandbox/macos/tcc.py), so bootstrap stops before any change and says
    where the setting is; with the grant back it goes on."""
    tcc = "/usr/bin/python3 /usr/local/libexec/sandbox-macos/tcc.py"
    state = ("ls -A /Users /Library/LaunchDaemons /etc/ssh/sshd_config.d /opt /var/db; dscl . -list /Users UniqueID; "
             "pmset -g; scutil --get LocalHostName; true")
    before = fresh_mini.sh(state).stdout
    fresh_mini.sh(f"{tcc} revoke-remote-fda")
    try:
        denied = fresh_mini.playbook("bootstrap")
        after = fresh_mini.sh(state).stdout
    finally:
        fresh_mini.sh(f"{tcc} grant-remote-fda")
    out = " ".join(denied.stdout.split())
    assert denied.returncode != 0 and "has no Full Disk Access" in out, denied.stdout[-4000:]
    assert "Operation not permitted" in out and "Allow full disk access for remote users" in out
    assert "Remote Login" in out and "run bootstrap again" in out
    assert recap(denied.stdout)[FRESH]["changed"] == 0 and after == before
    # Only the SSH session is refused (root on the Mini's console is not), as on macOS.
    assert fresh_mini.sh("ls '/Library/Application Support/com.apple.TCC'").stdout.split() == ["TCC.db"]
    granted = fresh_mini.playbook("bootstrap", "--tags", "base")
    assert granted.returncode == 0 and recap(granted.stdout)[FRESH]["failed"] == 0, granted.stdout[-4000:]
    assert fresh_mini.sh("test -d /var/db/mirascope/ports", check=False).returncode == 0


def test_bootstrap_rerun_and_reprovision_keep_every_claws_settings(mini, tmp_path, farm):
    """Issue 14: bootstrap re-applied every claw without claw_env on every run, and .env was rewritten as exactly that
    (no ANTHROPIC_API_KEY any more); a re-provision without env (the API's update) did the same. Both keep it now, and
    bootstrap leaves a claw already on the installed runtime alone (same gateway pid). The invariant check finds no
    other difference either (data, owners and modes, job, port, route, DNS)."""
    claw_id, home = "c0ffee00-3333-4333-8333-333333333333", "/Users/claw-c0ffee00"
    claw = realistic_claw(mini, claw_id, tmp_path)
    invariants = ClawInvariants.capture(mini, claw, cf=farm["cf"])

    def env_and_pid():
        env = mini.sh(f"sha256sum {home}/.openclaw/.env; grep -c -E '^(ANTHROPIC_API_KEY|ANTHROPIC_BASE_URL|PRIMARY_MODEL_ID)=' "
                      f"{home}/.openclaw/.env").stdout
        pid = mini.sh(f"launchctl print system/com.mirascope.claw.{claw_id} | grep -E '^\\s+pid = '").stdout.strip()
        return env, pid

    before = env_and_pid()
    assert before[0].split()[-1] == "3"
    mini.playbook("bootstrap", check=True)
    assert env_and_pid() == before, "bootstrap changed the claw's .env or restarted it"
    ClawInvariants.assert_same(invariants, ClawInvariants.capture(mini, claw, cf=farm["cf"]), operation="a bootstrap re-run")
    mini.playbook("provision", "-e", f"claw_id={claw_id}", check=True)
    assert env_and_pid()[0] == before[0], "a re-provision without claw_env changed the claw's .env"
    ClawInvariants.assert_same(invariants, ClawInvariants.capture(mini, claw, cf=farm["cf"]), operation="a re-provision without env (CLI)")
    mini.playbook("deprovision", "-e", f"claw_id={claw_id}", "-e", "archive=false", "-e", "claw_purge_home=true", check=True)
