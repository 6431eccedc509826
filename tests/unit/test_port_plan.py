"""The port plan (docs/port-plan.md): one family of ports per claw slot, disjoint from every other slot's, computed by
_claw.port_family only; capacity, free ports and the audit's anomalies follow it."""
from __future__ import annotations

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw, _facts

A = "1a2b3c4d-0000-4000-8000-000000000001"
B = "5e6f7a8b-0000-4000-8000-000000000002"
C = "9c0d1e2f-0000-4000-8000-000000000003"


def test_port_family_is_openclaws_derivation_with_a_stride_of_128():
    assert _claw.port_family(8100, 0) == {"slot": 0, "gateway": 8100, "control": 8102, "cdp_first": 8111, "cdp_last": 8210}
    assert _claw.port_family(8100, 1) == {"slot": 1, "gateway": 8228, "control": 8230, "cdp_first": 8239, "cdp_last": 8338}
    assert _claw.port_family(8100, 11) == {"slot": 11, "gateway": 9508, "control": 9510, "cdp_first": 9519, "cdp_last": 9618}
    assert _claw.gateway_ports(8100, 3) == [8100, 8228, 8356]


def test_the_families_of_a_full_mini_are_disjoint():
    families = [_claw.port_family(8100, slot) for slot in range(12)]
    spans = [set(range(f["gateway"], f["cdp_last"] + 1)) for f in families]
    for i, span in enumerate(spans):
        assert {families[i]["gateway"], families[i]["control"], families[i]["cdp_first"]} <= span
        for other in spans[i + 1:]:
            assert not span & other
    # OpenClaw's docs ask gateway base ports at least 120 apart
    assert all(families[i + 1]["gateway"] - families[i]["gateway"] >= 120 for i in range(len(families) - 1))


@pytest.mark.parametrize("base,slot", [(8100, -1), (80, 0), (65000, 5), (65500, 0)])
def test_port_family_refuses_ports_outside_1024_65535(base, slot):
    with pytest.raises(_claw.ClawInputError):
        _claw.port_family(base, slot)


def test_slot_of():
    assert _claw.slot_of(8356, 8100, 12) == 2
    assert _claw.slot_of("8100", 8100, 12) == 0
    assert _claw.slot_of(8101, 8100, 12) is None  # the old consecutive layout
    assert _claw.slot_of(9636, 8100, 12) is None  # slot 12 of a Mini with 12 slots


def test_validate_port_names_the_plan():
    with pytest.raises(_claw.ClawInputError, match=r"not a slot of this Mini: .*8100-9508 .*e\.g\. 8100, 8228, 8356"):
        _claw.validate_port(9000, 8100, 12)


def test_free_ports_skip_slots_whose_family_meets_a_claim_off_the_plan():
    claims = {8100: A, 8101: B, 8300: C}  # B and C off the plan: 8300's family 8300-8410 meets slots 1 (8228) and 2 (8356)
    assert _claw.free_gateway_ports(claims, 8100, 5) == [8484, 8612]
    # a claw moving off the plan does not block itself: B (8101) may take slot 1 once C is not there
    assert _claw.free_gateway_ports({8100: A, 8101: B}, 8100, 3, claw_id=B) == [8228, 8356]
    assert _claw.free_gateway_ports({8100: A, 8101: B}, 8100, 3, claw_id=A) == [8228, 8356]


def test_capacity_counts_claws_not_ports():
    old_layout = {port: f"{port:08x}-0000-4000-8000-000000000000" for port in range(8100, 8112)}  # 12 claws, consecutive
    assert _claw.port_capacity(old_layout, 8100, 12) == {"used": 12, "free_slots": 0, "free_ports": []}
    assert _claw.port_capacity({}, 8100, 2) == {"used": 0, "free_slots": 2, "free_ports": [8100, 8228]}
    assert _claw.port_capacity({8228: A}, 8100, 2) == {"used": 1, "free_slots": 1, "free_ports": [8100]}


