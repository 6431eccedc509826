"""The API checks request input with the collection's own validators (api.validation wraps module_utils._claw)."""
from __future__ import annotations

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw

from api import validation


def test_the_api_uses_the_collections_module():
    assert validation.ClawInputError is _claw.ClawInputError
    assert validation.claw.validate_env is _claw.validate_env


@pytest.mark.parametrize("env, message", [
    ({"PATH": "/x"}, "set by the claw's launchd job"),
    ({"CLAW_GATEWAY_TOKEN": "x" * 40}, "set by the claw's launchd job"),
    ({"A": "one\ntwo"}, "newline"),
    ({"A": "nul\0"}, "newline or NUL"),
    ({"BAD-KEY": "x"}, "not a valid environment variable name"),
    ({"A": "it's \"both\""}, "both single and double quotes"),
])
def test_check_env_refuses_what_the_mini_would_refuse(env, message):
    with pytest.raises(_claw.ClawInputError, match=message) as error:
        validation.check_env(env)
    for value in env.values():
        if len(value) > 3:
            assert value not in str(error.value)


def test_check_env_keeps_good_values():
    env = {"ANTHROPIC_API_KEY": "sk-ant-x", "JINJA": "{{ lookup('pipe', 'id') }}"}
    assert validation.check_env(env) == env


def test_env_names_and_changes():
    assert validation.check_env_names(["B", "A", "A"]) == ["A", "B"]
    with pytest.raises(_claw.ClawInputError, match="cannot be removed"):
        validation.check_env_names(["HOME"])
    with pytest.raises(_claw.ClawInputError, match="not a valid"):
        validation.check_env_names(["$(id)"])
    with pytest.raises(_claw.ClawInputError, match="both name A"):
        validation.check_env_change({"A": "1"}, ["A"])
    validation.check_env_change({"A": "1"}, ["B"])
