"""Mini-side Python runs on CPython 3.9, as a Mac's /usr/bin/python3 (the Command Line Tools' Python) does.

Every file of plugins/module_utils and plugins/modules is compiled and imported by the CPython 3.9 the sandbox
Minis run (tests/sandbox/mini.py finds it: pyenv's 3.9.*), with the installed ansible-core's package on its path
(ansible-core's module_utils are themselves target-side code that supports 3.9); the host-free unit tests of
module_utils then run under it too, in the small 3.9 venv scripts/setup.sh makes (.cache/py39-tests: pytest,
PyYAML, zstandard). The e2e suite runs the same code on sandbox Minis under 3.9; this is the fast guard.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import ansible
import pytest
from clawfarm_testlib import sandbox_mini

REPO = Path(__file__).resolve().parents[2]
MINI_SIDE = sorted((REPO / "plugins/module_utils").glob("*.py")) + sorted((REPO / "plugins/modules").glob("*.py"))
TEST_VENV = REPO / ".cache/py39-tests"
# Unit tests of Mini-side code whose own code runs on 3.9 too (add yours: they run as `pytest FILE` under 3.9,
# with tests/unit/conftest.py as a plugin and no other conftest).
UNIT_TESTS = ["test_claw.py", "test_claw_paths.py", "test_claw_secrets.py", "test_facts.py", "test_ingress.py",
              "test_launchd_service.py", "test_macos_settings.py", "test_macos_user.py", "test_migration.py",
              "test_r2.py", "test_r2_hostile.py", "test_r2_speed.py", "test_rank_minis.py", "test_port_plan.py", "test_pf.py", "test_browser.py",
              "test_import.py", "test_origin_tls.py", "test_seed_compile_cache.py"]

CHECK = r"""
import importlib, json, sys, traceback
sys.dont_write_bytecode = True
sys.path[:0] = [sys.argv[1]]
failures = {}
for path, name in json.loads(sys.argv[2]):
    try:
        with open(path, encoding="utf-8") as handle:
            compile(handle.read(), path, "exec", dont_inherit=True)
        importlib.import_module(name)
    except BaseException:
        failures[path] = traceback.format_exc(limit=-3)
print(json.dumps({"version": list(sys.version_info[:3]), "failures": failures}))
"""


def python39() -> str:
    """The sandbox Minis' CPython 3.9 (same search as tests/sandbox/mini.py), or skip with the fix."""
    try:
        return os.path.join(sandbox_mini().find_mini_python(), "bin", "python3.9")
    except SystemExit as exc:
        pytest.skip(f"no CPython 3.9 to check Mini-side code with: {exc}")


@pytest.fixture(scope="module")
def import_root(tmp_path_factory) -> Path:
    """A directory with only `ansible` (the installed ansible-core) and `ansible_collections` (this checkout)."""
    root = tmp_path_factory.mktemp("py39-path")
    (root / "ansible").symlink_to(Path(ansible.__file__).parent)
    (root / "ansible_collections").symlink_to(REPO / ".collections/ansible_collections")
    return root


def test_mini_side_code_compiles_and_imports_under_python_39(import_root):
    assert len(MINI_SIDE) > 20, MINI_SIDE
    names = [(str(path), "ansible_collections.mirascope.clawfarm.plugins.%s.%s" % (path.parent.name, path.stem))
             for path in MINI_SIDE]
    done = subprocess.run([python39(), "-I", "-B", "-c", CHECK, str(import_root), json.dumps(names)],
                          capture_output=True, text=True, cwd=str(import_root))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["version"][:2] == [3, 9]
    assert not report["failures"], "Mini-side code that CPython 3.9 cannot compile or import:\n" + "\n".join(
        f"{path}:\n{trace}" for path, trace in report["failures"].items())


def test_the_guard_catches_310_syntax(import_root, tmp_path):
    """The check above fails on what 3.9 lacks (a match statement here), so a pass means something."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 1\n")
    done = subprocess.run([python39(), "-I", "-B", "-c", CHECK, str(tmp_path), json.dumps([(str(bad), "bad")])],
                          capture_output=True, text=True)
    assert "SyntaxError" in json.loads(done.stdout)["failures"][str(bad)]


def test_no_tarfile_extraction_filters():
    """tarfile's ``filter=`` and ``*_filter`` came in 3.9.17: the 3.9.18 here has them, a Mac's 3.9.6 does not."""
    found = []
    for path in MINI_SIDE:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "extract", "extractall") and any(k.arg == "filter" for k in node.keywords):
                found.append(f"{path.name}:{node.lineno}: {node.func.attr}(filter=...)")
            if isinstance(node, ast.Attribute) and node.attr in (
                    "data_filter", "tar_filter", "fully_trusted_filter", "extraction_filter"):
                found.append(f"{path.name}:{node.lineno}: tarfile.{node.attr}")
    assert not found, "tarfile extraction filters do not exist on a Mac's Python 3.9.6: " + "; ".join(found)


def test_module_utils_unit_tests_pass_under_python_39(import_root):
    python = TEST_VENV / "bin/python"
    if not python.exists():
        pytest.skip(f"no 3.9 test venv at {TEST_VENV}: run scripts/setup.sh")
    version = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    assert version == "3.9", f"{TEST_VENV} is Python {version}; delete it and run scripts/setup.sh"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(import_root), str(REPO / "tests/unit")]),
               PYTHONDONTWRITEBYTECODE="1")
    tests = [str(REPO / "tests/unit" / name) for name in UNIT_TESTS if (REPO / "tests/unit" / name).exists()]
    done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "-p", "conftest",
                           *tests], capture_output=True, text=True, env=env, cwd=str(REPO))
    assert done.returncode == 0, f"unit tests failed under {python}:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert " passed" in done.stdout.splitlines()[-1]

