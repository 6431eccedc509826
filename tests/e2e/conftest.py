"""Fixtures for end-to-end tests against a sandbox Mini (real SSH, real OpenClaw, launchd stand-in)."""
from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from clawfarm_testlib import S3StandIn, xdist_scope

REPO = Path(__file__).resolve().parents[2]
# Under pytest-xdist (scripts/test.sh runs two workers) every worker has its own name for its Minis: the worker id
# ("gw0", "gw1") is appended.  Without xdist the names are the plain ones.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def worker_name(base: str) -> str:
    """A Mini name (or a /tmp file stem) of this xdist worker: ``base`` plus ``-gwN`` under xdist, else ``base``.

    A test module that boots a Mini of its own needs no suffix (every e2e module runs whole on one worker, see
    tests/conftest.py's scheduler), only a name no other module uses; a Mini that several modules share
    per worker (``mini``) takes it.  Names stay within mini.py's 11 characters: base names of at most 7.
    """
    return f"{base}-{WORKER}" if WORKER else base


MINI = worker_name(os.environ.get("CLAWFARM_E2E_MINI", "e2e1"))
BIN = Path(sys.executable).parent
CLAWS_DOMAIN = "claws.example.com"
# Playbook output of the last run of each playbook, for reading after a failure (one file per worker).
LOGS = worker_name("/tmp/clawfarm-e2e")
# audit.yml's JSON reports of this worker (audit_report_dir): a test reads the newest of its own worker's audits,
# never one another worker wrote meanwhile about its own Minis of the same names.
AUDIT_REPORTS = REPO / "reports" / "e2e" / (WORKER or "main")


def latest_audit_report() -> dict:
    """The newest audit.yml JSON report this worker's playbooks wrote: ``{"generated_at": ..., "minis": {...}}``."""
    reports = sorted(AUDIT_REPORTS.glob("audit-*.json"))
    assert reports, f"no audit report in {AUDIT_REPORTS}"
    return json.loads(reports[-1].read_text())


# Minutes each e2e module took in a full `.ci/run` (two lanes, so under load), for handing the longest out first.
# Only the order matters: a module missing here counts as E2E_MINUTES_DEFAULT. Refresh from the durations the run
# prints when a module grows or shrinks a lot.
E2E_MINUTES = {  # measured in .ci/run of 2026-12-06 11:33 (two lanes; 112 lane-minutes of tests in all)
    "test_full_mini.py": 15.5,
    "test_bootstrap.py": 12,
    "test_hostile_tenant_paths.py": 10.5,
    "test_claw_backup.py": 8.5,
    "test_claw_lifecycle.py": 8,
    "test_api_replicas_fleet.py": 7.5,
    "test_drain.py": 6.5,
    "test_placement.py": 5.5,
    "test_api.py": 5,
    "test_migrate.py": 4.5,
    "test_tenant_network.py": 3.5,
    "test_claw_import.py": 3,
    "test_hostile_tenant_secrets.py": 3,
    "test_claw_browser.py": 3,
    "test_hostile_tenant_migration.py": 2.5,
    "test_monitoring.py": 2.5,
    "test_hostile_tenant_lifecycle.py": 2,
    "test_claw_route.py": 1.5,
}
E2E_MINUTES_DEFAULT = 1


def pytest_collection_modifyitems(items):
    """Mark e2e tests; under pytest-xdist, hand out the e2e modules longest first, then unit and integration tests.

    tests/conftest.py's scheduler keeps each e2e module whole on one worker (clawfarm_testlib.xdist_scope); every
    worker that runs a module using ``mini`` or ``fleet`` boots its own. scripts/test.sh passes
    ``--no-loadscope-reorder``, so the order here is the order work is handed out: e2e modules by their expected
    duration (E2E_MINUTES), longest first, so that no long module starts last, then unit and integration tests,
    which fill the gaps. A plain run keeps pytest's order.
    """
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
    if WORKER:
        def rank(item):
            scope = xdist_scope(item.nodeid)
            if not scope.startswith("tests/e2e/"):
                return (1, 0)
            return (0, -E2E_MINUTES.get(scope.rsplit("/", 1)[-1], E2E_MINUTES_DEFAULT))
        items[:] = sorted(items, key=rank)  # stable: the order inside each rank is kept


def _ensure_bundles(*versions: str) -> None:
    """Build (once per checkout, under a lock per bundle) the runtime bundles of ``versions`` (None: the role's)."""
    if os.geteuid() == 0:
        sys.path.insert(0, str(REPO / "tests/sandbox"))
        import bundles

        bundles.ensure([v or bundles.role_defaults()[0] for v in versions])


@pytest.fixture(scope="session", autouse=True)
def runtime_bundle():
    """The OpenClaw runtime bundle every Mini installs, built before any playbook needs it (never by two at once)."""
    _ensure_bundles(None)


