"""The admin role process: the ASGI application (`courriel.admin.app`) served by uvicorn
on the socket handed over by the supervisor or systemd (role contract: `courriel.roles`).

HTTP in the `--dev` profile, HTTPS with the data directory's certificate otherwise.
Security: serves untrusted HTTP; TLS 1.2 minimum outside `--dev`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

import uvicorn

from courriel import tls
from courriel.admin.app import create_app
from courriel.admin.services import dns as dns_service
from courriel.config import Config
from courriel.db import Database

log = logging.getLogger("courriel.admin")

GRACEFUL_TIMEOUT = 5  # seconds for open requests at stop
FIRST_DNS_CHECK_DELAY = 60  # seconds after start, so a restart loop does not hammer DNS


async def check_domains_periodically(config: Config, server: uvicorn.Server) -> None:
    """Re-check every domain's DNS records on a timer; results are stored per domain and shown
    as red flags in the console (issue: DNS checker)."""
    interval = config.get("domains", "check_interval")
    if interval <= 0:
        return
    delay = min(FIRST_DNS_CHECK_DELAY, interval)
    while not server.should_exit:
        await asyncio.sleep(min(delay, 1.0))
        delay -= 1.0
        if delay > 0:
            continue
        delay = interval
        db = Database(config.database_url)
        try:
            results = await asyncio.to_thread(dns_service.check_all, db, config)
            failing = [r.domain for r in results if r.status != "ok"]
            log.info("DNS check of %d domain(s): %d with problems %s", len(results), len(failing), failing)
        except Exception:
            log.exception("periodic DNS check failed")
        finally:
            db.dispose()


async def serve(config: Config, server: uvicorn.Server, sock: socket.socket) -> None:
    checks = asyncio.create_task(check_domains_periodically(config, server))
    try:
        await server.serve(sockets=[sock])
    finally:
        checks.cancel()


def run(config: Config, sockets: dict[str, socket.socket]) -> int:
    sock = sockets.get("admin")
    if sock is None:
        log.info("admin listener disabled; nothing to serve")
        return 0
    server_config = uvicorn.Config(
        create_app(config),
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
    sock.setblocking(False)
    asyncio.run(serve(config, server, sock))
    return 0 if server.started else 1
