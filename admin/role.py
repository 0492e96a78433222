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
import ssl

import uvicorn

from courriel.admin.app import create_app
from courriel.config import Config

log = logging.getLogger("courriel.admin")

GRACEFUL_TIMEOUT = 5  # seconds for open requests at stop


def _record_stop(signum, _frame) -> None:
    log.info("stop requested", extra={"signal": signal.Signals(signum).name})


def run(config: Config, sockets: dict[str, socket.socket]) -> int:
    sock = sockets.get("admin")
    if sock is None:
        log.info("admin listener disabled; nothing to serve")
        return 0
    options: dict = {}
    if not config.dev:
        options = {
            "ssl_certfile": str(config.path("tls", "certificate")),
            "ssl_keyfile": str(config.path("tls", "private_key")),
            "ssl_version": ssl.PROTOCOL_TLS_SERVER,
        }
    server = uvicorn.Server(uvicorn.Config(
        create_app(config),
        log_config=None,  # records go to the handler the role runner configured
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT,
        lifespan="on",
        **options,
    ))
    # uvicorn restores the previous handlers after its own and re-raises the signal it got:
    # a Python handler here turns that re-raise into a log line instead of a kill.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _record_stop)
    sock.setblocking(False)
    asyncio.run(server.serve(sockets=[sock]))
    return 0 if server.started else 1
