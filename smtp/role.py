"""The smtp role process: serves MX, submission and submissions until SIGTERM/SIGINT; SIGHUP reloads.

Role contract (`courriel.roles`): `run(config, sockets) -> int` with listening sockets named
"mx", "submission", "submissions" (any subset). When called with `sockets=None` (the module
run on its own) it binds the enabled listeners of `config.listener(name)` itself.
Exit status: 0 after a clean stop, 1 after an internal failure, 2 when the TLS certificate or
key cannot be loaded (a restart cannot fix that).

SIGHUP (`courriel.reload`): the configuration is read again, the `[smtp]` limits and policy
settings apply to the sessions that follow, and the certificate and key are loaded into the same
TLS context, so the next handshakes on 465 and STARTTLS on 25/587 use them
and no connection is dropped; a bad pair is logged and the old one keeps serving.

Security: the TLS private key is read here; its path may be logged, never its content.
Durability: through the handler's `spool.accept`; a stop never acknowledges a message that
is not spooled.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl

from courriel import reload, tls
from courriel.config import Config
from courriel.db import Database
from courriel.smtp import policy
from courriel.smtp.server import SmtpService, tls_context

log = logging.getLogger("courriel.smtp")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def bind_own(config: Config) -> dict[str, socket.socket]:
    """Listening sockets for the enabled SMTP listeners of `config` (role run on its own)."""
    sockets: dict[str, socket.socket] = {}
    for name in policy.LISTENERS:
        address = config.listener(name)
        if address is None:
            continue
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
        sockets[name] = sock
    return sockets


def run(config: Config, sockets: dict[str, socket.socket] | None = None) -> int:
    # aiosmtpd logs every command line at INFO; keep only its warnings.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    owned = sockets is None
    if sockets is None:
        sockets = bind_own(config)
    try:
        try:
            context = tls_context(config)
        except (OSError, ssl.SSLError) as exc:
            log.error("cannot load the TLS certificate and key", extra={
                "certificate": str(config.path("tls", "certificate")), "error": str(exc)})
            return EXIT_CONFIG
        db = Database(config.database_url)
        try:
            return asyncio.run(_serve(config, db, sockets, context))
        finally:
            db.dispose()
    finally:
        if owned:
            for sock in sockets.values():
                sock.close()


async def _serve(config: Config, db: Database, sockets: dict[str, socket.socket], context: ssl.SSLContext) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)  # idempotent: a second signal changes nothing
    service = SmtpService(config, db, context=context)
    loop.add_signal_handler(signal.SIGHUP, _reload, config, service)
    try:
        await service.start(sockets)
        log.info("smtp role started", extra={"listeners": ",".join(service.servers) or "-"})
        await stop.wait()
        log.info("smtp role stopping")
        await service.stop()
    except Exception:
        log.exception("smtp role failed")
        return EXIT_FAILURE
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        reload.install_default(config, "smtp")  # asyncio restored SIGHUP's default action, a kill
    log.info("smtp role stopped")
    return EXIT_OK


def _reload(config: Config, service: SmtpService) -> None:
    """SIGHUP: the settings again, then the certificate and key for the handshakes that follow."""
    reload.apply(config, "smtp", service.reconfigure,
                 lambda cert, key: tls.reload_context(service.context, cert, key))
