"""claw_home: deletes a home (or the home a restore replaced) by directory descriptors, never following the tenant's
links, at any depth; refuses system directories."""

from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2
from ansible_collections.mirascope.clawfarm.plugins.modules import claw_home


def run(capsys, check=False, **args) -> dict:
    with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(SystemExit):
        claw_home.main()
    return json.loads(capsys.readouterr().out)


def test_deletes_the_tree_and_never_follows_a_link(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the tenant's")
    home = tmp_path / "claw-1a2b3c4d"
    deep = home
    for _ in range(300):  # deeper than the walker keeps fds open
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    os.symlink(outside, home / "link")
    os.symlink(outside / "keep.txt", deep / "file-link")

    preview = run(capsys, check=True, path=str(home))
    assert preview["changed"] and home.exists()
    done = run(capsys, path=str(home))
    assert done["changed"] and not home.exists()
    assert (outside / "keep.txt").read_text() == "not the tenant's"
    assert not run(capsys, path=str(home))["changed"]


@pytest.mark.parametrize("path", ["/", "/Users", "/var/", "/private", "/opt", "relative/home"])
def test_refuses_system_directories(path, capsys):
    result = run(capsys, path=path)
    assert result["failed"] and "refusing to remove" in result["msg"]
    with pytest.raises(ValueError):
        r2.check_removable(path)
