#!/usr/bin/python3
"""Stand-in for the cloudflared connector on sandbox Minis (no real binary can be had there, and no network).

Accepts the command lines the cloudflared role builds:
    cloudflared --no-autoupdate --config FILE tunnel [flags] run
    cloudflared --no-autoupdate tunnel [flags] run --token-file FILE
Like cloudflared it reads config.yml once at start and never reloads it (a changed file needs a restart).
It validates the ingress list the way cloudflared does (last rule a catch-all, no catch-all before it) and
exits 1 with cloudflared's message when invalid. Then it records what it loaded in
/var/run/cloudflared-standin.json ({"pid", "started", "ingress", "edge"}) so tests can see which configuration the
running connector has, and serves until SIGTERM (exit 0).

The edge: there is no Cloudflare edge here, so the stand-in plays it on 127.0.0.1:EDGE_PORT inside the Mini. A
request there is routed by its Host header through the loaded ingress rules to the rule's origin, the way cloudflared
proxies a request that reached it from the edge: ``http://``/``ws://`` in plain TCP; ``https://``/``wss://`` over TLS
verified as cloudflared verifies an origin (its caPool added to the system's roots; ``originServerName``, else the
service's host, as the expected name and SNI; ``noTLSVerify`` turns verification off); ``http_status:N`` answered
directly. An origin that cannot be reached or fails verification gets 502 Bad Gateway, as cloudflared answers, and
nothing of the request is sent to it. Each outcome is appended to /var/log/cloudflared-standin.log.
"""
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from urllib.parse import urlsplit

EDGE_PORT = 7999
LOG = "/var/log/cloudflared-standin.log"
MAX_HEAD = 65536


def log(line):
    with open(LOG, "a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


def answer(conn, status, text):
    body = (text + "\n").encode()
    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                 f"Connection: close\r\n\r\n".encode() + body)


def origin_context(rule, host):
    """The TLS context and server name cloudflared would use for an https/wss origin of ``rule``."""
    origin = rule.get("originRequest") or {}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # cloudflared is Go (crypto/tls speaks TLS 1.3), not the Mini's Python: undo the sandbox's LibreSSL-like
    # TLS 1.2 cap (tests/sandbox/mini.py) for this stand-in, whose OpenSSL has TLS 1.3.
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    if origin.get("noTLSVerify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_default_certs()
        if origin.get("caPool"):
            context.load_verify_locations(cafile=origin["caPool"])
    return context, origin.get("originServerName") or host


def pipe(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle(conn, ingress):
    try:
        conn.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < MAX_HEAD:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        host = ""
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "host":
                host = value.strip().split(":")[0].lower()
        rule = next((r for r in ingress if (r.get("hostname") or "").lower() == host), ingress[-1])
        service = rule.get("service") or ""
        if service.startswith("http_status:"):
            code = service.split(":", 1)[1]
            log(f"{host} -> {service}")
            answer(conn, f"{code} Status", f"http_status:{code}")
            return
        url = urlsplit(service)
        try:
            origin = socket.create_connection((url.hostname, url.port), timeout=10)
            if url.scheme in ("https", "wss"):
                context, name = origin_context(rule, url.hostname)
                origin = context.wrap_socket(origin, server_hostname=name)
        except (OSError, ssl.SSLError) as exc:
            log(f"{host} -> {service} 502 {type(exc).__name__}: {exc}")
            answer(conn, "502 Bad Gateway", f"origin {service} unreachable: {type(exc).__name__}")
            return
        log(f"{host} -> {service} connected")
        origin.sendall(data)
        conn.settimeout(None)
        origin.settimeout(None)
        back = threading.Thread(target=pipe, args=(origin, conn), daemon=True)
        back.start()
        pipe(conn, origin)
        back.join(30)
    except OSError:
        pass
    finally:
        conn.close()


def edge_socket():
    """The edge's listening socket (a restarted stand-in may wait a moment for the old one to close)."""
    for _attempt in range(50):
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", EDGE_PORT))
        except OSError:
            server.close()
            time.sleep(0.1)
            continue
        server.listen(64)
        return server
    raise OSError(f"127.0.0.1:{EDGE_PORT} stays in use")


def serve_edge(server, ingress):
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn, ingress), daemon=True).start()


def main(argv):
    config = argv[argv.index("--config") + 1] if "--config" in argv else None
    ingress = []
    if config:
        with open(config) as handle:
            text = handle.read()
        try:
            doc = json.loads(text)
        except ValueError:
            import yaml
            doc = yaml.safe_load(text)
        ingress = doc.get("ingress") or []
        for index, rule in enumerate(ingress):
            catch_all = rule.get("hostname") in (None, "", "*") and not rule.get("path")
            if catch_all and index != len(ingress) - 1:
                print(f"Validation failed: Rule #{index + 1} is matching every hostname", file=sys.stderr)
                return 1
        if not ingress or ingress[-1].get("hostname") not in (None, "", "*"):
            print("Validation failed: The last ingress rule must match all URLs", file=sys.stderr)
            return 1
    edge = None
    if ingress:
        try:
            threading.Thread(target=serve_edge, args=(edge_socket(), ingress), daemon=True).start()
            edge = f"127.0.0.1:{EDGE_PORT}"
        except OSError as exc:
            print(f"cloudflared stand-in: no edge ({exc})", file=sys.stderr, flush=True)
    state = {"pid": os.getpid(), "started": time.time(), "ingress": ingress, "edge": edge}
    with open("/var/run/cloudflared-standin.json.tmp", "w") as handle:
        json.dump(state, handle)
    os.replace("/var/run/cloudflared-standin.json.tmp", "/var/run/cloudflared-standin.json")
    print(f"cloudflared stand-in: pid {os.getpid()}, {len(ingress)} ingress rules", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
