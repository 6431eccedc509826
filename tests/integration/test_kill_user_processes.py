"""kill_user_processes against real processes on this host (procps ps/pkill, as in the sandbox Minis).

A process of an otherwise unused UID keeps double-forking orphans into new sessions while it is being killed, the
pattern that slips through one pass over the process list. The loop (SIGSTOP, SIGKILL, until ps shows none) must
leave no live process of the UID; processes of other UIDs are untouched. launchctl does not exist on this host:
its answer does not matter (the process list is what counts), so it is answered 127 like a missing command.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.mirascope.clawfarm.plugins.module_utils import _macos_user as mu  # noqa: E402
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandRunner  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not Path(mu.PS).exists() or not Path(mu.PKILL).exists(),
                                reason="needs root and ps/pkill at macOS's paths")


class LocalModule:
    """Runs the commands on this host, as AnsibleModule.run_command would."""

    def run_command(self, argv, environ_update=None, data=None, binary_data=False):
        if not Path(argv[0]).exists():
            return 127, "", f"{argv[0]}: command not found"
        done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **(environ_update or {})))
        return done.returncode, done.stdout, done.stderr


def free_uid() -> int:
    used = {int(line.split()[1]) for line in subprocess.run(["ps", "-A", "-o", "pid=", "-o", "uid="], text=True,
                                                             capture_output=True).stdout.splitlines()}
    return next(uid for uid in range(54321, 54400) if uid not in used)


# A loop that keeps double-forking orphans (each `( ... & )` child is re-parented at once) into new sessions.
HOPPER = """#!/bin/sh
while :; do
  (setsid sleep 600 </dev/null >/dev/null 2>&1 &)
  echo $$ >> {log}
  sleep 0.05
done
"""


@pytest.fixture
def hopper():
    """A forking orphan of an unused UID; its script in a /tmp directory the UID can read (pytest's is 0700)."""
    uid = free_uid()
    directory = Path(tempfile.mkdtemp(prefix="h1-hopper-", dir="/tmp"))
    script, log = directory / "hop.sh", directory / "pids"
    script.write_text(HOPPER.format(log=log, script=script))
    log.touch()
    os.chown(log, uid, uid)
    for path in (directory, script):
        path.chmod(0o755)
    os.chmod(log, 0o666)

    def become():
        os.setsid()
        os.setgid(uid)
        os.setuid(uid)

    loop = subprocess.Popen(["sh", str(script)], preexec_fn=become, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield uid, log
    subprocess.run([mu.PKILL, "-KILL", "-U", str(uid)], check=False)
    loop.wait()  # reaped here (its orphans by PID 1)
    shutil.rmtree(directory, ignore_errors=True)


def test_a_forking_orphan_and_its_orphans_are_killed_and_nothing_else(hopper):
    uid, log = hopper
    deadline = time.monotonic() + 30
    while len(log.read_text().split()) < 3 and time.monotonic() < deadline:  # it has forked a few times
        time.sleep(0.05)
    assert len(log.read_text().split()) >= 3
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        killed = mu.kill_user_processes(CommandRunner(LocalModule()), uid)
        assert len(killed) >= 2
        assert mu.list_user_processes(CommandRunner(LocalModule()), uid) == []
        time.sleep(0.5)  # a survivor would have forked again by now
        assert mu.list_user_processes(CommandRunner(LocalModule()), uid) == []
        assert bystander.poll() is None, "a process of another UID was touched"
    finally:
        bystander.kill()
        bystander.wait()
