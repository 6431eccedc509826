"""Realistic claws and the invariant check run around every day-2 operation (issue 14).

``realistic_claw`` provisions a claw the way production does (a gateway token and the three env keys the backend
sends, the gateway started for real so its SQLite state exists) and then seeds, as the claw user inside the Mini
and in one call, what months of use leave behind: a workspace with notes, code and a binary asset, and session
transcripts as JSONL (``~/.openclaw/agents/main/sessions/<id>.jsonl``, where OpenClaw keeps transcripts on disk:
docs/reference/openclaw-gateway.md 2.1 and OpenClaw's ``gateway/security/secrets-and-storage.md``), a few MB in all.
The gateway leaves such files alone at start (observed with 2026.9.6: ready, file untouched; a legacy
``sessions.json`` store would make it refuse readiness, so none is written).

``ClawInvariants.capture(mini, claw)`` takes a snapshot in one Mini call: the gateway token and every env value by
hash, checksums of workspace and session files, owner/group/mode of the home tree, the state database (readable, with tables),
the launchd job (label, loaded, state, program, user, environment), the port (claim and openclaw.json), the tunnel
route cloudflared loaded, and with ``cf`` the DNS record in the Cloudflare stand-in.
``ClawInvariants.assert_same(before, after, allowed=...)`` fails naming every difference under a key the
operation did not ask to change.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from conftest import CLAWS_DOMAIN

# The three settings the backend sends with every claw (values are per-claw, see realistic_env).
ENV_NAMES = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "PRIMARY_MODEL_ID")


@dataclass
class Claw:
    """Names derived from a claw id, plus the token and env it was provisioned with (when known)."""

    claw_id: str
    token: str | None = None
    env: dict = field(default_factory=dict)

    @property
    def user(self) -> str:
        return f"claw-{self.claw_id[:8]}"

    @property
    def home(self) -> str:
        return f"/Users/{self.user}"

    @property
    def label(self) -> str:
        return f"com.mirascope.claw.{self.claw_id}"

    @property
    def hostname(self) -> str:
        return f"claw-{self.claw_id}.{CLAWS_DOMAIN}"


class FleetMini:
    """One Mini of the fleet with the single-Mini interface (``name``, ``sh``, ``playbook``) on a given inventory."""

    def __init__(self, fleet, inventory: Path, name: str):
        self.fleet, self.inventory, self.name = fleet, inventory, name

    def sh(self, command: str, check: bool = True):
        return self.fleet.sh(self.name, command, check=check)

    def playbook(self, name: str, *args: str, check: bool = False):
        return self.fleet.playbook(self.inventory, name, *args, "-e", f"mini={self.name}", check=check)


def realistic_env(claw_id: str) -> dict:
    """The env the backend sends: an API key, the LLM proxy's base URL and the model id (values unique per claw)."""
    return {"ANTHROPIC_API_KEY": f"sk-ant-api03-{uuid.uuid5(uuid.NAMESPACE_URL, claw_id).hex}",
            "ANTHROPIC_BASE_URL": "https://llm-proxy.example.com/v1",
            "PRIMARY_MODEL_ID": "claude-sonnet-4-5-20250929"}


def claw_settings(directory: Path, claw_id: str) -> tuple[Claw, Path]:
    """A 0600 vars file with the claw's token and env (for ``-e @file``), and the :class:`Claw` it describes."""
    claw = Claw(claw_id, token="gw-" + hashlib.sha256(f"token {claw_id}".encode()).hexdigest()[:40], env=realistic_env(claw_id))
    path = Path(directory) / f"claw-{claw_id}.json"
    path.write_text(json.dumps({"gateway_token": claw.token, "claw_env": claw.env}))
    path.chmod(0o600)
    return claw, path


