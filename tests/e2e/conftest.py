"""Fixtures for end-to-end tests against a sandbox Mini (real SSH, real OpenClaw, launchd stand-in)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MINI = os.environ.get("CLAWFARM_E2E_MINI", "e2e1")
BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


class Mini:
    """A running sandbox Mini plus helpers to run playbooks against it and look inside it."""

    def __init__(self, name: str, inventory: Path):
        self.name = name
        self.inventory = inventory

    def sh(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command inside the Mini as root."""
        return subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "exec", self.name, "--",
                               "sh", "-c", command], text=True, capture_output=True, check=check)

    def playbook(self, name: str, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1", PATH=f"{BIN}:{os.environ['PATH']}")
        result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory), f"playbooks/{name}.yml",
                                 *args], cwd=REPO, env=env, text=True, capture_output=True)
        if check and result.returncode != 0:
            raise AssertionError(f"{name} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
        return result

    def reboot(self) -> None:
        subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "reboot", self.name], check=True,
                       capture_output=True, text=True)

    def snapshot(self) -> str:
        """What bad input must never change: users, homes, daemons, port claims."""
        return self.sh("dscl . -list /Users UniqueID; ls -la /Users /Library/LaunchDaemons; "
                       "ls /var/db/mirascope/ports 2>/dev/null; launchctl print system").stdout


def recap(output: str) -> dict:
    """``{host: {"ok": n, "changed": n, "failed": n, ...}}`` from a PLAY RECAP."""
    hosts = {}
    for line in output.splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match and "ok=" in match.group(2):
            hosts[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return hosts


def wait_for(predicate, timeout: float, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="session")
def mini(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("sandbox Minis need root")
    inventory = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "down", MINI, "--purge"], check=True)
    subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "up", MINI, "--inventory", str(inventory)],
                   check=True, capture_output=True)
    yield Mini(MINI, inventory)
    subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "down", MINI, "--purge"], check=False)