def test_overlapping_families_and_off_plan_claims_are_anomalies():
    assert _facts.port_plan_anomalies({8100: A, 8228: B}, 8100, 12) == []
    found = _facts.port_plan_anomalies({8100: A, 8102: B, 8228: C}, 8100, 12)
    assert [(f["kind"], f["claw_id"], f["port"]) for f in found] == [
        ("port_families_overlap", A, 8100), ("off_plan_port", B, 8102)]
    assert f"{A} (gateway 8100, ports 8100-8210) and {B} (gateway 8102) overlap" in found[0]["detail"]
    assert "re-provision it" in found[1]["detail"]
    assert _claw.overlapping_claims({8100: A, 8102: A}) == []  # one claw's two claims (mid-move) do not count


def claims_in(directory) -> dict:
    return {int(p.name): p.read_text().strip() for p in directory.iterdir()}


def test_claim_port_takes_the_lowest_free_slot_and_keeps_it(tmp_path):
    ports = tmp_path / "ports"
    first = _claw.claim_port(str(ports), A, 8100, 3)
    assert (first["changed"], first["port"], first["moved_from"]) == (True, 8100, None)
    assert oct(ports.stat().st_mode & 0o777) == "0o700"
    assert _claw.claim_port(str(ports), B, 8100, 3)["port"] == 8228
    again = _claw.claim_port(str(ports), A, 8100, 3)
    assert (again["changed"], again["port"]) == (False, 8100)
    with pytest.raises(_claw.ClawInputError, match="already holds port 8100"):
        _claw.claim_port(str(ports), A, 8100, 3, wanted=8356)
    with pytest.raises(_claw.ClawInputError, match="already claimed by claw " + B):
        _claw.claim_port(str(ports), C, 8100, 3, wanted=8228)
    assert _claw.claim_port(str(ports), C, 8100, 3)["port"] == 8356
    with pytest.raises(_claw.ClawInputError, match="no capacity: 3 claws hold this Mini's 3 slots"):
        _claw.claim_port(str(ports), "0a0b0c0d-0000-4000-8000-000000000004", 8100, 3)


def test_a_claw_on_the_old_layout_moves_to_a_slot_new_claim_first(tmp_path):
    ports = tmp_path / "ports"
    ports.mkdir(mode=0o700)
    for port, claw_id in {8100: A, 8101: B, 8102: C}.items():  # the old consecutive layout
        (ports / str(port)).write_text(claw_id + "\n")
    plan = _claw.claim_port(str(ports), B, 8100, 4, check_mode=True)
    assert (plan["changed"], plan["port"], plan["moved_from"]) == (True, 8228, 8101)
    assert claims_in(ports) == {8100: A, 8101: B, 8102: C}  # check mode changes nothing
    moved = _claw.claim_port(str(ports), B, 8100, 4)
    assert (moved["port"], moved["moved_from"]) == (8228, 8101)
    assert claims_in(ports) == {8100: A, 8102: C, 8228: B}
    assert _claw.claim_port(str(ports), C, 8100, 4)["port"] == 8356
    assert claims_in(ports) == {8100: A, 8228: B, 8356: C}
    assert _claw.port_capacity(claims_in(ports), 8100, 4)["free_ports"] == [8484]
    assert _facts.port_plan_anomalies(claims_in(ports), 8100, 4) == []


def test_a_slot_whose_family_meets_an_old_claim_is_refused(tmp_path):
    ports = tmp_path / "ports"
    ports.mkdir(mode=0o700)
    (ports / "8300").write_text(A + "\n")
    with pytest.raises(_claw.ClawInputError, match="family meets another claw's ports"):
        _claw.claim_port(str(ports), B, 8100, 4, wanted=8228)
    assert _claw.claim_port(str(ports), B, 8100, 4)["port"] == 8100  # 8100-8210 is clear of 8300


def test_a_mini_record_must_fit_its_last_port_family():
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _mini

    assert _mini.validate_mini({"name": "m", "base_port": 9000, "max_claws": 8})["base_port"] == 9000
    with pytest.raises(_mini.MiniInputError, match="slot 49 from claw_base_port 60000 gives ports 66272-66382"):
        _mini.validate_mini({"name": "m", "base_port": 60000, "max_claws": 50})
    assert _mini.validate_mini({"name": "m", "base_port": 65000, "max_claws": 0})["max_claws"] == 0
