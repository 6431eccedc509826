"""The suite's AnsiballZ run cache (tests/callback_plugins/ansiballz_run_cache.py): two playbooks of one run share a
module's payload, built once under Ansible's own name for it; without the variable Ansible keeps its per-run cache."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAY = """- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.ping:
"""


def run_play(tmp_path: Path, **env: str) -> None:
    playbook = tmp_path / "ping.yml"
    playbook.write_text(PLAY)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_CALLBACK", "CLAWFARM_TEST_ANSIBALLZ"))}
    environment.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "local"), **env)
    subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                    "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
                   cwd=REPO, env=environment, capture_output=True, text=True, check=True)


def test_two_playbooks_share_the_payload_built_by_the_first(tmp_path):
    cache = tmp_path / "run-cache"
    cache.mkdir()
    enabled = {"CLAWFARM_TEST_ANSIBALLZ_CACHE": str(cache), "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "tests" / "callback_plugins"),
               "ANSIBLE_CALLBACKS_ENABLED": "mirascope.clawfarm.gc_freeze,ansiballz_run_cache"}
    run_play(tmp_path, **enabled)
    entries = sorted(p.name for p in (cache / "ansiballz_cache").iterdir() if not p.name.endswith(".lock"))
    assert entries == ["ansible.modules.ping-ZIP_DEFLATED-none"]  # what Ansible names it
    built = (cache / "ansiballz_cache" / entries[0]).stat().st_mtime_ns
    run_play(tmp_path, **enabled)
    assert (cache / "ansiballz_cache" / entries[0]).stat().st_mtime_ns == built  # reused, not built again


def test_without_the_variable_ansible_keeps_its_own_per_run_cache(tmp_path):
    run_play(tmp_path, ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "callback_plugins"),
             ANSIBLE_CALLBACKS_ENABLED="mirascope.clawfarm.gc_freeze,ansiballz_run_cache")
    assert not list(tmp_path.glob("run-cache*"))
    assert list((tmp_path / "local").iterdir()) == []  # Ansible's own run directory, removed at its end