@pytest.fixture(scope="module", autouse=True)
def older_runtime_bundle(request):
    """The bundle of a test module's ``OLDER_OPENCLAW`` (an upgrade test's starting version), if it has one."""
    older = getattr(request.module, "OLDER_OPENCLAW", None)
    if older:
        _ensure_bundles(older)


WHEELS = REPO / ".cache" / "mini-python"


def run_playbook(name: str, argv: list, env: dict) -> subprocess.CompletedProcess:
    """Run ``ansible-playbook`` (``argv``) from the checkout; the first bootstraps of a run take turns.

    The mini_python role downloads the Minis' wheels into a control-node cache (.cache/mini-python) on its first
    run, not atomically: two lanes bootstrapping at once on a fresh checkout would download into the same
    directory while one already ships it. Until a wheel set is complete, a bootstrap runs under a lock, which it
    gives up as soon as one is (the role then only reuses it); later bootstraps never wait.
    """
    def wheels_ready() -> bool:
        return any(WHEELS.glob("*/.complete"))

    if name != "bootstrap" or wheels_ready():
        return subprocess.run(argv, cwd=REPO, env=env, text=True, capture_output=True)
    WHEELS.parent.mkdir(exist_ok=True)
    with open(WHEELS.parent / ".mini-python.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if wheels_ready():
            fcntl.flock(lock, fcntl.LOCK_UN)
            return subprocess.run(argv, cwd=REPO, env=env, text=True, capture_output=True)
        proc = subprocess.Popen(argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def release_when_ready():
            while proc.poll() is None and not wheels_ready():
                time.sleep(1)
            fcntl.flock(lock, fcntl.LOCK_UN)
        releaser = threading.Thread(target=release_when_ready, daemon=True)
        releaser.start()
        stdout, stderr = proc.communicate()
        releaser.join()
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


class Mini:
    """A running sandbox Mini plus helpers to run playbooks against it and look inside it."""

    def __init__(self, name: str, inventory: Path, farm_vars: Path | None = None):
        self.name = name
        self.inventory = inventory
        self.farm_vars = farm_vars

    def sh(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command inside the Mini as root."""
        return subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "exec", self.name, "--",
                               "sh", "-c", command], text=True, capture_output=True, check=check)

    def playbook(self, name: str, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1", PATH=f"{BIN}:{os.environ['PATH']}")
        extra = ["-e", f"@{self.farm_vars}"] if self.farm_vars else []
        extra += ["-e", f"audit_report_dir={AUDIT_REPORTS}"] if name == "audit" else []
        result = run_playbook(name, [str(BIN / "ansible-playbook"), "-i", str(self.inventory), f"playbooks/{name}.yml",
                                     *extra, *args], env)
        # The last run of each playbook, for reading after a failure.
        Path(f"{LOGS}-{name}.log").write_text(result.stdout + result.stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"{name} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
        return result

    def reboot(self) -> None:
        subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "reboot", self.name], check=True,
                       capture_output=True, text=True)

    def snapshot(self) -> str:
        """What bad input must never change: users, homes, daemons, port claims."""
        return self.sh("dscl . -list /Users UniqueID; ls -la /Users /Library/LaunchDaemons; "
                       "ls /var/db/mirascope/ports 2>/dev/null; launchctl print system").stdout


def inventory_address(inventory: Path) -> str:
    return re.search(r"ansible_host: (\S+)", inventory.read_text()).group(1)


def recap(output: str) -> dict:
    """``{host: {"ok": n, "changed": n, "failed": n, ...}}`` from a PLAY RECAP."""
    hosts = {}
    for line in output.splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match and "ok=" in match.group(2):
            hosts[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return hosts


def wait_for(predicate, timeout: float, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def farm_vars(cf, tunnel_id: str, zone_id: str, s3) -> dict:
    """What a real farm keeps in group vars and a vaulted vars file, pointed at the sandbox and the stand-ins."""
    return {
        "claws_domain": CLAWS_DOMAIN,
        "cf_tunnel_mode": "local",
        "cf_tunnel_id": tunnel_id,
        "cf_account_id": cf.account_id,
        "cf_zone_id": zone_id,
        "cf_api_token": cf.token,
        "cf_api_base_url": cf.base_url,
        "cloudflared_credentials": {"AccountTag": cf.account_id, "TunnelID": tunnel_id, "TunnelSecret": "c2FuZGJveC10dW5uZWwtc2VjcmV0"},
        # No cloudflared binary can be had on a sandbox Mini: the role installs a harmless stand-in there.
        "cloudflared_binary": "/usr/local/bin/cloudflared",
        "cloudflared_binary_src": str(REPO / "tests/sandbox/cloudflared-standin.py"),
        # No tailnet in the sandbox (the role is for real Minis).
        "tailscale_enabled": False,
        # The claws' browser: Debian's chromium of the host (scripts/setup.sh), which the Mini's disk shows at
        # /usr/bin/chromium; role browser checks it there (root-owned, runs) instead of downloading the Mac build.
        "browser_install": "preinstalled",
        "browser_executable_path": "/usr/bin/chromium",
        "browser_version": "",
        # R2: a moto S3 server on the host side of the Mini's veth (the only address the Mini can reach).
        "r2_endpoint_url": s3.endpoint_url,
        "r2_access_key_id": s3.access_key_id,
        "r2_secret_access_key": s3.secret_access_key,
    }


@pytest.fixture(scope="session")
def farm(cf_api_server):
    """The stand-in Cloudflare account of the e2e farm: one zone and the sandbox Mini's tunnel."""
    zone_id = cf_api_server.add_zone("example.com")
    return {"cf": cf_api_server, "zone_id": zone_id, "tunnel_id": str(uuid.uuid4())}


# What a bootstrapped Mini's disk is made of: an image saved from one bootstrap is reused only while none of these
# changed (its key is their digest).
IMAGE_SOURCES = ("roles", "playbooks", "plugins", "meta", "galaxy.yml", "ansible.cfg", "tests/sandbox/macos",
                 "tests/sandbox/boot.sh", "tests/sandbox/mini.py", "tests/sandbox/cloudflared-standin.py")
IMAGE_BUILDER = "cfimage"


def image_key() -> str:
    """``bootstrapped-<digest>``: the digest of IMAGE_SOURCES and of the farm settings the image is bootstrapped with."""
    digest = hashlib.sha256(inspect.getsource(farm_vars).encode())
    for top in IMAGE_SOURCES:
        root = REPO / top
        files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
        for path in files:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"bootstrapped-{digest.hexdigest()[:16]}"


@pytest.fixture(scope="session")
def bootstrapped_image(tmp_path_factory, farm) -> str:
    """The disk of a freshly bootstrapped sandbox Mini, saved once per checkout state (tests/sandbox/mini.py image).

    The ``mini``, ``fleet`` and full-Mini fixtures boot their Minis from it (``mini.py up --image``) and then run
    bootstrap.yml again, which only applies what differs per Mini (names, tunnel, connector): booting and
    bootstrapping a fresh Mac from nothing is test_bootstrap.py's job, done there on a Mini of its own. Workers take
    turns under a lock: the first builds the image, the others reuse it.
    """
    if os.geteuid() != 0:
        pytest.skip("sandbox Minis need root")
    mini_py = [sys.executable, str(REPO / "tests/sandbox/mini.py")]
    key = image_key()
    store = Path(os.environ.get("CLAWFARM_SANDBOX_IMAGES", "/run/clawfarm-sandbox-images"))
    (REPO / ".cache").mkdir(exist_ok=True)
    with open(REPO / ".cache" / "sandbox-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (store / key).is_dir():  # saved whole or not at all (mini.py renames it into place)
            return str(store / key)
        inventory = tmp_path_factory.mktemp("image") / "hosts.yml"
        subprocess.run([*mini_py, "down", IMAGE_BUILDER, "--purge"], check=True)
        subprocess.run([*mini_py, "up", IMAGE_BUILDER, "--inventory", str(inventory)], check=True, capture_output=True)
        s3 = S3StandIn(inventory_address(inventory).rsplit(".", 1)[0] + ".1", inventory.parent)
        s3.start()
        try:
            vars_file = inventory.parent / "farm.yml"
            vars_file.write_text(json.dumps(farm_vars(farm["cf"], str(uuid.uuid4()), farm["zone_id"], s3)))
            Mini(IMAGE_BUILDER, inventory, vars_file).playbook("bootstrap", check=True)
        finally:
            s3.stop()
        subprocess.run([*mini_py, "down", IMAGE_BUILDER], check=True)
        path = subprocess.run([*mini_py, "image", IMAGE_BUILDER, key], check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run([*mini_py, "down", IMAGE_BUILDER, "--purge"], check=True)
        return path


@pytest.fixture(scope="session")
def mini(tmp_path_factory, farm, bootstrapped_image):
    if os.geteuid() != 0:
        pytest.skip("sandbox Minis need root")
    inventory = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    vars_file = inventory.parent / "farm.yml"
    subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "down", MINI, "--purge"], check=True)
    subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "up", MINI, "--inventory", str(inventory),
                    "--image", bootstrapped_image], check=True, capture_output=True)
    # The host side of the Mini's veth (10.77.N.1) is the one address outside the Mini that it can reach.
    s3 = S3StandIn(inventory_address(inventory).rsplit(".", 1)[0] + ".1", inventory.parent)
    s3.start()
    vars_file.write_text(json.dumps(farm_vars(farm["cf"], farm["tunnel_id"], farm["zone_id"], s3)))
    node = Mini(MINI, inventory, vars_file)
    node.s3 = s3
    node.playbook("bootstrap", check=True)
    yield node
    s3.stop()
    subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "down", MINI, "--purge"], check=False)


