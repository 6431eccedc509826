"""Unit-test helpers: import the collection as ansible_collections.mirascope.clawfarm and fake its host."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".collections"))


class Failed(Exception):
    pass


class Exited(Exception):
    pass


class FakeModule:
    """Stands in for AnsibleModule: scripted command results keyed by argv, fail/exit raise."""

    def __init__(self, params, responses=None, check_mode=False, diff=True):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self.responses = responses or {}
        self.calls = []
        self.stdin = []

    def run_command(self, argv, environ_update=None, data=None, binary_data=False):
        assert environ_update["LC_ALL"] == "C"
        self.calls.append(list(argv))
        self.stdin.append(data)
        answer = self.responses.get(tuple(argv), (0, "", ""))
        if callable(answer):
            answer = answer()
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        return answer

    def fail_json(self, **kwargs):
        raise Failed(kwargs["msg"])

    def exit_json(self, **kwargs):
        raise Exited(kwargs)


@pytest.fixture
def fake_module():
    return FakeModule
