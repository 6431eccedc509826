"""The API service end to end: uvicorn as a separate process on loopback, driven over HTTP with httpx; its jobs run
the real playbooks through ansible-runner against the sandbox Mini."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from claw_invariants import Claw, ClawInvariants, seed
from clawfarm_testlib import free_port
from conftest import REPO, wait_for

TOKEN = "api-test-token-6b1f0e2d9c8a7b6c5d4e"
CLAW_ID = "a7c3e9f1-2b4d-4e6f-8a0b-1c2d3e4f5a6b"
RETRY_CLAW = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
SECRET_TOKEN = "gw-token-SECRET-7c1e5a9b3d2f4e6a8b0c1d2e3f4a5b6c"
SECRET_KEY = "sk-ant-SECRET-ffee99887766554433221100"
WEBHOOK_SECRET = "webhook-secret-0a1b2c3d4e5f60718293a4b5c6d7e8f9"


class Hook:
    """The backend's webhook receiver (the operator's CLAWFARM_API_WEBHOOK_URL): the first delivery of each job
    gets a 500, so every job's webhook is retried once."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                job = self.headers.get("X-Clawfarm-Job")
                first = not any(j == job for j, _, _ in received)
                received.append((job, self.headers["X-Clawfarm-Signature"], body))
                self.send_response(500 if first else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Service:
    def __init__(self, workdir: Path, inventory: Path, farm_vars: Path | None, webhook_url: str | None = None):
        self.workdir, self.port = workdir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "service.log"
        self.env = dict(os.environ, CLAWFARM_API_TOKENS=TOKEN, CLAWFARM_API_STATE_DIR=str(workdir / "state"),
                        CLAWFARM_API_INVENTORY=str(inventory), CLAWFARM_API_WORKERS="2",
                        CLAWFARM_API_HEALTH_INTERVAL="0", CLAWFARM_API_BACKUP_SCHEDULE="off", CLAWFARM_API_OPENAPI="token")
        if webhook_url:  # webhooks need their secret (the service refuses to start without it)
            self.env.update(CLAWFARM_API_WEBHOOK_URL=webhook_url, CLAWFARM_API_WEBHOOK_SECRET=WEBHOOK_SECRET)
        if farm_vars:
            self.env["CLAWFARM_API_FARM_VARS"] = str(farm_vars)
        self.proc = None
        self.answers: list[str] = []

    def start(self) -> None:
        handle = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(self.port)], cwd=REPO, env=self.env,
                                     stdout=handle, stderr=handle)
        assert wait_for(lambda: self._up(), 30, 0.2), self.log.read_text()[-3000:]

    def _up(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)

    def call(self, method: str, path: str, auth: bool = True, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if auth:
            headers["Authorization"] = f"Bearer {TOKEN}"
        response = httpx.request(method, self.url + path, headers=headers, timeout=180, **kwargs)
        self.answers.append(response.text)
        return response

    def wait_job(self, job_id: str, timeout: float = 600) -> dict:
        def done():
            job = self.call("GET", f"/v1/jobs/{job_id}").json()
            return job if job["state"] in ("succeeded", "failed", "canceled", "interrupted") else None
        job = wait_for(done, timeout, 1)
        assert job, f"job {job_id} did not finish"
        return job


@pytest.fixture(scope="module")
def hook():
    receiver = Hook()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request):
    """The job store the suite runs on: SQLite (the default, no URL) and a throwaway PostgreSQL cluster
    (tests/integration/pgcluster.py): the same API e2e suite passes on both."""
    if request.param == "sqlite":
        yield None
        return
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from pgcluster import cluster

    with cluster() as url:
        yield url


@pytest.fixture(scope="module")
def service(mini, hook, store, tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("api"), mini.inventory, mini.farm_vars, hook.url)
    if store:
        svc.env["CLAWFARM_API_DATABASE_URL"] = store
    svc.start()
    yield svc
    svc.stop()


def test_healthz_needs_no_token_and_everything_else_does(service):
    assert service.call("GET", "/healthz", auth=False).status_code == 200
    assert service.call("GET", "/openapi.json", auth=False).status_code == 401
    assert service.call("GET", "/docs", auth=False).status_code == 404
    paths = service.call("GET", "/openapi.json").json()["paths"]
    checked = 0
    for path, methods in paths.items():
        if path == "/healthz":
            continue
        concrete = path.replace("{claw_id}", CLAW_ID).replace("{job_id}", CLAW_ID).replace("{name}", "e2e1")
        for method in methods:
            for headers in ({}, {"Authorization": "Bearer wrong-token"}):
                response = service.call(method.upper(), concrete, auth=False, headers=headers)
                assert response.status_code == 401, (method, path, response.status_code)
                checked += 1
    assert checked >= 30


