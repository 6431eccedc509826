"""Migration helpers: the exact rsync/ssh command lines, rsync --stats of three implementations, key restrictions."""
from __future__ import annotations

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _migration as mg

KEY = "/var/db/mirascope/migrate/1a2b3c4d-0000-4000-8000-000000000001/id_ed25519"
KNOWN = "/var/db/mirascope/migrate/1a2b3c4d-0000-4000-8000-000000000001/known_hosts"
PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGE4mCRQbJYb7okSymCW4cdjvTQaSTaWGljTyldt6ycF root@mini-01"
CLAW = "1a2b3c4d-0000-4000-8000-000000000001"

# rsync 3.2 (Debian, Homebrew)
RSYNC3 = """
Number of files: 25 (reg: 19, dir: 6)
Number of created files: 24 (reg: 19, dir: 5)
Number of regular files transferred: 19
Total file size: 1,073,741,824 bytes
Total transferred file size: 1,073,741,824 bytes
Literal data: 1,073,741,824 bytes
Matched data: 0 bytes
File list size: 0
Total bytes sent: 1,074,004,321
Total bytes received: 471

sent 1,074,004,321 bytes  received 471 bytes  97,636,799.27 bytes/sec
total size is 1,073,741,824  speedup is 1.00
"""
# rsync 2.6.9 (macOS before 15.4)
RSYNC269 = """
Number of files: 25
Number of files transferred: 2
Total file size: 1073741824 bytes
Total transferred file size: 8192 bytes
Literal data: 8192 bytes
Matched data: 0 bytes
File list size: 612
Total bytes sent: 9120
Total bytes received: 64

sent 9120 bytes  received 64 bytes  6122.67 bytes/sec
total size is 1073741824  speedup is 116928.31
"""
# openrsync (macOS 15.4+): no "Total bytes" lines, only the summary
OPENRSYNC = "Transfer starting: 25 files\nsent 52310 bytes  received 120 bytes  104860.00 bytes/sec\ntotal size is 1073741824  speedup is 20480.47\n"


def test_ssh_command_is_key_only_batch_and_pinned():
    assert mg.ssh_command(KEY, KNOWN, 22) == (
        f"ssh -i {KEY} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={KNOWN} "
        "-o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -p 22")


def test_rsync_command_line():
    remote = mg.remote_spec("admin", "100.64.0.12", "/Users/claw-1a2b3c4d")
    assert remote == "admin@100.64.0.12:/Users/claw-1a2b3c4d"
    assert mg.rsync_argv("/Users/claw-1a2b3c4d/", remote, "ssh -p 22", [".cache", "node_modules"], 600) == [
        "rsync", "-aH", "--delete", "--stats", "--timeout=600", "-e", "ssh -p 22", "--rsync-path=sudo -n rsync",
        "--exclude=.cache", "--exclude=node_modules", "/Users/claw-1a2b3c4d/", "admin@100.64.0.12:/Users/claw-1a2b3c4d/"]
    assert mg.remote_spec("admin", "fd7a:115c:a1e0::1", "/Users/x") == "admin@[fd7a:115c:a1e0::1]:/Users/x"


@pytest.mark.parametrize("bad", [("admin", "mini 01", "/Users/x"), ("admin", "a;b", "/Users/x"), ("root me", "10.0.0.1", "/Users/x"),
                                 ("admin", "10.0.0.1", "relative"), ("admin", "10.0.0.1", "/Users/../etc"), ("admin", "10.0.0.1", "/Users/a b")])
def test_bad_remote_is_refused(bad):
    with pytest.raises(mg.MigrationError):
        mg.remote_spec(*bad)


def test_paths_with_spaces_cannot_reach_the_remote_shell():
    with pytest.raises(mg.MigrationError):
        mg.ssh_command("/tmp/a key", KNOWN)
    with pytest.raises(mg.MigrationError):
        mg.ssh_command(KEY, KNOWN, 70000)


@pytest.mark.parametrize(("output", "sent", "received", "transferred", "files"), [
    (RSYNC3, 1074004321, 471, 1073741824, 25), (RSYNC269, 9120, 64, 8192, 25), (OPENRSYNC, 52310, 120, None, None), ("", 0, 0, None, None)])
def test_rsync_stats_of_each_implementation(output, sent, received, transferred, files):
    assert mg.parse_rsync_stats(output) == {"bytes_sent": sent, "bytes_received": received, "transferred_file_bytes": transferred,
                                            "files": files}


def test_authorized_key_is_restricted_to_the_source_address():
    line = mg.authorized_key_line(PUB, "10.77.1.2", CLAW)
    assert line == ('from="10.77.1.2",no-pty,no-agent-forwarding,no-port-forwarding,no-X11-forwarding '
                    f"{' '.join(PUB.split()[:2])} clawfarm-migrate-{CLAW}")
    # A DNS name cannot be matched by from= without UseDNS: the key is still restricted otherwise.
    assert mg.authorized_key_line(PUB, "mini-01.tailnet.ts.net", CLAW).startswith("no-pty,")
    with pytest.raises(mg.MigrationError):
        mg.authorized_key_line("command=\"sh\" ssh-ed25519 AAAA", "10.0.0.1", CLAW)


def test_known_hosts_pins_the_target_key():
    assert mg.known_hosts_line("10.77.2.2", 22, PUB) == f"10.77.2.2 {' '.join(PUB.split()[:2])}"
    assert mg.known_hosts_line("10.77.2.2", 2222, PUB).startswith("[10.77.2.2]:2222 ssh-ed25519 ")
    with pytest.raises(mg.MigrationError):
        mg.known_hosts_line("10.77.2.2", 22, "not a key")
