"""The API as an attacker meets it: bad input, secrets in error answers, oversized and chunked bodies, replayed
Idempotency-Keys, callback URLs into the control node's network, the OpenAPI document, and the PATCH route's job.

The app runs in-process (TestClient without lifespan: jobs are queued, never run).
"""
from __future__ import annotations

import socket
import stat

import httpx
import pytest
from fastapi.testclient import TestClient

from api import callbacks
from api.config import Settings, load_settings
from api.db import Job

TOKEN, OTHER = "hardening-token-0123456789abcdef", "other-token-fedcba9876543210"
CLAW = "1a2b3c4d-0000-4000-8000-000000000001"
SECRET = "sk-ant-SECRET-0123456789abcdef"
GOOD_TOKEN = "gw-token-SECRET-0123456789abcdef0123456789"


def make(tmp_path, **overrides):
    from api.app import create_app

    inventory = tmp_path / "hosts.yml"
    inventory.write_text("minis:\n  hosts:\n    mini-01:\n      ansible_host: 127.0.0.1\n    mini-02:\n      ansible_host: 127.0.0.1\n")
    state = tmp_path / "state"
    fields = dict(tokens=[TOKEN, OTHER], database_url=f"sqlite:///{state}/db.sqlite", state_dir=state, run_dir=state / "run",
                  inventory=inventory, health_interval=0, backup_schedule="off")
    fields.update(overrides)
    app = create_app(Settings(**fields))
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return app, client


@pytest.fixture
def api(tmp_path):
    return make(tmp_path)


def jobs(app) -> list:
    with app.state.Session() as s:
        return s.query(Job).all()


# ---- validation: the collection's validators, 422 at once, nothing echoed ------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"claw_id": CLAW, "env": {"PATH": SECRET}}, "env"),
    ({"claw_id": CLAW, "env": {"OPENCLAW_GATEWAY_TOKEN": SECRET}}, "env"),
    ({"claw_id": CLAW, "env": {"A": SECRET + "\nB=x"}}, "env"),
    ({"claw_id": CLAW, "env": {"A": SECRET + "'\"both"}}, "env"),
    ({"claw_id": CLAW, "env": {"A": SECRET * 300}}, "env"),
    ({"claw_id": CLAW, "gateway_token": SECRET + " with spaces and {{ braces }}"}, "gateway_token"),
    ({"claw_id": CLAW, "gateway_token": "short-" + SECRET[:10]}, "gateway_token"),
    ({"claw_id": CLAW.upper()}, "claw_id"),
    ({"claw_id": CLAW, "env": {"A": SECRET}, "unexpected": SECRET}, "unexpected"),
])
def test_bad_input_is_422_naming_the_field_without_echoing_values(api, body, field):
    app, client = api
    answer = client.post("/v1/claws", json=body)
    assert answer.status_code == 422, answer.text
    assert field in str([e["loc"] for e in answer.json()["detail"]])
    assert SECRET not in answer.text and SECRET[:12] not in answer.text
    assert all(set(e) == {"loc", "msg", "type"} for e in answer.json()["detail"])
    assert jobs(app) == []


