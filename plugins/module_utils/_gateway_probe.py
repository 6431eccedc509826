# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Token-checked health probe for an OpenClaw gateway (PRIVATE to the collection).

The gateway's HTTP ``/healthz`` answers without authentication, so it proves
nothing about the claw's token.  This probe performs the gateway's WebSocket
handshake (protocol 4) with the token and then calls the ``health`` RPC, as
described in docs/reference/openclaw-gateway.md section 3.3:

1. connect to ``ws://127.0.0.1:<port>/`` with **no Origin header**;
2. read the ``connect.challenge`` event;
3. send a ``connect`` request with ``client.id = "cli"`` and ``auth.token``;
4. send ``health`` and read its response, skipping event frames.

Why a minimal RFC 6455 client instead of the ``websockets`` library: this code
runs inside an Ansible module on the Mini, with whatever Python the Mini has and
no third-party packages.  The probe only needs unfragmented text frames,
client-side masking, ping/pong and close; nothing else of RFC 6455 is used.
The token travels in the WebSocket frame, never on a command line.

The token goes only to the claw's own gateway.  The port is a number on a shared loopback: while a claw's gateway
is stopped (every nightly backup stops it), another claw's code may listen there.  Before anything is sent on the
connection, :class:`ListenerCheck` asks ``lsof`` which process holds the server side of *this* connection
(``127.0.0.1:<port>-><our port>``: no race between the check and the send) and accepts it only when that process
runs as the claw's uid and is the claw's launchd job (its pid, from ``launchctl print``) or a descendant of it
(``ps``).  Otherwise the probe reports :data:`FOREIGN` with what it found and the token is never sent.
``lsof`` and ``ps`` exist on every Mac (``/usr/sbin/lsof``, ``/bin/ps``), which matters because this runs with the
system Python, which has no psutil.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import sys
import time
import uuid

PROTOCOL_VERSION = 4

# Result classes, mirroring the reference probe's exit codes.
HEALTHY = "ok"  # handshake accepted and health.ok is true
AUTH_FAILED = "auth_failed"  # the gateway answered but refused the token or the RPC
UNREACHABLE = "unreachable"  # nothing listens, or the protocol broke
STARTING = "starting"  # the gateway answered UNAVAILABLE (startup sidecars still running)
FOREIGN = "foreign"  # the port is held by a process that is not the claw's launchd job: the token was not sent


class ProbeError(Exception):
    """A transport or protocol failure while probing (maps to UNREACHABLE)."""


class ForeignListener(ProbeError):
    """The connection was accepted by a process that is not the claw's gateway (maps to FOREIGN)."""


def cmd_lsof_connection(lsof: str, client_port: int) -> list:
    """``lsof`` argv listing both ends of our loopback connection from ``client_port`` (pid, ppid, uid, login, name)."""
    return [lsof, "-nP", f"-iTCP@127.0.0.1:{int(client_port)}", "-FpRuLn"]


def cmd_ps_parents(ps: str) -> list:
    """``ps`` argv printing ``pid ppid`` for every process (the same on macOS and Linux)."""
    return [ps, "-A", "-o", "pid=", "-o", "ppid="]


def parse_lsof(text: str) -> list:
    """Parse ``lsof -F pRuLn`` output into ``[{"pid", "ppid", "uid", "login", "names": [...]}]``.

    Field output is one field per line, the first character naming the field: ``p`` starts a process set
    (``R`` parent pid, ``u`` uid, ``L`` login name), ``f``/``n`` lines belong to that process's files.
    """
    processes = []
    current = None
    for line in text.splitlines():
        if not line:
            continue
        tag, value = line[0], line[1:]
        if tag == "p":
            current = {"pid": int(value), "ppid": None, "uid": None, "login": None, "names": []}
            processes.append(current)
        elif current is None:
            continue
        elif tag == "R":
            current["ppid"] = int(value)
        elif tag == "u":
            current["uid"] = int(value)
        elif tag == "L":
            current["login"] = value
        elif tag == "n":
            current["names"].append(value)
    return processes


def connection_holder(processes: list, port: int, client_port: int):
    """The process holding the server side ``127.0.0.1:<port>->127.0.0.1:<client_port>`` (``None``: not accepted yet)."""
    wanted = f"127.0.0.1:{int(port)}->127.0.0.1:{int(client_port)}"
    for proc in processes:
        if wanted in proc["names"]:
            return proc
    return None


