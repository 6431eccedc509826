"""ASGI middleware of the API."""
from __future__ import annotations

import json


class BodyLimit:
    """ASGI middleware: at most ``limit`` request body bytes, counted as they arrive (a declared Content-Length
    over the limit is refused before reading; a chunked body is cut off at the limit). Answers 413 and never
    echoes the body."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def _too_large(self, send) -> None:
        body = json.dumps({"detail": [{"loc": ["body"], "msg": f"body larger than {self.limit} bytes", "type": "too_large"}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                return await self._too_large(send)
        state = {"received": 0, "over": False, "answered": False}

        async def counted_receive():
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}  # stop reading; the app's answer is replaced by the 413
            return message

        async def guarded_send(message):
            if state["over"]:
                if not state["answered"]:
                    state["answered"] = True
                    await self._too_large(send)
                return
            state["answered"] = state["answered"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["answered"]:
            state["answered"] = True
            await self._too_large(send)
