"""Race-free placement on two sandbox Minis: concurrent provision runs without -e mini= fill both Minis exactly,
never share a port, never overfill; the next one fails with "no capacity" and changes nothing.

Full size: 2 Minis x 4 slots, 8 runs started at once, then a 9th.
"""
from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from conftest import REPO, recap

MINIS = ("fl1", "fl2")
SLOTS = 4


@pytest.fixture(scope="module")
def placement(fleet):
    """Two Minis of the sandbox fleet with 4 slots each (fl3 is not in this inventory)."""
    inventory = fleet.inventory("placement", names=MINIS, claw_max_per_mini=SLOTS)

    def playbook(name, *args):
        return fleet.playbook(inventory, name, *args)
    yield playbook, inventory, fleet
    for name in MINIS:
        claims = fleet.sh(name, "cat /var/db/mirascope/ports/* 2>/dev/null", check=False).stdout.split()
        runs = [subprocess.Popen(fleet.command(inventory, "deprovision", "-e", f"claw_id={c}", "-e", f"mini={name}", "-e", "archive=false",
                                               "-e", "claw_purge_home=true"), cwd=REPO, env=fleet.env, stdout=subprocess.DEVNULL)
                for c in claims]
        for run in runs:
            run.wait(600)


def test_concurrent_provisions_fill_both_minis_exactly(placement):
    playbook, inventory, fleet = placement
    claws = [str(uuid.uuid4()) for _ in range(len(MINIS) * SLOTS)]
    runs = [subprocess.Popen(fleet.command(inventory, "provision", "-e", f"claw_id={c}"), cwd=REPO, env=fleet.env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
