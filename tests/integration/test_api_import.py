"""POST /v1/claws/{claw_id}/import (issue 17): a job of kind import queued with the right vars (src as data Ansible
never renders, the token and env as secrets, a presigned URL's query kept out of the job's params), placed like a
provision; a bad src is a 422 before any job exists.

The app runs in-process (TestClient without lifespan: jobs are queued, never run) on SQLite.
"""
from __future__ import annotations

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.config import Settings
from api.db import Job
from api.jobs import unsafe_yaml

TOKEN = "import-token-0123456789abcdef012345"
CLAW = "3a2b3c4d-0000-4000-8000-000000000001"
GATEWAY_TOKEN = "gw-import-0123456789abcdef0123456789abcdef"


def make_api(tmp_path, inventory_text: str):
    """The service on SQLite in ``tmp_path`` with the inventory ``inventory_text``: ``(app, client)``."""
    from api.app import create_app

    inventory = tmp_path / "hosts.yml"
    inventory.write_text(inventory_text)
    state = tmp_path / "state"
    app = create_app(Settings(tokens=[TOKEN], database_url=f"sqlite:///{tmp_path}/jobs.db", state_dir=state,
                              run_dir=state / "run", inventory=inventory, health_interval=0, backup_schedule="off"))
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return app, client


@pytest.fixture
def api(tmp_path):
    return make_api(tmp_path, "minis:\n  hosts:\n    mini-01: {}\n    mini-02:\n      mini_status: draining\n")


def jobs(app) -> int:
    with app.state.Session() as s:
        return s.scalar(select(func.count()).select_from(Job))


def test_an_import_is_queued_with_its_vars(api):
    app, client = api
    src = "s3://claw-exports/containers/{{ lookup('pipe', 'id') }}.tar.zst"
    answer = client.post(f"/v1/claws/{CLAW}/import", json={"src": src, "gateway_token": GATEWAY_TOKEN,
                                                            "env": {"ANTHROPIC_API_KEY": "sk-secret-value-1234"}})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["kind"] == "import" and job["mini"] == "mini-01" and job["claw_id"] == CLAW
    assert job["params"]["src"] == src and job["params"]["env_keys"] == ["ANTHROPIC_API_KEY"]
    assert GATEWAY_TOKEN not in answer.text and "sk-secret-value-1234" not in answer.text
    engine = app.state.engine
    with app.state.Session() as s:
        stored = s.get(Job, job["id"])
        extra = engine._extra_vars(stored, engine.secrets[job["id"]])
    assert extra["src"] == src and extra["claw_id"] == CLAW and extra["mini"] == "mini-01"
    assert extra["gateway_token"] == GATEWAY_TOKEN and extra["claw_env"] == {"ANTHROPIC_API_KEY": "sk-secret-value-1234"}
    text = unsafe_yaml(extra)
    assert "!unsafe \"s3://claw-exports/containers/{{ lookup('pipe', 'id') }}.tar.zst\"" in text
    assert yaml.safe_load(text.replace("!unsafe ", ""))["src"] == src
    assert engine._extra_vars(stored, {}).get("src") == src  # src is not a secret: it survives without the secrets


def test_a_presigned_urls_query_stays_out_of_the_job(api, monkeypatch):
    from api.routes import imports

    monkeypatch.setattr(imports, "resolve_global", lambda host, port: ["93.184.215.14"])
    app, client = api
    src = "https://exports.example.com/claw.tar.gz?X-Amz-Signature=abcdef0123456789abcdef"
    answer = client.post(f"/v1/claws/{CLAW}/import", json={"src": src})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["params"]["src"] == "https://exports.example.com/claw.tar.gz" and "Signature" not in answer.text
    engine = app.state.engine
    with app.state.Session() as s:
        extra = engine._extra_vars(s.get(Job, job["id"]), engine.secrets[job["id"]])
    assert extra["src"] == src


@pytest.mark.parametrize("src", [
    "/srv/exports/claw.tar.gz",  # a control-node path: operators only
    "relative.tar",
    "http://exports.example.com/claw.tar",
    "file:///etc/passwd",
    "s3://Bad_Bucket/x.tar",
    "s3://claw-exports/../x.tar",
    "https://user:pw@exports.example.com/x.tar",
    "https://127.0.0.1/x.tar",  # not a public address
    "https://localhost/x.tar",
    "",
])
def test_a_bad_src_is_refused_before_any_job(api, src):
    app, client = api
    answer = client.post(f"/v1/claws/{CLAW}/import", json={"src": src})
    assert answer.status_code == 422, answer.text
    assert any(e["loc"][-1] == "src" for e in answer.json()["detail"]), answer.text
    assert jobs(app) == 0


@pytest.mark.parametrize("body", [
    {},
    {"src": "s3://claw-exports/x.tar", "gateway_token": "short"},
    {"src": "s3://claw-exports/x.tar", "env": {"HOME": "/tmp"}},
    {"src": "s3://claw-exports/x.tar", "mini": "mini-99"},
    {"src": "s3://claw-exports/x.tar", "extra": 1},
])
def test_other_bad_requests_make_no_job(api, body):
    app, client = api
    answer = client.post(f"/v1/claws/{CLAW}/import", json=body)
    assert answer.status_code == 422, answer.text
    assert jobs(app) == 0


def test_an_import_is_placed_like_a_provision(api):
    app, client = api
    refused = client.post(f"/v1/claws/{CLAW}/import", json={"src": "s3://claw-exports/x.tar", "mini": "mini-02"})
    assert refused.status_code == 409 and "draining" in refused.text and jobs(app) == 0
    headers = {"Idempotency-Key": "import-1"}
    first = client.post(f"/v1/claws/{CLAW}/import", json={"src": "s3://claw-exports/x.tar"}, headers=headers)
    again = client.post(f"/v1/claws/{CLAW}/import", json={"src": "s3://claw-exports/x.tar"}, headers=headers)
    assert first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert jobs(app) == 1
    assert client.post(f"/v1/claws/{CLAW}/import", json={"src": "s3://claw-exports/x.tar"},
                       headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_queued_import_counts_in_placement_and_holds_its_claw(tmp_path):
    """A queued import is a claw on its Mini: the next new claw goes elsewhere, and a provision of the same claw goes
    to the import's Mini (never a second copy of the claw on another Mini)."""
    app, client = make_api(tmp_path, "minis:\n  hosts:\n    mini-01: {}\n    mini-02: {}\n")
    imported = client.post(f"/v1/claws/{CLAW}/import", json={"src": "s3://claw-exports/x.tar"})
    assert imported.status_code == 202, imported.text
    home = imported.json()["mini"]
    other = "3a2b3c4d-0000-4000-8000-000000000002"
    placed = client.post("/v1/claws", json={"claw_id": other})
    assert placed.status_code == 202, placed.text
    assert placed.json()["mini"] != home, "the queued import's claw counts on its Mini"
    again = client.post("/v1/claws", json={"claw_id": CLAW})
    assert again.status_code == 202 and again.json()["mini"] == home, again.text
