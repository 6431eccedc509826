# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Token-checked health probe for an OpenClaw gateway (PRIVATE to the collection).

The gateway's HTTP ``/healthz`` answers without authentication, so it proves
nothing about the claw's token.  This probe performs the gateway's WebSocket
handshake (protocol 4) with the token and then calls the ``health`` RPC, as
described in shared/reference/openclaw-gateway.md section 3.3:

1. connect to ``ws://127.0.0.1:<port>/`` with **no Origin header**;
2. read the ``connect.challenge`` event;
3. send a ``connect`` request with ``client.id = "cli"`` and ``auth.token``;
4. send ``health`` and read its response, skipping event frames.

Why a minimal RFC 6455 client instead of the ``websockets`` library: this code
runs inside an Ansible module on the Mini, with whatever Python the Mini has and
no third-party packages.  The probe only needs unfragmented text frames,
client-side masking, ping/pong and close; nothing else of RFC 6455 is used.
The token travels in the WebSocket frame, never on a command line.
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


class ProbeError(Exception):
    """A transport or protocol failure while probing (maps to UNREACHABLE)."""


class _WebSocket:
    """Just enough of an RFC 6455 client for the gateway's JSON frames."""

    def __init__(self, host: str, port: int, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self._buf = b""
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
        except OSError:
            pass
        self.sock.close()


def _reply(ws: _WebSocket, request_id: str, deadline: float) -> dict:
    while True:
        if time.monotonic() > deadline:
            raise ProbeError("timed out waiting for the gateway's reply")
        frame = json.loads(ws.recv_text())
        if frame.get("type") == "res" and frame.get("id") == request_id:
            return frame


def probe_gateway(port: int, token: str, host: str = "127.0.0.1", timeout: float = 5.0) -> dict:
    """Check one gateway with its token.

    Args:
        port: TCP port the gateway listens on (loopback).
        token: the gateway token (never logged; sent only inside the WebSocket frame).
        host: address to connect to; the gateway binds loopback only.
        timeout: seconds for the whole exchange.

    Returns:
        ``{"result": HEALTHY|AUTH_FAILED|STARTING|UNREACHABLE, "version": str|None,
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
        ws = _WebSocket(host, port, timeout)
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
    except (OSError, ValueError, ProbeError) as exc:
        outcome["result"] = UNREACHABLE
        outcome["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if ws is not None:
            ws.close()
        outcome["duration_ms"] = int((time.monotonic() - started) * 1000)
    return outcome
