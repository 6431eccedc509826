#!/usr/bin/env python3
"""Build the OpenClaw runtime bundles the sandbox Minis need, once per checkout, before any Mini asks for one.

    python3 tests/sandbox/bundles.py            # the role's default version and every other one the e2e tests use

The openclaw_runtime role builds a missing bundle itself (``creates:`` its tarball in .cache/openclaw-runtime), but
two playbooks that do so at the same time (two pytest-xdist workers bootstrapping their Minis) would build into the
same staging directory.  This builds each missing one here, each under its own lock, with the very command line
the role runs, so the role only ever finds them (its "reuse" path).  scripts/test.sh starts it in the background
while the linters run (and the tests start: the older version is needed late); the e2e fixtures call ``ensure()``
for what they need (waiting for a build under way, a no-op once built), so a bare ``pytest -n 2`` is safe as well.
The bundle's name holds everything it is built from (OpenClaw and Node.js versions, os, cpu).
"""
from __future__ import annotations

import fcntl
import os
import platform
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(REPO, ".cache", "openclaw-runtime")
ROLE = os.path.join(REPO, "roles", "openclaw_runtime")
# Other OpenClaw versions the e2e tests install: tests/e2e/test_bootstrap.py's OLDER_OPENCLAW (the upgrade test).
# Should they drift apart, that test's playbook builds its bundle itself (slower, still correct).
EXTRA_VERSIONS = ("2026.9.5",)


def role_defaults() -> tuple[str, str]:
    """(openclaw version, node version) from the role's defaults."""
    text = open(os.path.join(ROLE, "defaults", "main.yml")).read()

    def value(key):
        return re.search(rf'^{key}:\s*"?([^"\s]+)"?\s*$', text, re.M).group(1)
    return value("openclaw_runtime_version"), value("openclaw_runtime_node_version")


def host_target() -> tuple[str, str]:
    """The sandbox Minis' platform (this machine's) in npm's spelling."""
    machine = platform.machine().lower()
    return platform.system().lower(), {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(machine, machine)


def ensure(versions=None, out=sys.stderr) -> list:
    """Build every missing bundle of ``versions`` (default: the role's and EXTRA_VERSIONS); returns the tarballs."""
    default, node = role_defaults()
    os_name, cpu = host_target()
    os.makedirs(CACHE, exist_ok=True)
    tarballs = []
    for version in versions or (default, *EXTRA_VERSIONS):
        name = f"openclaw-{version}-node{node}-{os_name}-{cpu}"
        tarball = os.path.join(CACHE, name + ".tar.gz")
        # One lock per bundle: a test that needs the default one never waits for the older one being built.
        with open(os.path.join(CACHE, f".{name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(tarball):
                started = time.monotonic()
                subprocess.run([sys.executable, os.path.join(ROLE, "files", "build_runtime_bundle.py"),
                                f"--openclaw={version}", f"--node={node}", f"--os={os_name}", f"--cpu={cpu}",
                                f"--out={CACHE}"], check=True, stdout=out, stderr=out)
                print(f"bundles: built {name} in {time.monotonic() - started:.0f} s", file=out, flush=True)
        tarballs.append(tarball)
    return tarballs


if __name__ == "__main__":
    for path in ensure(sys.argv[1:] or None):
        print(path)
