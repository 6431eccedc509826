"""The sandbox's tmp_cleaner deletes what macOS's nightly cleaner deletes: old files, then old empty directories."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tests/sandbox/macos/bin/tmp_cleaner"
DAY = 86400


def run(top: Path, *args: str) -> list:
    out = subprocess.run([sys.executable, str(TOOL), "--dir", str(top), *args], check=True, text=True,
                         capture_output=True).stdout
    return sorted(Path(line).relative_to(top).as_posix() for line in out.splitlines())


def age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then), follow_symlinks=False)


def test_old_files_then_empty_old_directories_go_fresh_ones_and_links_stay(tmp_path):
    (tmp_path / "locks/sub").mkdir(parents=True)
    (tmp_path / "locks/sub/old.lock").write_text("x")
    (tmp_path / "fresh-dir").mkdir()
    (tmp_path / "fresh.txt").write_text("x")
    (tmp_path / "old.txt").write_text("x")
    (tmp_path / ".X0-lock").write_text("x")
    (tmp_path / "link").symlink_to("/etc/passwd")
    for p in ("locks/sub/old.lock", "locks/sub", "locks", "old.txt", ".X0-lock", "link"):
        age(tmp_path / p, 4)
    # the files go; their directories were modified by that, so they wait for the next night
    assert run(tmp_path) == ["locks/sub/old.lock", "old.txt"]
    age(tmp_path / "locks/sub", 4)
    assert run(tmp_path) == ["locks/sub"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".X0-lock", "fresh-dir", "fresh.txt", "link", "locks"]
    assert os.readlink(tmp_path / "link") == "/etc/passwd"


def test_age_zero_takes_every_file_and_every_directory_left_empty(tmp_path):
    (tmp_path / "openclaw").mkdir()
    (tmp_path / "openclaw-state-locks-600/x").mkdir(parents=True)
    (tmp_path / "openclaw-state-locks-600/x/gateway.lock").write_text("1")
    assert run(tmp_path, "--age", "0") == ["openclaw", "openclaw-state-locks-600", "openclaw-state-locks-600/x",
                                           "openclaw-state-locks-600/x/gateway.lock"]
    assert list(tmp_path.iterdir()) == []
