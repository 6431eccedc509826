"""The sandbox's pfctl stand-in (tests/sandbox/macos/bin/pfctl): which pf rules it understands and the nftables rules
it enforces them with (the nftables side itself runs in the e2e test, inside a Mini's network namespace)."""
from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _pf

PFCTL = Path(__file__).resolve().parents[2] / "tests/sandbox/macos/bin/pfctl"


@pytest.fixture(scope="module")
def pfctl():
    loader = importlib.machinery.SourceFileLoader("sandbox_pfctl", str(PFCTL))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("sandbox_pfctl", loader))
    loader.exec_module(module)
    return module


def test_every_rule_the_farm_writes_is_understood(pfctl, tmp_path):
    claws = [{"claw_id": "1a2b3c4d-0000-4000-8000-000000000001", "user": "claw-1a2b3c4d", "uid": 600, "port": 8100},
             {"claw_id": "5e6f7a8b-0000-4000-8000-000000000002", "user": "claw-5e6f7a8b", "uid": None, "port": 8228}]
    anchor = tmp_path / "anchor"
    anchor.write_text(_pf.anchor_rules(claws, [600, 29999]))
    rules = pfctl.parse(str(anchor))
    assert len(rules) == _pf.rule_count(anchor.read_text()) == 9
    assert [pfctl.to_nft(rule) for rule in rules] == [
        'oifname "lo" tcp dport 8100-8210 meta skuid 600 accept',
        'oifname "lo" tcp dport 8100 meta skuid 0 accept',
        'oifname "lo" tcp dport 8228 meta skuid 0 accept',
        'oifname "lo" tcp dport 8100-8210 reject with tcp reset',
        'oifname "lo" tcp dport 8228-8338 reject with tcp reset',
        "ip daddr 100.64.0.0/10 meta l4proto tcp meta skuid 600-29999 reject with tcp reset",
        "ip daddr 100.64.0.0/10 meta l4proto udp meta skuid 600-29999 reject",
        "ip6 daddr fd7a:115c:a1e0::/48 meta l4proto tcp meta skuid 600-29999 reject with tcp reset",
        "ip6 daddr fd7a:115c:a1e0::/48 meta l4proto udp meta skuid 600-29999 reject",
    ]
    # pfctl -s rules: pfctl's normal form, one line per rule (what pf_anchor_info counts)
    shown = "\n".join(pfctl.normal_form(rule) for rule in rules)
    assert shown.splitlines()[0] == "pass out quick on lo0 proto tcp from any to any port 8100:8210 user = 600 flags S/SA keep state"
    assert shown.splitlines()[1] == "pass out quick on lo0 proto tcp from any to any port = 8100 user = 0 flags S/SA keep state"
    assert _pf.rule_count(shown) == 9
    assert [pfctl.raw_line(rule) for rule in rules] == [line for line in anchor.read_text().splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("line", ["pass in quick on lo0 proto tcp from any to any port 80",
                                  "block drop out quick proto tcp from any to any port 80",
                                  "pass out quick proto tcp from any to not-an-address port 80",
                                  "pass out quick proto { tcp udp } from any to any port 80 user 600"])
def test_anything_else_is_a_syntax_error_and_loads_nothing(pfctl, tmp_path, capsys, line):
    anchor = tmp_path / "anchor"
    anchor.write_text(f"# a comment\n{line}\n")
    with pytest.raises(SystemExit) as info:
        pfctl.parse(str(anchor))
    assert info.value.code == 1
    assert capsys.readouterr().err == f"{anchor}:2: syntax error\npfctl: Syntax error in config file: pf rules not loaded\n"
