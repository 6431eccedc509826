"""claw_env module: settings change only when asked, and a file that is not the claw's own is never read.

Runs the module as Ansible does (a subprocess with a JSON args file) against temp directories; as root, so that
ownership can be checked (the sandbox and CI run tests as root).
"""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw, _facts

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins/modules/claw_env.py"
TOKEN = "A" * 40
OTHER = "B" * 40
NEIGHBOUR = "N" * 40
OWNER = pwd.getpwuid(os.getuid()).pw_name

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")


def run(tmp_path, check=False, **args) -> dict:
    params = dict({"path": str(tmp_path / "state" / ".env"), "owner": OWNER, "group": "0"}, **args)
    params.update(_ansible_check_mode=check, _ansible_diff=True)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    env = dict(os.environ, PYTHONPATH=str(REPO / ".collections"))
    done = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, env=env)
    return json.loads(done.stdout)


@pytest.fixture
def state(tmp_path):
    (tmp_path / "state").mkdir(mode=0o700)
    return tmp_path / "state"


def env_of(state) -> dict:
    return _claw.parse_dotenv((state / ".env").read_text())


def write(path, **env):
    path.write_text(_claw.render_dotenv(env))
    os.chmod(path, 0o600)


def test_new_claw_gets_the_fallback_token_and_env(tmp_path, state):
    result = run(tmp_path, env={"K": "1"}, fallback_token=TOKEN)
    assert result["changed"] and result["fallback_token_used"]
    assert env_of(state) == {"K": "1", "CLAW_GATEWAY_TOKEN": TOKEN}
    assert (state / ".env").stat().st_mode & 0o777 == 0o600
    assert result["token_fingerprint"] == _facts.token_fingerprint(TOKEN) and TOKEN not in json.dumps(result)
    assert run(tmp_path, env={"K": "1"}, fallback_token=OTHER)["changed"] is False


def test_omitted_env_keeps_every_setting(tmp_path, state):
    write(state / ".env", ANTHROPIC_API_KEY="sk-1", PRIMARY_MODEL_ID="m", CLAW_GATEWAY_TOKEN=TOKEN)
    result = run(tmp_path, fallback_token=OTHER)
    assert result["changed"] is False and result["names"] == ["ANTHROPIC_API_KEY", "CLAW_GATEWAY_TOKEN", "PRIMARY_MODEL_ID"]
    assert env_of(state) == {"ANTHROPIC_API_KEY": "sk-1", "PRIMARY_MODEL_ID": "m", "CLAW_GATEWAY_TOKEN": TOKEN}


def test_env_set_and_unset_edit_single_keys_and_diff_shows_names_only(tmp_path, state):
    write(state / ".env", ANTHROPIC_API_KEY="sk-1", PRIMARY_MODEL_ID="m", CLAW_GATEWAY_TOKEN=TOKEN)
    checked = run(tmp_path, check=True, env_set={"PRIMARY_MODEL_ID": "m2"}, env_unset=["ANTHROPIC_API_KEY"])
    assert checked["changed"] and env_of(state)["PRIMARY_MODEL_ID"] == "m", "check mode wrote the file"
    result = run(tmp_path, env_set={"PRIMARY_MODEL_ID": "m2"}, env_unset=["ANTHROPIC_API_KEY"])
    assert env_of(state) == {"PRIMARY_MODEL_ID": "m2", "CLAW_GATEWAY_TOKEN": TOKEN}
    assert result["diff"]["after"] == "CLAW_GATEWAY_TOKEN=<hidden>\nPRIMARY_MODEL_ID=<hidden (changed)>\n"
    assert "ANTHROPIC_API_KEY" in result["diff"]["before"] and "sk-1" not in json.dumps(result)
    assert run(tmp_path, env_set={"PRIMARY_MODEL_ID": "m2"}, env_unset=["ANTHROPIC_API_KEY"])["changed"] is False


def test_claw_env_replaces_and_token_rotates_only_when_given(tmp_path, state):
    write(state / ".env", OLD="1", CLAW_GATEWAY_TOKEN=TOKEN)
    run(tmp_path, env={"NEW": "2"})
    assert env_of(state) == {"NEW": "2", "CLAW_GATEWAY_TOKEN": TOKEN}
    result = run(tmp_path, gateway_token=OTHER)
    assert env_of(state) == {"NEW": "2", "CLAW_GATEWAY_TOKEN": OTHER}
    assert "CLAW_GATEWAY_TOKEN=<hidden (changed)>" in result["diff"]["after"]


