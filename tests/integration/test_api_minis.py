"""Minis as data: ``POST /v1/minis`` (a record checked by the collection's ``module_utils/_mini.py``, then a
``bootstrap`` job limited to the Mini), ``DELETE`` only when empty, the registered Mini in every playbook's inventory
(``ansible-inventory`` over the job's inventory sources), and placement counting the claws a Mini's own claims show
(its newest health sample), not only the claws the service created.

The app runs in-process (TestClient without lifespan: jobs are queued, never run), on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest
from clawfarm_testlib import REPO
from fastapi.testclient import TestClient
from pgcluster import postgres_url, store_url  # noqa: F401 (postgres_url: a fixture store_url uses)
from sqlalchemy import select

from api.config import Settings
from api.db import Claw, Job

TOKEN = "minis-token-0123456789abcdef01234"
TUNNEL = "0f0e0d0c-0000-4000-8000-00000000abcd"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    return store_url(request, tmp_path, prefix="m")


@pytest.fixture
def api(tmp_path, store):
    from api.app import create_app

    inventory = tmp_path / "hosts.yml"
    inventory.write_text("minis:\n  hosts:\n    mini-01: {}\n    mini-02: {}\n")
    state = tmp_path / "state"
    app = create_app(Settings(tokens=[TOKEN], database_url=store, state_dir=state, run_dir=state / "run",
                              inventory=inventory, health_interval=0, backup_schedule="off"))
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return app, client


def hostvars(app, tmp_path) -> dict:
    sources = app.state.service.inventory.override_sources(tmp_path / f"job-{time.monotonic_ns()}" / "mini-settings")
    listed = subprocess.run([str(REPO / ".venv/bin/ansible-inventory"), *[a for s in sources for a in ("-i", s)], "--list"],
                            capture_output=True, text=True, cwd=REPO, check=True)
    data = json.loads(listed.stdout)
    return {name: data["_meta"]["hostvars"].get(name, {}) for name in data["minis"]["hosts"]}


def test_register_a_mini_then_bootstrap_it(api, tmp_path):
    app, client = api
    body = {"name": "mini-10", "address": "Mini-10.Tailnet.ts.net", "tunnel_id": TUNNEL.upper(), "max_claws": 8, "base_port": 9000,
            "timezone": "Europe/Berlin"}
    answer = client.post("/v1/minis", json=body)
    assert answer.status_code == 201, answer.text
    registered = answer.json()
    assert registered["mini"] == {**registered["mini"], "name": "mini-10", "source": "api", "address": "mini-10.tailnet.ts.net",
                                  "tunnel_id": TUNNEL, "max_claws": 8, "base_port": 9000, "timezone": "Europe/Berlin", "status": "active",
                                  "claws": 0}
    assert registered["job"]["kind"] == "bootstrap" and registered["job"]["mini"] == "mini-10" and registered["job"]["state"] == "queued"
    listed = {m["name"]: m for m in client.get("/v1/minis").json()}
    assert listed["mini-10"]["source"] == "api" and listed["mini-01"]["source"] == "inventory"
    # The same record again: 200, the same job, nothing queued; other values or a name of the file: 409.
    again = client.post("/v1/minis", json=body)
    assert again.status_code == 200 and again.json()["job"]["id"] == registered["job"]["id"]
    assert client.post("/v1/minis", json={**body, "max_claws": 9}).status_code == 409
    assert client.post("/v1/minis", json={"name": "mini-01", "address": "10.0.0.1"}).status_code == 409
    with app.state.Session() as s:
        assert s.query(Job).count() == 1
    # The playbooks see it: the job's inventory sources give its host vars (the API's PATCH over them).
    assert client.patch("/v1/minis/mini-10", json={"status": "draining"}).json()["status"] == "draining"
    hv = hostvars(app, tmp_path)["mini-10"]
    assert {k: hv[k] for k in ("ansible_host", "cf_tunnel_id", "claw_max_per_mini", "claw_base_port", "mini_timezone", "mini_status")} == {
        "ansible_host": "mini-10.tailnet.ts.net", "cf_tunnel_id": TUNNEL, "claw_max_per_mini": 8, "claw_base_port": 9000,
        "mini_timezone": "Europe/Berlin", "mini_status": "draining"}
    # A draining Mini named in a request is 409; placement passes it by.
    new = "6a2b3c4d-0000-4000-8000-000000000001"
    refused = client.post("/v1/claws", json={"claw_id": new, "mini": "mini-10"})
    assert refused.status_code == 409 and "draining" in refused.text


@pytest.mark.parametrize("bad", [
    {"address": "-oProxyCommand=touch /tmp/x"}, {"address": "{{ lookup('pipe', 'id') }}"}, {"address": "a b"},
    {"tunnel_id": "not-a-uuid"}, {"timezone": "Mars/Olympus"}, {"timezone": "../../etc/passwd"}, {"status": "gone"},
    {"max_claws": 1001}, {"base_port": 80}, {"base_port": 65000, "max_claws": 1000}, {"name": "-x"}, {"extra": 1},
])
def test_a_bad_mini_record_is_422(api, bad):
    app, client = api
    answer = client.post("/v1/minis", json={"name": "mini-11", "address": "10.1.2.3", **bad})
    assert answer.status_code == 422, (bad, answer.text)
    with app.state.Session() as s:
        assert s.query(Job).count() == 0
    assert "mini-11" not in {m["name"] for m in client.get("/v1/minis").json()}


def test_delete_only_an_empty_registered_mini(api, tmp_path):
    from api.monitor import Sample

    app, client = api
    assert client.post("/v1/minis", json={"name": "mini-12", "address": "10.1.2.12", "bootstrap": False}).status_code == 201
    assert client.delete("/v1/minis/mini-01").status_code == 409  # the inventory file's
    assert client.delete("/v1/minis/mini-99").status_code == 404
    job = client.post("/v1/claws", json={"claw_id": "7a2b3c4d-0000-4000-8000-000000000001", "mini": "mini-12"}).json()
    busy = client.delete("/v1/minis/mini-12")
    assert busy.status_code == 409 and "queued or running" in busy.text
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)
    # A claim of its newest health sample (a claw the service did not create) keeps it too.
    with app.state.Session() as s:
        s.add_all([Sample(mini="mini-12", claw_id="", sampled_at=100.0, data={}),
                   Sample(mini="mini-12", claw_id="8a2b3c4d-0000-4000-8000-000000000001", sampled_at=100.0, data={})])
        s.commit()
    claimed = client.delete("/v1/minis/mini-12")
    assert claimed.status_code == 409 and "not empty" in claimed.text
    with app.state.Session() as s:  # the next sample shows no claim: empty
        s.merge(Sample(mini="mini-12", claw_id="", sampled_at=200.0, data={}))
        s.commit()
    assert client.delete("/v1/minis/mini-12").status_code == 204
    assert "mini-12" not in {m["name"] for m in client.get("/v1/minis").json()}
    assert client.get("/v1/minis/mini-12").status_code == 404
    assert "mini-12" not in hostvars(app, tmp_path)


def test_placement_counts_the_claws_a_minis_claims_show(api):
    from api.monitor import Sample

    app, client = api
    app.state.service.set_mini("mini-01", max_claws=3)
    app.state.service.set_mini("mini-02", max_claws=3)
    with app.state.Session() as s:  # mini-01 holds two claws the service never created; mini-02 one it knows
        s.add_all([Sample(mini="mini-01", claw_id="", sampled_at=50.0, data={}),
                   *[Sample(mini="mini-01", claw_id=f"9a2b3c4d-0000-4000-8000-00000000000{i}", sampled_at=50.0, data={}) for i in (1, 2)],
                   Claw(claw_id="9a2b3c4d-0000-4000-8000-000000000003", mini="mini-02", present=1, record={})])
        s.commit()
    placed = [client.post("/v1/claws", json={"claw_id": f"aa2b3c4d-0000-4000-8000-00000000000{i}"}).json()["mini"] for i in range(3)]
    assert placed == ["mini-02", "mini-01", "mini-02"]  # 2+0 vs 1 -> mini-02 (2), then 2 vs 2 -> mini-01 (3 full), then mini-02
    assert client.post("/v1/claws", json={"claw_id": "aa2b3c4d-0000-4000-8000-000000000009"}).status_code == 409
    # A claw that exists, asked for again, goes to its Mini and takes no new slot.
    again = client.post("/v1/claws", json={"claw_id": "9a2b3c4d-0000-4000-8000-000000000003"})
    assert again.status_code == 202 and again.json()["mini"] == "mini-02"
    with app.state.Session() as s:
        assert [j.mini for j in s.scalars(select(Job).order_by(Job.created_at))] == ["mini-02", "mini-01", "mini-02", "mini-02"]


def test_the_inventory_plugin_sees_what_the_api_sees(api, tmp_path):
    """``mirascope.clawfarm.farm`` over the running API: the registered Mini with its host vars, the file's Minis
    with the API's status and capacity; a bad token is an error that does not show the token."""
    import os
    import threading

    import uvicorn
    from clawfarm_testlib import free_port, wait_http

    app, client = api
    assert client.post("/v1/minis", json={"name": "mini-20", "address": "10.9.8.7", "tunnel_id": TUNNEL, "max_claws": 4,
                                          "status": "maintenance", "bootstrap": False}).status_code == 201
    client.patch("/v1/minis/mini-02", json={"status": "draining", "max_claws": 5})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        config = tmp_path / "farm.yml"
        config.write_text(f"plugin: mirascope.clawfarm.farm\napi_url: http://127.0.0.1:{port}\n")
        file_inventory = app.state.settings.inventory

        def listed(token, *sources):
            env = {**os.environ, "CLAWFARM_API_TOKEN": token, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
            return subprocess.run([str(REPO / ".venv/bin/ansible-inventory"), *[a for s in sources for a in ("-i", str(s))], "--list"],
                                  capture_output=True, text=True, cwd=REPO, env=env)

        done = listed(TOKEN, file_inventory, config)
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        # Strings from an inventory plugin are data Ansible never renders (shown as {"__ansible_unsafe": ...}).
        hv = {name: {k: v["__ansible_unsafe"] if isinstance(v, dict) and "__ansible_unsafe" in v else v for k, v in hvs.items()}
              for name, hvs in data["_meta"]["hostvars"].items()}
        assert sorted(data["minis"]["hosts"]) == ["mini-01", "mini-02", "mini-20"]
        assert {k: hv["mini-20"][k] for k in ("ansible_host", "cf_tunnel_id", "claw_max_per_mini", "claw_base_port", "mini_status")} == {
            "ansible_host": "10.9.8.7", "cf_tunnel_id": TUNNEL, "claw_max_per_mini": 4, "claw_base_port": 8100, "mini_status": "maintenance"}
        assert hv["mini-02"]["mini_status"] == "draining" and hv["mini-02"]["claw_max_per_mini"] == 5
        assert "ansible_host" not in hv["mini-02"]
        # The same fleet and statuses as the playbooks the service runs.
        service = hostvars(app, tmp_path)
        for name in ("mini-02", "mini-20"):
            assert service[name].get("mini_status") == hv[name]["mini_status"], name
        bad = listed("wrong-token-0123456789abcdef0123456", config)
        assert "401" in bad.stderr + bad.stdout and "wrong-token" not in bad.stderr + bad.stdout
    finally:
        server.should_exit = True
        thread.join(10)
