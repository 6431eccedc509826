"""A hostile tenant attacks its own migration (issue 12): the rsync pre-copy must move nothing the claw cannot read.

Both ends of a Mini-to-Mini migration run rsync as the claw's user (claw_migrate_push on the source, the forced
receiver on the target). Before that, root read the home on the source and wrote it on the target, so a hard link
to a file the claw can name but not read (a neighbour's launchd log under /Library/Logs/mirascope/claws/*/, a
directory of mode 0755), or a link swapped in mid-copy, brought root-only bytes into the claw's new home.
Fleet fl1..fl3 (lane A); the tests run in file order and share one claw.
"""
from __future__ import annotations

import re
import shlex

import pytest
from conftest import recap

CLAW = "badc1a42-7e4a-4c1a-9d2b-0000000000b1"
USER = "claw-badc1a42"
HOME = f"/Users/{USER}"
LABEL = f"com.mirascope.claw.{CLAW}"
VICTIM_LOG = "/Library/Logs/mirascope/claws/badc1a43-victim/gateway.log"
LOG_SECRET = "neighbour-log-secret-7Qw2Er4Ty6"
SECRET_DIR = "/var/db/mirascope/h2-secret"
DIR_SECRET = "root-only-secret-3Zx5Cv7Bn9"


@pytest.fixture(scope="module")
def inventory(fleet):
    # Claw UIDs of their own (the sandbox's system accounts sit at 996-998 in the default 600-999).
    inventory = fleet.inventory("hostile-migrate", claw_uid_range=[2000, 2999])
    yield inventory
    for name in fleet.names:
        if fleet.sh(name, f"test -e /Library/LaunchDaemons/{LABEL}.plist", check=False).returncode == 0:
            fleet.playbook(inventory, "deprovision", "-e", f"claw_id={CLAW}", "-e", f"mini={name}", "-e", "archive=false",
                           "-e", "claw_purge_home=true")


def as_tenant(fleet, name: str, command: str, check: bool = True):
    """Run ``command`` as the claw's user inside Mini ``name`` (what the claw's code can do)."""
    result = fleet.sh(name, f"su -s /bin/sh {USER} -c {shlex.quote(command)}", check=False)
    if check:
        assert result.returncode == 0, f"as {USER} on {name}: {command}: {result.stdout}{result.stderr}"
    return result


def holder(fleet) -> list:
    return [n for n in fleet.names if CLAW in fleet.sh(n, "cat /var/db/mirascope/ports/* 2>/dev/null", check=False).stdout]


def leaked(fleet, name: str, secret: str) -> str:
    """Files under /Users on ``name`` holding ``secret`` (root reads them all)."""
    return fleet.sh(name, f"grep -rlF {shlex.quote(secret)} /Users 2>/dev/null; true").stdout.strip()


def foreign(fleet, name: str) -> str:
    """Entries of the claw's home on ``name`` that are not the claw's."""
    return fleet.sh(name, f"find {HOME} ! -user {USER} 2>/dev/null; true").stdout.strip()


def test_hard_link_to_a_file_the_claw_cannot_read_does_not_reach_the_target(fleet, inventory):
    fleet.playbook(inventory, "provision", "-e", f"claw_id={CLAW}", "-e", "mini=fl1", check=True)
    # A neighbour's launchd log: its directory is 0755 (the claw can name the file), the file is 0600 and not the
    # claw's. The claw hard-links it into its home. (Linux's fs.protected_hardlinks forbids linking a file one does not
    # own, macOS does not: root makes the link the claw could make on a Mac.)
    fleet.sh("fl1", f"mkdir -p {VICTIM_LOG.rsplit('/', 1)[0]} && chmod 0755 {VICTIM_LOG.rsplit('/', 1)[0]} && "
                    f"echo {LOG_SECRET} > {VICTIM_LOG} && chown 4242:4242 {VICTIM_LOG} && chmod 0600 {VICTIM_LOG} && "
                    f"ln {VICTIM_LOG} {HOME}/stolen.log && ln {VICTIM_LOG} {HOME}/.openclaw/workspace/stolen.log")
    assert as_tenant(fleet, "fl1", f"cat {HOME}/stolen.log", check=False).returncode != 0
    as_tenant(fleet, "fl1", f"echo mine > {HOME}/.openclaw/workspace/mine.txt")

    moved = fleet.playbook(inventory, "migrate", "-e", f"claw_id={CLAW}", "-e", "target=fl2", check=True)
    assert re.search(r"moved from fl1 \(port \d+\) to fl2 \(port \d+\) by rsync", " ".join(moved.stdout.split())), moved.stdout[-3000:]
    assert holder(fleet) == ["fl2"]

    assert leaked(fleet, "fl2", LOG_SECRET) == ""
    for path in (f"{HOME}/stolen.log", f"{HOME}/.openclaw/workspace/stolen.log"):
        assert as_tenant(fleet, "fl2", f"cat {path}", check=False).returncode != 0  # absent (or unreadable)
    assert as_tenant(fleet, "fl2", f"cat {HOME}/.openclaw/workspace/mine.txt").stdout.strip() == "mine"
    assert foreign(fleet, "fl2") == ""  # the receiver ran as the claw: every file is the claw's
    assert "claw-migrate" not in fleet.sh("fl2", "cat /Users/admin/.ssh/authorized_keys").stdout
    # The migration key never left root's 0700 directory and is gone.
    assert fleet.sh("fl1", f"test -e /var/db/mirascope/migrate/{CLAW}", check=False).returncode != 0


def test_links_swapped_during_the_copy_reach_nothing_outside_the_home(fleet, inventory):
    [source] = holder(fleet)
    target = "fl1" if source != "fl1" else "fl3"
    fleet.sh(source, f"mkdir -p {SECRET_DIR} && chmod 0700 {SECRET_DIR} && echo {DIR_SECRET} > {SECRET_DIR}/f && "
                     f"echo {DIR_SECRET} > {SECRET_DIR}.txt && chmod 0600 {SECRET_DIR}/f {SECRET_DIR}.txt")
    # The claw keeps swapping a directory and a file of its home for links to root-only ones while the home is copied.
    loop = (f"cd {HOME} && i=0; while [ $i -lt 200000 ]; do i=$((i+1)); "
            f"rm -rf swap; mkdir swap; echo plain > swap/f; rm -rf swap; ln -s {SECRET_DIR} swap; "
            f"rm -f swapf; echo plain > swapf; rm -f swapf; ln -s {SECRET_DIR}.txt swapf; done")
    started = as_tenant(fleet, source, f"setsid sh -c {shlex.quote(loop)} </dev/null >/dev/null 2>&1 & echo $!")
    pid = int(started.stdout.strip())
    try:
        moved = fleet.playbook(inventory, "migrate", "-e", f"claw_id={CLAW}", "-e", f"target={target}")
    finally:
        fleet.sh(source, f"kill -- -{pid} 2>/dev/null; kill {pid} 2>/dev/null; true")
    # Either outcome is safe: moved (the links arrive as links), or a pass failed on a vanished file and the claw runs
    # on the source again. Root-only bytes reach no home on either Mini.
    assert moved.returncode == 0 or "the claw runs on" in " ".join(moved.stdout.split()), moved.stdout[-4000:]
    for name in (source, target):
        assert leaked(fleet, name, DIR_SECRET) == ""
    [now] = holder(fleet)
    assert foreign(fleet, now) == ""
    if moved.returncode == 0:
        assert now == target and all(r["failed"] == 0 for r in recap(moved.stdout).values())