# Runs as root inside the Mini, drops to the claw user before touching anything of the home (the home is the tenant's).
SEED = r'''
import hashlib, json, os, pwd, random, sys, uuid
user, home, claw_id, megabytes = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
pw = pwd.getpwnam(user)
os.setgroups([]); os.setgid(pw.pw_gid); os.setuid(pw.pw_uid); os.umask(0o077)
state = os.path.join(home, ".openclaw")
if not os.path.isfile(os.path.join(state, "state", "openclaw.sqlite")):
    sys.exit("the gateway's state database is missing: was the gateway started?")
rng = random.Random(claw_id)
def write(rel, data):
    path = os.path.join(state, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)
write("workspace/AGENTS.md", "# Agent notes\n\nCustomer %s. Prefers short answers.\n" % claw_id)
write("workspace/USER.md", "Name: Ada\nTimezone: Europe/Berlin\n")
write("workspace/memory/2026-11-01.md", "".join("- remembered fact %d\n" % i for i in range(200)))
for n in range(12):
    write("workspace/projects/app/src/module_%02d.py" % n, "".join("def f%d(x):\n    return x * %d\n\n" % (i, i) for i in range(60)))
write("workspace/projects/app/.git/HEAD", "ref: refs/heads/main\n")
write("workspace/projects/app/.venv/bin/.keep", "")
if not os.path.lexists(os.path.join(state, "workspace/projects/app/.venv/bin/python3")):  # a venv's absolute link (data)
    os.symlink("/usr/bin/python3", os.path.join(state, "workspace/projects/app/.venv/bin/python3"))
size = int(megabytes * 0.6 * 1024 * 1024)
write("workspace/assets/dataset.bin", rng.getrandbits(8 * size).to_bytes(size, "little"))
os.chmod(os.path.join(state, "workspace/projects/app/src/module_00.py"), 0o640)
per_session = int(megabytes * 0.4 * 1024 * 1024 / 4)
for s in range(4):
    sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    lines = [json.dumps({"type": "session", "version": 3, "id": sid, "timestamp": "2026-10-%02dT09:00:00.000Z" % (s + 1),
                         "cwd": os.path.join(state, "workspace")})]
    size, i, parent = 0, 0, None
    while size < per_session:
        mid = "%08x" % rng.getrandbits(32)
        role = "user" if i % 2 == 0 else "assistant"
        text = " ".join("word%d" % rng.randrange(10000) for _ in range(80))
        line = json.dumps({"type": "message", "id": mid, "parentId": parent,
                           "timestamp": "2026-10-%02dT09:%02d:%02d.000Z" % (s + 1, (i // 60) % 60, i % 60),
                           "message": {"role": role, "content": [{"type": "text", "text": text}]}})
        lines.append(line)
        size, i, parent = size + len(line) + 1, i + 1, mid
    write("agents/main/sessions/%s.jsonl" % sid, "\n".join(lines) + "\n")
print(json.dumps({"seeded": claw_id}))
'''


def seed(mini, claw: Claw, megabytes: float = 3.0) -> None:
    """Seed a provisioned claw's workspace and sessions, as the claw user, in one Mini call."""
    mini.sh(f"/usr/bin/python3 - {claw.user} {claw.home} {claw.claw_id} {megabytes} <<'PY'\n{SEED}\nPY")


def realistic_claw(mini, claw_id: str, directory: Path, *provision_args: str, megabytes: float = 3.0) -> Claw:
    """Provision ``claw_id`` with a token and the three env keys (the gateway starts for real), then seed its data.

    ``mini`` is a :class:`conftest.Mini` or a :class:`FleetMini`; ``provision_args`` are more ``provision`` options.
    """
    claw, settings = claw_settings(directory, claw_id)
    mini.playbook("provision", "-e", f"claw_id={claw_id}", "-e", f"@{settings}", *provision_args, check=True)
    seed(mini, claw, megabytes)
    return claw


