"""The IMAP transport: Twisted TCP and TLS listeners around `courriel.imap.session` (ring 2).

Owns the sockets of the IMAP role: the STARTTLS listener (143) and the implicit-TLS
listener (993), adopted from the sockets the role receives; TLS through pyOpenSSL from the
data directory's certificate, TLS 1.2 minimum; STARTTLS; the timeouts (before login: 60 s of
silence or 180 s in all without a successful login, like Dovecot's fixed login timeout; after
login the 30-minute autologout timer; the session switches them with `set_authenticated`); the
connection limits of a process (`ConnectionCounts`: per client address and in all); and the
streaming of large literals from blob files with flow control (the connection's push producer
pauses the reading of the file while the peer is slow).

The session is transport-agnostic asyncio code: it sees a `Connection` (write, stream a
literal, start TLS, close). Twisted runs on the asyncio reactor installed by
`courriel.imap.role`, so both share one loop. This module never imports
`twisted.internet.reactor` at import time.

Standards: RFC 3501 §6.2.1 and RFC 2595 §3.1 (STARTTLS: the TLS negotiation starts right
after the tagged OK; plaintext pipelined after the command is discarded, never executed
inside TLS — the command injection of CVE-2011-0411 and its IMAP siblings), RFC 8314 §3.3
(implicit TLS on 993), RFC 3501 §5.4 / RFC 9051 §5.4 (autologout timer of at least 30 minutes
once authenticated; a shorter one is allowed before login), RFC 9051 §7.1.5 (BYE), RFC 4978
(COMPRESS=DEFLATE: after the tagged OK both directions are raw deflate, RFC 1951, each write
ending in a sync flush; inside TLS when TLS is on).
Security: reads untrusted bytes from the network and hands them to the session's parser;
limits per address and in all (a client over either limit gets BYE and is closed at once);
unauthenticated connections are short-lived; TLS versions below 1.2 refused. Compressed input
is inflated in bounded pieces and only while the session reads (a small deflate bomb cannot
expand past the session's input high-water mark); a corrupt stream closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import zlib
from pathlib import Path

from OpenSSL import crypto
from twisted.internet import protocol, ssl
from twisted.internet.interfaces import IPushProducer
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

log = logging.getLogger("courriel.imap")

IDLE_TIMEOUT = 30 * 60  # RFC 3501 §5.4: at least 30 minutes
LOGIN_TIMEOUT = 60.0  # RFC 9051 §5.4: silence allowed before login
LOGIN_DEADLINE = 180.0  # time to log in at all, activity or not (Dovecot's login timeout is 3 minutes)
_HIGH_WATER = 256 * 1024
_INFLATE_PIECE = 64 * 1024  # bytes of inflated input handed to the session at a time


def tls_options(cert_path: Path, key_path: Path) -> ssl.CertificateOptions:
    """Server TLS settings from PEM files: TLS 1.2 minimum, the chain sent in full."""
    pem = Path(cert_path).read_bytes()
    blocks = [b"-----BEGIN CERTIFICATE-----" + part for part in pem.split(b"-----BEGIN CERTIFICATE-----")[1:]]
    certificates = [crypto.load_certificate(crypto.FILETYPE_PEM, block) for block in blocks]
    key = crypto.load_privatekey(crypto.FILETYPE_PEM, Path(key_path).read_bytes())
    return ssl.CertificateOptions(privateKey=key, certificate=certificates[0], extraCertChain=certificates[1:],
                                  raiseMinimumTo=ssl.TLSVersion.TLSv1_2)


@implementer(IPushProducer)
class IMAPConnection(protocol.Protocol, TimeoutMixin):
    """One client connection: bytes in to the session, responses and literals out."""

    def __init__(self, factory: IMAPFactory, implicit_tls: bool):
        self.factory = factory
        self.implicit_tls = implicit_tls
        self.tls_active = implicit_tls
        self.session = None
        self.peer_ip = ""
        self._paused = False
        self._resumed: asyncio.Event | None = None
        self._closed = False
        self._deflate = None  # RFC 4978: zlib streams once COMPRESS DEFLATE succeeded
        self._inflate = None
        self._compressed_input = b""
        self._reading_paused = False
        self._login_deadline = None  # IDelayedCall closing a connection that never logs in

    # ------------------------------------------------------------------ Twisted side

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer_ip = getattr(peer, "host", "")
        refused = self.factory.admit(self.peer_ip)
        if refused is not None:
            self.transport.write(b"* BYE " + refused.encode("ascii") + b"\r\n")  # RFC 9051 §7.1.5
            self._closed = True
            self.transport.loseConnection()
            return
        self.factory.connections.add(self)
        self.transport.registerProducer(self, True)
        self.set_authenticated(False)
        self.session = self.factory.session_factory(self)
        self.session.start()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self._inflate is not None:
            self._compressed_input += data
            self._inflate_input()
        elif self.session is not None and not self._closed:
            self.session.data_received(data)

    def _inflate_input(self) -> None:
        """Inflate buffered compressed input in bounded pieces while the session reads."""
        while self._compressed_input and not self._reading_paused and not self._closed and self.session is not None:
            try:
                plain = self._inflate.decompress(self._compressed_input, _INFLATE_PIECE)
            except zlib.error:
                self.write(b"* BYE Corrupt compressed data\r\n")
                self.close()
                return
            self._compressed_input = self._inflate.unconsumed_tail
            if not plain:
                self._compressed_input = b""  # past the end of the deflate stream: nothing more to read
                return
            self.session.data_received(plain)

    def set_authenticated(self, authenticated: bool) -> None:
        """Login timers before authentication, the autologout timer after (the session calls this)."""
        if self._login_deadline is not None and self._login_deadline.active():
            self._login_deadline.cancel()
        self._login_deadline = None
        if authenticated:
            self.setTimeout(self.factory.idle_timeout)
            return
        self.setTimeout(self.factory.login_timeout)
        if self.factory.login_deadline and not self._closed:
            self._login_deadline = self.callLater(self.factory.login_deadline, self._login_expired)

    def _login_expired(self) -> None:
        self._login_deadline = None
        self.write(b"* BYE Login timeout\r\n")
        self.close()

    def timeoutConnection(self) -> None:
        # RFC 3501 §5.4 autologout: a BYE, then close.
        self.write(b"* BYE Autologout; idle for too long\r\n")
        self.close()

    def connectionLost(self, reason=None) -> None:
        self.setTimeout(None)
        if self._login_deadline is not None and self._login_deadline.active():
            self._login_deadline.cancel()
        self._login_deadline = None
        self._closed = True
        if self._resumed is not None:
            self._resumed.set()
        if self in self.factory.connections:
            self.factory.connections.discard(self)
            self.factory.release(self.peer_ip)
        if self.session is not None:
            self.session.connection_lost()
            self.session = None

    # IPushProducer: Twisted pauses us when its write buffer is full.
    def pauseProducing(self) -> None:
        self._paused = True
        if self._resumed is not None:
            self._resumed.clear()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._resumed is not None:
            self._resumed.set()

    def stopProducing(self) -> None:
        self._closed = True
        if self._resumed is not None:
            self._resumed.set()

    # ------------------------------------------------------------------ what the session uses

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes) -> None:
        if not self._closed and data:
            if self._deflate is not None:
                # RFC 4978 §4: flush so the peer can read every response at once.
                data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
            self.transport.write(data)

    @property
    def compression_active(self) -> bool:
        return self._deflate is not None

    def start_compression(self) -> None:
        """RFC 4978 §3: from now on both directions are raw deflate (the tagged OK went out before)."""
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)

    async def drain(self) -> None:
        """Wait while the peer is slow (the transport paused us)."""
        if self._paused and not self._closed:
            if self._resumed is None:
                self._resumed = asyncio.Event()
            self._resumed.clear()
            await self._resumed.wait()

    async def write_chunks(self, chunks) -> None:
        """Write a response produced in pieces (a FETCH with literals read from blob files):
        each piece is produced in a thread, one in flight, paused while the peer does not read."""
        iterator = iter(chunks)
        sentinel = object()
        try:
            while not self._closed:
                chunk = await asyncio.to_thread(next, iterator, sentinel)
                if chunk is sentinel:
                    return
                self.write(chunk)
                await self.drain()
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def pause_reading(self) -> None:
        self._reading_paused = True
        pause = getattr(self.transport, "pauseProducing", None)
        if pause is not None and not self._closed:
            pause()

    def resume_reading(self) -> None:
        self._reading_paused = False
        self.resetTimeout()  # the pause was the server's: its time is not the client's silence
        resume = getattr(self.transport, "resumeProducing", None)
        if resume is not None and not self._closed:
            resume()
        if self._inflate is not None:
            self._inflate_input()

    def start_tls(self) -> None:
        """Switch to TLS now; the tagged OK was written just before (RFC 3501 §6.2.1)."""
        self.transport.startTLS(self.factory.tls)
        self.tls_active = True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            # A registered producer holds back the TLS close_notify and the close itself.
            self.transport.unregisterProducer()
            self.transport.loseConnection()


class ConnectionCounts:
    """Open connections of one process, shared by its listeners: per client address and in all.
    0 for a limit means no limit."""

    def __init__(self, max_per_ip: int = 100, max_total: int = 0):
        self.max_per_ip = max_per_ip
        self.max_total = max_total
        self.per_ip: dict[str, int] = {}
        self.total = 0

    def admit(self, ip: str) -> str | None:
        """Count one more connection from `ip`, or the BYE text that refuses it."""
        if self.max_total and self.total >= self.max_total:
            return "Too many connections; try again later"
        if self.max_per_ip and self.per_ip.get(ip, 0) >= self.max_per_ip:
            return "Too many connections from your address"
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        self.total += 1
        return None

    def release(self, ip: str) -> None:
        left = self.per_ip.get(ip, 0) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)
        self.total = max(0, self.total - 1)


class IMAPFactory(protocol.Factory):
    """Connections of one listener; `session_factory(connection)` makes the session."""

    def __init__(self, session_factory, tls: ssl.CertificateOptions | None, implicit_tls: bool,
                 counts: ConnectionCounts | None = None, idle_timeout: float = IDLE_TIMEOUT,
                 login_timeout: float = LOGIN_TIMEOUT, login_deadline: float = LOGIN_DEADLINE):
        self.session_factory = session_factory
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.counts = counts if counts is not None else ConnectionCounts()  # shared by the listeners
        self.idle_timeout = idle_timeout
        self.login_timeout = login_timeout
        self.login_deadline = login_deadline
        self.connections: set[IMAPConnection] = set()

    def buildProtocol(self, addr) -> IMAPConnection:
        connection = IMAPConnection(self, self.implicit_tls)
        connection.factory = self
        return connection

    def admit(self, ip: str) -> str | None:
        return self.counts.admit(ip)

    def release(self, ip: str) -> None:
        self.counts.release(ip)


def listen(reactor, sock: socket.socket, factory: IMAPFactory):
    """Serve `factory` on an already listening socket (from the supervisor or systemd);
    the implicit-TLS listener wraps every connection in TLS first (RFC 8314)."""
    wrapped = TLSMemoryBIOFactory(factory.tls, False, factory) if factory.implicit_tls else factory
    sock.setblocking(False)
    port = reactor.adoptStreamPort(sock.fileno(), sock.family, wrapped)
    sock.close()  # the reactor holds its own duplicate of the descriptor
    return port
