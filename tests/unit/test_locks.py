"""The collection's one flock-and-retry helper (_command.exclusive_lock) and the tunnel lock built on it."""

from __future__ import annotations

import fcntl
import os
import stat

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _cloudflare as cf
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandError, exclusive_lock


def _held(path):
    """Hold the lock from another open file description, as a concurrent run would."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_lock_file_is_private_and_released_after_the_block(tmp_path):
    path = str(tmp_path / "users.lock")
    with exclusive_lock(path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        probe = os.open(path, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(probe)
    fd = _held(path)  # free again
    os.close(fd)


def test_lock_is_released_when_the_block_fails(tmp_path):
    path = str(tmp_path / "users.lock")
    with pytest.raises(RuntimeError), exclusive_lock(path):
        raise RuntimeError("boom")
    os.close(_held(path))


def test_a_held_lock_fails_with_a_command_error_that_names_what_waits(tmp_path):
    path = str(tmp_path / "users.lock")
    fd = _held(path)
    try:
        with pytest.raises(CommandError) as err, exclusive_lock(path, timeout=0, what="creating user claw-1a2b3c4d"):
            pytest.fail("the block must not run without the lock")
    finally:
        os.close(fd)
    assert err.value.result.argv == ["flock", path]
    assert "another run has held the lock for 0 s" in str(err.value)
    assert "creating user claw-1a2b3c4d waits for it; is a run stuck?" in str(err.value)


def test_a_held_lock_raises_the_callers_error(tmp_path):
    path = str(tmp_path / "x.lock")
    fd = _held(path)
    try:
        with pytest.raises(ValueError, match=r"x\.lock after 0"), exclusive_lock(path, timeout=0, timeout_error=lambda p, t: ValueError(f"{p} after {t:.0f}")):
            pytest.fail("the block must not run without the lock")
    finally:
        os.close(fd)


def test_tunnel_lock_uses_the_shared_helper_and_names_the_tunnel(tmp_path):
    tunnel = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
    lock_dir = str(tmp_path / "locks")
    with cf.tunnel_lock(lock_dir, tunnel) as path:
        assert os.path.dirname(path) == lock_dir and os.path.basename(path).startswith("cf-tunnel-")
        assert stat.S_IMODE(os.stat(lock_dir).st_mode) == 0o700
        with pytest.raises(cf.CloudflareError, match=f"another run has held the lock for tunnel {tunnel} \\({path}\\) for 0 s; is it stuck"), \
                cf.tunnel_lock(lock_dir, tunnel, timeout=0):
            pytest.fail("the block must not run without the lock")
    with cf.tunnel_lock(lock_dir, tunnel, timeout=0) as again:
        assert again == path


def test_there_is_one_flock_loop():
    import inspect

    assert "flock" not in inspect.getsource(cf).replace("``fcntl.flock``", "")
