"""Alerts delivered to a Discord-style webhook receiver on loopback, for a scripted sequence of samples."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from api.alerts import AlertEngine, DiscordNotifier, default_rules

CLAW = "1a2b3c4d-0000-4000-8000-000000000001"


def test_scripted_samples_deliver_exactly_start_and_resolve_messages():
    received, calls = [], []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body["content"])
            if len(calls) == 1:  # Discord rate limit on the first call: the notifier waits and retries
                self.send_response(429)
                self.send_header("retry-after", "0.2")
                self.end_headers()
                return
            received.append(body["content"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        notifier = DiscordNotifier(f"http://127.0.0.1:{server.server_port}/api/webhooks/1/token", delays=(0.1, 0.2))
        engine = AlertEngine(default_rules(), notifier)

        def s(pid=123, disk=50.0):
            return {"age_s": 1, "cpu_percent": 5, "memory": {"percent": 30}, "disks": [{"mount": "/", "percent": disk}],
                    "claws": [{"claw_id": CLAW, "pid": pid, "health": "ok" if pid else "not running"}]}

        script = [s(), s(pid=None), s(pid=None), s(pid=None), s(), s(), s(disk=90), s(disk=50), s(disk=91), s(disk=91), s()]
        for t, sample in enumerate(script):
            engine.evaluate("mini-01", sample, now=t * 60)
        notifier.queue.join()
        assert received == ["[CRITICAL] gateway down (no pid)", "[RESOLVED] gateway down (no pid)",
                            "[WARNING] disk almost full", "[RESOLVED] disk almost full",
                            "[WARNING] disk almost full", "[RESOLVED] disk almost full"]
        assert calls[0] == calls[1], "the rate-limited message is retried, not dropped"
    finally:
        server.shutdown()
        time.sleep(0.1)