# Runs as root inside the Mini and only reads: lstat, O_NOFOLLOW opens, SQLite opened immutable (no -wal/-shm made).
CAPTURE = r'''
import hashlib, json, os, plistlib, pwd, grp, sqlite3, stat, subprocess, sys
claw_id, user, home, label, hostname = sys.argv[1:6]
state = os.path.join(home, ".openclaw")
# What the gateway itself churns at runtime: only these directories' own owner and mode are compared.
VOLATILE = {os.path.join(state, d) for d in ("state", "tmp", "cache", "logs", "media", "devices",
                                              "identity", "delivery-queue", "cron")}
# What the gateway writes at every start, not an operation (observed): npm's debug logs in ~/.npm/_logs, the config
# it last started with, its agent dir and the runs of its session store migration. Left out of the snapshot entirely.
GATEWAY_WRITTEN = {os.path.join(home, ".npm"), os.path.join(state, "openclaw.json.last-good"),
                   os.path.join(state, "agents/main/agent"), os.path.join(state, "session-sqlite-migration-runs")}
# At its next start after JSONL transcripts appear, the gateway imports them into its SQLite store and *moves* each
# file (bytes unchanged) to agents/main/session-sqlite-import-archive/<key>.<id>.jsonl.imported-<ms>
# (OpenClaw's doctor-session-sqlite: moveMigrationArtifact). A transcript is therefore keyed by its file name
# (<id>.jsonl) wherever it is, so that a restart the operation does is not taken for a lost session.
SESSIONS_DIR = os.path.join(state, "agents/main/sessions")
IMPORT_ARCHIVE = os.path.join(state, "agents/main/session-sqlite-import-archive")
def session_name(full):
    base = os.path.basename(full)
    if os.path.dirname(full) == IMPORT_ARCHIVE and ".imported-" in base:
        parts = base.rsplit(".imported-", 1)[0].split(".")
        if len(parts) >= 3 and parts[-1] == "jsonl":
            return parts[-2] + ".jsonl"
    if os.path.dirname(full) == SESSIONS_DIR and base.endswith(".jsonl"):
        return base
    return None
out = {}
def h(value):
    return hashlib.sha256(value.encode()).hexdigest()[:16]
def name(table, ident):
    try:
        return table(ident)[0]
    except KeyError:
        return str(ident)
try:
    pw = pwd.getpwnam(user)
    out["user"] = {"exists": True, "group": name(lambda g: grp.getgrgid(g), pw.pw_gid), "home": pw.pw_dir}
except KeyError:
    out["user"] = {"exists": False}
def read(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
env = {}
try:
    for line in read(os.path.join(state, ".env")).decode().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key.strip()] = value
except OSError as exc:
    env = {"<unreadable>": str(exc)}
out["token"] = h(env.pop("CLAW_GATEWAY_TOKEN", ""))
out["env"] = {k: h(v) for k, v in env.items()}
tree, files, sizes = {}, {}, []
def walk(path):
    try:
        entries = sorted(os.listdir(path))
    except OSError:
        return
    for entry in entries:
        full = os.path.join(path, entry)
        if full in GATEWAY_WRITTEN:
            continue
        st = os.lstat(full)
        rel = os.path.relpath(full, home)
        kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f" if stat.S_ISREG(st.st_mode) else "?"
        mode = "%s %s:%s %o" % (kind, name(pwd.getpwuid, st.st_uid), name(grp.getgrgid, st.st_gid), stat.S_IMODE(st.st_mode))
        session = session_name(full) if kind == "f" else None
        if session is not None:
            rel = ".openclaw/agents/main/sessions/" + session
            tree[rel] = mode
            files[rel] = hashlib.sha256(read(full)).hexdigest()
            sizes.append(st.st_size)
            continue
        if full == IMPORT_ARCHIVE:
            walk(full)
            continue
        tree[rel] = mode
        if kind == "l":
            tree[rel] += " -> " + os.readlink(full)
        if kind == "d" and full not in VOLATILE:
            walk(full)
        elif kind == "f" and (rel.startswith(".openclaw/workspace/") or "/sessions/" in rel):
            files[rel] = hashlib.sha256(read(full)).hexdigest()
            sizes.append(st.st_size)
if os.path.isdir(home):
    st = os.lstat(home)
    tree["."] = "d %s:%s %o" % (name(pwd.getpwuid, st.st_uid), name(grp.getgrgid, st.st_gid), stat.S_IMODE(st.st_mode))
    walk(home)
out["tree"], out["files"] = tree, files
out["data_bytes"] = sum(sizes)
db = os.path.join(state, "state", "openclaw.sqlite")
try:
    con = sqlite3.connect("file:%s?immutable=1" % db, uri=True)
    # The gateway adds tables lazily as it runs (observed: 105 after the first start, 110 later): only "a database
    # with tables" is an invariant, not their number.
    out["state_db"] = {"has_tables": bool(con.execute("select count(*) from sqlite_master where type='table'").fetchone()[0])}
    con.close()
except Exception as exc:
    out["state_db"] = {"error": type(exc).__name__}
plist_path = "/Library/LaunchDaemons/%s.plist" % label
job = {"label": label, "plist": os.path.exists(plist_path)}
if job["plist"]:
    with open(plist_path, "rb") as handle:
        plist = plistlib.load(handle)
    job.update(program=plist.get("ProgramArguments"), user=plist.get("UserName"), environment=plist.get("EnvironmentVariables"),
               keep_alive=plist.get("KeepAlive"), run_at_load=plist.get("RunAtLoad"))
printed = subprocess.run(["launchctl", "print", "system/" + label], capture_output=True, text=True)
job["loaded"] = printed.returncode == 0
job["state"] = next((l.split(" = ", 1)[1] for l in printed.stdout.splitlines() if l.startswith("\tstate = ")), None)
out["launchd"] = job
claims = "/var/db/mirascope/ports"
ports = sorted(int(p) for p in (os.listdir(claims) if os.path.isdir(claims) else [])
               if p.isdigit() and open(os.path.join(claims, p)).read().strip() == claw_id)
try:
    configured = json.loads(read(os.path.join(state, "openclaw.json")))["gateway"]["port"]
except Exception as exc:
    configured = type(exc).__name__
out["port"] = {"claimed": ports, "configured": configured}
try:
    with open("/var/run/cloudflared-standin.json") as handle:
        ingress = json.load(handle)["ingress"]
    out["route"] = [r.get("service") for r in ingress if r.get("hostname") == hostname]
except OSError as exc:
    out["route"] = str(exc)
print(json.dumps(out, sort_keys=True))
'''


