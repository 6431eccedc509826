"""Import from Cloudflare Containers (issue 17), end to end on the shared sandbox Mini (lane B) with the moto S3 stand-in.

The export is built from a real gateway's state dir (a realistic claw, provisioned and seeded, its gateway stopped)
with a container-style config: another port, ``lan`` bind, the token inline, every path under
``/home/node/.openclaw``; no ``.env``. It is packed ``tar -czf`` of ``.openclaw`` (as the runbook's export command
does) and put in a bucket of the farm's S3 endpoint. The import brings up a new claw whose workspace and session
transcripts are the export's byte for byte, on the farm's port and paths, healthy with the request's token;
``--check`` changes nothing.
"""
from __future__ import annotations

import base64
import json
import shlex

from claw_invariants import Claw, claw_settings, realistic_claw

SOURCE = Claw("e1a2b3c4-5d6e-4f70-8a9b-0c1d2e3f4a5b")
TARGET = Claw("e2b3c4d5-6e7f-4a81-9b0c-1d2e3f4a5b6c")
INLINE_TOKEN = "container-inline-token-" + "7" * 24
BUILD = "/var/tmp/clawfarm-export-build"
EXPORT_BUCKET = "claw-exports"
EXPORT_KEY = f"containers/{TARGET.claw_id}.tar.gz"

# Runs as root in the Mini: the container-style config over a copy of the source's state dir, then the export.
BUILD_EXPORT = r'''
import json, os, shutil, subprocess, sys
src, build, token = sys.argv[1:4]
shutil.rmtree(build, ignore_errors=True)
os.makedirs(build, 0o700)
subprocess.run(["cp", "-a", src, os.path.join(build, ".openclaw")], check=True)
state = os.path.join(build, ".openclaw")
for name in (".env", "openclaw.json.last-good"):
    if os.path.lexists(os.path.join(state, name)):
        os.unlink(os.path.join(state, name))
with open(os.path.join(state, "openclaw.json")) as handle:
    config = json.load(handle)
config["gateway"].update({"port": 18789, "bind": "lan", "auth": {"mode": "token", "token": token},
                          "controlUi": {"enabled": True}})
config["logging"] = {"file": "/home/node/.openclaw/logs/gateway.log", "level": "debug"}
config["agents"]["defaults"]["workspace"] = "/home/node/.openclaw/workspace"
config["agents"]["defaults"]["model"] = {"primary": "anthropic/claude-sonnet-4-5"}
with open(os.path.join(state, "openclaw.json"), "w") as handle:
    json.dump(config, handle, indent=2)
subprocess.run(["chown", "-R", "1000:1000", state], check=True)  # the container's node user
subprocess.run(["tar", "-C", build, "-czf", os.path.join(build, "export.tar.gz"), ".openclaw"], check=True)
'''

# Runs as root in the Mini, reads only: checksums of the workspace and of the session transcripts (by file name
# wherever the gateway moved them: claw_invariants.CAPTURE's rule), the config, owners.
DATA = r'''
import hashlib, json, os, sys
state = sys.argv[1]
def sha(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
out = {"workspace": {}, "sessions": {}, "owners": set()}
for top, dirs, files in os.walk(os.path.join(state, "workspace")):
    for name in files:
        full = os.path.join(top, name)
        out["workspace"][os.path.relpath(full, state)] = sha(full)
for sub in ("agents/main/sessions", "agents/main/session-sqlite-import-archive"):
    folder = os.path.join(state, sub)
    for name in (os.listdir(folder) if os.path.isdir(folder) else []):
        base = name.rsplit(".imported-", 1)[0]
        parts = base.split(".")
        if base.endswith(".jsonl"):
            out["sessions"][(parts[-2] if len(parts) >= 3 else parts[0]) + ".jsonl"] = sha(os.path.join(folder, name))
for top, dirs, files in os.walk(state):
    for name in dirs + files:
        out["owners"].add(os.lstat(os.path.join(top, name)).st_uid)
out["owners"] = sorted(out["owners"])
with open(os.path.join(state, "openclaw.json")) as handle:
    out["config"] = json.load(handle)
print(json.dumps(out))
'''


def data(mini, state: str) -> dict:
    return json.loads(mini.sh(f"/usr/bin/python3 - {state} <<'PY'\n{DATA}\nPY").stdout)


