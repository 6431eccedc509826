"""Test helpers shared by unit, integration and end-to-end tests (imported by the conftest files).

- ``CloudflareStandIn``: the Cloudflare API stand-in (tests/cfapi/server.py) as a separate uvicorn process;
- ``S3StandIn``: a moto S3 server process (HTTP or TLS) with the collection's R2 client settings;
- ``run_module_process``: runs one of the collection's modules the way Ansible does, in a fresh process.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".collections"))

CF_ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
CF_TOKEN = "cf-standin-token-0f4c2e9b7a1d"


def sandbox_mini():
    """tests/sandbox/mini.py loaded as a module (its Mini Python search, ``find_mini_python``, and the copy's
    ``sitecustomize`` text, ``MINI_SITECUSTOMIZE``, and its parts)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("sandbox_mini", REPO / "tests/sandbox/mini.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Modules outside tests/e2e whose tests share something of the test machine itself and so must not run at the same time
# on both workers: test_migrate_push's tests each create and delete the same host account (clawpush-it).
WHOLE_MODULES = frozenset({"tests/integration/test_migrate_push.py"})


def xdist_scope(nodeid: str) -> str:
    """The pytest-xdist work unit of a test (scripts/test.sh runs two workers; tests/conftest.py's scheduler).

    An e2e module runs whole on one worker: its module-scoped fixtures boot Minis and provision claws the module's
    tests share. Every other test is a unit of its own (they fill the gaps). Modules that use the ``fleet`` may run
    on either worker: each worker boots its own fleet (tests/e2e/conftest.py's ``sandbox_name``). A module of
    ``WHOLE_MODULES`` runs whole on one worker too.
    """
    path = nodeid.split("::", 1)[0]
    return path if path.startswith("tests/e2e/") or path in WHOLE_MODULES else nodeid


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class CloudflareStandIn:
    """Handle on the running stand-in: its base URL, token and account, plus the test-control calls."""

    def __init__(self, host: str, port: int):
        self.root = f"http://{host}:{port}"
        self.base_url = f"{self.root}/client/v4"
        self.token = CF_TOKEN
        self.account_id = CF_ACCOUNT_ID

    def control(self, path: str, body: dict | None = None) -> dict:
        response = httpx.post(f"{self.root}/__control/{path}", json=body or {}, timeout=10)
        response.raise_for_status()
        return response.json()

    def state(self) -> dict:
        return httpx.get(f"{self.root}/__control/state", timeout=10).json()

    def reset(self) -> None:
        self.control("reset")

    def add_tunnel(self, remote_config: bool = True, **extra) -> str:
        return self.control("tunnels", {"account_id": self.account_id, "remote_config": remote_config, **extra})["id"]

    def add_zone(self, name: str) -> str:
        return self.control("zones", {"name": name})["id"]

    def fault(self, path: str, status: int | None = None, count: int = 1, method: str | None = None, delay: float = 0,
              retry_after: float | None = None) -> None:
        self.control("faults", {"path": path, "status": status, "count": count, "method": method, "delay": delay,
                                "retry_after": retry_after})

    def ingress(self, tunnel_id: str) -> list:
        return self.state()["tunnels"][tunnel_id]["config"]["ingress"]

    def records(self) -> list:
        return list(self.state()["records"].values())




def run_module_process(name: str, args: dict, check: bool = False, diff: bool = False, env: dict | None = None) -> dict:
    """Run ``mirascope.clawfarm.<name>`` like Ansible's module runner does; returns the parsed JSON result."""
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff,
                                       "_ansible_remote_tmp": "/tmp", "_ansible_keep_remote_files": False}}
    run_env = dict(os.environ, PYTHONPATH=str(REPO / ".collections"), **(env or {}))
    proc = subprocess.run([sys.executable, "-m", f"ansible_collections.mirascope.clawfarm.plugins.modules.{name}"],
                          input=json.dumps(payload), capture_output=True, text=True, env=run_env, timeout=300)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"module {name} printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result["_stderr"] = proc.stderr
    return result



# ---- S3 (R2) stand-in: moto in server mode ---------------------------------------------------------------------

S3_ACCESS_KEY = "clawfarm-test-access-key"
S3_SECRET_KEY = "clawfarm-test-secret-key-9d3f1a"


def make_tls_cert(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (an IP address), written as cert.pem/key.pem."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clawfarm test S3")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


class S3StandIn:
    """A moto S3 server as a separate process on ``host`` (loopback, or a sandbox Mini's host-side address)."""

    def __init__(self, host: str, workdir: Path, tls: bool = False):
        self.host, self.workdir, self.tls = host, workdir, tls
        self.port = free_port(host)
        self.ca_bundle = None
        self.proc = None
        if tls:
            self.ca_bundle, self.key_file = make_tls_cert(workdir, host)
        self.endpoint_url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self.access_key_id, self.secret_access_key = S3_ACCESS_KEY, S3_SECRET_KEY

    def start(self) -> None:
        args = [str(Path(sys.executable).parent / "moto_server"), "-H", self.host, "-p", str(self.port)]
        if self.tls:
            args += ["-c", str(self.ca_bundle), "-k", str(self.key_file)]
        log = open(self.workdir / f"moto-{self.port}.log", "ab")
        # cwd: moto's request recorder (/moto-api/recorder/, used by the e2e credential test) writes its file there.
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.workdir)
        deadline = time.monotonic() + 30
        while True:
            try:
                verify = ssl.create_default_context(cafile=str(self.ca_bundle)) if self.tls else True
                httpx.get(self.endpoint_url + "/moto-api/", timeout=1.0, verify=verify)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"moto server on {self.endpoint_url} did not start; see {log.name}")
                time.sleep(0.2)

    def recording(self, action: str):
        """moto's request recorder: ``start``, ``stop``, ``reset`` or ``download`` (-> the requests, JSON lines)."""
        if action == "download":
            text = httpx.get(f"{self.endpoint_url}/moto-api/recorder/download-recording", timeout=30, verify=False).text
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        httpx.post(f"{self.endpoint_url}/moto-api/recorder/{action}-recording", timeout=30, verify=False).raise_for_status()
        return None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def client(self, **config):
        """A boto3 client with the collection's R2 settings."""
        from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2

        return _r2.make_s3_client(self.endpoint_url, self.access_key_id, self.secret_access_key, "auto",
                                  str(self.ca_bundle) if self.ca_bundle else None)

    def module_args(self) -> dict:
        args = {"endpoint_url": self.endpoint_url, "access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key}
        if self.ca_bundle:
            args["ca_bundle"] = str(self.ca_bundle)
        return args