def parse_ps_parents(text: str) -> dict:
    """``{pid: ppid}`` from ``ps -A -o pid= -o ppid=``."""
    parents = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            parents[int(fields[0])] = int(fields[1])
    return parents


def descends_from(pid: int, ancestor: int, parents: dict) -> bool:
    """Whether ``pid`` is ``ancestor`` or one of its descendants, following ``parents`` (``{pid: ppid}``)."""
    seen = set()
    while pid and pid not in seen:
        if pid == ancestor:
            return True
        seen.add(pid)
        pid = parents.get(pid)
    return False


def holder_problem(holder: dict, port: int, label: str, uid, job_pid, parents=None):
    """Why ``holder`` (a :func:`parse_lsof` process) is not the claw's gateway, or ``None`` when it is.

    It must run as the claw's ``uid`` and be the launchd job's ``job_pid`` or a descendant of it (``parents``
    is ``{pid: ppid}``, needed only when the pids differ).  A job that is not running (no pid) never owns the port.
    """
    who = f"port {port} held by pid {holder['pid']} of user {holder.get('login') or holder.get('uid')}"
    if uid is None or holder.get("uid") != uid:
        return f"{who}, not {label}"
    if not job_pid:
        return f"{who}, not {label} (launchd reports no running process for the job)"
    if holder["pid"] != job_pid and not descends_from(holder["pid"], job_pid, parents or {}):
        return f"{who}, not {label} (pid {job_pid}) or one of its child processes"
    return None


class ListenerCheck:
    """Verify, on an open connection, that the claw's launchd job accepted it (see the module docstring).

    Args:
        run: ``run(argv) -> CommandResult``-like callable (``.rc``, ``.stdout``), e.g. ``CommandRunner.run``.
        lsof, ps: paths of the tools.
        label: the claw's launchd label (for messages).
        uid: the claw user's uid.
        job_pid: the job's pid from ``launchctl print`` (``None`` when not loaded or not running).
        attempts: how many times ``lsof`` is asked before giving up (the server may not have accepted yet).
        pause: seconds between attempts.
    """

    def __init__(self, run, lsof: str, ps: str, label: str, uid, job_pid, attempts: int = 20, pause: float = 0.1):
        self.run, self.lsof, self.ps, self.label = run, lsof, ps, label
        self.uid, self.job_pid, self.attempts, self.pause = uid, job_pid, attempts, pause

    def __call__(self, sock, port: int) -> None:
        """Raise :class:`ForeignListener` unless the claw's gateway holds the server side of ``sock``."""
        client_port = sock.getsockname()[1]
        holder = None
        for _attempt in range(self.attempts):
            result = self.run(cmd_lsof_connection(self.lsof, client_port))
            holder = connection_holder(parse_lsof(result.stdout), port, client_port)
            if holder is not None:
                break
            time.sleep(self.pause)
        if holder is None:
            raise ForeignListener(f"port {port} accepts connections but no process was seen holding ours "
                                  f"(`lsof` found none); not {self.label}: the token was not sent")
        parents = None
        if self.job_pid and holder["pid"] != self.job_pid:
            parents = parse_ps_parents(self.run(cmd_ps_parents(self.ps)).stdout)
        problem = holder_problem(holder, port, self.label, self.uid, self.job_pid, parents)
        if problem:
            raise ForeignListener(problem + ": the token was not sent")


class PinMismatch(ProbeError):
    """The listener completed a TLS handshake with a certificate that is not the claw's pinned one."""


class TlsUnavailable(ProbeError):
    """This Python cannot speak TLS to the gateway (no pyOpenSSL): the probe must run with the farm venv's Python."""


