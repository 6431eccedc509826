#!/usr/bin/python3
"""Runs inside the Mini's root before launchd: what a fresh Mac Mini has out of the box.

An ``admin`` account (UID 501, member of ``admin``, passwordless sudo as on the farm's
Minis), sshd with key-only login, /Users, /Library/LaunchDaemons, and the directory node.
Idempotent: later boots change nothing.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import directory as ds  # noqa: E402

name = sys.argv[1]
for path, mode in (("/Users", 0o755), ("/Library", 0o755), ("/Library/LaunchDaemons", 0o755),
                   ("/var/db/com.apple.xpc.launchd", 0o755), ("/var/log", 0o755)):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
ds.seed_from_unix()
if ds.read("Users", "admin") is None:
    ds.write("Users", "admin", {"RecordName": ["admin"], "UniqueID": ["501"], "PrimaryGroupID": ["20"],
                                "RealName": ["Farm Admin"], "NFSHomeDirectory": ["/Users/admin"],
                                "UserShell": ["/bin/bash"], "Password": ["********"]})
    group = ds.read("Groups", "admin")
    group["GroupMembership"] = sorted(set(group.get("GroupMembership", [])) | {"admin"})
    ds.write("Groups", "admin", group)
ds.sync_unix()
os.makedirs("/Users/admin/.ssh", mode=0o700, exist_ok=True)
with open("/etc/sandbox/admin_ed25519.pub") as src, open("/Users/admin/.ssh/authorized_keys", "w") as dst:
    dst.write(src.read())
for path in ("/Users/admin", "/Users/admin/.ssh", "/Users/admin/.ssh/authorized_keys"):
    os.chown(path, 501, 20)
os.chmod("/Users/admin/.ssh/authorized_keys", 0o600)
with open("/etc/sudoers.d/admin", "w") as handle:
    handle.write("admin ALL=(ALL) NOPASSWD: ALL\n")
os.chmod("/etc/sudoers.d/admin", 0o440)
# cron as macOS lays it out: /usr/lib/cron is a link to /private/var/at (cron.allow, cron.deny, tabs/). The crontab
# stand-in (bin/crontab) is setuid root on a Mac; here its privileged part runs through sudo for any user.
for path, mode in (("/private/var/at", 0o755), ("/private/var/at/tabs", 0o700)):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
if not os.path.lexists("/usr/lib/cron"):
    os.symlink("../../private/var/at", "/usr/lib/cron")
with open("/etc/sudoers.d/sandbox-crontab", "w") as handle:
    handle.write("ALL ALL=(root) NOPASSWD: /usr/local/libexec/sandbox-macos/crontab.py\n")
os.chmod("/etc/sudoers.d/sandbox-crontab", 0o440)
# The Mini's own host key where macOS keeps it (/etc/ssh/ssh_host_ed25519_key), replacing the host's copy that
# the overlay shows; migration reads it to pin the target in the source's known_hosts.
if not os.path.exists("/etc/sandbox/host-key-generated"):
    for suffix in ("", ".pub"):
        if os.path.exists("/etc/ssh/ssh_host_ed25519_key" + suffix):
            os.unlink("/etc/ssh/ssh_host_ed25519_key" + suffix)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/etc/ssh/ssh_host_ed25519_key"], check=True)
    open("/etc/sandbox/host-key-generated", "w").close()
os.makedirs("/etc/ssh/sshd_config.d", exist_ok=True)
with open("/etc/ssh/sshd_config", "w") as handle:
    handle.write(
        "# sandbox Mini sshd, shaped like macOS's: drop-ins first (sshd keeps the first value it reads), then the\n"
        "# defaults. Password login stays on, as on a fresh Mac; mini_base's drop-in turns it off.\n"
        "Include /etc/ssh/sshd_config.d/*\n"
        "Port 22\nHostKey /etc/ssh/ssh_host_ed25519_key\nUsePAM no\n"
        "AuthorizedKeysFile .ssh/authorized_keys\nSubsystem sftp internal-sftp\nMaxStartups 64\nMaxSessions 64\n"
    )
