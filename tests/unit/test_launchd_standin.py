"""The sandbox's launchd stand-in behaves like current macOS where the product depends on it.

bootout of a job that takes time to stop answers 36 (then 37 while it is still under way), kickstart -k is a
SIGKILL (print: ``last terminating signal = Killed: 9``), ``kill SIGTERM`` lets a KeepAlive job exit cleanly and
come back, and StartInterval runs a job periodically (skipping a run while the previous one still runs).
Jobs are real processes run by the stand-in's own code; the clock of StartInterval is a fake one.
"""
from __future__ import annotations

import importlib.util
import os
import plistlib
import signal
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in loads root-owned plists and runs jobs as root")


@pytest.fixture
def launchd(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("sandbox_launchd", REPO / "tests/sandbox/macos/launchd.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "LOG", str(tmp_path / "launchd.log"))
    monkeypatch.setattr(module, "OVERRIDES", str(tmp_path / "disabled.plist"))
    daemon = module.Launchd()
    daemon.module = module
    yield daemon
    for job in list(daemon.jobs.values()):
        daemon.stop(job, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(j.pid for j in daemon.jobs.values()) and time.monotonic() < deadline:
        daemon.reap()
        time.sleep(0.02)


def plist(tmp_path, label: str, script: str, **keys) -> str:
    path = tmp_path / f"{label}.plist"
    path.write_bytes(plistlib.dumps(dict({"Label": label, "ProgramArguments": ["/bin/sh", "-c", script]}, **keys)))
    path.chmod(0o644)
    return str(path)


def until(predicate, daemon, limit: float = 30):
    """Run the stand-in's loop until ``predicate()``; a bound only against hangs, never the thing tested."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "the stand-in never got there"
        daemon.tick()
        time.sleep(0.02)


def request(daemon, *argv):
    return daemon.handle(list(argv), 0)


def test_bootout_of_a_job_still_stopping_answers_36_then_37_and_print_until_gone(launchd, tmp_path):
    release, ready = tmp_path / "release", tmp_path / "ready"
    # Shuts down only when told to: the job is "taking time to stop" for as long as the test wants.
    path = plist(tmp_path, "t.slow", f"trap 'while [ ! -e {release} ]; do sleep 0.05; done; exit 0' TERM; "
                                     f"touch {ready}; while :; do sleep 0.05; done", KeepAlive=True)
    assert launchd.load(path) == 0
    until(ready.exists, launchd)
    pid = launchd.jobs["t.slow"].pid
    assert request(launchd, "bootout", "system/t.slow") == (36, "", "Boot-out failed: 36: Operation now in progress\n")
    assert request(launchd, "bootout", "system/t.slow") == (37, "", "Boot-out failed: 37: Operation already in progress\n")
    rc, out, _ = request(launchd, "print", "system/t.slow")
    assert rc == 0 and "\tstate = SIGTERMed\n" in out and f"\tpid = {pid}\n" in out
    release.touch()
    until(lambda: "t.slow" not in launchd.jobs, launchd)
    assert request(launchd, "print", "system/t.slow")[0] == 113
    assert request(launchd, "bootout", "system/t.slow")[0] == 3


def test_kickstart_k_kills_the_running_instance_with_sigkill(launchd, tmp_path):
    # A program that would shut down cleanly on SIGTERM (exit 0) never gets the chance.
    path = plist(tmp_path, "t.kick", "trap 'exit 0' TERM; while :; do sleep 0.05; done", KeepAlive=True)
    assert launchd.load(path) == 0
    old = launchd.jobs["t.kick"].pid
    assert request(launchd, "kickstart", "-k", "system/t.kick")[0] == 0
    until(lambda: launchd.jobs["t.kick"].runs == 2 and launchd.jobs["t.kick"].pid, launchd)
    job = launchd.jobs["t.kick"]
    assert job.pid != old and job.last_signal == signal.SIGKILL
    assert "\tlast terminating signal = Killed: 9\n" in request(launchd, "print", "system/t.kick")[1]


def test_kill_sigterm_lets_a_keepalive_job_exit_cleanly_and_come_back(launchd, tmp_path):
    ready = tmp_path / "ready"
    path = plist(tmp_path, "t.term", f"trap 'exit 0' TERM; touch {ready}; while :; do sleep 0.05; done", KeepAlive=True,
                 ThrottleInterval=0)
    assert launchd.load(path) == 0
    old = launchd.jobs["t.term"].pid
    until(ready.exists, launchd)  # its SIGTERM handler is in place
    assert request(launchd, "kill", "SIGTERM", "system/t.term")[0] == 0
    until(lambda: launchd.jobs["t.term"].runs == 2 and launchd.jobs["t.term"].pid, launchd)
    out = request(launchd, "print", "system/t.term")[1]
    assert launchd.jobs["t.term"].pid != old and "\tlast exit code = 0\n" in out and "\truns = 2\n" in out


def test_start_interval_runs_the_job_periodically_and_skips_a_run_while_it_runs(launchd, tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(launchd.module.time, "monotonic", lambda: now[0])
    marker = tmp_path / "runs"
    hold = tmp_path / "hold"
    path = plist(tmp_path, "t.every", f"echo run >> {marker}; while [ -e {hold} ]; do sleep 0.05; done",
                 StartInterval=3600)
    assert launchd.load(path) == 0  # no RunAtLoad: nothing runs at load
    job = launchd.jobs["t.every"]
    assert job.runs == 0 and "\trun interval = 3600 seconds\n" in request(launchd, "print", "system/t.every")[1]
    now[0] += 3599
    launchd.tick()
    assert job.runs == 0
    hold.touch()
    now[0] += 1
    launchd.tick()
    assert job.runs == 1 and job.pid
    now[0] += 3600  # the next interval finds it still running: skipped
    launchd.tick()
    assert job.runs == 1
    hold.unlink()
    until(lambda: job.pid is None, launchd)
    now[0] += 3600
    launchd.tick()
    until(lambda: job.pid is None and job.runs == 2, launchd)
    assert marker.read_text() == "run\nrun\n"