def test_a_json_syntax_error_does_not_echo_the_body(api):
    _, client = api
    answer = client.post("/v1/claws", content=b'{"claw_id": "' + SECRET.encode() + b'", "env": {', headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and SECRET not in answer.text


def test_jinja_in_a_value_is_accepted_as_data(api):
    app, client = api
    answer = client.post("/v1/claws", json={"claw_id": CLAW, "mini": "mini-01", "env": {"A": "{{ lookup('pipe', 'id') }}"}})
    assert answer.status_code == 202, answer.text
    assert "lookup" not in str(answer.json())


# ---- body limit ------------------------------------------------------------------------------------------------------

def test_declared_oversized_body_is_413(tmp_path):
    app, client = make(tmp_path, max_body_bytes=1000)
    answer = client.post("/v1/claws", json={"claw_id": CLAW, "env": {"A": "x" * 5000}})
    assert answer.status_code == 413 and "x" * 100 not in answer.text
    assert jobs(app) == []


def test_chunked_oversized_body_is_413_and_not_echoed(tmp_path):
    app, client = make(tmp_path, max_body_bytes=1000)

    def chunks():
        yield b'{"claw_id": "' + CLAW.encode() + b'", "env": {"A": "'
        for _ in range(200):
            yield SECRET.encode() * 10
        yield b'"}}'

    answer = client.post("/v1/claws", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert SECRET not in answer.text
    assert jobs(app) == []


# ---- Idempotency-Key: scoped by token, bound to method, path and body -----------------------------------------------

def test_idempotency_key_is_scoped_and_bound_to_the_request(api):
    app, client = api
    body = {"claw_id": CLAW, "mini": "mini-01", "gateway_token": GOOD_TOKEN}
    first = client.post("/v1/claws", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 202
    again = client.post("/v1/claws", json=body, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other_body = client.post("/v1/claws", json={**body, "gateway_token": GOOD_TOKEN[::-1]}, headers={"Idempotency-Key": "k1"})
    assert other_body.status_code == 422 and "Idempotency-Key" in other_body.text and GOOD_TOKEN not in other_body.text
    other_route = client.post(f"/v1/claws/{CLAW}/stop", json={"mini": "mini-01"}, headers={"Idempotency-Key": "k1"})
    assert other_route.status_code == 422
    other_claw = client.delete("/v1/claws/2a2b3c4d-0000-4000-8000-000000000002", params={"mini": "mini-01"}, headers={"Idempotency-Key": "k1"})
    assert other_claw.status_code == 422
    other_token = client.post("/v1/claws", json=body, headers={"Idempotency-Key": "k1", "Authorization": f"Bearer {OTHER}"})
    assert other_token.status_code == 202 and other_token.json()["id"] != first.json()["id"]
    assert len(jobs(app)) == 2


def test_idempotency_store_holds_no_token_or_key_material(api, tmp_path):
    app, client = api
    client.post("/v1/claws", json={"claw_id": CLAW, "mini": "mini-01", "gateway_token": GOOD_TOKEN}, headers={"Idempotency-Key": "k2"})
    data = (tmp_path / "state" / "db.sqlite").read_bytes() + b"".join(p.read_bytes() for p in (tmp_path / "state").glob("db.sqlite-*"))
    assert TOKEN.encode() not in data and GOOD_TOKEN.encode() not in data


# ---- callback_url ----------------------------------------------------------------------------------------------------

def fake_dns(monkeypatch, answers: dict):
    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror("no such host")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("url, answers, reason", [
    ("https://evil.example/hook", {"evil.example": ["93.184.216.34"]}, "not allowed"),
    ("http://hooks.example.com/x", {"hooks.example.com": ["127.0.0.1"]}, "not a public address"),
    ("http://hooks.example.com/x", {"hooks.example.com": ["93.184.216.34", "169.254.169.254"]}, "not a public address"),
    ("http://hooks.example.com/x", {"hooks.example.com": ["10.1.2.3"]}, "not a public address"),
    ("http://hooks.example.com/x", {"hooks.example.com": ["::ffff:192.168.1.1"]}, "not a public address"),
    ("http://hooks.example.com/x", {"hooks.example.com": ["fe80::1"]}, "not a public address"),
    ("http://hooks.example.com/x", {}, "does not resolve"),
    ("http://127.0.0.1:9/x", {"127.0.0.1": ["127.0.0.1"]}, "not allowed"),
    ("http://169.254.169.254/latest/meta-data", {"169.254.169.254": ["169.254.169.254"]}, "not allowed"),
])
def test_callback_url_is_refused(tmp_path, monkeypatch, url, answers, reason):
    app, client = make(tmp_path, callback_hosts=["hooks.example.com"], webhook_secret="s" * 32)
    fake_dns(monkeypatch, answers)
    answer = client.post(f"/v1/claws/{CLAW}/stop", json={"mini": "mini-01", "callback_url": url})
    assert answer.status_code == 422 and reason in answer.text and "callback_url" in answer.text, answer.text
    assert jobs(app) == []


def test_callback_url_allowed_host_with_public_address(tmp_path, monkeypatch):
    app, client = make(tmp_path, callback_hosts=["hooks.example.com"], webhook_secret="s" * 32)
    fake_dns(monkeypatch, {"hooks.example.com": ["93.184.216.34"]})
    answer = client.post(f"/v1/claws/{CLAW}/stop", json={"mini": "mini-01", "callback_url": "https://hooks.example.com/done"})
    assert answer.status_code == 202, answer.text


def test_callbacks_are_refused_when_no_host_is_allowed(api, monkeypatch):
    _, client = api
    fake_dns(monkeypatch, {"hooks.example.com": ["93.184.216.34"]})
    answer = client.delete(f"/v1/claws/{CLAW}", params={"mini": "mini-01", "callback_url": "https://hooks.example.com/x"})
    assert answer.status_code == 422 and "not allowed" in answer.text


def test_delivery_rechecks_and_pins_the_address(monkeypatch):
    fake_dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})  # DNS rebinding: public at request time, loopback now
    with pytest.raises(callbacks.CallbackRefused):
        callbacks.post_checked("https://hooks.example.com/x", b"{}", {})
    sent = {}

    def post(self, url, content=None, headers=None, extensions=None):
        sent.update(url=url, headers=headers, extensions=extensions)
        return httpx.Response(204)

    monkeypatch.setattr(httpx.Client, "post", post)
    fake_dns(monkeypatch, {"hooks.example.com": ["93.184.216.34"]})
    assert callbacks.post_checked("https://hooks.example.com:8443/x?a=1", b"{}", {"X": "1"}).status_code == 204
    assert sent == {"url": "https://93.184.216.34:8443/x?a=1", "headers": {"X": "1", "Host": "hooks.example.com:8443"},
                    "extensions": {"sni_hostname": "hooks.example.com"}}


def test_webhooks_need_a_secret():
    base = {"CLAWFARM_API_TOKENS": TOKEN}
    for extra in ({"CLAWFARM_API_WEBHOOK_URL": "https://hooks.example.com/x"}, {"CLAWFARM_API_CALLBACK_HOSTS": "hooks.example.com"}):
        with pytest.raises(RuntimeError, match="CLAWFARM_API_WEBHOOK_SECRET"):
            load_settings({**base, **extra})
    settings = load_settings({**base, "CLAWFARM_API_CALLBACK_HOSTS": "Hooks.Example.com., b.example", "CLAWFARM_API_WEBHOOK_SECRET": "x" * 32})
    assert settings.callback_hosts == ["b.example", "hooks.example.com"]
    from api.jobs import sign
    with pytest.raises(ValueError):
        sign(b"{}", "")


# ---- OpenAPI and files -----------------------------------------------------------------------------------------------

def test_openapi_and_docs_are_off_by_default(api):
    _, client = api
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(path).status_code == 404
        assert client.get(path, headers={"Authorization": ""}).status_code == 404


def test_openapi_behind_the_token(tmp_path):
    _, client = make(tmp_path, openapi="token")
    assert client.get("/openapi.json", headers={"Authorization": ""}).status_code == 401
    assert "/v1/claws/{claw_id}" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 404


def test_state_is_private(api, tmp_path):
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state" / "db.sqlite").stat().st_mode) == 0o600


# ---- provision without env, PATCH ------------------------------------------------------------------------------------

def extra_vars(app, job_id):
    engine = app.state.engine
    with app.state.Session() as s:
        job = s.get(Job, job_id)
    return engine._extra_vars(job, engine.secrets.get(job_id, {})), job


def test_provision_without_env_sends_no_claw_env(api):
    app, client = api
    job = client.post("/v1/claws", json={"claw_id": CLAW, "mini": "mini-01"}).json()
    extra, record = extra_vars(app, job["id"])
    assert "claw_env" not in extra and "gateway_token" not in extra and "env_keys" not in record.params
    job = client.post("/v1/claws", json={"claw_id": CLAW, "mini": "mini-01", "env": {}}).json()
    assert "claw_env" not in extra_vars(app, job["id"])[0]  # {} keeps, as an empty claw_env does in the role


def test_patch_queues_configure_with_only_the_given_vars(api, monkeypatch):
    app, client = api
    monkeypatch.setattr("api.services.playbook_available", lambda kind: True)
    from api.db import Claw
    with app.state.Session() as s:
        s.add(Claw(claw_id=CLAW, mini="mini-02", record={"mini": "mini-02"}))
        s.commit()
    answer = client.patch(f"/v1/claws/{CLAW}", json={"env_set": {"ANTHROPIC_API_KEY": SECRET}, "env_unset": ["OLD_KEY"]})
    assert answer.status_code == 202, answer.text
    assert SECRET not in answer.text
    extra, job = extra_vars(app, answer.json()["id"])
    assert job.kind == "configure" and job.mini == "mini-02"
    assert extra == {"claw_id": CLAW, "mini": "mini-02", "claw_env_set": {"ANTHROPIC_API_KEY": SECRET}, "claw_env_unset": ["OLD_KEY"]}
    assert SECRET not in str(job.to_dict())
    answer = client.patch(f"/v1/claws/{CLAW}", json={"gateway_token": GOOD_TOKEN})
    extra, job = extra_vars(app, answer.json()["id"])
    assert extra == {"claw_id": CLAW, "mini": "mini-02", "gateway_token": GOOD_TOKEN}
    assert GOOD_TOKEN not in str(job.to_dict())


@pytest.mark.parametrize("body, text", [
    ({}, "at least one"),
    ({"env_set": {}, "env_unset": []}, "at least one"),
    ({"env_set": {"A": "1"}, "env_unset": ["A"]}, "both name A"),
    ({"env_unset": ["HOME"]}, "cannot be removed"),
    ({"env_set": {"PATH": SECRET}}, "env_set"),
    ({"env_set": {"A": SECRET + "\n"}}, "env_set"),
    ({"gateway_token": "x" * 31}, "gateway_token"),
    ({"env": {"A": "1"}}, "env"),
])
def test_patch_bad_input(api, monkeypatch, body, text):
    app, client = api
    monkeypatch.setattr("api.services.playbook_available", lambda kind: True)
    answer = client.patch(f"/v1/claws/{CLAW}", json=body)
    assert answer.status_code == 422 and text in answer.text and SECRET not in answer.text, answer.text
    assert jobs(app) == []


def test_patch_without_configure_playbook_is_409(api, monkeypatch):
    _, client = api
    monkeypatch.setattr("api.services.playbook_available", lambda kind: False)
    assert client.patch(f"/v1/claws/{CLAW}", json={"env_unset": ["A"]}).status_code == 409


def test_a_retry_gets_its_job_even_when_it_took_the_last_slot(tmp_path):
    _, client = make(tmp_path)
    # The inventory is read on first use: one Mini with one slot.
    (tmp_path / "hosts.yml").write_text("minis:\n  hosts:\n    mini-01:\n      claw_max_per_mini: 1\n")
    body = {"claw_id": CLAW}
    first = client.post("/v1/claws", json=body, headers={"Idempotency-Key": "last-slot"})
    assert first.status_code == 202, first.text
    assert client.post("/v1/claws", json={"claw_id": CLAW[:-1] + "2"}).status_code == 409
    again = client.post("/v1/claws", json=body, headers={"Idempotency-Key": "last-slot"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_secrets_are_read_from_the_process_environment_then_removed(monkeypatch):
    import os

    monkeypatch.setenv("CLAWFARM_API_TOKENS", TOKEN)
    monkeypatch.setenv("CLAWFARM_API_WEBHOOK_URL", "https://hooks.example.com/x")
    monkeypatch.setenv("CLAWFARM_API_WEBHOOK_SECRET", "w" * 40)
    settings = load_settings()
    assert settings.webhook_secret == "w" * 40 and settings.tokens == [TOKEN]
    assert "CLAWFARM_API_WEBHOOK_SECRET" not in os.environ and "CLAWFARM_API_TOKENS" not in os.environ
