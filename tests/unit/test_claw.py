"""Claw naming and input validation (runs on the control node before anything reaches a Mini)."""
from __future__ import annotations

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _gateway_probe as probe

GOOD = "1a2b3c4d-0000-4000-8000-000000000001"


def test_identity():
    assert _claw.claw_identity(GOOD.upper()) == {
        "claw_id": GOOD, "user": "claw-1a2b3c4d", "label": f"com.mirascope.claw.{GOOD}",
        "home": "/Users/claw-1a2b3c4d", "state_dir": "/Users/claw-1a2b3c4d/.openclaw", "real_name": f"claw {GOOD}",
    }


@pytest.mark.parametrize("bad", ["../../etc", "$(reboot)", "x; rm -rf /", "", None, "A" * 10240, GOOD + "0",
                                 GOOD.replace("-", ""), "{" + GOOD + "}", 12345])
def test_bad_claw_ids(bad):
    with pytest.raises(_claw.ClawInputError) as info:
        _claw.validate_claw_id(bad)
    assert len(str(info.value)) < 200


def test_ports():
    assert _claw.validate_port("8740", 8100, 12) == 8740  # slot 5: 8100 + 5 x 128
    for bad in (8099, 8101, 8105, 9636, "x", 70000):
        with pytest.raises(_claw.ClawInputError):
            _claw.validate_port(bad, 8100, 12)


@pytest.mark.parametrize("env,message", [
    ({"BAD-KEY": "x"}, "not a valid environment variable name"),
    ({"1X": "x"}, "not a valid"),
    ({"PATH": "/tmp"}, "cannot be overridden"),
    ({"CLAW_GATEWAY_TOKEN": "x"}, "cannot be overridden"),
    ({"A": "line\nbreak"}, "newline"),
    ({"A": ["list"]}, "string or a number"),
])
def test_bad_env(env, message):
    with pytest.raises(_claw.ClawInputError, match=message) as info:
        _claw.validate_env(env)
    assert "line\nbreak" not in str(info.value)


def test_dotenv_round_trip():
    env = {"ANTHROPIC_API_KEY": "sk-ant-123", "ANTHROPIC_BASE_URL": "https://x.example/v1", "NOTE": "has space",
           "Q": "it's", "N": "42"}
    text = _claw.render_dotenv(_claw.validate_env(env))
    assert _claw.parse_dotenv(text) == env


def test_gateway_config_references_the_token_and_binds_loopback():
    config = _claw.gateway_config(8100, "/Users/claw-x/.openclaw")
    assert config["gateway"]["mode"] == "local" and config["gateway"]["bind"] == "loopback"
    assert config["gateway"]["auth"]["token"] == {"source": "env", "provider": "default", "id": "CLAW_GATEWAY_TOKEN"}
    assert config["logging"]["file"].startswith("/Users/claw-x/.openclaw/")


def test_probe_reports_unreachable_without_raising():
    outcome = probe.probe_gateway(1, "t" * 40, timeout=0.5)
    assert outcome["result"] == probe.UNREACHABLE and "t" * 40 not in str(outcome)


def test_port_accepts_tells_a_listening_port_from_a_closed_one():
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert probe.port_accepts(port) is True
    assert probe.port_accepts(port) is False
