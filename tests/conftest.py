"""Fixtures shared by unit, integration and end-to-end tests: local servers and a module runner.

- ``cf_api``: the Cloudflare API stand-in (tests/cfapi/server.py) as a separate uvicorn process on loopback;
- ``run_module``: runs one of the collection's modules the way Ansible does (``ANSIBLE_MODULE_ARGS`` JSON on
  stdin, module as ``__main__``) in a fresh Python process, and returns its JSON result.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".collections"))

CF_ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
CF_TOKEN = "cf-standin-token-0f4c2e9b7a1d"


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


@pytest.fixture(scope="session")
def cf_api_server():
    port = free_port()
    env = dict(os.environ, CFAPI_TOKEN=CF_TOKEN)
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/cfapi/server.py"), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://127.0.0.1:{port}/__control/state")
        yield CloudflareStandIn("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def cf_api(cf_api_server):
    """The stand-in, emptied before the test."""
    cf_api_server.reset()
    return cf_api_server


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


@pytest.fixture
def run_module():
    return run_module_process
