"""Hostile tenant, secrets (issue 12): a claw's code, acting as its own macOS user inside the sandbox Mini, tries to
get its neighbour's gateway token from root's health probes and from re-provisioning.

- its ``.env`` becomes a symlink to the neighbour's ``.env`` (and, planted by root as the issue's reproduction, a
  hard link): the probes must not read it, re-provisioning must not keep a token from it;
- the neighbour is stopped (as every nightly backup stops it) and the tenant listens on the neighbour's port with a
  trap that answers the WebSocket upgrade and logs every unmasked frame: the probes must send it nothing;
- the same trap behind the Mini's tunnel: the neighbour's customer's requests (with its token) reach the connector
  (the cloudflared stand-in's edge), which must not deliver them to the trap - neither in plain text nor to a trap
  that serves TLS with a certificate for the neighbour's own server name (docs/origin-tls.md).
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _origin_tls
from conftest import BIN, REPO, wait_for

ATTACKER = "a77ac4e5-1111-4111-8111-111111111111"
NEIGHBOUR = "be1600b0-2222-4222-8222-222222222222"
A_USER, B_USER = "claw-a77ac4e5", "claw-be1600b0"
A_HOME, B_HOME = f"/Users/{A_USER}", f"/Users/{B_USER}"
A_TOKEN = "attacker-token-" + "a" * 32
B_TOKEN = "neighbour-token-" + "b" * 32

# The tenant's trap: listens on the port it is given, answers the upgrade with 101 and a connect.challenge (so that
# a probe that trusts it goes on to send its connect frame with the token), and logs every byte it receives with
# the client frames unmasked.
TRAP = r'''
import os, socket, ssl, struct, sys
port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
open("trap.pid", "w").write(str(os.getpid()))
challenge = b'{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}'
context = None
if len(sys.argv) > 3:  # serve TLS with the given certificate and key
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
while True:
    conn, _ = s.accept()
    conn.settimeout(3)
    if context is not None:
        try:
            conn = context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            with open("trap.log", "ab") as handle:
                handle.write(("handshake failed: %s\n--\n" % exc).encode())
            conn.close()
            continue
    data, upgraded, log = b"", False, b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            if not upgraded and b"\r\n\r\n" in data:
                head, data = data.split(b"\r\n\r\n", 1)
                log += head + b"\n"
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                             + bytes([0x81, len(challenge)]) + challenge)
                upgraded = True
            while upgraded and len(data) >= 6:
                length, offset = data[1] & 0x7F, 2
                if length == 126:
                    length, offset = struct.unpack("!H", data[2:4])[0], 4
                if len(data) < offset + 4 + length:
                    break
                mask = data[offset:offset + 4]
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[offset + 4:offset + 4 + length]))
                log += payload + b"\n"
                data = data[offset + 4 + length:]
    except OSError:
        pass
    with open("trap.log", "ab") as handle:
        handle.write(log + data + b"\n--\n")
    conn.close()
'''


def as_tenant(mini, command: str, check: bool = True):
    """Run ``command`` as the attacker's macOS user inside the Mini, in its home."""
    return mini.sh(f"su -s /bin/sh {A_USER} -c 'cd {A_HOME} && {command}'", check=check)


def port_of(mini, claw_id: str) -> int:
    return int(mini.sh(f"grep -l {claw_id} /var/db/mirascope/ports/* | xargs -n1 basename").stdout.strip())


