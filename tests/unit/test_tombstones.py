"""Issue 17: tombstone retention on a Mini (module_utils._tombstones): only names of tombstones, only past their
retention, never a claw that exists again, links never followed, any depth."""
from __future__ import annotations

import os
from datetime import UTC, datetime

from ansible_collections.mirascope.clawfarm.plugins.module_utils import _tombstones as tombstones

A = "1a2b3c4d-0000-4000-8000-00000000000a"
B = "1a2b3c4d-0000-4000-8000-00000000000b"
NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def make(root, name, content=b"x" * 100):
    (root / name / ".openclaw").mkdir(parents=True)
    (root / name / ".openclaw" / "notes").write_bytes(content)
    return root / name


def test_survey_and_prune_only_what_is_past_its_retention_and_not_a_claw_that_exists_again(tmp_path):
    root = tmp_path / "tombstones"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("not the tenant's")
    old = make(root, f"{A}-20261101T000000Z")
    os.symlink(str(victim), old / "link-out")  # a link in the tenant's old home is removed, never followed
    os.symlink(str(victim / "keep"), old / "file-link")
    make(root, f"{A}-20261125T000000Z")          # 5 days: younger than 14
    make(root, f"{B}-20261001T000000Z")          # claw B exists again: kept whatever its age
    make(root, "not-a-tombstone")                # never touched
    (root / f"{A}-20261101T000000Z.tmp").write_text("other names are left alone")

    found = tombstones.survey(str(root), 14, existing=[B.upper()], now=NOW)
    assert [(t["name"], t["expired"], t["claw_exists"]) for t in found] == [
        (f"{B}-20261001T000000Z", False, True), (f"{A}-20261101T000000Z", True, False),
        (f"{A}-20261125T000000Z", False, False)]
    assert all(t["bytes"] == 100 for t in found)
    assert tombstones.prune(str(root), found) == [f"{A}-20261101T000000Z"]
    assert sorted(os.listdir(root)) == sorted([f"{A}-20261125T000000Z", f"{B}-20261001T000000Z", "not-a-tombstone",
                                               f"{A}-20261101T000000Z.tmp"])
    assert (victim / "keep").read_text() == "not the tenant's"
    assert tombstones.survey(str(tmp_path / "missing"), 14) == []


def test_a_deep_tombstone_is_measured_and_removed(tmp_path):
    root = tmp_path / "tombstones"
    top = make(root, f"{A}-20260101T000000Z")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(600):  # deeper than one fd per level would allow comfortably, and than Python's recursion limit
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
    os.write(leaf, b"y" * 7)
    os.close(leaf)
    os.close(fd)
    found = tombstones.survey(str(root), 14, now=NOW)
    assert found[0]["bytes"] == 107 and found[0]["expired"]
    tombstones.prune(str(root), found)
    assert os.listdir(root) == []
