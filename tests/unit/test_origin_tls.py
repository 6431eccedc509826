"""A claw's origin TLS identity (docs/origin-tls.md): the pair the gateway serves and the pin cloudflared and the
health probes trust.

The attack: while a claw's gateway is stopped (every nightly backup stops it), another claw's code listens on its
loopback port. Over plain HTTP/WebSocket the connector and the probes would talk to it. With the pin, a listener
without the claw's key - even one presenting a certificate for the claw's own server name - fails the handshake,
and nothing (no request, no token) is sent to it.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import threading

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _gateway_probe as probe
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _origin_tls as tls
from ansible_collections.mirascope.clawfarm.plugins.modules import claw_origin_tls as module

USER = "claw-1a2b3c4d"
NAME = "claw-1a2b3c4d.claws.internal"
NOW = datetime.datetime(2026, 12, 6, tzinfo=datetime.timezone.utc)  # noqa: UP017 (also run under 3.9, test_py39)
TOKEN = "T" * 40


def test_paths_and_server_name():
    assert tls.paths(USER) == {"dir": f"/var/db/mirascope-claw-tls/{USER}", "cert": f"/var/db/mirascope-claw-tls/{USER}/cert.pem",
                               "key": f"/var/db/mirascope-claw-tls/{USER}/key.pem", "server_name": NAME}


def test_a_new_pair_is_kept_and_every_defect_is_named():
    key, cert = tls.make_pair(NAME, NOW)
    assert b"PRIVATE KEY" in key and b"CERTIFICATE" in cert
    assert tls.pair_problem(cert, key, NAME, NOW) is None
    assert tls.pair_problem(cert, key, "claw-other.claws.internal", NOW) == "the certificate is not for claw-other.claws.internal"
    assert "renewed 30 days before" in tls.pair_problem(cert, key, NAME, NOW + datetime.timedelta(days=tls.VALID_DAYS - 10))
    other_key, _ = tls.make_pair(NAME, NOW)
    assert tls.pair_problem(cert, other_key, NAME, NOW) == "the key is not the certificate's"
    assert tls.pair_problem(b"junk", key, NAME, NOW) == "the certificate does not parse"
    assert tls.pair_problem(cert, b"junk", NAME, NOW) == "the key does not parse"
    described = tls.describe(cert)
    assert described["fingerprint"].startswith("sha256:") and len(described["fingerprint"]) == 71
    assert described["not_after"] == "2029-03-10T00:00:00Z"


def test_gateway_config_serves_the_pair_and_never_generates_one():
    config = _claw.gateway_config(8100, "/Users/x/.openclaw", tls_cert_path="/c.pem", tls_key_path="/k.pem")
    assert config["gateway"]["tls"] == {"enabled": True, "autoGenerate": False, "certPath": "/c.pem", "keyPath": "/k.pem"}
    assert "tls" not in _claw.gateway_config(8100, "/Users/x/.openclaw")["gateway"]
    with pytest.raises(_claw.ClawInputError, match="both"):
        _claw.gateway_config(8100, "/Users/x/.openclaw", tls_cert_path="/c.pem")


# ---- the module's work (as root, in a root-owned directory) ------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners are set as root")


def params(root, **extra):
    return dict({"user": "nobody", "group": 20, "root": str(root), "state": "present", "valid_days": 825, "renew_days": 30}, **extra)


def nobody_uid():
    import pwd
    return pwd.getpwnam("nobody").pw_uid


@needs_root
def test_ensure_makes_keeps_and_renews_the_pair(tmp_path):
    root = tmp_path / "claw-tls"
    first = module.ensure(params(root), nobody_uid(), check_mode=False)
    assert first["changed"] and first["action"] == "created" and first["server_name"] == "nobody.claws.internal"
    key_info, cert_info = os.lstat(first["key_path"]), os.lstat(first["cert_path"])
    assert (key_info.st_uid, key_info.st_gid, key_info.st_mode & 0o777) == (nobody_uid(), 20, 0o400)
    assert (cert_info.st_uid, cert_info.st_gid, cert_info.st_mode & 0o777) == (0, 0, 0o644)
    assert (os.stat(root).st_mode & 0o777, os.stat(root / "nobody").st_mode & 0o777) == (0o755, 0o755)
    assert "PRIVATE" not in json.dumps(first)
    again = module.ensure(params(root), nobody_uid(), check_mode=False)
    assert not again["changed"] and again["action"] == "kept" and again["fingerprint"] == first["fingerprint"]
    # the claw's user owns its key and may break it (only its own route suffers): the next run renews the pair
    os.chmod(first["key_path"], 0o600)
    with open(first["key_path"], "wb") as handle:
        handle.write(b"not a key")
    planned = module.ensure(params(root), nobody_uid(), check_mode=True)
    assert planned["changed"] and planned["action"] == "renewed" and planned["reason"] == "the key does not parse"
    assert open(first["key_path"], "rb").read() == b"not a key"
    renewed = module.ensure(params(root), nobody_uid(), check_mode=False)
    assert renewed["action"] == "renewed" and renewed["fingerprint"] != first["fingerprint"]
    assert os.lstat(first["key_path"]).st_mode & 0o777 == 0o400
    # a mode changed by the claw is set back without a new pair
    os.chmod(first["key_path"], 0o644)
    fixed = module.ensure(params(root), nobody_uid(), check_mode=False)
    assert fixed["changed"] and fixed["action"] == "kept" and os.lstat(first["key_path"]).st_mode & 0o777 == 0o400
    # a directory the claw's gateway could not traverse is opened again
    os.chmod(root, 0o700)
    reopened = module.ensure(params(root), nobody_uid(), check_mode=False)
    assert reopened["changed"] and reopened["action"] == "kept" and os.stat(root).st_mode & 0o777 == 0o755
    removed = module.remove(params(root, state="absent"), check_mode=False)
    assert removed["changed"] and not (root / "nobody").exists()
    assert not module.remove(params(root, state="absent"), check_mode=False)["changed"]


@needs_root
def test_check_mode_on_a_new_mini_creates_nothing(tmp_path):
    root = tmp_path / "claw-tls"
    planned = module.ensure(params(root), nobody_uid(), check_mode=True)
    assert planned["changed"] and planned["action"] == "created" and not root.exists()


@needs_root
def test_root_never_keeps_keys_under_a_directory_it_does_not_own(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, nobody_uid(), 20)
    with pytest.raises(tls.OriginTlsError, match="not root"):
        module.ensure(params(foreign), nobody_uid(), check_mode=False)
    # a link planted as the key (only root could: the directory is root's) is replaced, never written through
    root = tmp_path / "claw-tls"
    module.ensure(params(root), nobody_uid(), check_mode=False)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    os.unlink(root / "nobody" / "key.pem")
    os.symlink(victim, root / "nobody" / "key.pem")
    assert module.ensure(params(root), nobody_uid(), check_mode=False)["action"] == "renewed"
    assert victim.read_bytes() == b"keep me" and not os.path.islink(root / "nobody" / "key.pem")


# ---- the probe trusts only the pin -------------------------------------------------------------------------------

class TlsTrap:
    """A TLS 1.3-only listener (as OpenClaw's gateway) presenting ``cert``/``key`` that records every byte it receives
    after the handshake."""

    def __init__(self, tmp_path, key_pem: bytes, cert_pem: bytes):
        (tmp_path / "trap-key.pem").write_bytes(key_pem)
        (tmp_path / "trap-cert.pem").write_bytes(cert_pem)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.load_cert_chain(str(tmp_path / "trap-cert.pem"), str(tmp_path / "trap-key.pem"))
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.server.accept()
        conn.settimeout(5)
        try:
            with self.context.wrap_socket(conn, server_side=True) as secure:
                while True:
                    chunk = secure.recv(65536)
                    if not chunk:
                        break
                    self.received += chunk
        except (OSError, ssl.SSLError):
            pass


def test_a_listener_with_a_forged_certificate_for_the_claws_name_gets_nothing(tmp_path):
    _, pinned = tls.make_pair(NAME, NOW)
    (tmp_path / "pin.pem").write_bytes(pinned)
    forged_key, forged_cert = tls.make_pair(NAME, NOW)  # the right name, but not the claw's key
    trap = TlsTrap(tmp_path, forged_key, forged_cert)
    outcome = probe.probe_gateway(trap.port, TOKEN, timeout=3, tls={"cafile": str(tmp_path / "pin.pem"), "server_name": NAME})
    trap.thread.join(5)
    assert outcome["result"] == probe.FOREIGN and "pinned certificate" in outcome["error"], outcome
    assert TOKEN.encode() not in trap.received and b"GET" not in trap.received


def test_the_pinned_listener_gets_the_websocket_upgrade(tmp_path):
    key, cert = tls.make_pair(NAME, NOW)
    (tmp_path / "pin.pem").write_bytes(cert)
    trap = TlsTrap(tmp_path, key, cert)
    outcome = probe.probe_gateway(trap.port, TOKEN, timeout=1, tls={"cafile": str(tmp_path / "pin.pem"), "server_name": NAME})
    trap.thread.join(5)
    assert outcome["result"] == probe.UNREACHABLE  # the trap never answers the upgrade
    assert trap.received.startswith(b"GET / HTTP/1.1") and TOKEN.encode() not in trap.received


def test_probe_tls_only_for_a_root_owned_pin(tmp_path):
    assert tls.probe_tls(USER, str(tmp_path)) is None
    (tmp_path / USER).mkdir()
    (tmp_path / USER / "cert.pem").write_bytes(b"x")
    if os.geteuid() == 0:
        assert tls.probe_tls(USER, str(tmp_path)) == {"cafile": str(tmp_path / USER / "cert.pem"), "server_name": NAME}
        os.chown(tmp_path / USER / "cert.pem", 65534, -1)
    assert tls.probe_tls(USER, str(tmp_path)) is None


# ---- what the claw can do to its own key file (review of the first version) -------------------------------------

@pytest.mark.parametrize("curve", ["SECP192R1", "SECP384R1", "BRAINPOOLP256R1"])
def test_any_other_key_the_claw_writes_is_replaced_never_a_failed_run(curve):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    _, cert = tls.make_pair(NAME, NOW)
    try:
        other = ec.generate_private_key(getattr(ec, curve)())
    except Exception:  # noqa: BLE001 - a curve this OpenSSL lacks
        pytest.skip(f"{curve} not available")
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert tls.pair_problem(cert, pem, NAME, NOW) in ("the key is not an ECDSA P-256 key", "the key does not parse")


def test_a_big_key_is_not_even_parsed():
    _, cert = tls.make_pair(NAME, NOW)
    assert tls.pair_problem(cert, b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 6000, NAME, NOW) == "the key is too big"
    assert tls.pair_problem(b"x" * 9000, b"", NAME, NOW) == "the certificate is too big"


@needs_root
def test_the_root_path_may_go_through_roots_own_link_but_not_a_writable_directory(tmp_path):
    real = tmp_path / "private-var"
    real.mkdir(mode=0o755)
    (tmp_path / "var").symlink_to(real)  # as /var -> private/var on macOS
    made = module.ensure(params(tmp_path / "var" / "claw-tls"), nobody_uid(), check_mode=False)
    assert made["action"] == "created" and (real / "claw-tls" / "nobody" / "key.pem").exists()
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(tls.OriginTlsError, match="writable by group or others"):
        module.ensure(params(open_dir / "claw-tls"), nobody_uid(), check_mode=False)


def test_flags_are_cleared_where_the_system_has_them(tmp_path, monkeypatch):
    calls = []
    target = tmp_path / "key.pem"
    target.write_bytes(b"k")

    class Flagged:
        st_flags = 0x2  # UF_IMMUTABLE (uchg)

    monkeypatch.setattr(tls.os, "lstat", lambda path: Flagged())
    monkeypatch.setattr(tls.os, "chflags", lambda path, flags, follow_symlinks=True: calls.append((path, flags, follow_symlinks)),
                        raising=False)
    assert tls.clear_flags(str(target)) and calls == [(str(target), 0, False)]


def test_without_pyopenssl_the_probe_says_to_use_the_farm_venv(tmp_path, monkeypatch):
    import builtins

    key, cert = tls.make_pair(NAME, NOW)
    (tmp_path / "pin.pem").write_bytes(cert)
    trap = TlsTrap(tmp_path, key, cert)
    real_import = builtins.__import__

    def no_openssl(name, *args, **kwargs):
        if name == "OpenSSL" or name.startswith("OpenSSL."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openssl)
    outcome = probe.probe_gateway(trap.port, TOKEN, timeout=2, tls={"cafile": str(tmp_path / "pin.pem"), "server_name": NAME})
    assert outcome["result"] == probe.UNREACHABLE and "farm venv" in outcome["error"], outcome
    assert trap.received == b""
