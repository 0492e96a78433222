"""The SMTP listeners (ring 2): MX, submission (STARTTLS) and submissions (implicit TLS).

Owns the asyncio servers of the smtp role: one `loop.create_server` per listening socket with
a fresh `courriel.smtp.esmtp.ESMTP` per connection (not aiosmtpd's threaded Controller), the TLS
context from the data directory, the shared handler and login throttle, the set of open
connections and the bound on concurrent sessions per client address, and the stop sequence
(stop accepting, let the messages whose DATA is being sent or accepted finish within the grace
time, then 421 and close the rest: an unacknowledged message is simply not acknowledged; a BDAT
transaction counts as in flight from its first chunk to its LAST).

Limits (config `[smtp]`): max_message_size (SIZE), max_recipients, idle_timeout,
session_timeout, max_commands, max_errors, max_auth_failures, max_connections_per_ip, tls_handshake_timeout.

Listener roles (config `listeners.*`):
- "mx": inbound mail from the Internet; STARTTLS offered; no AUTH; no relaying;
- "submission": RFC 6409 on 587; STARTTLS; AUTH after TLS (or before it if
  `tls.allow_plaintext_auth`);
- "submissions": RFC 8314 implicit TLS on 465; AUTH.

Standards: RFC 5321, RFC 6409, RFC 8314 §3.3 (implicit TLS), RFC 3207 (STARTTLS), TLS 1.2+.
Security: accepts connections from anyone; all protocol input is handled by `esmtp`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
import time
from collections.abc import Mapping

from courriel import tls
from courriel.config import Config
from courriel.db import Database
from courriel.dns.resolver import Resolver
from courriel.logins import Authenticator
from courriel.passwords import PasswordHasher
from courriel.smtp import policy, replies
from courriel.smtp.esmtp import ESMTP
from courriel.smtp.handler import SmtpHandler
from courriel.smtp.inbound_dns import InboundResolver

log = logging.getLogger("courriel.smtp")

STOP_GRACE_SECONDS = 5.0


def tls_context(config: Config) -> ssl.SSLContext:
    """The server context (TLS 1.2+) from `tls.certificate` / `tls.private_key`; raises OSError/SSLError."""
    return tls.server_context(config.path("tls", "certificate"), config.path("tls", "private_key"))


def session_limits(config: Config) -> policy.SessionLimits:
    """The per-connection bounds from the `[smtp]` settings (RFC 5321 §4.5.3 minimums are the defaults)."""
    return policy.SessionLimits(
        idle_seconds=float(config.get("smtp", "idle_timeout")),
        session_seconds=float(config.get("smtp", "session_timeout")),
        max_commands=int(config.get("smtp", "max_commands")),
        max_errors=int(config.get("smtp", "max_errors")),
        max_auth_failures=int(config.get("smtp", "max_auth_failures")),
        max_recipients=int(config.get("smtp", "max_recipients")),
        max_connections_per_ip=int(config.get("smtp", "max_connections_per_ip")),
    )


class SmtpService:
    """The three SMTP listeners of one process, sharing one handler."""

    def __init__(self, config: Config, db: Database, *, limits: policy.SessionLimits | None = None,
                 context: ssl.SSLContext | None = None, resolver: Resolver | None = None,
                 authenticator: Authenticator | None = None):
        self.config = config
        self.db = db
        self.limits = limits or session_limits(config)
        self.tls_handshake_seconds = float(config.get("smtp", "tls_handshake_timeout"))
        self.context = context if context is not None else tls_context(config)
        self.max_message_size = int(config.get("smtp", "max_message_size"))
        self.allow_plaintext_auth = bool(config.get("tls", "allow_plaintext_auth"))
        self._own_authenticator = authenticator is None
        self.authenticator = authenticator or Authenticator(db, PasswordHasher.from_config(config))
        self.handler = SmtpHandler(config, db, authenticator=self.authenticator,
                                   resolver=resolver or InboundResolver.from_config(config), limits=self.limits)
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self.connections: set[ESMTP] = set()
        self.per_client: collections.Counter[str] = collections.Counter()
        self._admitted: dict[ESMTP, str] = {}

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: the `[smtp]` limits, SIZE and the policy settings for the connections that
        follow (open sessions keep the limits they started with). The TLS handshake timeout of
        465 is fixed when its listener starts."""
        self.config = config
        self.limits = session_limits(config)
        self.max_message_size = int(config.get("smtp", "max_message_size"))
        self.allow_plaintext_auth = bool(config.get("tls", "allow_plaintext_auth"))
        self.handler.reconfigure(config, self.limits)

    def _protocol(self, listener: str) -> ESMTP:
        connection = ESMTP(
            self.handler, listener=listener, hostname=self.config.hostname, max_message_size=self.max_message_size,
            limits=self.limits, tls_context=self.context, implicit_tls=listener == policy.SUBMISSIONS,
            allow_plaintext_auth=self.allow_plaintext_auth and listener == policy.SUBMISSION,
            admit=self._admit, on_close=self._closed,
        )
        self.connections.add(connection)
        return connection

    def _admit(self, connection: ESMTP) -> bool:
        """At most `max_connections_per_ip` concurrent sessions per client address."""
        client = connection.client_ip or "unknown"
        if self.per_client[client] >= self.limits.max_connections_per_ip:
            log.info("too many connections", extra={"listener": connection.listener, "client": client})
            return False
        self.per_client[client] += 1
        self._admitted[connection] = client
        return True

    def _closed(self, connection: ESMTP) -> None:
        self.connections.discard(connection)
        client = self._admitted.pop(connection, None)
        if client is not None:
            self.per_client[client] -= 1
            if self.per_client[client] <= 0:
                del self.per_client[client]

    async def start(self, sockets: Mapping[str, socket.socket]) -> None:
        """Serve each listening socket named "mx", "submission" or "submissions"."""
        loop = asyncio.get_running_loop()
        for name, sock in sockets.items():
            if name not in policy.LISTENERS:
                log.warning("ignoring a socket for an unknown SMTP listener", extra={"listener": name})
                continue
            self.servers[name] = await loop.create_server(
                lambda name=name: self._protocol(name), sock=sock,
                ssl=self.context if name == policy.SUBMISSIONS else None,
                ssl_handshake_timeout=self.tls_handshake_seconds if name == policy.SUBMISSIONS else None,
            )
            log.info("SMTP listener ready", extra={"listener": name, "address": _address(sock)})

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting; let messages being sent (DATA, or BDAT up to its LAST chunk) or accepted
        finish (bounded); 421 the rest."""
        for server in self.servers.values():
            server.close()
        deadline = time.monotonic() + grace
        while any(c.busy or c.receiving or c.chunking for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.disconnect(replies.SHUTTING_DOWN)
        for _ in range(40):  # let connection_lost run for the closed transports (bounded)
            if not self.connections:
                break
            await asyncio.sleep(0.05)
        if self._own_authenticator:
            await asyncio.to_thread(self.authenticator.close)


def _address(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
