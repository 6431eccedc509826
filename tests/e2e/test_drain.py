"""Drain end to end on the sandbox fleet: a Mini with 3 claws ends with 0, all 3 healthy elsewhere, marked draining."""
from __future__ import annotations

import subprocess

import yaml
from claw_invariants import Claw, ClawInvariants, FleetMini, claw_settings, seed
from conftest import REPO, latest_audit_report

CLAWS = ["d0000001-aaaa-4bbb-8ccc-000000000001", "d0000002-aaaa-4bbb-8ccc-000000000002", "d0000003-aaaa-4bbb-8ccc-000000000003"]


def test_drain_moves_every_claw_off_the_mini(fleet, farm, tmp_path):
    inventory = fleet.inventory("drain")
    # Realistic claws (issue 14): each with its token and three env keys, then seeded with workspace and sessions.
    settings = [claw_settings(tmp_path, c)[1] for c in CLAWS]
    runs = [subprocess.Popen(fleet.command(inventory, "provision", "-e", f"claw_id={c}", "-e", f"@{s}", "-e", "mini=fl3"), cwd=REPO,
                             env=fleet.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c, s in zip(CLAWS, settings, strict=True)]
    outputs = [r.communicate(timeout=900)[0] for r in runs]
    assert all(r.returncode == 0 for r in runs), "\n\n".join(o[-2000:] for r, o in zip(runs, outputs, strict=True) if r.returncode)
    for claw in CLAWS:
        user = f"claw-{claw[:8]}"
        marker = f"/Users/{user}/.openclaw/workspace/marker.txt"
        fleet.sh("fl3", f"echo {claw} > {marker} && chown {user}:$(stat -c %g /Users/{user}) {marker}")
        seed(FleetMini(fleet, inventory, "fl3"), Claw(claw), megabytes=2)
    before = {c: ClawInvariants.capture(FleetMini(fleet, inventory, "fl3"), Claw(c), cf=farm["cf"]) for c in CLAWS}

    drain = fleet.playbook(inventory, "drain", "-e", "mini=fl3", check=True)
    out = " ".join(drain.stdout.split())
    assert "fl3: moving 3 claws one at a time" in out and "fl3 is drained: 0 claws left" in out
    assert out.count("by rsync: downtime") == 3
    assert yaml.safe_load((inventory.parent / "host_vars/fl3/mini_status.yml").read_text()) == {"mini_status": "draining"}

    audit = fleet.playbook(inventory, "audit")
    assert audit.returncode == 0, audit.stdout[-3000:]
    report = latest_audit_report()["minis"]
    assert report["fl3"]["claws"] == []
    moved = {c["claw_id"]: (name, c) for name in ("fl1", "fl2") for c in report[name]["claws"]}
    assert sorted(moved) == sorted(CLAWS)
    for claw, (name, record) in moved.items():
        assert record["listening"], record
        assert fleet.sh(name, f"cat /Users/claw-{claw[:8]}/.openclaw/workspace/marker.txt").stdout.strip() == claw
        # Each claw is the one that left: only its Mini, port, route and DNS record changed.
        after = ClawInvariants.capture(FleetMini(fleet, inventory, name), Claw(claw), cf=farm["cf"])
        ClawInvariants.assert_same(before[claw], after, allowed=("mini", "port", "route", "dns"), operation="drain")
        port = after["port"]["configured"]
        assert after["port"]["claimed"] == [port] and after["route"] == [f"https://localhost:{port}"]
        assert [r.split(".")[0] for r in after["dns"]] == [fleet.hosts[name]["cf_tunnel_id"]]

    # A draining Mini takes no new claw: provision without -e mini= goes elsewhere.
    extra = "d0000004-aaaa-4bbb-8ccc-000000000004"
    placed = fleet.playbook(inventory, "provision", "-e", f"claw_id={extra}", check=True)
    assert "claw d0000004-aaaa-4bbb-8ccc-000000000004 on fl3" not in " ".join(placed.stdout.split())
    moved[extra] = (next(n for n in ("fl1", "fl2") if extra in fleet.sh(n, "cat /var/db/mirascope/ports/*").stdout), None)

    cleanup = [subprocess.Popen(fleet.command(inventory, "deprovision", "-e", f"claw_id={c}", "-e", f"mini={name}", "-e", "archive=false",
                                              "-e", "claw_purge_home=true"), cwd=REPO, env=fleet.env, stdout=subprocess.DEVNULL)
               for c, (name, _) in moved.items()]
    assert all(r.wait(600) == 0 for r in cleanup)