FLEET = ("fl1", "fl2", "fl3")


def sandbox_name(name: str) -> str:
    """The sandbox Mini behind fleet inventory host ``name``: ``fl1`` is ``fl1-gw0`` on xdist worker gw0.

    Every worker that runs a module using the ``fleet`` boots its own three Minis; the inventory keeps the plain
    names (fl1..fl3), so playbooks' output and the tests read the same on any worker.
    """
    return worker_name(name)


class Fleet:
    """Three sandbox Minis booted at once, each with its own tunnel, sharing one R2 (moto) and one Cloudflare account.

    Farm settings are group vars of the inventory (not extra vars), so per-Mini ones (tunnel id, mini_status) win.
    Each test writes its own inventory file in its own directory, so host_vars that drain.yml writes stay there.
    ``names`` are the inventory names (fl1..fl3); ``sh`` runs inside the sandbox Mini behind one (sandbox_name).
    """

    def __init__(self, names, hosts: dict, group_vars: dict, workdir: Path, s3):
        self.names, self.hosts, self.group_vars, self.workdir, self.s3 = names, hosts, group_vars, workdir, s3
        self.env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                        PATH=f"{BIN}:{os.environ['PATH']}")

    def inventory(self, label: str, names=None, host_vars: dict | None = None, **group_vars) -> Path:
        """A fresh inventory ``<workdir>/<label>/hosts.yml`` with ``names`` (default all) in group minis."""
        directory = self.workdir / label
        directory.mkdir(exist_ok=True)
        hosts = {n: dict(self.hosts[n], **(host_vars or {}).get(n, {})) for n in (names or self.names)}
        path = directory / "hosts.yml"
        path.write_text(json.dumps({"all": {"children": {"minis": {"hosts": hosts, "vars": dict(self.group_vars, **group_vars)}}}}))
        return path

    def command(self, inventory: Path, name: str, *args: str) -> list:
        extra = ["-e", f"audit_report_dir={AUDIT_REPORTS}"] if name == "audit" else []
        return [str(BIN / "ansible-playbook"), "-i", str(inventory), f"playbooks/{name}.yml", *extra, *args]

    def playbook(self, inventory: Path, name: str, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        result = run_playbook(name, self.command(inventory, name, *args), self.env)
        Path(f"{LOGS}-fleet-{name}.log").write_text(result.stdout + result.stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"{name} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
        return result

    def sh(self, name: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command inside Mini ``name`` (an inventory name, fl1..fl3) as root."""
        return subprocess.run([sys.executable, str(REPO / "tests/sandbox/mini.py"), "exec", sandbox_name(name), "--",
                               "sh", "-c", command], text=True, capture_output=True, check=check)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory, farm, bootstrapped_image):
    """The sandbox fleet (tests/sandbox/mini.py up fl1 fl2 fl3 from the bootstrapped image), bootstrapped for the session."""
    if os.geteuid() != 0:
        pytest.skip("sandbox Minis need root")
    work = tmp_path_factory.mktemp("fleet")
    mini_py = [sys.executable, str(REPO / "tests/sandbox/mini.py")]
    sandboxes = [sandbox_name(name) for name in FLEET]
    subprocess.run([*mini_py, "down", *sandboxes, "--purge"], check=True)
    out = subprocess.run([*mini_py, "up", *sandboxes, "--image", bootstrapped_image], check=True, capture_output=True,
                         text=True).stdout
    import yaml
    booted = yaml.safe_load(out)["minis"]["hosts"]
    hosts = {name: booted[sandbox_name(name)] for name in FLEET}
    # moto on fl1's host side; the other Minis reach it through the host like they reach each other.
    s3 = S3StandIn(hosts[FLEET[0]]["ansible_host"].rsplit(".", 1)[0] + ".1", work)
    s3.start()
    base = farm_vars(farm["cf"], "", farm["zone_id"], s3)
    group_vars = {k: v for k, v in base.items() if k not in ("cf_tunnel_id", "cloudflared_credentials")}
    for name in FLEET:
        tunnel_id = str(uuid.uuid4())
        hosts[name]["cf_tunnel_id"] = tunnel_id
        hosts[name]["cloudflared_credentials"] = dict(base["cloudflared_credentials"], TunnelID=tunnel_id)
    fleet = Fleet(FLEET, hosts, group_vars, work, s3)
    fleet.playbook(fleet.inventory("bootstrap"), "bootstrap", check=True)
    yield fleet
    s3.stop()
    subprocess.run([*mini_py, "down", *sandboxes, "--purge"], check=False)
