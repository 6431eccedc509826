"""macos_user on a sandbox Mini whose createhomedir and sysadminctl behave like macOS's (docs/macos-tcc.md):
a claw's home has none of the user template's TCC-protected folders, and after `sysadminctl -deleteUser -keepHome`
moved it to "/Users/NAME (Deleted)" the home is back at its own path, where deprovision looks for it."""
from __future__ import annotations

import os
import subprocess

from conftest import BIN, REPO, recap

USER = "claw-4e4e4e4e"
TCC = "/usr/bin/python3 /usr/local/libexec/sandbox-macos/tcc.py"
PLAY = """
- name: One claw user
  hosts: minis
  gather_facts: false
  become: true
  tasks:
    - name: The user
      mirascope.clawfarm.macos_user:
        name: {user}
        real_name: claw 4e4e4e4e-e2e-homes
        state: "{{{{ user_state }}}}"
      register: user
    - name: Where the home is
      ansible.builtin.debug:
        msg: "home={{{{ user.home }}}} moved_from={{{{ user.home_moved_from }}}}"
"""


def run_play(mini, tmp_path, state: str, check: bool = True) -> subprocess.CompletedProcess:
    play = tmp_path / "user.yml"
    play.write_text(PLAY.format(user=USER))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", PATH=f"{BIN}:{os.environ['PATH']}")
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(mini.inventory), str(play), "-e", f"user_state={state}"],
                            cwd=REPO, env=env, text=True, capture_output=True)
    assert result.returncode == 0 or not check, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def test_the_sandbox_createhomedir_makes_the_template_folders_like_macos(mini):
    """The decision below is tested against a createhomedir that, as macOS's, makes Desktop/Documents/Downloads."""
    made = mini.sh("dscl . -create /Users/claw-4f4f4f4f && dscl . -create /Users/claw-4f4f4f4f UniqueID 998 && "
                   "dscl . -create /Users/claw-4f4f4f4f PrimaryGroupID 20 && "
                   "dscl . -create /Users/claw-4f4f4f4f NFSHomeDirectory /Users/claw-4f4f4f4f && "
                   "cd / && createhomedir -c -u claw-4f4f4f4f && ls /Users/claw-4f4f4f4f; "
                   "sysadminctl -deleteUser claw-4f4f4f4f 2>/dev/null").stdout.split()
    assert {"Desktop", "Documents", "Downloads", "Library", "Public"} <= set(made)


def test_a_claw_home_has_no_tcc_folders_and_stays_in_place_after_deletion(mini, tmp_path):
    created = run_play(mini, tmp_path, "present")
    assert recap(created.stdout)[mini.name]["changed"] == 1
    uid = mini.sh(f"id -u {USER}").stdout.strip()
    assert mini.sh(f"stat -c '%a %u' /Users/{USER}").stdout.split() == ["700", uid]
    assert mini.sh(f"ls -A /Users/{USER}").stdout == "", "the home has template folders"
    mini.sh(f"mkdir /Users/{USER}/.openclaw")

    deleted = run_play(mini, tmp_path, "absent")
    out = " ".join(deleted.stdout.split())
    # The sandbox's sysadminctl -keepHome moved the home aside, as macOS may; the module put it back.
    assert f"home=/Users/{USER} moved_from=/Users/{USER} (Deleted)" in out, deleted.stdout[-3000:]
    assert mini.sh(f"test -d /Users/{USER}/.openclaw && ls /Users").stdout.split().count("(Deleted)") == 0
    assert mini.sh(f"dscl . -read /Users/{USER} UniqueID", check=False).returncode == 56

    again = run_play(mini, tmp_path, "absent")
    assert recap(again.stdout)[mini.name]["changed"] == 0
    mini.sh(f"rm -rf /Users/{USER}")


def test_without_full_disk_access_deletion_fails_and_the_claw_stays_as_it_was(mini, tmp_path):
    """Remote Login without Full Disk Access: sysadminctl moves the home aside, leaves the record (-14120) and
    exits 0, dscl -delete is refused; the module fails with the fix and puts the home back."""
    run_play(mini, tmp_path, "present")
    mini.sh(f"mkdir -p /Users/{USER}/.openclaw")
    mini.sh(f"{TCC} revoke-remote-fda")
    try:
        refused = run_play(mini, tmp_path, "absent", check=False)
    finally:
        mini.sh(f"{TCC} grant-remote-fda")
    out = " ".join(refused.stdout.split())
    assert refused.returncode != 0 and "-14120" in out and "Allow full disk access for remote users" in out, out[-3000:]
    assert mini.sh(f"dscl . -read /Users/{USER} UniqueID", check=False).returncode == 0, "the record was deleted"
    assert mini.sh(f"test -d /Users/{USER}/.openclaw && ls /Users").stdout.split().count("(Deleted)") == 0

    deleted = run_play(mini, tmp_path, "absent")
    assert f"moved_from=/Users/{USER} (Deleted)" in " ".join(deleted.stdout.split())
    mini.sh(f"rm -rf /Users/{USER}")
