"""The admin role process: the ASGI application (`courriel.admin.app`) served by uvicorn
on the socket handed over by the supervisor or systemd (role contract: `courriel.roles`).

HTTP in the `--dev` profile, HTTPS with the data directory's certificate otherwise. SIGHUP
(`courriel.reload`) applies the settings read again to the requests that follow (password
policy and hashing, cookies, the DNS check interval) and, with HTTPS, loads the certificate again
for the handshakes that follow.
Security: serves untrusted HTTP; TLS 1.2 minimum outside `--dev`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

import uvicorn

from courriel import passwords, reload, tls
from courriel.admin.app import create_app
from courriel.admin.services import dns as dns_service
from courriel.config import Config
from courriel.db import Database

log = logging.getLogger("courriel.admin")

GRACEFUL_TIMEOUT = 5  # seconds for open requests at stop
FIRST_DNS_CHECK_DELAY = 60  # seconds after start, so a restart loop does not hammer DNS


async def check_domains_periodically(state, server: uvicorn.Server) -> None:
    """Re-check every domain's DNS records on a timer (`[domains] check_interval`, read from the
    application's current settings: a reload applies from the next round); results are stored
    per domain and shown as red flags in the console (issue: DNS checker)."""
    delay = min(FIRST_DNS_CHECK_DELAY, state.config.get("domains", "check_interval"))
    while not server.should_exit:
        await asyncio.sleep(1.0)
        interval = state.config.get("domains", "check_interval")
        if interval <= 0:
            continue
        delay = min(delay, interval) - 1.0
        if delay > 0:
            continue
        delay = interval
        config = state.config
        db = Database(config.database_url)
        try:
            results = await asyncio.to_thread(dns_service.check_all, db, config)
            failing = [r.domain for r in results if r.status != "ok"]
            log.info("DNS check of %d domain(s): %d with problems %s", len(results), len(failing), failing)
        except Exception:
            log.exception("periodic DNS check failed")
        finally:
            db.dispose()


async def serve(state, server: uvicorn.Server, sock: socket.socket) -> None:
    checks = asyncio.create_task(check_domains_periodically(state, server))
    try:
        await server.serve(sockets=[sock])
    finally:
        checks.cancel()


def run(config: Config, sockets: dict[str, socket.socket]) -> int:
    sock = sockets.get("admin")
    if sock is None:
        log.info("admin listener disabled; nothing to serve")
        return 0
    app = create_app(config)
    server_config = uvicorn.Config(
        app,
        log_config=None,  # records go to the handler the role runner configured
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT,
        lifespan="on",
    )
    server_config.load()
    if not config.dev:
        # Our context (TLS 1.2 minimum, the data directory's certificate), not uvicorn's defaults.
        server_config.ssl = tls.server_context(config.path("tls", "certificate"), config.path("tls", "private_key"))
    server = uvicorn.Server(server_config)

    def request_stop(_signum, _frame) -> None:
        server.should_exit = True

    # Installed before uvicorn installs its own (a signal in between still stops the server),
    # and restored by uvicorn when it stops: its re-raise of the signal then lands here
    # instead of killing the process.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)

    def settings(fresh: Config) -> None:
        app.state.config = fresh
        app.state.hasher = passwords.PasswordHasher.from_config(fresh)
        app.state.policy = passwords.PasswordPolicy.from_config(fresh)

    def certificate(cert, key):
        return tls.reload_context(server_config.ssl, cert, key)

    # A Python handler: it runs between two instructions of the main thread.
    signal.signal(signal.SIGHUP, lambda _signum, _frame: reload.apply(
        config, "admin", settings, certificate if server_config.ssl is not None else None))
    sock.setblocking(False)
    asyncio.run(serve(app.state, server, sock))
    return 0 if server.started else 1