@pytest.mark.parametrize("body, field, status", [
    ({"claw_id": "not-a-uuid"}, "claw_id", 422),
    ({"claw_id": CLAW_ID, "mini": "no-such-mini"}, "mini", 422),
    ({"claw_id": CLAW_ID, "env": {"BAD-KEY": "x"}}, "env", 422),
    ({"claw_id": CLAW_ID, "env": {"PATH": SECRET_KEY}}, "env", 422),
    ({"claw_id": CLAW_ID, "env": {"A": SECRET_KEY + "\nB=1"}}, "env", 422),
    ({"claw_id": CLAW_ID, "gateway_token": "short"}, "gateway_token", 422),
    ({"claw_id": CLAW_ID, "callback_url": "http://169.254.169.254/latest"}, "callback_url", 422),
    ({"claw_id": CLAW_ID, "env": {"A": "x" * 70000}}, "body", 413),
])
def test_bad_input_is_rejected_naming_the_field_and_starts_no_job(service, body, field, status):
    before = service.call("GET", "/metrics").text
    response = service.call("POST", "/v1/claws", json=body)
    assert response.status_code == status, response.text
    assert field in response.text and SECRET_KEY not in response.text
    assert service.call("GET", "/metrics").text.count('state="queued"') == before.count('state="queued"')


