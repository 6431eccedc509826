"""The sandbox's TCC stand-in (tests/sandbox/macos/tcc.py) on the host: with the grant revoked, a process that
descends from sshd gets "Operation not permitted" opening a protected folder or a file in it; other processes,
and everyone once the grant is back, read it as usual. Needs root (fanotify permission events)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests/sandbox/macos"))
import tcc  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="fanotify permission events need root")


@pytest.fixture
def guarded(tmp_path, monkeypatch):
    folder = tmp_path / "com.apple.TCC"
    folder.mkdir()
    (folder / "TCC.db").write_text("db")
    monkeypatch.setattr(tcc, "FLAG", str(tmp_path / "fda-missing"))
    monkeypatch.setattr(tcc, "PIDFILE", str(tmp_path / "enforcer.pid"))
    monkeypatch.setattr(tcc, "protected_paths", lambda: [str(folder)])
    # An "SSH session": a shell whose executable is called sshd (the enforcer judges by ancestry, like TCC).
    sshd = tmp_path / "bin" / "sshd"
    sshd.parent.mkdir()
    shutil.copy("/bin/sh", sshd)
    yield folder, str(sshd)
    tcc.stop_enforcer()


def over_ssh(sshd: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sshd, "-c", command], capture_output=True, text=True)


def test_revoked_grant_denies_ssh_sessions_only(guarded):
    folder, sshd = guarded
    Path(tcc.FLAG).touch()
    tcc.start_enforcer()
    listed = over_ssh(sshd, f"ls '{folder}'")
    assert listed.returncode != 0 and "Operation not permitted" in listed.stderr
    read = over_ssh(sshd, f"cat '{folder}/TCC.db'")
    assert read.returncode != 0 and "Operation not permitted" in read.stderr
    assert os.listdir(folder) == ["TCC.db"], "a process outside SSH is not refused"
    assert over_ssh(sshd, f"stat -c %a '{folder}'").returncode == 0, "TCC guards contents, not stat"


def test_granting_again_lifts_the_denial(guarded):
    folder, sshd = guarded
    Path(tcc.FLAG).touch()
    tcc.start_enforcer()
    assert over_ssh(sshd, f"ls '{folder}'").returncode != 0
    os.unlink(tcc.FLAG)
    tcc.stop_enforcer()
    assert over_ssh(sshd, f"ls '{folder}'").stdout.split() == ["TCC.db"]