def test_symlink_to_a_neighbours_env_is_never_read(tmp_path, state):
    """Issue 12: the module copied the neighbour's token into a new file owned by the attacker and listed its names."""
    neighbour = tmp_path / "neighbour.env"
    write(neighbour, NEIGHBOURS_SECRET_NAME="x", CLAW_GATEWAY_TOKEN=NEIGHBOUR)
    os.chown(neighbour, 4242, 4242)
    (state / ".env").symlink_to(neighbour)
    refused = run(tmp_path)
    assert refused.get("failed") and "symbolic link" in refused["msg"] and "gateway_token" in refused["msg"]
    assert (state / ".env").is_symlink(), "a refused run changes nothing"
    result = run(tmp_path, fallback_token=OTHER)
    assert result["changed"] and result["replaced_untrusted"] and result["fallback_token_used"]
    assert not (state / ".env").is_symlink() and env_of(state) == {"CLAW_GATEWAY_TOKEN": OTHER}
    assert "symbolic link" in json.dumps(result["warnings"])
    (state / ".env").unlink()
    (state / ".env").symlink_to(neighbour)
    result = run(tmp_path, gateway_token=TOKEN, env_set={"MINE": "1"}, fallback_token=OTHER)
    assert result["changed"] and result["replaced_untrusted"] and not result["fallback_token_used"]
    assert env_of(state) == {"MINE": "1", "CLAW_GATEWAY_TOKEN": TOKEN}
    assert "NEIGHBOURS_SECRET_NAME" not in json.dumps(result), "the diff lists no name of the untrusted file"
    assert _claw.parse_dotenv(neighbour.read_text())["CLAW_GATEWAY_TOKEN"] == NEIGHBOUR, "the neighbour's file is untouched"
    assert neighbour.stat().st_uid == 4242


def test_hard_link_to_a_neighbours_env_is_never_read(tmp_path, state):
    neighbour = tmp_path / "neighbour.env"
    write(neighbour, NEIGHBOURS_SECRET_NAME="x", CLAW_GATEWAY_TOKEN=NEIGHBOUR)
    os.chown(neighbour, 4242, 4242)
    os.link(neighbour, state / ".env")
    check = run(tmp_path, check=True, gateway_token=OTHER)
    assert "NEIGHBOURS_SECRET_NAME" not in json.dumps(check) and check["changed"]
    run(tmp_path, gateway_token=OTHER)
    assert env_of(state) == {"CLAW_GATEWAY_TOKEN": OTHER}
    assert _claw.parse_dotenv(neighbour.read_text())["CLAW_GATEWAY_TOKEN"] == NEIGHBOUR
    assert neighbour.stat().st_nlink == 1


def test_linked_state_dir_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "state").symlink_to(target)
    result = run(tmp_path, gateway_token=TOKEN)
    assert result.get("failed") and "symbolic link" in result["msg"]
    assert list(target.iterdir()) == []


def test_bad_input_fails_before_reading(tmp_path, state):
    result = run(tmp_path, env_set={"A": "1"}, env_unset=["A"])
    assert result.get("failed") and "both name A" in result["msg"]
    assert not (state / ".env").exists()


def test_keep_from_takes_the_present_settings_after_a_restore(tmp_path, state):
    """Restore swaps in the archived home (old token, old keys); the present ones come from the replaced home."""
    write(state / ".env", ARCHIVED_KEY="old", CLAW_GATEWAY_TOKEN=OTHER)
    previous = tmp_path / "previous.env"
    write(previous, ANTHROPIC_API_KEY="sk-now", CLAW_GATEWAY_TOKEN=TOKEN)
    result = run(tmp_path, keep_from=str(previous))
    assert result["changed"] and env_of(state) == {"ANTHROPIC_API_KEY": "sk-now", "CLAW_GATEWAY_TOKEN": TOKEN}
    assert result["token_fingerprint"] == _facts.token_fingerprint(TOKEN)
    assert run(tmp_path, keep_from=str(previous))["changed"] is False
    assert run(tmp_path, keep_from=str(tmp_path / "missing.env"))["changed"] is False


def test_keep_from_a_link_is_never_read(tmp_path, state):
    write(state / ".env", CLAW_GATEWAY_TOKEN=OTHER)
    neighbour = tmp_path / "neighbour.env"
    write(neighbour, CLAW_GATEWAY_TOKEN=NEIGHBOUR)
    os.chown(neighbour, 4242, 4242)
    (tmp_path / "previous.env").symlink_to(neighbour)
    result = run(tmp_path, keep_from=str(tmp_path / "previous.env"), fallback_token=TOKEN)
    assert env_of(state) == {"CLAW_GATEWAY_TOKEN": TOKEN} and result["replaced_untrusted"]


ESC = "\x1b]0;owned\x07\x1b[2J\x9b31m"  # retitle, clear screen, 8-bit CSI


def test_tenant_text_with_escape_sequences_reaches_no_output_unescaped(tmp_path, state):
    """Names from the tenant's .env and its link targets are shown with control characters escaped."""
    (state / ".env").write_text(f"CLAW_GATEWAY_TOKEN={TOKEN}\n{ESC}EVIL=1\n")
    os.chmod(state / ".env", 0o600)
    result = run(tmp_path)
    shown = json.dumps(result, ensure_ascii=False)
    assert result["dropped"] and "\x1b" not in shown and "\x9b" not in shown and "\x07" not in shown
    assert "\\\\x1b]0;owned\\\\x07" in json.dumps(result["warnings"]) and "\\x1b]0;owned" in result["diff"]["before"]
    (state / ".env").unlink()
    (state / ".env").symlink_to(f"/tmp/{ESC}")
    refused = run(tmp_path)
    assert refused.get("failed") and "\x1b" not in refused["msg"] and "\\x1b" in refused["msg"]