def flatten(value, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (dict keys only; lists stay values)."""
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


class ClawInvariants:
    """Snapshot and compare what no day-2 operation may change unless it was asked to."""

    @staticmethod
    def capture(mini, claw: Claw, cf=None) -> dict:
        """One Mini call (plus, with ``cf``, a look at the Cloudflare stand-in's DNS record of the claw)."""
        result = mini.sh(f"/usr/bin/python3 - {claw.claw_id} {claw.user} {claw.home} {claw.label} {claw.hostname} <<'PY'\n"
                         f"{CAPTURE}\nPY")
        snapshot = json.loads(result.stdout)
        snapshot["mini"] = mini.name
        if cf is not None:
            snapshot["dns"] = sorted(r["content"] for r in cf.records() if r["name"] == claw.hostname)
        return snapshot

    @staticmethod
    def differences(before: dict, after: dict, allowed=()) -> list:
        """Every difference as ``"key: before -> after"``, except under a key (or key prefix) in ``allowed``."""
        old, new = flatten(before), flatten(after)
        allowed = tuple(allowed)

        def permitted(key):
            return any(key == a or key.startswith(a + ".") for a in allowed)

        found = []
        for key in sorted(set(old) | set(new)):
            if permitted(key) or old.get(key, "<absent>") == new.get(key, "<absent>"):
                continue
            found.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
        return found

    @classmethod
    def assert_same(cls, before: dict, after: dict, allowed=(), operation: str = "the operation") -> None:
        """Fail naming every difference ``operation`` did not ask for (``allowed``: keys it may change)."""
        found = cls.differences(before, after, allowed)
        assert not found, f"{operation} changed what it was not asked to change ({len(found)}):\n  " + "\n  ".join(found[:80])
        assert before["files"], "the snapshot holds no workspace or session files: is the claw seeded?"
