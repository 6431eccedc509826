"""Migration helpers: the exact rsync/ssh command lines, rsync --stats of three implementations, key restrictions."""
from __future__ import annotations

import subprocess
from pathlib import Path

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
    # Run as the claw: no -o/-g/-D (the receiver runs as the claw too; owners never come from the stream).
    assert mg.rsync_argv("/Users/claw-1a2b3c4d/", remote, "ssh -p 22", [".cache", "node_modules"], 600) == [
        "rsync", "-rlptH", "--delete", "--stats", "--timeout=600", "-e", "ssh -p 22", "--rsync-path=rsync",
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


RECEIVER = "/opt/mirascope/libexec/clawfarm-rsync-receive"
HOME = "/Users/claw-1a2b3c4d"
USER = "claw-1a2b3c4d"
COMMAND = f"{RECEIVER} {USER} {HOME}/"


def test_receiver_command_names_the_claw():
    assert mg.receiver_command(RECEIVER, HOME, USER) == COMMAND
    assert mg.receiver_command(RECEIVER, HOME + "/") == COMMAND  # the user defaults to the home's name
    with pytest.raises(mg.MigrationError):
        mg.receiver_command(RECEIVER, "/var/root")


def test_authorized_key_is_restricted_to_the_claws_rsync_from_the_source_until_the_job_ends():
    line = mg.authorized_key_line(PUB, ["10.77.1.2"], CLAW, mg.receiver_command(RECEIVER, HOME, USER), "20261130120000Z")
    assert line == (f'restrict,command="{COMMAND}",from="10.77.1.2",expiry-time="20261130120000Z" '
                    f"{' '.join(PUB.split()[:2])} clawfarm-migrate-{CLAW}")
    two = mg.authorized_key_line(PUB, ["10.77.1.2", "fd7a::2"], CLAW, COMMAND, "20261130120000Z")
    assert 'from="10.77.1.2,fd7a::2"' in two


@pytest.mark.parametrize("change", [
    {"public_key": 'command="sh" ssh-ed25519 AAAA'},
    {"from_addresses": "mini-01.tailnet.ts.net"},  # a name: resolve it first (from= matches names only with UseDNS)
    {"from_addresses": []},
    {"command": "/bin/sh"},
    {"command": f'{RECEIVER} {USER} {HOME}/" ssh-ed25519'},
    {"command": f"{RECEIVER} {USER} /Users/../etc/"},
    {"command": f"{RECEIVER} {HOME}/"},  # no user: the receiver would not know whom to run as
    {"command": f"{RECEIVER} root {HOME}/"},
    {"expiry": "tomorrow"},
    {"expiry": "20261130120000"},  # no Z: the Mini's time zone would decide
    {"claw_id": "x y"},
])
def test_bad_migration_key_input_is_refused(change):
    args = dict(public_key=PUB, from_addresses=["10.0.0.1"], claw_id=CLAW, command=COMMAND, expiry="20261130120000Z")
    args.update(change)
    with pytest.raises(mg.MigrationError):
        mg.authorized_key_line(**args)


def test_names_resolve_to_every_address():
    def resolver(name, *_):
        assert name == "mini-01.tailnet.ts.net"
        return [(2, 1, 6, "", ("100.64.0.2", 0)), (10, 1, 6, "", ("fd7a:115c::2", 0, 0, 0)), (2, 1, 6, "", ("100.64.0.2", 0))]

    assert mg.resolve_addresses("mini-01.tailnet.ts.net", resolver) == ["100.64.0.2", "fd7a:115c::2"]
    assert mg.resolve_addresses("10.77.1.2") == ["10.77.1.2"]

    def failing(*_):
        raise OSError("Name or service not known")

    with pytest.raises(mg.MigrationError, match="cannot resolve"):
        mg.resolve_addresses("nowhere.invalid", failing)


def test_expiry_time_is_utc_with_z():
    assert mg.expiry_time(3600, now=1796040000) == "20261130130000Z"  # 2026-11-30 12:00:00 UTC + 1 h
    with pytest.raises(mg.MigrationError):
        mg.expiry_time(0)


def test_sweep_finds_expired_and_never_expiring_migration_keys_only():
    old = "2" * 1
    text = "\n".join([
        "ssh-ed25519 AAAAadmin admin@laptop",
        f'restrict,command="{COMMAND}",from="10.0.0.1",expiry-time="20261130115959Z" ssh-ed25519 AAAA clawfarm-migrate-{CLAW}',
        f'restrict,command="{COMMAND}",from="10.0.0.1",expiry-time="202611301300Z" ssh-ed25519 AAAA clawfarm-migrate-bbbb{old}',
        'from="10.0.0.1",no-pty ssh-ed25519 AAAA clawfarm-migrate-cccc',  # before expiry-time: never expires
        'expiry-time="20200101Z" ssh-ed25519 AAAA someone-else',
    ])
    assert mg.expired_migration_keys(text, now=1796040000) == [CLAW, "cccc"]
    assert mg.expired_migration_keys(text, now=1796043600) == [CLAW, "bbbb2", "cccc"]
    assert mg.expired_migration_keys("", now=0) == []


def test_known_hosts_pins_the_target_key():
    assert mg.known_hosts_line("10.77.2.2", 22, PUB) == f"10.77.2.2 {' '.join(PUB.split()[:2])}"
    assert mg.known_hosts_line("10.77.2.2", 2222, PUB).startswith("[10.77.2.2]:2222 ssh-ed25519 ")
    with pytest.raises(mg.MigrationError):
        mg.known_hosts_line("10.77.2.2", 22, "not a key")


RECEIVE_SCRIPT = Path(__file__).resolve().parents[2] / "roles/claw/files/clawfarm-rsync-receive"
SERVER = "rsync --server -lHtpre.iLsfxCIvu --timeout=600 --delete --stats . /Users/claw-1a2b3c4d/"


@pytest.fixture
def receiver(tmp_path):
    """The forced command with a fake ``sudo`` that prints what it would run and a fake ``dscl`` that knows the
    claw (PATH pointed at them)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sudo").write_text('#!/bin/sh\n[ "$1 $2" = "-n dscl" ] && shift && exec "$@"\necho "RAN sudo $*"\n')
    (fake / "sudo").chmod(0o755)
    (fake / "dscl").write_text('#!/bin/sh\ncase "$3" in\n'
                               '  /Users/claw-1a2b3c4d) printf "NFSHomeDirectory: /Users/claw-1a2b3c4d\\nUniqueID: 502\\n" ;;\n'
                               '  /Users/claw-0wned000) printf "NFSHomeDirectory: /Users/claw-1a2b3c4d\\nUniqueID: 0\\n" ;;\n'
                               '  /Users/claw-0ther000) printf "NFSHomeDirectory: /Users/claw-0ther000\\nUniqueID: 503\\n" ;;\n'
                               '  *) echo "no such record" >&2; exit 56 ;;\nesac\n')
    (fake / "dscl").chmod(0o755)
    script = tmp_path / "receive"
    text = RECEIVE_SCRIPT.read_text()
    assert "\nPATH=/usr/bin:/bin:/usr/sbin:/sbin\n" in text
    script.write_text(text.replace("\nPATH=/usr/bin:/bin:/usr/sbin:/sbin\n", f"\nPATH={fake}:/usr/bin:/bin\n"))

    def run(original, dest="/Users/claw-1a2b3c4d/", user="claw-1a2b3c4d"):
        env = {"PATH": "/usr/bin:/bin"}
        if original is not None:
            env["SSH_ORIGINAL_COMMAND"] = original
        return subprocess.run(["/bin/sh", str(script), user, dest], env=env, capture_output=True, text=True)
    return run


@pytest.mark.parametrize("original", [
    SERVER,
    "rsync --server -ltprHe.iLsfxC --delete --timeout=600 . /Users/claw-1a2b3c4d/",  # rsync 2.6.9
    "rsync --server -lHtpr --delete . /Users/claw-1a2b3c4d/",  # openrsync
])
def test_receiver_runs_rsync_as_the_claw(receiver, original):
    result = receiver(original)
    assert result.returncode == 0, result.stderr
    args = original.split(" ")[2:]
    assert result.stdout == f"RAN sudo -n -u claw-1a2b3c4d -- rsync --server {' '.join(args)}\n"


def test_receiver_probe_runs_as_nobody(receiver):
    result = receiver("sudo -n rsync --version")
    assert result.returncode == 0 and result.stdout == "RAN sudo -n -u nobody rsync --version\n"


@pytest.mark.parametrize("original", [
    None,
    "sh",
    "rsync --version",
    "sudo -n rsync --server -lHtpr . /Users/claw-1a2b3c4d/",  # the old root form
    "rsync --server --sender -ltpr . /Users/claw-1a2b3c4d/",  # would read this Mini's files
    "rsync --server -ltpr --log-file=/etc/sudoers . /Users/claw-1a2b3c4d/",
    "rsync --server -ltpr --temp-dir=/etc . /Users/claw-1a2b3c4d/",
    "rsync --server -ltpr --super . /Users/claw-1a2b3c4d/",
    "rsync --server -ltpr . /Users/claw-99999999/",  # another claw's home
    "rsync --server -ltpr . /",
    "rsync --server -ltpr . /Users/claw-1a2b3c4d/../../etc/",
    "rsync --server -ltpr . /Users/claw-1a2b3c4d/ extra",
    "rsync --server -ltpr/ . /Users/claw-1a2b3c4d/",
    "sudo -n rsync --version; id",
    "sudo -n rsync --version\nid",
    "rsync --server -ltpr . /Users/claw-1a2b3c4d/\nid",
    "rsync --server -ltpr --timeout=1;id . /Users/claw-1a2b3c4d/",
    "sh --server -ltpr . /Users/claw-1a2b3c4d/",
    "rsync --server -ltpr . /Users/claw-*/",
])
def test_receiver_refuses_everything_else(receiver, original):
    result = receiver(original)
    assert result.returncode == 126 and "RAN" not in result.stdout
    assert "refused" in result.stderr


@pytest.mark.parametrize("user, dest", [
    ("root", "/var/root/"),
    ("", "/Users/claw-1a2b3c4d/"),
    ("claw-nobody00", "/Users/claw-1a2b3c4d/"),  # no such user
    ("claw-0wned000", "/Users/claw-1a2b3c4d/"),  # UID 0
    ("claw-0ther000", "/Users/claw-1a2b3c4d/"),  # not that user's home
    ("-u", "/Users/claw-1a2b3c4d/"),
])
def test_receiver_writes_only_as_the_claw_whose_home_it_is(receiver, user, dest):
    result = receiver(f"rsync --server -ltpr . {dest}", dest=dest, user=user)
    assert result.returncode == 126 and "RAN" not in result.stdout, result.stdout


def test_receiver_needs_its_destination(receiver):
    assert receiver(SERVER, dest="").returncode == 126


HOST = "clawfarm-migration-target"


@pytest.mark.parametrize("argv", [
    [HOST, "rsync", "--server", "-lHtpre.iLsfxCIvu", "--delete", "--timeout=600", ".", f"{HOME}/"],  # rsync 3.2
    ["-l", "x", HOST, "rsync", "--server", "-rlptH", "--delete", ".", f"{HOME}/"],
])
def test_relay_passes_on_only_a_receiving_server_into_the_home(argv):
    assert mg.relay_remote_command(argv, HOST, HOME) == " ".join(argv[argv.index(HOST) + 1:])


@pytest.mark.parametrize("argv", [
    ["elsewhere", "rsync", "--server", "-r", ".", f"{HOME}/"],
    [HOST, "rsync", "--server", "--sender", "-r", ".", f"{HOME}/"],
    [HOST, "rsync", "--server", "-r", ".", "/Users/claw-other/"],
    [HOST, "sh", "-c", "id", ".", f"{HOME}/"],
    [HOST, "rsync", "--server", "-r;id", ".", f"{HOME}/"],
    [HOST, "rsync", "--server", "-r\nid", ".", f"{HOME}/"],
    [],
])
def test_relay_refuses_any_other_remote_command(argv):
    with pytest.raises(mg.MigrationError):
        mg.relay_remote_command(argv, HOST, HOME)


def test_unreadable_files_are_the_only_errors_that_may_be_left_out():
    rsync3 = (f'rsync: [sender] send_files failed to open "{HOME}/.openclaw/stolen.log": Permission denied (13)\n'
              "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [sender=3.2.7]\n")
    assert mg.unreadable_only(rsync3) == [f"{HOME}/.openclaw/stolen.log"]
    rsync269 = f'rsync: send_files failed to open "{HOME}/x" : Permission denied (13)\n'
    assert mg.unreadable_only(rsync269) == [f"{HOME}/x"]
    # An unreadable directory stops deletions on the receiver: not only unreadable files, refuse.
    opendir = (f'rsync: [sender] opendir "{HOME}/d" failed: Permission denied (13)\n'
               "IO error encountered -- skipping file deletion\n")
    assert mg.unreadable_only(opendir) is None
    assert mg.unreadable_only("rsync: write failed on \"/Users/x\": No space left on device (28)\n") is None
    assert mg.unreadable_only("") is None
