"""A hostile tenant plants links where root works, then the operator re-provisions and bootstraps (issue 12).

The claw's code runs as the claw's user: everything planted here is planted AS THAT USER inside the sandbox Mini
(``su -s /bin/sh <claw user>``), aimed at root-owned trees (/opt/mirascope/bin holds the boot script launchd runs as
root). After each operation no file outside the claw's home changed owner, mode or content (a manifest of the
root-owned trees before and after), and the operation either refused with a message naming the link or completed
safely. The tests run in file order and share one claw.
"""
from __future__ import annotations

import shlex
import sys

import pytest
import yaml
from conftest import REPO, recap

CLAW_ID = "badc1a40-7e4a-4c1a-9d2b-0000000000a7"
USER = "claw-badc1a40"
HOME = f"/Users/{USER}"
STATE = f"{HOME}/.openclaw"
NEIGHBOUR_ID = "badc1a41-7e4a-4c1a-9d2b-0000000000a8"
NEIGHBOUR = "claw-badc1a41"
TOKEN = "e2e-hostile-token-Qm3xT7vW9yB2dF4hJ6kL8nP0rS"
LAUNCHD_LOGS = "/Library/Logs/mirascope/claws"
ROOT_TREES = ("/opt/mirascope", "/Library/LaunchDaemons", "/Library/Logs", "/etc", "/var/db/mirascope", "/var/db/mirascope-claw-tls")


