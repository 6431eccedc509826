"""The claw_env action (plugins/action/claw_env.py): a new token is on the control node's disk, 0600, before the
module can make it the claw's on the Mini, and stays there only when it became the claw's token."""
from __future__ import annotations

import os
import stat
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.mirascope.clawfarm.plugins.action import claw_env as action

TOKEN = "T" * 48


def run(tmp_path, module_result, check_mode=False, token_file=None, seen=None):
    """Run the action with the module's result scripted; ``seen`` gets the module args and the files at that time."""
    task = mock.MagicMock(check_mode=check_mode, async_val=0)
    task.args = {"path": "/Users/claw-1a2b3c4d/.openclaw/.env", "owner": "claw-1a2b3c4d", "fallback_token": TOKEN,
                 "fallback_token_file": str(token_file or tmp_path / "secrets" / "c.token")}
    plugin = action.ActionModule(task, mock.MagicMock(), mock.MagicMock(), None, None, None)

    def execute(module_name, module_args, task_vars):
        if seen is not None:
            seen["args"] = dict(module_args)
            seen["files"] = sorted(p.name for p in (tmp_path / "secrets").glob("*")) if (tmp_path / "secrets").exists() else []
        return dict(module_result)

    with mock.patch.object(ActionBase, "run", return_value={}), mock.patch.object(plugin, "_execute_module", execute):
        return plugin.run(task_vars={})


def test_the_token_is_pending_on_disk_before_the_module_runs_then_moved_into_place(tmp_path):
    seen = {}
    result = run(tmp_path, {"changed": True, "fallback_token_used": True}, seen=seen)
    assert "fallback_token_file" not in seen["args"]  # never sent to the Mini
    assert len(seen["files"]) == 1 and seen["files"][0].startswith("c.token.pending-")
    token_file = tmp_path / "secrets" / "c.token"
    assert result["fallback_token_saved"] is True and token_file.read_text() == TOKEN + "\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == ["c.token"]


def test_a_claw_that_keeps_its_token_leaves_the_saved_one_and_no_pending_file(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "c.token").write_text("the claw's own\n")
    result = run(tmp_path, {"changed": False, "fallback_token_used": False})
    assert result["fallback_token_saved"] is False
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == ["c.token"]
    assert (tmp_path / "secrets" / "c.token").read_text() == "the claw's own\n"


def test_check_mode_writes_nothing(tmp_path):
    result = run(tmp_path, {"changed": True, "fallback_token_used": True}, check_mode=True)
    assert "fallback_token_saved" not in result and not (tmp_path / "secrets").exists()


def test_a_token_file_that_cannot_be_written_stops_before_the_mini(tmp_path):
    blocker = tmp_path / "secrets"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(AnsibleActionFail, match="nothing was changed on the Mini"):
        run(tmp_path, {"fallback_token_used": True}, token_file=blocker / "c.token")


def test_a_link_in_the_pending_files_place_is_never_written_through(tmp_path, monkeypatch):
    (tmp_path / "secrets").mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    monkeypatch.setattr(action.secrets, "token_hex", lambda n: "fixed")
    os.symlink(target, tmp_path / "secrets" / "c.token.pending-fixed")
    with pytest.raises(AnsibleActionFail):
        run(tmp_path, {"fallback_token_used": True})
    assert target.read_text() == "keep"
