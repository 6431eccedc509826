"""A hostile tenant leaves a process behind to become the next claw (review of issue 12, closing.md problem 2).

The claw's code runs as the claw's user. It starts a detached process (double fork, new session) that outlives its
gateway's launchd job and keeps reading the ``.env`` of every home its uid can open, copying what it finds to /tmp.
It also hops: every round it starts its successor and exits, so a single pass over the process list (what
``sysadminctl -deleteUser`` does) can miss the newest one. Then the operator deprovisions the claw and provisions a
new one. If the orphan survived and the new claw got the freed UID, the orphan would own the new home and read its
gateway token. Asserted: no process of the old UID is left after deprovision, the UID is recorded in the root-only
high-water mark, and the new claw gets a higher UID; the loot file never holds the new claw's token.
"""
from __future__ import annotations

import shlex

import pytest
import yaml
from conftest import recap, wait_for

OLD_ID = "0d1ecafe-7e4a-4c1a-9d2b-0000000000b1"
OLD_USER = "claw-0d1ecafe"
NEW_ID = "0d1ecaff-7e4a-4c1a-9d2b-0000000000b2"
NEW_USER = "claw-0d1ecaff"
OLD_TOKEN = "e2e-lifecycle-old-token-Qm3xT7vW9yB2dF4hJ6kL8n"
NEW_TOKEN = "e2e-lifecycle-new-token-Zp5rS1aC3eG7iK9mO2qU4w"
HIGH_WATER = "/var/db/mirascope/claw-uid-high-water"
HOPPER = "/tmp/e2e-hopper.sh"
LOOT = "/tmp/e2e-loot"

# The orphan: read every .env it can open (a home its uid owns), append it to the loot file, start its successor
# in a new session and exit. It never stops by itself.
HOPPER_SCRIPT = f"""#!/bin/sh
for f in /Users/*/.env /Users/*/.openclaw/.env; do cat "$f" >> {LOOT} 2>/dev/null; done
echo $$ > /tmp/e2e-hopper.pid
sleep 0.2
setsid sh {HOPPER} </dev/null >/dev/null 2>&1 &
exit 0
"""


def vars_file(tmp_path_factory, token: str):
    path = tmp_path_factory.mktemp("lifecycle") / "claw.yml"
    path.write_text(yaml.safe_dump({"gateway_token": token, "claw_env": {"PRIMARY_MODEL_ID": "claude-sonnet-4"}}))
    path.chmod(0o600)
    return path


def as_tenant(mini, user: str, command: str) -> str:
    """Run ``command`` as the claw's user inside the Mini (what the claw's code can do)."""
    result = mini.sh(f"su -s /bin/sh {user} -c {shlex.quote(command)}", check=False)
    assert result.returncode == 0, f"as {user}: {command}: {result.stdout}{result.stderr}"
    return result.stdout


def live_processes(mini, uid: int) -> list:
    """``ps`` lines (pid, uid, ruid, state, command) of live processes whose real or effective UID is ``uid``."""
    out = mini.sh("ps -A -o pid= -o uid= -o ruid= -o stat= -o args=").stdout
    return [line for line in out.splitlines()
            if len(line.split()) >= 4 and uid in (int(line.split()[1]), int(line.split()[2]))
            and not line.split()[3].startswith("Z")]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return {"old": vars_file(tmp_path_factory, OLD_TOKEN), "new": vars_file(tmp_path_factory, NEW_TOKEN)}


