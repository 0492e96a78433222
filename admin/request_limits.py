"""A bound on request bodies for the admin application (a pure ASGI middleware).

The console's forms and the API's JSON bodies are small; a larger body is refused with 413
before it is read into memory, by its Content-Length or, when streamed without one, as soon
as the bytes received pass the bound.
Standards: RFC 9110 §15.5.14 (413 Content Too Large).
Security: protects against memory exhaustion by untrusted clients.
"""

from __future__ import annotations

import contextlib
import json

MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(Exception):
    pass


async def _refuse(send) -> None:
    body = json.dumps({"code": "too_large", "message": f"request bodies are limited to {MAX_BODY_BYTES} bytes"})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body.encode()})


class BodyLimit:
    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = True
                if too_large:
                    await _refuse(send)
                    return
        received = 0
        started = refused = False

        async def limited_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now: a body parser may turn the error below into its own 400,
                    # which `tracking_send` then drops.
                    if not started and not refused:
                        refused = True
                        await _refuse(send)
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, limited_receive, tracking_send)
