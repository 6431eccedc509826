"""Race-free placement on two sandbox Minis: concurrent provision runs without -e mini= fill both Minis exactly,
never share a port, never overfill; the next one fails with "no capacity" and changes nothing.

Scaled down for CI time (2 Minis x 2 slots, 4 runs at once); the issue's 2 x 4 / 8 runs is the same code path.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from conftest import BIN, REPO, recap

MINIS = ("pl1", "pl2")
SLOTS = 2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, mini):
    work = tmp_path_factory.mktemp("fleet")
    hosts = {}
    for name in MINIS:
        subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "down", name, "--purge"], check=True)
        out = subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "up", name], check=True, capture_output=True, text=True).stdout
        hosts.update(__import__("yaml").safe_load(out)["minis"]["hosts"])
    inventory = work / "hosts.yml"
    inventory.write_text(json.dumps({"minis": {"hosts": hosts, "vars": {"claw_max_per_mini": SLOTS}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1")

    def playbook(name, *args):
        return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), f"playbooks/{name}.yml", "-e", f"@{mini.farm_vars}", *args],
                              cwd=REPO, env=env, text=True, capture_output=True)

    boot = playbook("bootstrap")
    assert boot.returncode == 0, boot.stdout[-3000:]
    yield playbook, inventory, env
    for name in MINIS:
        subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "down", name, "--purge"], check=False)


def test_concurrent_provisions_fill_both_minis_exactly(fleet, mini):
    playbook, inventory, env = fleet
    claws = [str(uuid.uuid4()) for _ in range(len(MINIS) * SLOTS)]
    runs = [subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/provision.yml", "-e", f"@{mini.farm_vars}",
                              "-e", f"claw_id={c}"], cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for c in claws]
    outputs = [r.communicate(timeout=1200)[0] for r in runs]
    assert all(r.returncode == 0 for r in runs), "\n\n".join(o[-2000:] for r, o in zip(runs, outputs, strict=True) if r.returncode)
    audit = playbook("audit")
    assert audit.returncode == 0, audit.stdout[-3000:]
    report = json.loads(sorted((REPO / "reports").glob("audit-*.json"))[-1].read_text())["minis"]
    placed = {}
    for name in MINIS:
        entry = report[name]
        assert entry["capacity"]["used"] == SLOTS and entry["capacity"]["free_slots"] == 0
        ports = [c["port"] for c in entry["claws"]]
        assert len(ports) == len(set(ports)) == SLOTS
        assert all(c["listening"] for c in entry["claws"])
        placed.update({c["claw_id"]: name for c in entry["claws"]})
    assert sorted(placed) == sorted(claws)

    extra = playbook("provision", "-e", f"claw_id={uuid.uuid4()}")
    assert extra.returncode != 0 and "no capacity" in extra.stdout
    assert all(recap(extra.stdout).get(name, {}).get("changed", 0) == 0 for name in MINIS)

    again = playbook("provision", "-e", f"claw_id={claws[0]}")
    assert again.returncode == 0 and recap(again.stdout)[placed[claws[0]]]["changed"] == 0, again.stdout[-3000:]
