"""Attack: a request value full of Jinja must reach the playbook as data, byte for byte, and run nothing.

Before the fix the API wrote job vars as JSON for ``-e @file`` and ansible-core rendered the strings: an ``env``
value ``{{ lookup('ansible.builtin.pipe', ...) }}`` ran a command as the service's user. Here the real service
(create_app with its job engine and ansible-runner) runs a tiny playbook on the control node through the same code
path as every job: the value must land in a file unchanged and the command must not have run.
"""
from __future__ import annotations

import stat
import sys
import time

import pytest
from fastapi.testclient import TestClient

TOKEN = "unsafe-vars-test-token-0123456789abcdef"
CLAW = "1a2b3c4d-0000-4000-8000-0000000000aa"


@pytest.fixture
def service(tmp_path, monkeypatch):
    import api.jobs
    from api.app import create_app
    from api.config import Settings

    out = tmp_path / "out"
    out.mkdir()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"minis:\n  hosts:\n    local:\n      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n")
    playbook = tmp_path / "probe.yml"
    playbook.write_text(f"""
- hosts: "{{{{ mini }}}}"
  gather_facts: false
  tasks:
    - name: Write each env value as the playbook received it
      ansible.builtin.copy:
        content: "{{{{ item.value }}}}"
        dest: "{out}/{{{{ item.key }}}}"
        mode: "0600"
      loop: "{{{{ claw_env | dict2items }}}}"
      no_log: true
    - name: Record the vars file's mode
      ansible.builtin.shell: "stat -c %a {tmp_path}/state/run/job-*/job-vars.yml > {out}/vars-mode"
      changed_when: true
""")
    monkeypatch.setitem(api.jobs.PLAYBOOKS, "provision", str(playbook))
    settings = Settings(tokens=[TOKEN], database_url=f"sqlite:///{tmp_path}/state/db.sqlite", state_dir=tmp_path / "state",
                        run_dir=tmp_path / "state" / "run", inventory=inventory, workers=1, health_interval=0, backup_schedule="off")
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client, out, tmp_path


def wait(client, job_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "canceled", "interrupted"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_jinja_env_value_arrives_verbatim_and_runs_nothing(service):
    client, out, tmp = service
    pwned = tmp / "pwned"
    env = {
        "EVIL_LOOKUP": "{{ lookup('ansible.builtin.pipe', 'touch " + str(pwned) + "') }}",
        "EVIL_BLOCK": '{% for x in range(3) %}{{ x }}{% endfor %} "$HOME" \\ {# comment #} ü',
        "EVIL_NESTED": "{{ '{{' }} lookup('ansible.builtin.env', 'HOME') {{ '}}' }}",
    }
    answer = client.post("/v1/claws", json={"claw_id": CLAW, "mini": "local", "env": env})
    assert answer.status_code == 202, answer.text
    job = wait(client, answer.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    assert not pwned.exists(), "the lookup in an env value ran"
    for name, value in env.items():
        assert (out / name).read_bytes() == value.encode(), name
    assert (out / "vars-mode").read_text().strip() == "600"
    assert stat.S_IMODE((tmp / "state" / "db.sqlite").stat().st_mode) == 0o600
    assert job["params"]["env_keys"] == sorted(env)
    events = client.get(f"/v1/jobs/{job['id']}/events").json()
    assert all(value not in str(events) + str(job) for value in env.values())


def test_unsafe_yaml_tags_every_string():
    import yaml
    from ansible.parsing.yaml.loader import AnsibleLoader

    from api.jobs import unsafe_yaml

    data = {"claw_id": CLAW, "claw_env": {"A": "{{ x }}", "B": "line"}, "restore": True, "n": 3, "none": None, "l": ["{{ y }}"]}
    text = unsafe_yaml(data)
    assert text.count("!unsafe") == 12  # the 8 keys and the 4 strings; numbers, booleans and null stay plain
    assert yaml.load(text, Loader=AnsibleLoader) == data
