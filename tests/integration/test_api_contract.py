"""The API against its own OpenAPI: schemathesis generates requests for every route; no answer may be a 5xx.

The service runs as a separate uvicorn process on loopback with an inventory whose only Mini is unreachable
(127.0.0.1 port 9, nothing listens), so the jobs the generated POSTs queue fail fast without touching anything.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from clawfarm_testlib import REPO, free_port

TOKEN = "contract-test-token-1f2e3d4c5b6a"


@pytest.fixture(scope="module")
def contract_service(tmp_path_factory):
    work = tmp_path_factory.mktemp("api-contract")
    inventory = work / "hosts.yml"
    inventory.write_text("minis:\n  hosts:\n    dummy:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n"
                         "      ansible_connection: ssh\n      ansible_ssh_common_args: -o ConnectTimeout=2\n")
    port = free_port()
    env = dict(os.environ, CLAWFARM_API_TOKENS=TOKEN, CLAWFARM_API_STATE_DIR=str(work / "state"), CLAWFARM_API_INVENTORY=str(inventory),
               CLAWFARM_API_WORKERS="1", CLAWFARM_API_HEALTH_INTERVAL="0", CLAWFARM_API_BACKUP_SCHEDULE="off",
               CLAWFARM_API_OPENAPI="token")
    log = open(work / "service.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env,
                            stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            httpx.get(url + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url, work
    proc.terminate()
    proc.wait(60)


def test_openapi_needs_the_token(contract_service):
    url, _ = contract_service
    assert httpx.get(f"{url}/openapi.json", timeout=10).status_code == 401
    assert httpx.get(f"{url}/docs", timeout=10).status_code == 404
    assert "/v1/claws/{claw_id}" in httpx.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()["paths"]


def test_schemathesis_finds_no_server_error(contract_service):
    url, work = contract_service
    result = subprocess.run(
        [str(REPO / ".venv/bin/schemathesis") if (REPO / ".venv/bin/schemathesis").exists() else "schemathesis", "run",
         f"{url}/openapi.json", "-H", f"Authorization: Bearer {TOKEN}", "--checks", "not_a_server_error",
         "--max-examples", "25", "--request-timeout", "90", "--generation-deterministic"],
        capture_output=True, text=True, timeout=900, cwd=work)
    print(result.stdout[-2500:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-3000:]