def test_provision_status_deprovision_with_live_events(service, mini, farm):
    body = {"claw_id": CLAW_ID, "gateway_token": SECRET_TOKEN, "env": {"ANTHROPIC_API_KEY": SECRET_KEY, "PRIMARY_MODEL_ID": "claude-x",
                                                                     "ANTHROPIC_BASE_URL": "https://llm-proxy.example.com/v1"}}
    first = service.call("POST", "/v1/claws", json=body, headers={"Idempotency-Key": "prov-1"})
    assert first.status_code == 202, first.text
    job = first.json()
    again = service.call("POST", "/v1/claws", json=body, headers={"Idempotency-Key": "prov-1"})
    assert again.json()["id"] == job["id"], "the same Idempotency-Key must give the same job"

    streamed, stamps = [], []

    def read_stream():
        with httpx.stream("GET", f"{service.url}/v1/jobs/{job['id']}/events", timeout=600,
                          headers={"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}) as response:
            for line in response.iter_lines():
                service.answers.append(line)
                if line.startswith("event: "):
                    streamed.append(line[7:])
                    stamps.append(time.monotonic())

    reader = threading.Thread(target=read_stream)
    reader.start()
    finished = service.wait_job(job["id"])
    finished_at = time.monotonic()
    reader.join(60)
    assert finished["state"] == "succeeded", finished["error"]
    claw = finished["result"]["claw"]
    assert claw["mini"] == mini.name and claw["mac_username"] == "claw-a7c3e9f1" and claw["local_port"] == 8100
    assert claw["label"] == f"com.mirascope.claw.{CLAW_ID}" and claw["tunnel_hostname"].startswith(f"claw-{CLAW_ID}.")
    assert "playbook_on_task_start" in streamed and streamed[-1] == "end"
    assert stamps[0] < finished_at - 5, "events must arrive while the playbook runs, not after it"

    status = service.call("GET", f"/v1/claws/{CLAW_ID}", params={"refresh": "true"}).json()
    assert status["present"] and status["record"]["health"] == "ok" and status["age_seconds"] < 60

    events = service.call("GET", f"/v1/jobs/{job['id']}/events").json()
    assert any(e.get("task") == "Wait until the gateway answers its health call with the claw's token" for e in events)
    seed(mini, Claw(CLAW_ID))  # a realistic claw: three env keys, the gateway's state, months of data (issue 14)

    # Request values are data: a Jinja value reaches .env byte for byte and runs nothing (issue 12).
    # PATCH changes single settings in place; a re-provision without env keeps them (issue 14).
    jinja = "{{ lookup('ansible.builtin.pipe', 'touch /tmp/api-pwned') }}"
    patched = service.call("PATCH", f"/v1/claws/{CLAW_ID}", json={"env_set": {"JINJA_VALUE": jinja}, "env_unset": ["PRIMARY_MODEL_ID"]})
    assert patched.status_code == 202, patched.text
    assert service.wait_job(patched.json()["id"])["state"] == "succeeded"
    before = ClawInvariants.capture(mini, Claw(CLAW_ID), cf=farm["cf"])
    again = service.call("POST", "/v1/claws", json={"claw_id": CLAW_ID})
    assert service.wait_job(again.json()["id"])["state"] == "succeeded"
    ClawInvariants.assert_same(before, ClawInvariants.capture(mini, Claw(CLAW_ID), cf=farm["cf"]), operation="a re-provision through the API")
    dotenv = mini.sh("cat /Users/claw-a7c3e9f1/.openclaw/.env").stdout
    assert f"ANTHROPIC_API_KEY={SECRET_KEY}" in dotenv and f"CLAW_GATEWAY_TOKEN={SECRET_TOKEN}" in dotenv
    assert f'JINJA_VALUE="{jinja}"' in dotenv.splitlines() and "PRIMARY_MODEL_ID" not in dotenv
    assert not Path("/tmp/api-pwned").exists() and mini.sh("test -e /tmp/api-pwned", check=False).returncode != 0

    gone = service.call("DELETE", f"/v1/claws/{CLAW_ID}", headers={"Idempotency-Key": "deprov-1"})
    assert gone.status_code == 202
    assert service.wait_job(gone.json()["id"])["state"] == "succeeded"
    assert mini.sh("dscl . -read /Users/claw-a7c3e9f1", check=False).returncode == 56
    assert service.call("GET", f"/v1/claws/{CLAW_ID}").json()["present"] is False
    metrics = service.call("GET", "/metrics").text
    assert 'clawfarm_jobs{kind="provision",state="succeeded"}' in metrics and "clawfarm_job_duration_seconds_bucket" in metrics


def test_secrets_are_nowhere(service):
    """Search the database file, the run directories, the service log and every API answer for the secrets."""
    places = []
    state = service.workdir / "state"
    for path in state.rglob("*"):
        if path.is_file():
            places.append((str(path), path.read_bytes()))
    places.append((str(service.log), service.log.read_bytes()))
    places += [(f"answer {i}", text.encode()) for i, text in enumerate(service.answers)]
    run_dir = state / "run"
    assert not run_dir.exists() or not any(run_dir.iterdir()), "run directories must be gone when jobs end"
    for secret in (SECRET_TOKEN, SECRET_KEY, TOKEN):
        hits = [name for name, data in places if secret.encode() in data and not (secret == TOKEN and name.startswith("answer"))]
        assert hits == [], f"{secret[:12]}... found in {hits}"


def test_a_job_running_when_the_service_stops_is_interrupted_and_can_be_retried(service, mini):
    job = service.call("POST", "/v1/claws", json={"claw_id": RETRY_CLAW, "gateway_token": SECRET_TOKEN}).json()
    assert wait_for(lambda: service.call("GET", f"/v1/jobs/{job['id']}").json()["state"] == "running", 60, 0.5)
    assert wait_for(lambda: len(service.call("GET", f"/v1/jobs/{job['id']}/events").json()) > 5, 120, 0.5)
    service.stop(signal.SIGTERM)
    service.start()
    after = service.call("GET", f"/v1/jobs/{job['id']}").json()
    assert after["state"] == "interrupted" and "retry" in after["error"]
    retry = service.call("POST", "/v1/claws", json={"claw_id": RETRY_CLAW, "gateway_token": SECRET_TOKEN}).json()
    assert service.wait_job(retry["id"])["state"] == "succeeded"
    cleanup = service.call("DELETE", f"/v1/claws/{RETRY_CLAW}", params={"archive": "false"}).json()
    assert service.wait_job(cleanup["id"])["state"] == "succeeded"


def test_webhook_is_signed_and_cancel_of_an_ended_job_is_409(service, hook, mini):
    import hashlib
    import hmac

    refused = service.call("POST", f"/v1/claws/{CLAW_ID}/stop", json={"mini": mini.name, "callback_url": hook.url})
    assert refused.status_code == 422 and "callback_url" in refused.text, "a request may not send webhooks to loopback"
    job = service.call("POST", f"/v1/claws/{CLAW_ID}/stop", json={"mini": mini.name}).json()
    finished = service.wait_job(job["id"])
    mine = lambda: [(s, b) for j, s, b in hook.received if j == job["id"]]  # noqa: E731
    assert wait_for(lambda: len(mine()) >= 2, 30, 0.5), hook.received
    signature, body = mine()[-1]
    assert signature == "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert json.loads(body)["job"]["id"] == job["id"] and json.loads(body)["job"]["state"] == finished["state"]
    assert service.call("GET", f"/v1/jobs/{job['id']}").json()["webhook_status"] == "delivered (attempt 2)"
    assert service.call("POST", f"/v1/jobs/{job['id']}/cancel").status_code == 409
