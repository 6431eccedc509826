"""Placement choice on crafted Mini sets."""
from __future__ import annotations

from ansible_collections.mirascope.clawfarm.plugins.module_utils._placement import rank_minis

C = "1a2b3c4d-0000-4000-8000-000000000001"


def mini(used, free, status="active", mem=8000, claws=(), reachable=True):
    return {"status": status, "used": used, "free_slots": free, "memory_available_mb": mem, "claw_ids": list(claws), "reachable": reachable}


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


# vm_stat as macOS 14/15 print it on Apple silicon (the one-snapshot form claw_port_info runs for placement); the
# counts are those of a 16 GB Mac under load, for illustration (they add up to 15 GiB of pages).
VM_STAT_MAC = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                                5418.
Pages active:                            283095.
Pages inactive:                          279208.
Pages speculative:                         2991.
Pages throttled:                              0.
Pages wired down:                        149627.
Pages purgeable:                           9815.
"Translation faults":                 742137624.
Pages copy-on-write:                   24591337.
Pages zero filled:                    339810270.
Pages reactivated:                      8573391.
Pages purged:                           3203867.
File-backed pages:                       187020.
Anonymous pages:                         378274.
Pages stored in compressor:              585127.
Pages occupied by compressor:            263434.
Decompressions:                         9713839.
Compressions:                          13856617.
Pageins:                               21342716.
Pageouts:                                190813.
Swapins:                                 158870.
Swapouts:                                291742.
"""


def test_vm_stat_of_a_mac_is_read_as_free_plus_inactive_pages():
    from ansible_collections.mirascope.clawfarm.plugins.module_utils._placement import memory_available_mb, parse_vm_stat

    stats = parse_vm_stat(VM_STAT_MAC)
    assert stats["page_size"] == 16384
    assert stats["pages"]["Translation faults"] == 742137624 and stats["pages"]["Pages wired down"] == 149627
    assert memory_available_mb(VM_STAT_MAC) == (5418 + 279208) * 16384 // 2**20 == 4447
    intel = VM_STAT_MAC.replace("16384", "4096")
    assert memory_available_mb(intel) == (5418 + 279208) * 4096 // 2**20


def test_vm_stat_without_a_page_size_or_counts_is_an_error():
    import pytest
    from ansible_collections.mirascope.clawfarm.plugins.module_utils._placement import VmStatError, memory_available_mb

    with pytest.raises(VmStatError, match="page size"):
        memory_available_mb("Pages free: 1.\n")
    with pytest.raises(VmStatError, match="Pages inactive"):
        memory_available_mb("Mach Virtual Memory Statistics: (page size of 4096 bytes)\nPages free: 10.\n")


def test_placement_view_reads_the_claims_available_memory():
    from ansible_collections.mirascope.clawfarm.plugins.filter.mini import placement_view

    hostvars = {"a": {"place_claims": {"used_ports": {"8100": C}, "free_slots": 11, "memory_available_mb": 4447}},
                "b": {"place_claims": {"unreachable": True}, "mini_status": "draining"}}
    view = placement_view(["a", "b"], hostvars)
    assert view["a"] == {"status": "active", "used": 1, "free_slots": 11, "memory_available_mb": 4447, "claw_ids": [C], "reachable": True}
    assert view["b"]["reachable"] is False and view["b"]["memory_available_mb"] is None
