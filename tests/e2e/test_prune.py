"""Retention of what the farm leaves behind (issue 17), end to end: prune.yml on a sandbox Mini + moto S3 server.

The clocks are faked the way the farm reads them: a tombstone's age is the time in its name
(``<claw_id>-<UTC YYYYmmddTHHMMSSZ>``), an archive's the time in its key (``archives/<UTC ...>.tar.zst``), so the
test makes tombstones and archives "in the past" by naming them so. Defaults (farm role): tombstones 14 days,
deprovision archives 90 days.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

GONE = "0e0e0e0e-1717-4717-8717-000000000001"   # deprovisioned, exists nowhere
BACK = "0e0e0e0e-1717-4717-8717-000000000002"   # deprovisioned, then subscribed again (holds a port claim)
TOMBSTONES = "/var/db/mirascope/tombstones"
CLAIMS = "/var/db/mirascope/ports"
CLAIM_PORT = 8100  # slot 0's gateway port


def stamp(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y%m%dT%H%M%SZ")


def tombstones(mini) -> set:
    return set(mini.sh(f"ls {TOMBSTONES} 2>/dev/null; true").stdout.split())


def test_prune_removes_only_what_is_past_its_age(mini):
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2

    # A claw that exists again holds a port claim on the Mini: a claw already on the Mini (an earlier module's) or,
    # on an empty Mini, a claim made here for BACK, as claw_port makes one.
    claims = [line.split(":", 1)[1].strip() for line in
              mini.sh(f"grep -H . {CLAIMS}/* 2>/dev/null; true").stdout.splitlines() if ":" in line]
    back = claims[0] if claims else BACK
    if not claims:
        mini.sh(f"mkdir -p {CLAIMS} && echo {BACK} > {CLAIMS}/{CLAIM_PORT}")
    gone_old, gone_young, back_old = f"{GONE}-{stamp(20)}", f"{GONE}-{stamp(10)}", f"{back}-{stamp(30)}"
    made = [gone_old, gone_young, back_old, "not-a-tombstone"]
    mini.sh(f"mkdir -p {TOMBSTONES} && chmod 700 {TOMBSTONES} && for t in {' '.join(made)}; do "
            f"mkdir -p {TOMBSTONES}/$t/.openclaw/workspace && head -c 4096 /dev/urandom > {TOMBSTONES}/$t/.openclaw/workspace/f; done")
    client = mini.s3.client()
    now = datetime.now(UTC)
    objects = {
        (GONE, _r2.archive_key("archives/", now - timedelta(days=120))): "removed",    # past 90 days, claw gone
        (GONE, _r2.archive_key("archives/", now - timedelta(days=30))): "kept",        # younger than 90 days
        (GONE, _r2.archive_key("backups/", now - timedelta(days=400))): "kept",        # backups have their own retention
        (back, _r2.archive_key("archives/", now - timedelta(days=365))): "kept",       # the claw exists again
    }
    for claw in (GONE, back):
        _r2.ensure_bucket(client, f"claw-backup-{claw}", "auto")
    for (claw, key), _ in objects.items():
        client.put_object(Bucket=f"claw-backup-{claw}", Key=key, Body=b"archive")

    def present():
        return {(claw, key) for (claw, key) in objects
                if any(o["Key"] == key for o in client.list_objects_v2(Bucket=f"claw-backup-{claw}").get("Contents", []))}

    try:
        # --check: says what it would remove, removes nothing.
        dry = mini.playbook("prune", "--check", check=True)
        out = " ".join(dry.stdout.split())
        assert "would remove" in out and gone_old in out, dry.stdout[-4000:]
        assert tombstones(mini) >= set(made)
        assert present() == set(objects)

        from ansible_collections.mirascope.clawfarm.plugins.module_utils import _tombstones

        named = len([t for t in tombstones(mini) if _tombstones.parse_name(t)])  # others' tombstones are young: kept
        result = mini.playbook("prune", check=True)
        out = " ".join(result.stdout.split())
        # Tombstones: only the one past 14 days of a claw that exists nowhere; anything not named like one is never touched.
        left = tombstones(mini)
        assert gone_old not in left and {gone_young, back_old, "not-a-tombstone"} <= left, left
        assert f"{named} tombstones (" in out and f"removed 1: {gone_old}" in out, result.stdout[-4000:]
        # Archives: only the one past 90 days of the claw that exists nowhere.
        assert present() == {k for k, fate in objects.items() if fate == "kept"}

        again = mini.playbook("prune", check=True)
        assert tombstones(mini) == left and present() == {k for k, fate in objects.items() if fate == "kept"}
        assert "removed 0" in " ".join(again.stdout.split())
    finally:
        if not claims:
            mini.sh(f"rm -f {CLAIMS}/{CLAIM_PORT}")
        mini.sh("rm -rf " + " ".join(f"{TOMBSTONES}/{t}" for t in made))
        for claw, key in objects:
            mini.s3.client().delete_object(Bucket=f"claw-backup-{claw}", Key=key)