@pytest.fixture(scope="module")
def claw_vars(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "claw.yml"
    path.write_text(yaml.safe_dump({"gateway_token": TOKEN, "claw_env": {"PRIMARY_MODEL_ID": "claude-sonnet-4"}}))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def claw(mini, claw_vars):
    mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", f"@{claw_vars}", check=True)
    yield mini
    for claw_id in (CLAW_ID, NEIGHBOUR_ID):
        mini.playbook("deprovision", "-e", f"claw_id={claw_id}", "-e", "archive=false", "-e", "claw_purge_home=true")


def as_tenant(mini, command: str, user: str = USER) -> str:
    """Run ``command`` as the claw's user inside the Mini (what the claw's code can do)."""
    result = mini.sh(f"su -s /bin/sh {user} -c {shlex.quote(command)}", check=False)
    assert result.returncode == 0, f"as {user}: {command}: {result.stdout}{result.stderr}"
    return result.stdout


def manifest(mini) -> dict:
    """Every entry of the root-owned trees: type, owner, group, mode, and for files size, mtime and link target."""
    out = mini.sh("find " + " ".join(ROOT_TREES) + r" -xdev \( -type d -printf '%p d %U %G %m\n' \) "
                  r"-o \( ! -type d -printf '%p %y %U %G %m %s %T@ %l\n' \) 2>/dev/null; true").stdout
    entries = {}
    for line in out.splitlines():
        path, rest = line.split(" ", 1)
        if path.startswith(LAUNCHD_LOGS + "/") and not rest.startswith("d "):
            continue  # the gateway's own stdout/stderr (the claw's files) grow as it runs
        entries[path] = rest
    return entries


def changed(before: dict, after: dict) -> dict:
    return {p: (before.get(p), after.get(p)) for p in set(before) | set(after) if before.get(p) != after.get(p)}


def boot_script(mini) -> str:
    """The script launchd runs as root at every boot (roles/openclaw_runtime: openclaw_runtime_boot_script)."""
    path = "/opt/mirascope/bin/openclaw-tmp-dirs"
    assert mini.sh(f"test -f {path}", check=False).returncode == 0
    return path


def reprovision(mini, claw_vars):
    return mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", f"@{claw_vars}")


def owner_of(mini, path: str) -> list:
    return mini.sh(f"stat -c '%F %U %a' {shlex.quote(path)}").stdout.strip().rsplit(" ", 2)


@pytest.mark.parametrize("rel,target", [
    (".openclaw/workspace", "/opt/mirascope/bin"),
    (".openclaw/logs", "/var/db/mirascope"),
    (".openclaw/cache", "/etc"),
    (".openclaw", "/opt/mirascope"),
])
def test_a_linked_state_directory_is_refused_and_its_target_untouched(claw, claw_vars, rel, target):
    mini = claw
    path = f"{HOME}/{rel}"
    # Stopped, so the gateway cannot recreate the directory between the tenant's mv and ln.
    mini.playbook("stop", "-e", f"claw_id={CLAW_ID}", check=True)
    as_tenant(mini, f"mv {path} {path}.mine && ln -s {target} {path}")
    before = manifest(mini)
    result = reprovision(mini, claw_vars)
    assert result.returncode != 0
    assert f"{path} is a symlink to {target}; remove it or re-provision after moving it aside" in result.stdout
    assert changed(before, manifest(mini)) == {}
    as_tenant(mini, f"rm {path} && mv {path}.mine {path}")
    again = reprovision(mini, claw_vars)
    assert again.returncode == 0 and recap(again.stdout)[mini.name]["failed"] == 0


def test_links_at_files_root_writes_are_replaced_never_followed(claw, claw_vars):
    mini = claw
    script = boot_script(mini)
    uid = mini.sh(f"id -u {USER}").stdout.strip()
    lock = f"/tmp/openclaw-state-locks-{uid}"
    # The gateway's config and the old launchd log names point at the root boot script; the lock dir at /opt.
    as_tenant(mini, f"rm -f {STATE}/openclaw.json && ln -s {script} {STATE}/openclaw.json && "
                    f"ln -sf {script} {STATE}/logs/launchd.err.log && ln -sf {script} {STATE}/logs/launchd.out.log && "
                    f"rm -rf {lock} && ln -s /opt/mirascope/bin {lock}")
    before = manifest(mini)
    result = reprovision(mini, claw_vars)
    assert result.returncode == 0, result.stdout[-4000:]
    assert changed(before, manifest(mini)) == {}
    assert owner_of(mini, f"{STATE}/openclaw.json") == ["regular file", USER, "600"]
    assert '"mode": "local"' in mini.sh(f"cat {STATE}/openclaw.json").stdout
    assert owner_of(mini, lock) == ["directory", USER, "700"]
    assert mini.sh(f"ls -d {lock}.moved-*").returncode == 0
    # launchd writes the gateway's stdout/stderr outside the home, in a root-owned directory
    assert owner_of(mini, f"{LAUNCHD_LOGS}/{USER}") == ["directory", "root", "755"]
    plist = mini.sh(f"cat /Library/LaunchDaemons/com.mirascope.claw.{CLAW_ID}.plist").stdout
    assert f"{LAUNCHD_LOGS}/{USER}/launchd.err.log" in plist and f"{STATE}/logs" not in plist


def test_bootstrap_and_a_restart_with_links_planted_change_nothing_outside_the_home(claw, claw_vars):
    mini = claw
    script = boot_script(mini)
    uid = mini.sh(f"id -u {USER}").stdout.strip()
    lock = f"/tmp/openclaw-state-locks-{uid}"
    as_tenant(mini, f"ln -sf {script} {STATE}/logs/launchd.err.log && rm -rf {lock} && ln -s /opt/mirascope/bin {lock}")
    before = manifest(mini)
    # launchd (as root) opens the job's logs again at every spawn. The gateway itself then refuses a lock directory
    # that is not its own (exit 78): the tenant only broke its own gateway.
    mini.playbook("restart", "-e", f"claw_id={CLAW_ID}")
    mini.playbook("bootstrap", check=True)
    assert changed(before, manifest(mini)) == {}
    assert owner_of(mini, script)[1:] == ["root", "755"]
    assert owner_of(mini, "/opt/mirascope/bin")[1:] == ["root", "755"]
    # Re-provisioning gives the claw a real lock directory again, and the gateway comes back.
    reprovision(mini, claw_vars)
    assert owner_of(mini, lock) == ["directory", USER, "700"]
    mini.playbook("restart", "-e", f"claw_id={CLAW_ID}", check=True)
    assert changed(before, manifest(mini)) == {}


def test_a_neighbours_lock_dir_taken_first_is_moved_aside(claw, claw_vars, tmp_path):
    """uids are predictable: the tenant makes the lock dirs of the next claws before they exist."""
    mini = claw
    uid = int(mini.sh(f"id -u {USER}").stdout.strip())
    as_tenant(mini, "; ".join(f"mkdir -m 0777 /tmp/openclaw-state-locks-{n}" for n in range(uid + 1, uid + 4)))
    neighbour_vars = tmp_path / "neighbour.yml"
    neighbour_vars.write_text(yaml.safe_dump({"gateway_token": TOKEN + "n", "claw_env": {}}))
    neighbour_vars.chmod(0o600)
    mini.playbook("provision", "-e", f"claw_id={NEIGHBOUR_ID}", "-e", f"@{neighbour_vars}", check=True)
    n_uid = int(mini.sh(f"id -u {NEIGHBOUR}").stdout.strip())
    assert uid < n_uid < uid + 4  # the uid the tenant guessed
    assert owner_of(mini, f"/tmp/openclaw-state-locks-{n_uid}") == ["directory", NEIGHBOUR, "700"]
    assert mini.sh(f"ls -d /tmp/openclaw-state-locks-{n_uid}.moved-*").returncode == 0


# -- the migration key, against the fleet's real sshd (Debian OpenSSH) ---------------------------------------------

SWEEP_IDS = {"expired": "0e0e0e0e-0000-4000-8000-000000000001", "never": "0e0e0e0e-0000-4000-8000-000000000002",
             "valid": "0e0e0e0e-0000-4000-8000-000000000003"}
RECEIVER = "/opt/mirascope/libexec/clawfarm-rsync-receive"


def test_a_migration_key_runs_only_the_claws_rsync_from_the_source_until_it_expires(fleet):
    """The real authorized_keys line (_migration.authorized_key_line) in fl2's sshd, used from fl1."""
    if str(REPO / ".collections") not in sys.path:
        sys.path.insert(0, str(REPO / ".collections"))
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _migration as mg
    key = "/root/h7a-migrate-key"
    fleet.sh("fl1", f"rm -f {key} {key}.pub && ssh-keygen -q -t ed25519 -N '' -C test -f {key}")
    public = fleet.sh("fl1", f"cat {key}.pub").stdout
    receiver = (REPO / "roles/claw/files/clawfarm-rsync-receive").read_text()
    fleet.sh("fl2", f"mkdir -p {RECEIVER.rsplit('/', 1)[0]} && cat > {RECEIVER} <<'EOF_R'\n{receiver}EOF_R\nchmod 0755 {RECEIVER}")
    source, target = fleet.hosts["fl1"]["ansible_host"], fleet.hosts["fl2"]["ansible_host"]
    command = mg.receiver_command(RECEIVER, "/Users/claw-0e0e0e0e")
    lines = {name: mg.authorized_key_line(public, [source], claw_id, command, expiry)
             for name, claw_id, expiry in (("valid", SWEEP_IDS["valid"], mg.expiry_time(3600)),
                                           ("expired", SWEEP_IDS["expired"], "20200101000000Z"))}
    keys = "/Users/admin/.ssh/authorized_keys"
    fleet.sh("fl2", f"cp -p {keys} {keys}.h7a && printf '%s\\n' {shlex.quote(lines['valid'])} >> {keys}")
    ssh = f"ssh -i {key} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null admin@{target}"
    try:
        probe = fleet.sh("fl1", f"{ssh} 'sudo -n rsync --version'", check=False)
        assert probe.returncode == 0 and "rsync" in probe.stdout, probe.stderr
        for attempt in ("id", "sudo -n rsync --server --sender -logDtpr . /etc/", "sudo -n rsync --server -logDtpr . /Users/claw-11111111/"):
            result = fleet.sh("fl1", f"{ssh} {shlex.quote(attempt)}", check=False)
            assert result.returncode == 126 and "refused" in result.stderr, (attempt, result.stdout, result.stderr)
        # from=: the same key from another address (fl3) is not accepted
        fleet.sh("fl3", f"rm -f {key}*")
        for suffix in ("", ".pub"):
            body = fleet.sh("fl1", f"cat {key}{suffix}").stdout
            fleet.sh("fl3", f"cat > {key}{suffix} <<'EOF_K'\n{body}EOF_K\nchmod 0600 {key}{suffix}")
        assert fleet.sh("fl3", f"{ssh} 'sudo -n rsync --version'", check=False).returncode == 255
        # expiry-time: an expired key is not accepted
        fleet.sh("fl2", f"cp -p {keys}.h7a {keys} && printf '%s\\n' {shlex.quote(lines['expired'])} >> {keys}")
        assert fleet.sh("fl1", f"{ssh} 'sudo -n rsync --version'", check=False).returncode == 255
    finally:
        fleet.sh("fl2", f"mv {keys}.h7a {keys}", check=False)
        fleet.sh("fl1", f"rm -f {key} {key}.pub", check=False)
        fleet.sh("fl3", f"rm -f {key} {key}.pub", check=False)


def test_audit_sweeps_expired_migration_keys_and_keeps_the_rest(fleet):
    keys = "/Users/admin/.ssh/authorized_keys"
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGE4mCRQbJYb7okSymCW4cdjvTQaSTaWGljTyldt6ycF"
    planted = [f'restrict,expiry-time="20200101000000Z" {pub} clawfarm-migrate-{SWEEP_IDS["expired"]}',
               f'from="10.77.1.2",no-pty {pub} clawfarm-migrate-{SWEEP_IDS["never"]}',
               f'restrict,expiry-time="20991231000000Z" {pub} clawfarm-migrate-{SWEEP_IDS["valid"]}']
    fleet.sh("fl2", f"cp -p {keys} {keys}.h7a && printf '%s\\n' " + " ".join(shlex.quote(line) for line in planted) + f" >> {keys}")
    try:
        fleet.playbook(fleet.inventory("hostile-audit"), "audit", "-l", "fl2")  # anomalies may fail it: only the keys matter
        text = fleet.sh("fl2", f"cat {keys}").stdout
        assert SWEEP_IDS["expired"] not in text and SWEEP_IDS["never"] not in text
        assert SWEEP_IDS["valid"] in text
        assert fleet.sh("fl2", f"grep -v clawfarm-migrate- {keys}").stdout == fleet.sh("fl2", f"cat {keys}.h7a").stdout
    finally:
        fleet.sh("fl2", f"mv {keys}.h7a {keys}", check=False)
