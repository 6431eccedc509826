"""Backups, restore, archiving deprovision and re-subscribe, end to end: sandbox Mini + moto S3 server."""
from __future__ import annotations

import sys

from claw_invariants import Claw, ClawInvariants, claw_settings, realistic_claw
from conftest import recap

CLAW_ID = "b4c7e2d1-3a5f-4e6b-9c8d-7f1e2a3b4c5d"
USER = "claw-b4c7e2d1"
HOME = f"/Users/{USER}"
BUCKET = f"claw-backup-{CLAW_ID}"
CLAW = Claw(CLAW_ID)
# Invariant snapshots of the realistic claw (issue 14): "backup" as backed up, "archived" as archived by deprovision.
SNAPSHOTS: dict = {}
# Issue 17: the per-claw R2 credential store of the test that makes it ({"file", "store"}); deprovision uses it.
CREDENTIALS: dict = {}


def same(mini, farm, key: str, operation: str, allowed=()) -> dict:
    """Assert the claw matches snapshot ``key`` but for ``allowed``; returns the new snapshot."""
    after = ClawInvariants.capture(mini, CLAW, cf=farm["cf"])
    ClawInvariants.assert_same(SNAPSHOTS[key], after, allowed=allowed, operation=operation)
    return after


def keys(mini, prefix: str) -> list:
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2

    client = mini.s3.client()
    try:
        return [k for k in _r2.list_keys(client, BUCKET, prefix) if k.endswith(".tar.zst")]
    except Exception:  # noqa: BLE001 - no bucket yet
        return []


def healthy(mini) -> bool:
    result = mini.playbook("status", "-e", f"claw_id={CLAW_ID}")
    return result.returncode == 0 and "health: ok" in result.stdout


def test_backup_of_a_running_claw(mini, farm, tmp_path):
    realistic_claw(mini, CLAW_ID, tmp_path)
    mini.sh(f"echo before > {HOME}/.openclaw/workspace/kept.txt && chown {USER}:$(stat -c %g {HOME}) {HOME}/.openclaw/workspace/kept.txt")
    SNAPSHOTS["backup"] = ClawInvariants.capture(mini, CLAW, cf=farm["cf"])
    result = mini.playbook("backup", "-e", f"claw_id={CLAW_ID}", check=True)
    out = " ".join(result.stdout.split())
    assert "downtime" in out and "MiB/s" in out
    assert len(keys(mini, "backups/")) == 1
    assert healthy(mini)
    same(mini, farm, "backup", "a backup")


def test_restore_brings_back_the_backup(mini, farm):
    marker = f"{HOME}/.openclaw/workspace/marker-after-backup.txt"
    mini.sh(f"echo new > {marker}")
    mini.playbook("restore", "-e", f"claw_id={CLAW_ID}", check=True)
    # Exactly the backed-up claw again: data, owners and modes, settings, job, port, route.
    same(mini, farm, "backup", "a restore")
    assert mini.sh(f"test -e {marker}", check=False).returncode != 0, "the marker written after the backup survived"
    assert mini.sh(f"cat {HOME}/.openclaw/workspace/kept.txt").stdout.strip() == "before"
    owners = set(mini.sh(f"find {HOME} -printf '%u\\n'").stdout.split())
    assert owners == {USER}
    assert mini.sh(f"stat -c %a {HOME}").stdout.strip() == "700"
    assert mini.sh("ls -a /Users | grep -c restore", check=False).stdout.strip() == "0"
    assert healthy(mini)


