"""Race-free placement on two sandbox Minis: concurrent provision runs without -e mini= fill both Minis exactly,
never share a port, never overfill; the next one fails with "no capacity" and changes nothing.

Full size: 2 Minis x 4 slots, 8 runs started at once, then a 9th.
"""
from __future__ import annotations

import subprocess
import uuid

import pytest
from claw_invariants import Claw, ClawInvariants, FleetMini, claw_settings, seed
from conftest import REPO, latest_audit_report, recap

MINIS = ("fl1", "fl2")
SLOTS = 4


@pytest.fixture(scope="module")
def placement(fleet):
    """Two Minis of the sandbox fleet with 4 slots each (fl3 is not in this inventory).

    Eight gateways cold-starting at once share the test machine's 2 cores (about 10 s each alone, reference 4), so
    each run may wait longer for health than the production default of 180 s.
    """
    inventory = fleet.inventory("placement", names=MINIS, claw_max_per_mini=SLOTS, claw_health_timeout=480)

    def playbook(name, *args):
        return fleet.playbook(inventory, name, *args)
    yield playbook, inventory, fleet
    claims = {name: fleet.sh(name, "cat /var/db/mirascope/ports/* 2>/dev/null", check=False).stdout.split() for name in MINIS}
    runs = [subprocess.Popen(fleet.command(inventory, "deprovision", "-e", f"claw_id={c}", "-e", f"mini={name}", "-e", "archive=false",
                                           "-e", "claw_purge_home=true"), cwd=REPO, env=fleet.env, stdout=subprocess.DEVNULL)
            for name, claws in claims.items() for c in claws]
    for run in runs:
        run.wait(600)


def gateway_logs(fleet, claw_id: str) -> str:
    """The end of a claw's gateway logs on whichever Mini has them, to read after a failed run."""
    logs = f"/Users/claw-{claw_id[:8]}/.openclaw/logs"
    return "".join(f"\n--- {name}:{logs}\n" + fleet.sh(name, f"tail -n 40 {logs}/*.log 2>&1", check=False).stdout[-3000:]
                   for name in MINIS)


def test_concurrent_provisions_fill_both_minis_exactly(placement, farm, tmp_path):
    playbook, inventory, fleet = placement
    claws = [str(uuid.uuid4()) for _ in range(len(MINIS) * SLOTS)]
    # Each with its token and the three env keys, as the backend provisions (issue 14).
    runs = [subprocess.Popen(fleet.command(inventory, "provision", "-e", f"claw_id={c}", "-e", f"@{claw_settings(tmp_path, c)[1]}"),
                             cwd=REPO, env=fleet.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for c in claws]
    outputs = [r.communicate(timeout=1500)[0] for r in runs]
    failed = [(c, o) for c, r, o in zip(claws, runs, outputs, strict=True) if r.returncode]
    assert not failed, "\n\n".join(o[-2000:] + gateway_logs(fleet, c) for c, o in failed)
    audit = playbook("audit")
    assert audit.returncode == 0, audit.stdout[-3000:]
    report = latest_audit_report()["minis"]
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

    # Re-provision through the CLI without settings (the backend's update): a realistic claw keeps everything.
    holder, claw = FleetMini(fleet, inventory, placed[claws[0]]), Claw(claws[0])
    seed(holder, claw)
    before = ClawInvariants.capture(holder, claw, cf=farm["cf"])
    again = playbook("provision", "-e", f"claw_id={claws[0]}")
    assert again.returncode == 0 and recap(again.stdout)[placed[claws[0]]]["changed"] == 0, again.stdout[-3000:]
    ClawInvariants.assert_same(before, ClawInvariants.capture(holder, claw, cf=farm["cf"]), operation="a re-provision without settings (CLI)")
