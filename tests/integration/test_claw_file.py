"""Attack: an operator's claw file holding a customer's value full of Jinja must not run anything.

``-e @claw.yml`` makes ansible-core render the file's strings as templates; provision.yml therefore reads the
customer's settings with ``-e claw_file=claw.yml`` as data (a lookup result is never trusted as a template). This
runs provision.yml's own first two plays (taken from the file) on the control node, followed by a play that writes
what a Mini play would see, and checks the values arrive byte for byte with nothing run.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from clawfarm_testlib import REPO

LOADING_PLAYS = ("Read the claw's settings file as data", "Hand the settings file's values to the Minis")


def run(tmp_path: Path, claw_file_text: str, *extra: str) -> subprocess.CompletedProcess:
    plays = [play for play in yaml.safe_load((REPO / "playbooks/provision.yml").read_text()) if play.get("name", "").startswith(LOADING_PLAYS)]
    assert len(plays) == 2
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    plays.append({"name": "What the Mini play sees", "hosts": "minis", "gather_facts": False, "vars": {"claw_env": {}, "gateway_token": ""},
                  "tasks": [{"ansible.builtin.copy": {"content": "{{ claw_env | to_json }}", "dest": f"{out}/env.json"}},
                            {"ansible.builtin.copy": {"content": "{{ gateway_token }}", "dest": f"{out}/token"}}]})
    playbook = tmp_path / "pb.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    (tmp_path / "hosts.yml").write_text(f"minis:\n  hosts:\n    m1:\n      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n")
    claw_file = tmp_path / "claw.yml"
    claw_file.write_text(claw_file_text)
    binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run([str(binary), "-i", str(tmp_path / "hosts.yml"), str(playbook), "-e", f"claw_file={claw_file}", *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_claw_file_values_are_data(tmp_path):
    import json

    pwned = tmp_path / "pwned"
    evil = "{{ lookup('ansible.builtin.pipe', 'touch " + str(pwned) + "') }}"
    token = "tok" + "x" * 40
    text = yaml.safe_dump({"claw_env": {"EVIL": evil, "PLAIN": "claude-x"}, "gateway_token": token})
    result = run(tmp_path, text)
    assert result.returncode == 0, result.stdout[-3000:]
    assert not pwned.exists(), "a template in the claw file ran"
    assert json.loads((tmp_path / "out/env.json").read_text()) == {"EVIL": evil, "PLAIN": "claude-x"}
    assert (tmp_path / "out/token").read_text() == token
    assert evil not in result.stdout and token not in result.stdout and "claude-x" not in result.stdout


def test_without_claw_env_the_role_default_stays(tmp_path):
    result = run(tmp_path, yaml.safe_dump({"gateway_token": "t" * 40}))
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "out/env.json").read_text() == "{}"


def test_unknown_keys_are_refused(tmp_path):
    result = run(tmp_path, yaml.safe_dump({"claw_env": {}, "become_user": "root"}))
    assert result.returncode != 0
    assert "only claw_env and/or gateway_token" in result.stdout and "become_user" in result.stdout
    assert not (tmp_path / "out/env.json").exists()