def test_encrypted_backup_and_restore_with_the_claws_own_key(mini, farm, tmp_path):
    """Issue 17: with a farm key, the backup is sealed on the Mini with the claw's key (kept on the control node,
    sealed under the farm key); the object in R2 holds no .env value; the restore opens it; the key never shows."""
    import base64
    import json
    import os
    import stat

    farm_key = base64.b64encode(os.urandom(32)).decode()
    store = tmp_path / "archive-keys"
    secrets = tmp_path / "archive-secrets.json"
    secrets.write_text(json.dumps({"r2_archive_farm_key": farm_key, "r2_archive_key_store": str(store)}))
    env_values = [line.split("=", 1)[1] for line in mini.sh(f"cat {HOME}/.openclaw/.env").stdout.splitlines()
                  if "=" in line and len(line.split("=", 1)[1]) >= 8]
    assert env_values
    before = set(keys(mini, "backups/"))
    result = mini.playbook("backup", "-e", f"claw_id={CLAW_ID}", "-e", f"@{secrets}", "-vv", check=True)
    (new,) = set(keys(mini, "backups/")) - before
    client = mini.s3.client()
    raw = client.get_object(Bucket=BUCKET, Key=new)["Body"].read()
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key=new + ".manifest.json")["Body"].read())
    key_file = store / f"{CLAW_ID}.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert manifest["encryption"]["key_id"] == json.loads(key_file.read_text())["current"]
    assert raw.startswith(b"CLAWENC1") and not any(v.encode() in raw for v in env_values)
    assert farm_key not in result.stdout + result.stderr and "NOT encrypted" not in result.stdout

    mini.sh(f"echo after > {HOME}/.openclaw/workspace/after-encrypted-backup.txt")
    restored = mini.playbook("restore", "-e", f"claw_id={CLAW_ID}", "-e", f"key={new}", "-e", f"@{secrets}", "-vv",
                             check=True)
    assert mini.sh(f"test -e {HOME}/.openclaw/workspace/after-encrypted-backup.txt", check=False).returncode != 0
    assert farm_key not in restored.stdout + restored.stderr
    # without the key the encrypted backup is refused before the gateway stops (a check-mode restore runs first)
    refused = mini.playbook("restore", "-e", f"claw_id={CLAW_ID}", "-e", f"key={new}")
    assert refused.returncode != 0 and "which was not given" in refused.stdout, refused.stdout[-3000:]
    assert healthy(mini)
    same(mini, farm, "backup", "an encrypted backup and restore")


def credential_of(request: dict) -> str:
    """The access key id that signed a recorded S3 request (SigV4 ``Credential=<id>/...``)."""
    auth = request["headers"].get("Authorization") or request["headers"].get("authorization") or ""
    return auth.partition("Credential=")[2].partition("/")[0]


def test_backup_with_the_claws_own_r2_credentials(mini, farm, tmp_path_factory):
    """Issue 17: with a credential store, the control node makes a Cloudflare API token scoped to the claw's bucket
    and the Mini's backup is signed only with that token's pair (moto records which key signed each request); the farm
    key signs nothing but the control node's HEAD of the bucket."""
    import json
    import stat

    cf = farm["cf"]
    workdir = tmp_path_factory.mktemp("r2-credentials")
    store = workdir / "store"
    creds = workdir / "r2-credentials.json"
    creds.write_text(json.dumps({"r2_credential_store": str(store)}))
    tokens_before = set(cf.state()["tokens"])
    # Check mode first, while the claw has no pair yet: no token is made, and the farm key never goes to the Mini in
    # its place (the Mini's R2 tasks are skipped; the archives are listed from the control node). The Mini's boto3
    # runs on its Python 3.9, the control node's on the venv's: the User-Agent tells them apart.
    mini.s3.recording("reset")
    mini.s3.recording("start")
    try:
        checked = mini.playbook("backup", "-e", f"claw_id={CLAW_ID}", "-e", f"@{creds}", "--check", check=True)
    finally:
        mini.s3.recording("stop")
    requests = mini.s3.recording("download")
    assert "would make its own R2 key pair" in " ".join(checked.stdout.split()), checked.stdout[-3000:]
    assert set(cf.state()["tokens"]) == tokens_before and not (store / f"{CLAW_ID}.r2.json").exists()
    control_node_python = "lang/python#%d.%d." % sys.version_info[:2]  # botocore: lang/python#3.11.7
    agents = [(request["method"], (request["headers"].get("User-Agent") or request["headers"].get("user-agent") or ""))
              for request in requests]
    assert agents and all(method in ("GET", "HEAD") and control_node_python in agent for method, agent in agents), agents
    mini.s3.recording("reset")
    mini.s3.recording("start")
    try:
        result = mini.playbook("backup", "-e", f"claw_id={CLAW_ID}", "-e", f"@{creds}", check=True)
    finally:
        mini.s3.recording("stop")
    requests = mini.s3.recording("download")
    mini.s3.recording("reset")
    (token_id,) = set(cf.state()["tokens"]) - tokens_before
    token = cf.state()["tokens"][token_id]
    assert [list(p["resources"]) for p in token["policies"]] == [[f"com.cloudflare.edge.r2.bucket.{cf.account_id}_default_{BUCKET}"]]
    pair_file = store / f"{CLAW_ID}.r2.json"
    assert stat.S_IMODE(pair_file.stat().st_mode) == 0o600
    pair = json.loads(pair_file.read_text())
    assert pair["access_key_id"] == token_id
    assert pair["secret_access_key"] not in result.stdout + result.stderr
    signed_by = {}
    for request in requests:
        signed_by.setdefault(credential_of(request), []).append((request["method"], request["url"].split("?")[0]))
    assert set(signed_by) <= {token_id, mini.s3.access_key_id}, signed_by.keys()
    # The upload (multipart parts, manifest) and the retention came from the Mini, with the claw's pair only.
    assert any(method == "PUT" for method, _ in signed_by[token_id]), signed_by
    assert all(method == "HEAD" and url.rstrip("/").endswith(BUCKET) for method, url in signed_by.get(mini.s3.access_key_id, [])), \
        signed_by.get(mini.s3.access_key_id)
    # A second run reuses the pair (no new token).
    mini.playbook("backup", "-e", f"claw_id={CLAW_ID}", "-e", f"@{creds}", check=True)
    assert set(cf.state()["tokens"]) - tokens_before == {token_id}
    assert healthy(mini)
    same(mini, farm, "backup", "a backup with the claw's own R2 credentials")
    # Only now does the deprovision test use the store (and check the revocation): a failure here changes nothing there.
    CREDENTIALS.update(file=creds, store=store, token_id=token_id)


