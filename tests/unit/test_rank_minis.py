"""Placement choice on crafted Mini sets."""
from __future__ import annotations

from ansible_collections.mirascope.clawfarm.plugins.module_utils._placement import rank_minis

C = "1a2b3c4d-0000-4000-8000-000000000001"


def mini(used, free, status="active", mem=8000, claws=(), reachable=True):
    return {"status": status, "used": used, "free_slots": free, "memfree_mb": mem, "claw_ids": list(claws), "reachable": reachable}


def test_fewest_claws_then_most_free_memory_then_name():
    minis = {"b": mini(3, 9, mem=1000), "a": mini(3, 9, mem=1000), "c": mini(2, 10, mem=10), "d": mini(3, 9, mem=9000)}
    assert rank_minis(minis, C) == ["c", "d", "a", "b"]


def test_skips_draining_offline_maintenance_full_and_unreachable():
    minis = {"a": mini(0, 12, status="draining"), "b": mini(0, 12, status="offline"), "c": mini(0, 12, status="maintenance"),
             "d": mini(12, 0), "e": mini(0, 12, reachable=False), "f": mini(11, 1)}
    assert rank_minis(minis, C) == ["f"]


def test_no_capacity_is_empty():
    assert rank_minis({"a": mini(12, 0), "b": mini(0, 12, status="draining")}, C) == []


def test_reprovision_stays_where_the_claw_is():
    assert rank_minis({"a": mini(1, 11), "b": mini(5, 0, claws=[C])}, C) == ["b"]


def test_locate_claw_finds_every_holder():
    from ansible_collections.mirascope.clawfarm.plugins.module_utils._placement import locate_claw
    assert locate_claw({"a": mini(1, 11), "b": mini(2, 10, claws=[C])}, C) == ["b"]
    assert locate_claw({"a": mini(1, 11)}, C) == []
    assert locate_claw({"b": mini(1, 11, claws=[C]), "a": mini(1, 11, claws=[C])}, C) == ["a", "b"]


def test_migration_targets_leave_out_the_source_and_rank_the_rest():
    from ansible_collections.mirascope.clawfarm.plugins.module_utils._placement import migration_targets
    minis = {"src": mini(1, 11, claws=[C], mem=99999), "x": mini(5, 7), "y": mini(2, 10), "d": mini(0, 12, status="draining"),
             "full": mini(12, 0)}
    assert migration_targets(minis, C, "src") == ["y", "x"]
    assert migration_targets({"src": mini(1, 11, claws=[C]), "full": mini(12, 0)}, C, "src") == []