def module(mini, name: str, args: dict, python: str | None = None) -> dict:
    """Run one collection module on the Mini as root (ad hoc), return its result."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1",
               PATH=f"{BIN}:{os.environ['PATH']}")
    extra = ["-e", f"ansible_python_interpreter={python}"] if python else []
    done = subprocess.run([str(BIN / "ansible"), mini.name, "-i", str(mini.inventory), "-b", "-m", f"mirascope.clawfarm.{name}",
                           "-a", json.dumps(args), *extra], cwd=REPO, env=env, text=True, capture_output=True)
    # "<host> | SUCCESS => {...}" (or FAILED!)
    return json.loads(done.stdout[done.stdout.index(" => {") + 4:])


def status(mini, claw_id: str, user: str, home: str) -> dict:
    return module(mini, "claw_status", {"label": f"com.mirascope.claw.{claw_id}", "user": user, "port": port_of(mini, claw_id),
                                        "env_file": f"{home}/.openclaw/.env"}, python="/opt/mirascope/python/bin/python3")


@pytest.fixture(scope="module")
def claws(mini, tmp_path_factory):
    """Two claws with known tokens and settings: the attacker and its neighbour."""
    work = tmp_path_factory.mktemp("hostile-secrets")
    for claw_id, token in ((ATTACKER, A_TOKEN), (NEIGHBOUR, B_TOKEN)):
        settings = work / f"{claw_id}.json"
        only = "NEIGHBOUR_ONLY_NAME" if claw_id == NEIGHBOUR else "ATTACKER_NAME"
        settings.write_text(json.dumps({"gateway_token": token, "claw_env": {"ANTHROPIC_API_KEY": f"sk-{claw_id[:8]}", only: "x"}}))
        settings.chmod(0o600)
        mini.playbook("provision", "-e", f"claw_id={claw_id}", "-e", f"@{settings}", check=True)
    yield work
    for claw_id in (ATTACKER, NEIGHBOUR):
        mini.playbook("deprovision", "-e", f"claw_id={claw_id}", "-e", "archive=false", "-e", "claw_purge_home=true")


def test_a_linked_env_is_never_read_and_reprovision_keeps_no_foreign_token(mini, claws):
    neighbour_env = mini.sh(f"sha256sum {B_HOME}/.openclaw/.env; stat -c '%U %a %h' {B_HOME}/.openclaw/.env").stdout
    # The tenant cannot read its neighbour's file (its home is 0700), but it can point its own .env at it.
    as_tenant(mini, f"rm -f .openclaw/.env && ln -s {B_HOME}/.openclaw/.env .openclaw/.env")
    found = status(mini, ATTACKER, A_USER, A_HOME)
    assert found["health"] == "failed" and "symbolic link" in found["health_error"], found
    assert B_TOKEN not in json.dumps(found)
    # Re-provisioning with the claw's own token replaces the link; no name or value of the neighbour's file is kept.
    settings = claws / "reprovision.json"
    settings.write_text(json.dumps({"gateway_token": A_TOKEN}))
    result = mini.playbook("provision", "-e", f"claw_id={ATTACKER}", "-e", f"@{settings}", "--diff", check=True)
    output = result.stdout + result.stderr
    assert B_TOKEN not in output and "NEIGHBOUR_ONLY_NAME" not in output and "symbolic link" in output
    assert mini.sh(f"stat -c '%F %U %a %h' {A_HOME}/.openclaw/.env").stdout.strip() == f"regular file {A_USER} 600 1"
    own = mini.sh(f"cat {A_HOME}/.openclaw/.env").stdout
    assert A_TOKEN in own and B_TOKEN not in own
    assert mini.sh(f"sha256sum {B_HOME}/.openclaw/.env; stat -c '%U %a %h' {B_HOME}/.openclaw/.env").stdout == neighbour_env
    # The hard link (planted by root here: the tenant cannot reach the neighbour's home): refused too.
    mini.sh(f"rm {A_HOME}/.openclaw/.env && ln {B_HOME}/.openclaw/.env {A_HOME}/.openclaw/.env")
    try:
        found = status(mini, ATTACKER, A_USER, A_HOME)
        assert found["health"] == "failed" and f"not the claw's uid {found['uid']}" in found["health_error"], found
    finally:
        mini.sh(f"rm {A_HOME}/.openclaw/.env")
    mini.playbook("provision", "-e", f"claw_id={ATTACKER}", "-e", f"@{settings}", check=True)
    assert mini.sh(f"stat -c '%h' {B_HOME}/.openclaw/.env").stdout.strip() == "1"


# A request as the Cloudflare edge hands it to the Mini's connector: to the stand-in's edge listener, by Host header.
EDGE_REQUEST = r'''
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=20)
conn.request("GET", "/healthz", headers={"Host": sys.argv[2], "Authorization": "Bearer " + sys.argv[3]})
response = conn.getresponse()
print(response.status, response.read().decode(errors="replace").strip())
'''


def through_tunnel(mini, hostname: str, token: str) -> str:
    """``"<status> <body>"`` of a request for ``hostname`` through the Mini's connector (its edge stand-in)."""
    edge = json.loads(mini.sh("cat /var/run/cloudflared-standin.json").stdout)["edge"]
    mini.sh(f"cat > /root/edge_request.py <<'EOF'\n{EDGE_REQUEST}\nEOF")
    return mini.sh(f"/usr/bin/python3 /root/edge_request.py {edge.rsplit(':', 1)[1]} {hostname} {token}").stdout.strip()


def neighbour_route(mini, port: int) -> dict:
    rules = json.loads(mini.sh("cat /var/run/cloudflared-standin.json").stdout)["ingress"]
    return next(rule for rule in rules if rule.get("service", "").endswith(f":{port}"))