def test_backup_of_every_claw_on_the_mini(mini, farm):
    before = keys(mini, "backups/")
    result = mini.playbook("backup", "-e", f"mini={mini.name}", check=True)
    same(mini, farm, "backup", "a backup of the whole Mini")
    assert CLAW_ID in result.stdout and "failed: []" in result.stdout
    after = keys(mini, "backups/")
    # Retention keeps the newest backup of each day: today's earlier backup was pruned.
    assert len(after) == 1 and after != before and "pruned 1" in " ".join(result.stdout.split())


def test_deprovision_without_r2_fails_and_keeps_the_claw(mini, farm):
    mini.s3.stop()
    try:
        result = mini.playbook("deprovision", "-e", f"claw_id={CLAW_ID}")
    finally:
        mini.s3.start()  # moto keeps no state across a restart: the bucket is empty again
    assert result.returncode != 0
    out = " ".join(result.stdout.split())
    assert "unreachable" in out or "Could not connect" in out or "R2" in out
    assert mini.sh(f"dscl . -read /Users/{USER} UniqueID", check=False).returncode == 0
    assert mini.sh(f"test -f {HOME}/.openclaw/workspace/kept.txt", check=False).returncode == 0
    assert mini.sh(f"test -f /Library/LaunchDaemons/com.mirascope.claw.{CLAW_ID}.plist", check=False).returncode == 0
    assert healthy(mini)
    same(mini, farm, "backup", "a failed deprovision")


def test_deprovision_archives_then_removes(mini, farm):
    mini.sh(f"echo customer-data > {HOME}/.openclaw/workspace/resubscribe.txt && chown {USER}:$(stat -c %g {HOME}) {HOME}/.openclaw/workspace/resubscribe.txt")
    SNAPSHOTS["archived"] = ClawInvariants.capture(mini, CLAW, cf=farm["cf"])
    creds = ["-e", f"@{CREDENTIALS['file']}"] if CREDENTIALS else []
    mini.playbook("deprovision", "-e", f"claw_id={CLAW_ID}", *creds, check=True)
    assert len(keys(mini, "archives/")) == 1
    if CREDENTIALS:
        # Issue 17: after the verified archive the claw's token is revoked and its pair leaves the control node.
        assert CREDENTIALS["token_id"] not in farm["cf"].state()["tokens"]
        assert not (CREDENTIALS["store"] / f"{CLAW_ID}.r2.json").exists()
    assert mini.sh(f"dscl . -read /Users/{USER}", check=False).returncode == 56
    assert mini.sh(f"test -e {HOME}", check=False).returncode != 0
    assert CLAW_ID not in mini.sh("ls /var/db/mirascope/tombstones 2>/dev/null; true").stdout


def test_resubscribe_restores_the_archive(mini, farm, tmp_path):
    # The backend re-sends the customer's token and env with the re-subscribe, as it does for every provision.
    _, settings = claw_settings(tmp_path, CLAW_ID)
    result = mini.playbook("provision", "-e", f"claw_id={CLAW_ID}", "-e", f"@{settings}", "-e", "restore=true", check=True)
    assert "restored from archives/" in " ".join(result.stdout.split())
    assert mini.sh(f"cat {HOME}/.openclaw/workspace/resubscribe.txt").stdout.strip() == "customer-data"
    assert healthy(mini)
    # A re-subscribe is a new placement: only the port (and the route that points at it) may differ.
    after = same(mini, farm, "archived", "a re-subscribe", allowed=("port", "route"))
    assert after["route"] == [f"https://localhost:{after['port']['configured']}"] and after["port"]["claimed"] == [after["port"]["configured"]]
    cleanup = mini.playbook("deprovision", "-e", f"claw_id={CLAW_ID}", "-e", "archive=false", "-e", "claw_purge_home=true", check=True)
    assert recap(cleanup.stdout)[mini.name]["failed"] == 0