def test_import_of_a_container_export(mini, tmp_path):
    realistic_claw(mini, SOURCE.claw_id, tmp_path)
    mini.playbook("stop", "-e", f"claw_id={SOURCE.claw_id}", check=True)
    mini.sh(f"/usr/bin/python3 - {SOURCE.home}/.openclaw {BUILD} {INLINE_TOKEN} <<'PY'\n{BUILD_EXPORT}\nPY")
    exported = data(mini, f"{BUILD}/.openclaw")
    assert exported["workspace"] and exported["sessions"], exported
    archive = tmp_path / "export.tar.gz"
    archive.write_bytes(base64.b64decode(mini.sh(f"base64 -w0 {BUILD}/export.tar.gz").stdout))
    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2

    client = mini.s3.client()
    _r2.ensure_bucket(client, EXPORT_BUCKET, "auto")
    client.put_object(Bucket=EXPORT_BUCKET, Key=EXPORT_KEY, Body=archive.read_bytes())

    # --check on a claw that does not exist: nothing is made, the plan is listed.
    before = mini.snapshot()
    checked = mini.playbook("import", "-e", f"claw_id={TARGET.claw_id}", "-e", f"src={archive}", "--check", check=True)
    out = " ".join(checked.stdout.split())
    assert "would import" in out and "gateway.port" in out and "agents.defaults.model" in out, out[-3000:]
    assert INLINE_TOKEN not in checked.stdout + checked.stderr
    assert mini.snapshot() == before

    target, settings = claw_settings(tmp_path, TARGET.claw_id)
    result = mini.playbook("import", "-e", f"claw_id={TARGET.claw_id}", "-e", f"src=s3://{EXPORT_BUCKET}/{EXPORT_KEY}",
                           "-e", f"claw_file={settings}", check=True)
    assert INLINE_TOKEN not in result.stdout + result.stderr and target.token not in result.stdout + result.stderr
    status = mini.playbook("status", "-e", f"claw_id={TARGET.claw_id}")
    assert status.returncode == 0 and "health: ok" in status.stdout, status.stdout[-3000:]

    imported = data(mini, f"{TARGET.home}/.openclaw")
    assert imported["workspace"] == exported["workspace"]
    assert imported["sessions"] == exported["sessions"]
    uid = int(mini.sh(f"id -u {TARGET.user}").stdout)
    assert imported["owners"] == [uid]
    port = int(mini.sh(f"grep -l {TARGET.claw_id} /var/db/mirascope/ports/*").stdout.strip().rsplit("/", 1)[1])
    config = imported["config"]
    assert config["gateway"]["port"] == port and config["gateway"]["bind"] == "loopback"
    assert config["gateway"]["auth"]["token"] == {"source": "env", "provider": "default", "id": "CLAW_GATEWAY_TOKEN"}
    assert config["agents"]["defaults"]["workspace"] == f"{TARGET.home}/.openclaw/workspace"
    assert config["logging"]["file"] == f"{TARGET.home}/.openclaw/logs/gateway.log"
    assert config["agents"]["defaults"]["model"] == {"primary": "anthropic/claude-sonnet-4-5"}  # the agent's, kept
    assert INLINE_TOKEN not in json.dumps(config) and "/home/node" not in json.dumps(config)
    env = mini.sh(f"cat {TARGET.home}/.openclaw/.env").stdout
    assert f"CLAW_GATEWAY_TOKEN={target.token}" in env
    assert "import" not in mini.sh(f"ls -a {TARGET.home} /Users").stdout  # no staging or replaced state dir left
    assert mini.sh("ls -A /var/db/mirascope/imports").stdout.strip() == ""  # the upload is removed

    # A re-provision (the operator's repair, the upgrade loop's, a migration's) sets only the farm's sections of the
    # config: the agent's settings the import kept (and any the customer makes later) survive it, nothing restarts.
    config_path = f"{TARGET.home}/.openclaw/openclaw.json"
    tamper = ("import json, sys; c = json.load(open(sys.argv[1])); c['gateway']['bind'] = 'lan'; "
              "json.dump(c, open(sys.argv[1], 'w'))")
    mini.sh(f"su -s /bin/sh {TARGET.user} -c {shlex.quote(f'/usr/bin/python3 -c {shlex.quote(tamper)} {config_path}')}")
    reprovisioned = mini.playbook("provision", "-e", f"claw_id={TARGET.claw_id}", "-e", f"@{settings}", "--diff", check=True)
    out = " ".join(reprovisioned.stdout.split())
    assert "gateway configuration changed" in out, out[-3000:]
    assert '-        "bind": "(the claw\'s value, not shown)",' in reprovisioned.stdout, reprovisioned.stdout[-3000:]
    assert '+        "bind": "loopback",' in reprovisioned.stdout
    assert "anthropic/claude-sonnet-4-5" not in reprovisioned.stdout and INLINE_TOKEN not in reprovisioned.stdout
    config = data(mini, f"{TARGET.home}/.openclaw")["config"]
    assert config["agents"]["defaults"]["model"] == {"primary": "anthropic/claude-sonnet-4-5"}
    assert config["gateway"]["bind"] == "loopback"
    again = mini.playbook("provision", "-e", f"claw_id={TARGET.claw_id}", "-e", f"@{settings}", check=True)
    assert "gateway configuration changed" not in again.stdout, again.stdout[-3000:]

    # --check on the imported claw changes nothing either.
    before = mini.snapshot() + json.dumps(data(mini, f"{TARGET.home}/.openclaw"), sort_keys=True)
    mini.playbook("import", "-e", f"claw_id={TARGET.claw_id}", "-e", f"src={archive}", "--check", check=True)
    assert mini.snapshot() + json.dumps(data(mini, f"{TARGET.home}/.openclaw"), sort_keys=True) == before
    mini.playbook("deprovision", "-e", f"claw_id={TARGET.claw_id}", "-e", "archive=false", check=True)
    mini.playbook("deprovision", "-e", f"claw_id={SOURCE.claw_id}", "-e", "archive=false", check=True)
    mini.sh(f"rm -rf {BUILD}")
