"""Security headers on every admin response (a pure ASGI middleware).

Standards: CSP Level 3 (`script-src 'self'`: no inline scripts; `frame-ancestors 'none'`),
RFC 7034 (X-Frame-Options), Fetch (`X-Content-Type-Options: nosniff`), RFC 6797 (HSTS, outside
`--dev` only, where the admin listener speaks TLS).
Security: applies to error pages and static files as well; every answer but a static file is
`Cache-Control: no-store` (account data, secrets shown once).
"""

from __future__ import annotations

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def headers(dev: bool) -> list[tuple[bytes, bytes]]:
    found = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    ]
    if not dev:
        found.append((b"strict-transport-security", b"max-age=31536000"))
    return found


class SecurityHeaders:
    def __init__(self, app, dev: bool):
        self.app = app
        self.extra = headers(dev)
        self.names = {name for name, _ in self.extra}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self.names]
                extra = self.extra
                if not static and not any(k.lower() == b"cache-control" for k, _ in kept):
                    # Pages and answers may hold account data or a secret shown once.
                    extra = [*extra, (b"cache-control", b"no-store")]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