def test_configure_then_restore_keeps_the_present_settings_unless_asked(mini, tmp_path):
    """Issue 14: restore swapped in the archived .env (old token, old keys) silently. Now the claw keeps its present
    token and env (restore_settings=archived takes the archive's), and the result names env and token fingerprint.
    configure.yml changes single keys and the token, check mode shows names only, a second run changes nothing."""
    import json
    from pathlib import Path

    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw, _facts

    claw_id, home = "d00dfeed-4444-4444-8444-444444444444", "/Users/claw-d00dfeed"
    first_token, second_token = "first-token-" + "1" * 32, "second-token-" + "2" * 32
    first_env = {"ANTHROPIC_API_KEY": "sk-one", "ANTHROPIC_BASE_URL": "https://one.example/v1", "PRIMARY_MODEL_ID": "m-one"}

    def vars_file(name, data):
        path = tmp_path / name
        path.write_text(json.dumps(data))
        path.chmod(0o600)
        return f"@{path}"

    def env():
        return _claw.parse_dotenv(mini.sh(f"cat {home}/.openclaw/.env").stdout)

    mini.playbook("provision", "-e", f"claw_id={claw_id}", "-e", vars_file("claw.json", dict(gateway_token=first_token, claw_env=first_env)),
                  check=True)
    mini.playbook("backup", "-e", f"claw_id={claw_id}", check=True)
    # A customer's value full of Jinja arrives verbatim and nothing runs (the file is read as data).
    jinja = "{{ lookup('ansible.builtin.pipe', 'touch /tmp/clawfarm-configure-pwned') }}"
    change = "claw_file=" + vars_file("change.json", {"claw_env_set": {"PRIMARY_MODEL_ID": "m-two", "NOTE": jinja},
                                                      "claw_env_unset": ["ANTHROPIC_BASE_URL"], "gateway_token": second_token})[1:]
    checked = mini.playbook("configure", "-e", f"claw_id={claw_id}", "-e", change, "--check", "--diff", check=True)
    assert "PRIMARY_MODEL_ID=<hidden (changed)>" in checked.stdout and "m-two" not in checked.stdout
    assert second_token not in checked.stdout + checked.stderr and env()["PRIMARY_MODEL_ID"] == "m-one"
    done = mini.playbook("configure", "-e", f"claw_id={claw_id}", "-e", change, check=True)
    assert "changed, gateway restarted" in " ".join(done.stdout.split()) and "health ok" in " ".join(done.stdout.split())
    assert recap(mini.playbook("configure", "-e", f"claw_id={claw_id}", "-e", change, check=True).stdout)[mini.name]["changed"] == 0
    present = {"ANTHROPIC_API_KEY": "sk-one", "PRIMARY_MODEL_ID": "m-two", "NOTE": jinja, "CLAW_GATEWAY_TOKEN": second_token}
    assert env() == present
    assert not Path("/tmp/clawfarm-configure-pwned").exists()
    mini.sh(f"echo after > {home}/.openclaw/workspace/after-backup.txt")
    restored = " ".join(mini.playbook("restore", "-e", f"claw_id={claw_id}", check=True).stdout.split())
    assert mini.sh(f"test -e {home}/.openclaw/workspace/after-backup.txt", check=False).returncode != 0, "the data was not restored"
    assert env() == present, "restore replaced the claw's present settings with the archived ones"
    assert f"token {_facts.token_fingerprint(second_token)}" in restored and "env ANTHROPIC_API_KEY, NOTE, PRIMARY_MODEL_ID" in restored
    assert mini.sh("ls /Users | grep -c pre-restore", check=False).stdout.strip() == "0"
    archived = " ".join(mini.playbook("restore", "-e", f"claw_id={claw_id}", "-e", "restore_settings=archived", check=True).stdout.split())
    assert env() == dict(first_env, CLAW_GATEWAY_TOKEN=first_token) and f"token {_facts.token_fingerprint(first_token)}" in archived
    status = mini.playbook("status", "-e", f"claw_id={claw_id}", check=True)
    assert "health: ok" in status.stdout
    mini.playbook("deprovision", "-e", f"claw_id={claw_id}", "-e", "archive=false", "-e", "claw_purge_home=true", check=True)
