"""A sandbox farm for the benches: the Cloudflare API stand-in, moto's S3 on the first Mini's host side, and
bootstrapped sandbox Minis (tests/sandbox), set up as the end-to-end tests set up theirs. Needs root.

    with sandbox_farm(("bm1", "bm2"), Path("/var/tmp/clawfarm-bench")) as farm:
        farm.playbook("provision", "-e", "claw_id=...")   # -> (stdout, seconds)
        farm.exec("bm1", "ls /Users")                       # -> CompletedProcess (root, inside the Mini)

Not a test helper: nothing here asserts on time.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".collections"))
sys.path.insert(0, str(REPO / "tests"))
from clawfarm_testlib import CF_TOKEN, CloudflareStandIn, S3StandIn, free_port, wait_http  # noqa: E402

MINI_PY = [sys.executable, str(REPO / "tests/sandbox/mini.py")]
BIN = Path(sys.executable).parent


def load(name: str, path: Path):
    """Import the Python file ``path`` as module ``name`` (the benches' way to reuse each other and the e2e set-up)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Farm:
    """Bootstrapped sandbox Minis behind one inventory (``inventory``: a JSON inventory file of group ``minis``)."""

    def __init__(self, names, inventory: Path, s3):
        self.names = tuple(names)
        self.inventory = inventory
        self.s3 = s3

    def playbook(self, name: str, *args: str, env: dict | None = None, quiet: bool = False) -> tuple[str, float]:
        """Run ``playbooks/<name>.yml`` against the farm; returns (stdout, wall seconds). Exits on failure."""
        run_env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                       PATH=f"{BIN}:{os.environ['PATH']}", **(env or {}))
        started = time.monotonic()
        result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory), f"playbooks/{name}.yml", *args],
                                cwd=REPO, env=run_env, text=True, capture_output=True)
        seconds = time.monotonic() - started
        if not quiet:
            shown = " ".join(a for a in args if a != "-e" and not a.startswith("claw_id"))
            print(f"  {name} {shown}: {seconds:.1f} s", flush=True)
        if result.returncode != 0:
            sys.exit(f"{name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
        return result.stdout, seconds

    def exec(self, name: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command inside Mini ``name`` as root."""
        return subprocess.run([*MINI_PY, "exec", name, "--", "sh", "-c", command], text=True, capture_output=True,
                              check=check)

    def bare_gateway_start(self, name: str, user: str, restart: bool = False, port: int = 7990) -> float:
        """Seconds of a bare start of Mini ``name``'s installed gateway as ``user`` on ``port`` (outside the port
        plan), until its token-checked health call answers (bench/bare_gateway_start.py: no Ansible, no launchd);
        with ``restart``, of a warm restart on the same state dir. Exits when the gateway never gets healthy."""
        runtime = self.exec(name, "ls -d /opt/openclaw/*/ | head -1").stdout.strip().rstrip("/")
        out = self.exec(name, f"/usr/bin/python3 {REPO}/bench/bare_gateway_start.py {runtime}/bin/node "
                              f"{runtime}/lib/node_modules/openclaw/openclaw.mjs {user} {port}{' restart' if restart else ''}").stdout
        answer = json.loads(out.strip().splitlines()[-1])
        if answer["result"] != "ok":
            sys.exit(f"bare gateway {'restart' if restart else 'start'} on {name} failed: {answer}")
        return answer["seconds"]


@contextlib.contextmanager
def sandbox_farm(names, workdir: Path):
    """Boot (fresh disks) and bootstrap the sandbox Minis ``names``; yield a :class:`Farm`; purge them afterwards."""
    if os.geteuid() != 0:
        sys.exit("the benchmark boots sandbox Minis: run it as root")
    workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "tests/sandbox"))
    import bundles  # the runtime bundle bootstrap installs, built once per checkout (as the e2e tests do)

    bundles.ensure([bundles.role_defaults()[0]])
    e2e = load("e2e_conftest", REPO / "tests/e2e/conftest.py")
    port = free_port()
    cf_proc = subprocess.Popen([sys.executable, str(REPO / "tests/cfapi/server.py"), "--port", str(port)],
                               env=dict(os.environ, CFAPI_TOKEN=CF_TOKEN), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    s3 = None
    try:
        wait_http(f"http://127.0.0.1:{port}/__control/state")
        cf = CloudflareStandIn("127.0.0.1", port)
        zone_id = cf.add_zone("example.com")
        print(f"==> booting sandbox Minis {', '.join(names)}", flush=True)
        subprocess.run([*MINI_PY, "down", *names, "--purge"], check=True)
        import yaml
        # Without the sandbox's module code cache (tests/sandbox/README.md "Python on the Mini"): a Mac has none.
        hosts = yaml.safe_load(subprocess.run([*MINI_PY, "up", *names], check=True, capture_output=True, text=True,
                                              env=dict(os.environ, CLAWFARM_SANDBOX_CODE_CACHE="0")).stdout)["minis"]["hosts"]
        s3 = S3StandIn(hosts[names[0]]["ansible_host"].rsplit(".", 1)[0] + ".1", workdir)
        s3.start()
        base = e2e.farm_vars(cf, "", zone_id, s3)
        group_vars = {k: v for k, v in base.items() if k not in ("cf_tunnel_id", "cloudflared_credentials")}
        for name in names:
            tunnel_id = str(uuid.uuid4())
            hosts[name].update(cf_tunnel_id=tunnel_id,
                               cloudflared_credentials=dict(base["cloudflared_credentials"], TunnelID=tunnel_id))
        inventory = workdir / "hosts.yml"
        inventory.write_text(json.dumps({"all": {"children": {"minis": {"hosts": hosts, "vars": group_vars}}}}))
        farm = Farm(names, inventory, s3)
        print("==> bootstrap", flush=True)
        farm.playbook("bootstrap")
        yield farm
    finally:
        if s3:
            s3.stop()
        cf_proc.terminate()
        subprocess.run([*MINI_PY, "down", *names, "--purge"], check=False)
