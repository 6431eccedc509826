"""claw_migrate_push on this host (CPython 3.9): the rsync client runs as the claw's user, its remote shell is the
relay (roles/claw/files/clawfarm-rsync-relay), and root's ssh (here a stand-in that runs the asked ``rsync --server``
locally into another directory) holds the key. Issue 12: a hard link to a file the claw cannot read is left out and
listed; a relay asking for anything but a receiving server into the home is refused before ssh runs; a key that is
not root-only 0600 is refused."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY39 = "/root/.pyenv/versions/3.9.18/bin/python3"
USER = "clawpush-it"

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="runs rsync as another user (setuid)"),
              pytest.mark.skipif(not shutil.which("rsync") or not Path(PY39).exists(), reason="needs rsync and CPython 3.9")]

# Root's ssh stand-in: the last word is the remote command; it runs with the home replaced by the target directory.
SSH = """#!/bin/sh
for last; do :; done
echo "$last" > "$(dirname "$0")/asked"
exec sh -c "$(echo "$last" | sed "s#%(home)s/#%(dest)s/#")"
"""


def host_account(*argv: str) -> None:
    """Run ``useradd``/``userdel`` on the test machine, retrying while another process holds /etc/passwd's lock
    (exit 10: a sandbox Mini or another test editing accounts at the same moment); a user already gone is fine."""
    for _ in range(40):
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode == 0 or (argv[0] == "userdel" and result.returncode == 6):  # 6: no such user
            return
        if result.returncode != 10:  # 10: cannot lock /etc/passwd
            raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
        time.sleep(0.25)
    raise AssertionError(f"{' '.join(argv)}: /etc/passwd stayed locked")


@pytest.fixture
def farm():
    top = Path(tempfile.mkdtemp(dir="/tmp", prefix="clawpush-"))
    top.chmod(0o755)
    home, dest, bin_dir = top / "home", top / "dest", top / "bin"
    for d in (home, dest, bin_dir):
        d.mkdir()
    subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)  # what a failed earlier run left
    host_account("userdel", USER)
    host_account("useradd", "-M", "-d", str(home), "-s", "/bin/sh", USER)
    (bin_dir / "ssh").write_text(SSH % {"home": home, "dest": dest})
    (bin_dir / "ssh").chmod(0o755)
    relay = bin_dir / "relay"
    shutil.copy(REPO / "roles/claw/files/clawfarm-rsync-relay", relay)
    relay.chmod(0o755)
    key = top / "key"
    key.write_text("not a real key\n")
    key.chmod(0o600)
    secret = top / "root-only"
    secret.write_text("root-only-secret\n")
    secret.chmod(0o600)
    (home / "sub").mkdir()
    (home / "sub" / "mine.txt").write_text("mine\n")
    os.link(secret, home / "stolen")  # what the claw could do on a Mac (no protected_hardlinks there)
    for path in (home, home / "sub", home / "sub" / "mine.txt"):
        shutil.chown(path, USER)
    home.chmod(0o700)
    shutil.chown(dest, USER)
    yield {"top": top, "home": home, "dest": dest, "bin": bin_dir, "relay": relay, "key": key}
    subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
    host_account("userdel", USER)
    shutil.rmtree(top)


def push(farm, **args):
    params = dict(user=USER, home=str(farm["home"]), host="10.0.0.1", ssh_user="admin", key=str(farm["key"]),
                  known_hosts=str(farm["top"] / "known_hosts"), relay=str(farm["relay"]), **args)
    env = dict(os.environ, PATH=f"{farm['bin']}:{os.environ['PATH']}", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    result = subprocess.run([str(REPO / ".venv/bin/ansible"), "localhost", "-e", f"ansible_python_interpreter={PY39}",
                             "-m", "mirascope.clawfarm.claw_migrate_push", "-a", json.dumps(params)],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert " => " in result.stdout, result.stdout + result.stderr
    head, body = result.stdout.split(" => ", 1)
    data = json.loads(body)
    data["failed"] = "FAILED" in head
    return data


def test_the_claws_rsync_moves_its_files_and_leaves_out_what_it_cannot_read(farm):
    first = push(farm, accept_rc=[23, 24])  # pre-copy: 23 accepted as is
    assert not first.get("failed"), first
    assert first["exit_code"] == 23
    delta = push(farm, allow_unreadable=True)
    assert not delta.get("failed"), delta
    assert delta["unreadable"] == [f"{farm['home']}/stolen"]
    assert (farm["dest"] / "sub" / "mine.txt").read_text() == "mine\n"
    assert not (farm["dest"] / "stolen").exists()
    assert "root-only-secret" not in subprocess.run(["grep", "-r", "root-only-secret", str(farm["dest"])],
                                                    capture_output=True, text=True).stdout
    asked = (farm["bin"] / "asked").read_text().split()
    assert asked[:2] == ["rsync", "--server"] and "--sender" not in asked and asked[-2:] == [".", f"{farm['home']}/"]
    assert not any(flag.startswith("-") and not flag.startswith("--") and "o" in flag.split("e.")[0] for flag in asked)


def test_without_allow_unreadable_the_final_pass_fails(farm):
    result = push(farm)
    assert result.get("failed") and result["exit_code"] == 23 and "stolen" in result["msg"]


def test_a_relay_asking_for_anything_else_is_refused_before_ssh_runs(farm):
    text = farm["relay"].read_text().replace("json.dumps(sys.argv[1:])", 'json.dumps(sys.argv[1:3] + ["--sender"] + sys.argv[3:])')
    farm["relay"].write_text(text)
    result = push(farm)
    assert result.get("failed") and "refused remote command" in result["msg"]
    assert not (farm["bin"] / "asked").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_a_key_that_is_not_root_only_is_refused(farm, mode):
    farm["key"].chmod(mode)
    result = push(farm)
    assert result.get("failed") and "must be a regular file owned by root with mode 0600" in result["msg"]
    assert not (farm["bin"] / "asked").exists()


def test_a_relay_that_never_sends_its_command_is_stopped(farm):
    farm["relay"].write_text("#!/bin/sh\nexec sleep 3600\n")
    result = push(farm, timeout=300)  # the module waits 30 s for the command, rsync would wait 300
    assert result.get("failed") and "sent no command in time" in result["msg"]
    assert not (farm["bin"] / "asked").exists()
    # rsync and the relay were killed as a group: nothing of the claw's runs on (zombies wait for their reaper).
    states = subprocess.run(["ps", "-u", USER, "-o", "stat=,args="], capture_output=True, text=True).stdout.splitlines()
    assert [line for line in states if not line.strip().startswith("Z")] == []
