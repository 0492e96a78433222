"""A small authoritative DNS server on 127.0.0.1 for tests, with a zone the test controls.

Use it from a test module::

    from dns_test_server import dns_server  # the pytest fixture

    def test_mx(dns_server):
        dns_server.add("example.org", "MX", "10 mx1.example.org")
        dns_server.add("mx1.example.org", "A", "192.0.2.1")
        resolver = Resolver([dns_server.nameserver], timeout=1.0)   # "127.0.0.1:PORT"
        ...
        dns_server.fail("example.org", "servfail")                 # temperror paths
        dns_server.fail("example.org", None)                       # back to normal

Or point a `Config` at it: `COURRIEL_DNS_NAMESERVERS=<dns_server.nameserver>`.

The fixture starts one server per test on a free port that is bound for both UDP and TCP
(`.port`, `.nameserver` == "127.0.0.1:PORT") and stops it afterwards. The zone can change while
the server runs; every change is visible to the next query (the server does not cache, and
the answers carry TTL 0 unless given).

Zone API (names are case-insensitive, with or without the trailing dot):
- `add(name, rtype, value, ttl=0)` adds one record. Values by type:
  A "192.0.2.1"; AAAA "2001:db8::1"; MX "10 mx.example.org" (null MX: "0 ."); CNAME and PTR
  "target.example.org"; SRV "0 1 993 imap.example.org"; TXT a str (split into 255-byte
  strings if longer) or a list/tuple of strings (one record made of several strings).
- `add_ptr(ip, host)` adds the PTR record of an IPv4/IPv6 address.
- `remove(name, rtype=None, value=None)`: the records of a name (of one type, or one value).
- `clear()` empties the zone and the failure switches.
- `fail(name, mode)`: mode "servfail" answers SERVFAIL, "refused" answers REFUSED, "timeout"
  never answers (UDP and TCP), None restores normal answers for that name.
- `queries`: list of (name, rtype) received, in order, for assertions.

Answers: a name with records of another type (or only names below it: an empty non-terminal)
gets NOERROR with no answer and an SOA in the authority section (NODATA); an unknown name gets
NXDOMAIN (RFC 8020). CNAMEs are followed inside the zone. A UDP answer larger than the client's
EDNS buffer (512 without EDNS) is truncated (TC) so the client retries over TCP.

Security: test-only; binds 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator

import pytest
from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSError, DNSRecord

SUPPORTED_TYPES = ("A", "AAAA", "MX", "TXT", "SRV", "PTR", "CNAME")
FAILURE_MODES = ("servfail", "refused", "timeout")
MAX_CNAME_CHAIN = 8


def _absolute(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def _txt_strings(value) -> list[bytes]:
    if isinstance(value, list | tuple):
        return [v.encode() if isinstance(v, str) else bytes(v) for v in value]
    data = value.encode() if isinstance(value, str) else bytes(value)
    return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]


def _rdata(rtype: str, value):
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "MX":
        preference, exchange = value if isinstance(value, tuple) else value.split()
        return MX(_absolute(exchange) if exchange != "." else ".", int(preference))
    if rtype == "CNAME":
        return CNAME(_absolute(value))
    if rtype == "PTR":
        return PTR(_absolute(value))
    if rtype == "SRV":
        priority, weight, port, target = value if isinstance(value, tuple) else value.split()
        return SRV(int(priority), int(weight), int(port), _absolute(target) if target != "." else ".")
    if rtype == "TXT":
        return TXT(_txt_strings(value))
    raise ValueError(f"unsupported record type {rtype!r}; use one of {SUPPORTED_TYPES}")


class DnsTestServer:
    """An authoritative server for every name, answering from an in-memory zone."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.port = 0
        self.queries: list[tuple[str, str]] = []
        self._records: dict[str, list[tuple[str, object, int]]] = {}
        self._failures: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    @property
    def nameserver(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ zone
    def add(self, name: str, rtype: str, value, ttl: int = 0) -> None:
        rtype = rtype.upper()
        _rdata(rtype, value)  # reject bad values at once, in the test
        with self._lock:
            self._records.setdefault(_absolute(name), []).append((rtype, value, ttl))

    def add_ptr(self, ip: str, host: str, ttl: int = 0) -> None:
        self.add(ipaddress.ip_address(ip).reverse_pointer, "PTR", host, ttl)

    def remove(self, name: str, rtype: str | None = None, value=None) -> None:
        key = _absolute(name)
        with self._lock:
            kept = [
                r for r in self._records.get(key, [])
                if not ((rtype is None or r[0] == rtype.upper()) and (value is None or r[1] == value))
            ]
            if kept:
                self._records[key] = kept
            else:
                self._records.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._failures.clear()

    def fail(self, name: str, mode: str | None) -> None:
        if mode is not None and mode not in FAILURE_MODES:
            raise ValueError(f"failure mode must be one of {FAILURE_MODES} or None")
        with self._lock:
            if mode is None:
                self._failures.pop(_absolute(name), None)
            else:
                self._failures[_absolute(name)] = mode

    # ------------------------------------------------------------------ answers
    def _exists(self, name: str) -> bool:
        return name in self._records or any(key.endswith("." + name) for key in self._records)

    def answer(self, request: DNSRecord) -> DNSRecord | None:
        """The reply to `request`, or None when the name is switched to "timeout"."""
        reply = request.reply(aa=1, ra=0)
        if not request.questions:
            reply.header.rcode = RCODE.FORMERR
            return reply
        question = request.q
        qname = _absolute(str(question.qname))
        qtype = QTYPE.get(question.qtype)
        with self._lock:
            self.queries.append((qname, qtype))
            failure = self._failures.get(qname)
            if failure == "timeout":
                return None
            if failure == "servfail":
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            if failure == "refused":
                reply.header.rcode = RCODE.REFUSED
                return reply
            name = qname
            for _ in range(MAX_CNAME_CHAIN):
                records = self._records.get(name, [])
                matching = [r for r in records if r[0] == qtype]
                cnames = [r for r in records if r[0] == "CNAME"]
                if matching or not cnames or qtype == "CNAME":
                    for rtype, value, ttl in matching:
                        reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=_rdata(rtype, value), ttl=ttl))
                    break
                rtype, value, ttl = cnames[0]
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=_rdata("CNAME", value), ttl=ttl))
                name = _absolute(value)
            if not reply.rr:
                if self._exists(name):
                    reply.header.rcode = RCODE.NOERROR
                else:
                    reply.header.rcode = RCODE.NXDOMAIN
                soa = SOA("ns.test.", "hostmaster.test.", (1, 3600, 600, 86400, 0))
                reply.add_auth(RR(name, QTYPE.SOA, rdata=soa, ttl=0))
        return reply

    # ------------------------------------------------------------------ sockets
    def start(self) -> DnsTestServer:
        owner = self

        class UdpHandler(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                try:
                    request = DNSRecord.parse(data)
                except DNSError:
                    return
                reply = owner.answer(request)
                if reply is None:
                    return
                packed = reply.pack()
                limit = max(512, *(rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT), 512)
                if len(packed) > limit:
                    truncated = request.reply(aa=1, ra=0)
                    truncated.header.tc = 1
                    packed = truncated.pack()
                sock.sendto(packed, self.client_address)

        class TcpHandler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.settimeout(5)
                with contextlib.suppress(OSError):
                    while not owner._stopping.is_set():
                        header = self._read(2)
                        if header is None:
                            return
                        data = self._read(struct.unpack("!H", header)[0])
                        if data is None:
                            return
                        try:
                            request = DNSRecord.parse(data)
                        except DNSError:
                            return
                        reply = owner.answer(request)
                        if reply is None:
                            owner._stopping.wait(10)
                            return
                        packed = reply.pack()
                        self.request.sendall(struct.pack("!H", len(packed)) + packed)

            def _read(self, size: int) -> bytes | None:
                data = b""
                while len(data) < size:
                    chunk = self.request.recv(size - len(data))
                    if not chunk:
                        return None
                    data += chunk
                return data

        class Udp(socketserver.ThreadingUDPServer):
            daemon_threads = True
            allow_reuse_address = False

        class Tcp(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        last_error: OSError | None = None
        for _ in range(20):
            udp = Udp((self.host, 0), UdpHandler)
            port = udp.server_address[1]
            try:
                tcp = Tcp((self.host, port), TcpHandler)
            except OSError as exc:
                last_error = exc
                udp.server_close()
                continue
            self.port = port
            self._servers = [udp, tcp]
            break
        else:
            raise RuntimeError(f"no free UDP+TCP port on {self.host}: {last_error}")
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def running_dns_server() -> Iterator[DnsTestServer]:
    server = DnsTestServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    """A running loopback DNS server with an empty zone (see the module documentation)."""
    with running_dns_server() as server:
        yield server


def query(server: DnsTestServer, name: str, rtype: str, tcp: bool = False, timeout: float = 2.0) -> DNSRecord:
    """Send one raw query to the server (for tests of the server itself)."""
    packet = DNSRecord.question(name, rtype).pack()
    if tcp:
        with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
            sock.sendall(struct.pack("!H", len(packet)) + packet)
            length = struct.unpack("!H", sock.recv(2))[0]
            data = b""
            while len(data) < length:
                data += sock.recv(length - len(data))
        return DNSRecord.parse(data)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server.host, server.port))
        return DNSRecord.parse(sock.recv(65535))