def start_trap(mini, port: int, *tls_files: str) -> None:
    mini.sh(f"rm -f {A_HOME}/trap.pid {A_HOME}/trap.log; cat > {A_HOME}/trap.py <<'EOF'\n{TRAP}\nEOF\nchown {A_USER} {A_HOME}/trap.py")
    as_tenant(mini, f"setsid nohup /usr/bin/python3 trap.py {port} {' '.join(tls_files)} >trap.out 2>&1 </dev/null &")
    assert wait_for(lambda: mini.sh(f"test -s {A_HOME}/trap.pid", check=False).returncode == 0, 30)


def stop_trap(mini) -> None:
    as_tenant(mini, "kill $(cat trap.pid)", check=False)
    wait_for(lambda: mini.sh(f"kill -0 $(cat {A_HOME}/trap.pid) 2>/dev/null", check=False).returncode != 0, 10)


def test_a_tenant_listening_on_a_stopped_neighbours_port_gets_nothing(mini, claws):
    port = port_of(mini, NEIGHBOUR)
    # The neighbour's route reaches its gateway over TLS and trusts only the neighbour's own certificate.
    route = neighbour_route(mini, port)
    pin = f"/var/db/mirascope-claw-tls/{B_USER}/cert.pem"
    assert route["service"] == f"https://localhost:{port}", route
    assert route["originRequest"] == {"caPool": pin, "originServerName": f"{B_USER}.claws.internal"}, route
    assert mini.sh(f"stat -c '%U %a' {pin} /var/db/mirascope-claw-tls/{B_USER}/key.pem").stdout.split("\n")[:2] == \
        ["root 644", f"{B_USER} 400"]
    assert through_tunnel(mini, route["hostname"], B_TOKEN).startswith("200 "), "the tunnel must reach the running gateway"
    mini.playbook("stop", "-e", f"claw_id={NEIGHBOUR}", check=True)
    start_trap(mini, port)
    try:
        # claw_status (status.yml and every wait for health) and mini_health (the API's schedule) as root.
        found = status(mini, NEIGHBOUR, B_USER, B_HOME)
        assert found["listening"] and found["health"] == "foreign listener", found
        assert found["health_error"].startswith(f"port {port} held by pid ") and f"of user {A_USER}" in found["health_error"]
        assert f"not com.mirascope.claw.{NEIGHBOUR}" in found["health_error"]
        sample = module(mini, "mini_health", {"cpu_interval": 0.1}, python="/opt/mirascope/python/bin/python3")
        record = next(c for c in sample["claws"] if c["claw_id"] == NEIGHBOUR)
        assert record["health"] == "foreign listener" and f"of user {A_USER}" in record["health_error"]
        assert mini.playbook("status", "-e", f"claw_id={NEIGHBOUR}").returncode == 0
        # The neighbour's customer's request, through the tunnel: the connector's TLS handshake fails, 502.
        assert through_tunnel(mini, route["hostname"], B_TOKEN).startswith("502 ")
        log = mini.sh(f"cat -v {A_HOME}/trap.log 2>/dev/null; true").stdout
        assert B_TOKEN not in log and "Upgrade: websocket" not in log and '"connect"' not in log, log[-2000:]
        assert "GET /healthz" not in log and "Authorization" not in log, log[-2000:]
    finally:
        stop_trap(mini)
    # The tenant serves TLS with a certificate for the neighbour's own server name (its own key): still nothing.
    key_pem, cert_pem = forged_pair(f"{B_USER}.claws.internal")
    mini.sh(f"cat > {A_HOME}/forged.pem <<'EOF'\n{cert_pem}EOF\ncat > {A_HOME}/forged.key <<'EOF'\n{key_pem}EOF\n"
            f"chown {A_USER} {A_HOME}/forged.pem {A_HOME}/forged.key")
    start_trap(mini, port, "forged.pem", "forged.key")
    try:
        assert through_tunnel(mini, route["hostname"], B_TOKEN).startswith("502 ")
        found = status(mini, NEIGHBOUR, B_USER, B_HOME)
        assert found["health"] == "foreign listener" and B_TOKEN not in json.dumps(found), found
        log = mini.sh(f"cat -v {A_HOME}/trap.log 2>/dev/null; true").stdout
        assert "handshake failed" in log and B_TOKEN not in log and "GET " not in log, log[-2000:]
        assert "SSLCertVerificationError" in mini.sh("tail -n 5 /var/log/cloudflared-standin.log").stdout
    finally:
        stop_trap(mini)
    mini.playbook("start", "-e", f"claw_id={NEIGHBOUR}", check=True)
    assert status(mini, NEIGHBOUR, B_USER, B_HOME)["health"] == "ok"
    assert through_tunnel(mini, route["hostname"], B_TOKEN).startswith("200 ")


def forged_pair(name: str) -> tuple:
    """A key and a self-signed certificate for ``name`` made by the attacker (PEM text): right name, wrong key."""
    key, cert = _origin_tls.make_pair(name)
    return key.decode(), cert.decode()