def test_a_detached_process_of_a_deprovisioned_claw_never_becomes_the_next_claw(mini, tokens):
    mini.playbook("provision", "-e", f"claw_id={OLD_ID}", "-e", f"@{tokens['old']}", check=True)
    old_uid = int(mini.sh(f"id -u {OLD_USER}").stdout)
    as_tenant(mini, OLD_USER, f"cat > {HOPPER} <<'EOF'\n{HOPPER_SCRIPT}EOF\n"
                              f"setsid sh {HOPPER} </dev/null >/dev/null 2>&1 &")
    assert wait_for(lambda: any("e2e-hopper" in line for line in live_processes(mini, old_uid)), timeout=30, interval=0.5)
    assert wait_for(lambda: OLD_TOKEN in mini.sh(f"cat {LOOT} 2>/dev/null; true").stdout, timeout=30, interval=0.5)

    result = mini.playbook("deprovision", "-e", f"claw_id={OLD_ID}", "-e", "archive=false")
    assert result.returncode == 0 and recap(result.stdout)[mini.name]["failed"] == 0, result.stdout[-4000:]
    assert live_processes(mini, old_uid) == [], "a process of the deprovisioned claw is still running"
    assert mini.sh(f"stat -c '%F %U %a' {HIGH_WATER}").stdout.split() == ["regular", "file", "root", "600"]
    assert int(mini.sh(f"cat {HIGH_WATER}").stdout) >= old_uid

    mini.playbook("provision", "-e", f"claw_id={NEW_ID}", "-e", f"@{tokens['new']}", check=True)
    new_uid = int(mini.sh(f"id -u {NEW_USER}").stdout)
    assert new_uid > old_uid, f"the new claw got UID {new_uid}, the deprovisioned one had {old_uid}"
    assert mini.sh(f"stat -c %u /Users/{NEW_USER}").stdout.strip() == str(new_uid)
    assert live_processes(mini, old_uid) == []
    assert NEW_TOKEN not in mini.sh(f"cat {LOOT} 2>/dev/null; true").stdout

    # Idempotent: a second deprovision of the old claw changes nothing; the new claw's is clean.
    again = mini.playbook("deprovision", "-e", f"claw_id={OLD_ID}", "-e", "archive=false")
    assert again.returncode == 0 and recap(again.stdout)[mini.name]["changed"] == 0, again.stdout[-4000:]
    done = mini.playbook("deprovision", "-e", f"claw_id={NEW_ID}", "-e", "archive=false", "-e", "claw_purge_home=true")
    assert done.returncode == 0, done.stdout[-4000:]
    assert live_processes(mini, new_uid) == []
    assert int(mini.sh(f"cat {HIGH_WATER}").stdout) == new_uid
    mini.sh(f"rm -f {HOPPER} {LOOT} /tmp/e2e-hopper.pid")


CRON_ID = "0d1ecb00-7e4a-4c1a-9d2b-0000000000b3"
CRON_USER = "claw-0d1ecb00"


def test_a_claw_cannot_schedule_its_code_outside_its_launchd_job(mini, tmp_path_factory):
    """cron runs a user's table whatever happens to the user's launchd job: a claw with a crontab would keep running
    code while its gateway is stopped for a backup or a migration (and between the kills of a deprovision). The claw's
    user is refused by crontab, and a table from before the farm denied cron is removed by the next provision."""
    claw_vars = vars_file(tmp_path_factory, "e2e-cron-token-Tq7wE2rY5uI8oP1aS4dF6g")
    mini.playbook("provision", "-e", f"claw_id={CRON_ID}", "-e", f"@{claw_vars}", check=True)
    schedule = shlex.quote('echo "* * * * * id >> /tmp/e2e-cron" | crontab -')
    attempt = mini.sh(f"su -s /bin/sh {CRON_USER} -c {schedule}", check=False)
    assert attempt.returncode != 0, "the claw installed a crontab"
    assert f"You ({CRON_USER}) are not allowed to use this program (crontab)" in attempt.stderr
    assert mini.sh(f"test -e /usr/lib/cron/tabs/{CRON_USER}", check=False).returncode != 0
    assert CRON_USER in mini.sh("cat /usr/lib/cron/cron.deny").stdout.splitlines()

    # A table from before the farm denied cron (root installs one as the claw had): the next provision removes it.
    mini.sh(f"echo '* * * * * id' | crontab -u {CRON_USER} -")
    again = mini.playbook("provision", "-e", f"claw_id={CRON_ID}", "-e", f"@{claw_vars}", check=True)
    assert recap(again.stdout)[mini.name]["changed"] >= 1
    assert mini.sh(f"test -e /usr/lib/cron/tabs/{CRON_USER}", check=False).returncode != 0

    done = mini.playbook("deprovision", "-e", f"claw_id={CRON_ID}", "-e", "archive=false", "-e", "claw_purge_home=true")
    assert done.returncode == 0, done.stdout[-4000:]
    assert CRON_USER not in mini.sh("cat /usr/lib/cron/cron.deny").stdout.splitlines()