class PinnedTls:
    """A TLS client connection whose server must present exactly the pinned certificate (``cafile``'s first one).

    Why pyOpenSSL and not the ``ssl`` module: OpenClaw's gateway serves TLS 1.3 only (its runtime sets
    ``minVersion: "TLSv1.3"``), and a Mac's ``/usr/bin/python3`` - the Command Line Tools' CPython 3.9, which the farm
    venv is made from - links LibreSSL 2.8.3, which has no TLS 1.3. pyOpenSSL (in the farm venv, role mini_python) runs
    on the OpenSSL 3 that the ``cryptography`` wheel bundles. Trust is the pin itself: the handshake proves the server
    holds the key of the certificate it presents, and that certificate must be byte for byte the claw's
    (``/var/db/mirascope-claw-tls/<user>/cert.pem``); the server name is sent as SNI. Only ``recv``, ``sendall``,
    ``getsockname`` and ``close`` are offered (what :class:`_WebSocket` uses), honouring the socket's timeout.
    """

    def __init__(self, sock, cafile: str, server_name: str, timeout: float):
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding
            from OpenSSL import SSL
        except ImportError:
            raise TlsUnavailable("the gateway serves TLS 1.3 and this Python has no pyOpenSSL: run the probe with the "
                                 "farm venv's Python (mini_python_interpreter)") from None
        with open(cafile, "rb") as handle:
            pinned = x509.load_pem_x509_certificate(handle.read()).public_bytes(Encoding.DER)
        self._SSL, self.sock, self.timeout = SSL, sock, timeout
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_NONE)  # the pin below is the whole trust: exactly the claw's certificate
        self.conn = SSL.Connection(context, sock)
        self.conn.set_tlsext_host_name(server_name.encode("ascii"))
        self.conn.set_connect_state()
        self._io(self.conn.do_handshake)
        try:
            peer = self.conn.get_peer_certificate(as_cryptography=True)
        except TypeError:  # pyOpenSSL < 24.3
            peer = self.conn.get_peer_certificate()
            peer = peer.to_cryptography() if peer is not None else None
        if peer is None or peer.public_bytes(Encoding.DER) != pinned:
            raise PinMismatch("the listener did not present the claw's pinned certificate")

    def _io(self, call):
        import select

        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return call()
            except self._SSL.WantReadError:
                wait = ([self.sock], [], [])
            except self._SSL.WantWriteError:
                wait = ([], [self.sock], [])
            except self._SSL.ZeroReturnError:
                return b""
            except self._SSL.SysCallError as exc:
                if exc.args and exc.args[0] == -1:  # unexpected EOF
                    return b""
                raise ProbeError(f"TLS: {exc}") from None
            except self._SSL.Error as exc:
                raise ProbeError(f"TLS: {exc}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not any(select.select(*wait, remaining)):
                raise ProbeError("TLS: timed out")

    def recv(self, size: int) -> bytes:
        return self._io(lambda: self.conn.recv(size))

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = self._io(lambda chunk=view: self.conn.send(chunk))
            view = view[sent:]

    def getsockname(self):
        return self.sock.getsockname()

    def close(self) -> None:
        try:
            self.conn.shutdown()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.sock.close()


class _WebSocket:
    """Just enough of an RFC 6455 client for the gateway's JSON frames."""

    def __init__(self, host: str, port: int, timeout: float, verify=None, tls=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self._buf = b""
        try:
            if verify is not None:
                verify(self.sock, port)
            if tls is not None:
                self.sock = PinnedTls(self.sock, tls["cafile"], tls["server_name"], timeout)
        except BaseException:
            self.sock.close()
            raise
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            "GET / HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n"
        )
        self.sock.sendall(request.encode())
        head = self._read_until(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ProbeError(f"WebSocket upgrade refused: {status.decode(errors='replace')}")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ProbeError("connection closed during the WebSocket upgrade")
            self._buf += chunk
        head, self._buf = self._buf.split(marker, 1)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ProbeError("connection closed by the gateway")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def send_text(self, text: str) -> None:
        payload = text.encode()
        header = bytes([0x81])  # FIN + text
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv_text(self) -> str:
        message = b""
        while True:
            first, second = self._read_exact(2)
            fin, opcode = first & 0x80, first & 0x0F
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read_exact(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read_exact(8))[0]
            mask = self._read_exact(4) if second & 0x80 else b""
            data = self._read_exact(length)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                raise ProbeError(f"gateway closed the WebSocket (code {code}: {data[2:].decode(errors='replace')})")
            if opcode == 0x9:  # ping -> pong
                self.sock.sendall(bytes([0x8A, 0x80 | len(data)]) + b"\0\0\0\0" + data)
                continue
            if opcode == 0xA:
                continue
            message += data
            if fin:
                return message.decode()

    def close(self) -> None:
        try:
            self.sock.sendall(bytes([0x88, 0x82]) + b"\0\0\0\0" + struct.pack("!H", 1000))
        except (OSError, ProbeError):
            pass
        self.sock.close()


def _reply(ws: _WebSocket, request_id: str, deadline: float) -> dict:
    while True:
        if time.monotonic() > deadline:
            raise ProbeError("timed out waiting for the gateway's reply")
        frame = json.loads(ws.recv_text())
        if frame.get("type") == "res" and frame.get("id") == request_id:
            return frame


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (connect, then close at once; nothing is sent).

    Args:
        port: TCP port (loopback).
        host: address to connect to.
        timeout: seconds to wait for the connection.

    Returns:
        True when the connection was accepted within ``timeout``; False on refusal, timeout or any socket error.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def probe_gateway(port: int, token: str, host: str = "127.0.0.1", timeout: float = 5.0, verify=None, tls=None) -> dict:
    """Check one gateway with its token.

    Args:
        port: TCP port the gateway listens on (loopback).
        token: the gateway token (never logged; sent only inside the WebSocket frame).
        host: address to connect to; the gateway binds loopback only.
        timeout: seconds for the whole exchange.
        verify: ``verify(sock, port)`` called on the new connection before anything is sent on it (a
            :class:`ListenerCheck`); raising :class:`ForeignListener` ends the probe with FOREIGN.
        tls: ``{"cafile", "server_name"}`` (``_origin_tls.probe_tls``) for a gateway that serves its pinned
            certificate: the WebSocket runs over TLS (:class:`PinnedTls`, pyOpenSSL) and the listener must present
            exactly that certificate, else FOREIGN before the token is sent; without pyOpenSSL, UNREACHABLE saying
            so. ``None``: plain WebSocket (a claw provisioned before origin TLS).

    Returns:
        ``{"result": HEALTHY|AUTH_FAILED|STARTING|UNREACHABLE|FOREIGN, "version": str|None,
        "error": str|None, "duration_ms": int}``.  ``error`` holds the gateway's
        error code (e.g. ``AUTH_TOKEN_MISMATCH``) or the transport failure; it never
        contains the token.

    Raises:
        Nothing: every failure is folded into ``result``.
    """
    started = time.monotonic()
    deadline = started + timeout
    outcome = {"result": UNREACHABLE, "version": None, "error": None}
    ws = None
    try:
        ws = _WebSocket(host, port, timeout, verify, tls)
        challenge = json.loads(ws.recv_text())
        if challenge.get("event") != "connect.challenge":
            raise ProbeError(f"unexpected first frame: {challenge.get('type')}/{challenge.get('event')}")
        connect_id = str(uuid.uuid4())
        ws.send_text(json.dumps({
            "type": "req", "id": connect_id, "method": "connect",
            "params": {
                "minProtocol": PROTOCOL_VERSION, "maxProtocol": PROTOCOL_VERSION,
                "role": "operator", "scopes": ["operator.read"],
                "client": {"id": "cli", "version": "1.0.0", "platform": sys.platform, "mode": "cli"},
                "auth": {"token": token},
            },
        }))
        hello = _reply(ws, connect_id, deadline)
        if not hello.get("ok"):
            error = hello.get("error") or {}
            details = error.get("details") or {}
            code = details.get("code") or error.get("code") or "unknown"
            outcome["error"] = str(code)
            outcome["result"] = STARTING if error.get("code") == "UNAVAILABLE" else AUTH_FAILED
            return outcome
        outcome["version"] = ((hello.get("payload") or {}).get("server") or {}).get("version")
        health_id = str(uuid.uuid4())
        ws.send_text(json.dumps({"type": "req", "id": health_id, "method": "health", "params": {}}))
        health = _reply(ws, health_id, deadline)
        if health.get("ok") and (health.get("payload") or {}).get("ok"):
            outcome["result"] = HEALTHY
        else:
            outcome["result"] = AUTH_FAILED
            outcome["error"] = str(((health.get("error") or {}).get("code")) or "health not ok")
    except ForeignListener as exc:
        outcome["result"] = FOREIGN
        outcome["error"] = str(exc)
    except PinMismatch as exc:
        outcome["result"] = FOREIGN
        outcome["error"] = f"port {port}: {exc}: the token was not sent"
    except (OSError, ValueError, ProbeError) as exc:
        outcome["result"] = UNREACHABLE
        outcome["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if ws is not None:
            ws.close()
        outcome["duration_ms"] = int((time.monotonic() - started) * 1000)
    return outcome
