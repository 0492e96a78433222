"""The IMAP role process: Twisted listeners on the asyncio reactor until SIGTERM/SIGINT (ring 2).

Role contract (`courriel.roles`): `run(config, sockets) -> int` with the sockets "imap"
(143, STARTTLS) and "imaps" (993, implicit TLS). Several worker processes may share them
(`[imap] workers`); each process keeps its own sessions and wakes them from `notify` hints.
The connection limits (`[imap] max_connections_per_user`, `max_connections_per_ip`,
`max_connections`) are counted per worker process; `[imap] login_timeout` is the silence allowed
before login (the 30-minute autologout timer applies after it).

Order matters (LIBRARIES.md, Twisted notes): the asyncio reactor is installed before anything
imports `twisted.internet.reactor`, so `courriel.imap.transport` is imported only inside
`run`. A stop signal closes the listeners and says BYE to every session: at once to a session
with no command running (or in IDLE), after the tagged response to a session running one (at most
`STOP_GRACE` seconds, then BYE regardless); the loop stops once every connection is closed. A
command still arriving (an APPEND whose literal is being sent) counts as running: it is read to
its end, run and answered, then BYE, within the same grace. A second signal changes nothing.
SIGHUP (`courriel.reload`) reads the configuration again, applies the `[imap]` limits and the
session settings to the connections that follow, and swaps in new TLS settings from the
certificate files (`courriel.imap.certificates`): the next handshakes on 993 and STARTTLS on 143
use them, sessions already open are untouched; a bad pair is logged and the old one stays.

Security: loads the TLS private key (mode 0600, readable by the service user only).
Durability: none here (the store commits).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from courriel import notify, reload
from courriel.blobs import BlobStore
from courriel.config import Config
from courriel.db import Database
from courriel.logins import Authenticator
from courriel.passwords import PasswordHasher
from courriel.store import Store

log = logging.getLogger("courriel.imap")

STOP_GRACE = 5.0  # seconds for the commands in flight to finish (then BYE regardless) before the loop stops


def run(config: Config, sockets: dict[str, socket.socket]) -> int:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    try:
        asyncioreactor.install(loop)
    except Exception:
        log.exception("cannot install the asyncio reactor (was twisted.internet.reactor imported first?)")
        return 1
    from twisted.internet import reactor

    from courriel.imap import transport
    from courriel.imap.certificates import ReloadableTLS
    from courriel.imap.session import ServerContext, Session

    db = Database(config.database_url)
    store = Store(db, BlobStore(config.blob_dir, db), run_dir=config.run_dir)
    authenticator = Authenticator(db, PasswordHasher.from_config(config))
    try:
        tls = ReloadableTLS(config.path("tls", "certificate"), config.path("tls", "private_key"))
    except (OSError, ValueError) as exc:
        log.error("cannot load the TLS certificate: %s", exc)
        for sock in sockets.values():
            sock.close()
        return 2
    context = ServerContext(config=config, store=store, authenticator=authenticator)
    listener = notify.Listener(config.run_dir, [notify.MAILBOX])
    listener.attach(loop, context.on_hints)
    counts = transport.ConnectionCounts()
    ports = []
    factories = []
    for name, sock in sockets.items():
        implicit = name == "imaps"
        factory = transport.IMAPFactory(
            lambda connection, implicit=implicit: Session(context, connection, implicit_tls=implicit),
            tls, implicit, counts=counts)
        factories.append(factory)
        ports.append(transport.listen(reactor, sock, factory))
        log.info("imap listening", extra={"listener": name})
    _apply_settings(config, context, counts, factories)
    context.start(loop)
    stopping = False
    status = 0

    def stop() -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for port in ports:
            port.stopListening()
        sessions = finishing = 0
        for factory in factories:  # idle sessions (IDLE too) say BYE now, the others after their command
            for connection in list(factory.connections):
                sessions += 1
                if connection.session is not None:
                    finishing += connection.session.shutdown()
                else:
                    connection.close()
        log.info("imap role stopping", extra={"sessions": sessions, "finishing": finishing})
        deadline = loop.time() + STOP_GRACE

        def stop_when_closed() -> None:
            if any(f.connections for f in factories) and loop.time() < deadline:
                loop.call_later(0.05, stop_when_closed)
                return
            for factory in factories:  # commands still running at the deadline: BYE all the same
                for connection in list(factory.connections):
                    connection.write(b"* BYE Server shutting down\r\n")
                    connection.close()
            loop.call_later(0.2, reactor.stop)  # time for the last close_notify and FIN to go out

        stop_when_closed()

    def reload_settings() -> None:  # SIGHUP (`courriel.reload`): new handshakes get the new certificate
        reload.apply(config, "imap", lambda fresh: _apply_settings(fresh, context, counts, factories), tls.reload)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    loop.add_signal_handler(signal.SIGHUP, reload_settings)
    try:
        reactor.run(installSignalHandlers=False)
    except Exception:
        log.exception("imap role failed")
        status = 1
    finally:
        context.stop()
        listener.close()
        authenticator.close()
        db.dispose()
    log.info("imap role stopped")
    return status


def _apply_settings(config, context, counts, factories) -> None:
    """The `[imap]` limits and the settings sessions read, at start and on SIGHUP (connections
    already open keep their login timers)."""
    context.reconfigure(config)
    counts.max_per_ip = int(config.get("imap", "max_connections_per_ip"))
    counts.max_total = int(config.get("imap", "max_connections"))
    login_timeout = float(config.get("imap", "login_timeout"))
    for factory in factories:
        factory.login_timeout, factory.login_deadline = login_timeout, 3 * login_timeout
