"""IMAP COMPRESS=DEFLATE (RFC 4978) over a real socket to the IMAP role process.

imaplib wrapped in raw deflate streams (zlib, wbits=-15): LOGIN, COMPRESS, then SELECT, FETCH
of a whole message and LOGOUT all travel compressed; a second COMPRESS is refused.
"""

from __future__ import annotations

import imaplib
import zlib

import pytest
from imap_server import imap_server  # noqa: F401
from store_fixtures import sample_message

pytestmark = pytest.mark.timeout(60)
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))  # imaplib does not know RFC 4978


class DeflateMixin:
    """imaplib with RFC 4978 raw deflate on the socket after `compress()`."""

    _deflate = None
    _inflate = None
    _plain = b""
    compressed_in = 0

    def compress(self) -> tuple[str, list]:
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self._deflate = zlib.compressobj(wbits=-15)
            self._inflate = zlib.decompressobj(wbits=-15)
        return typ, data

    def send(self, data: bytes) -> None:
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise self.abort("connection closed")
        self.compressed_in += len(chunk)
        self._plain += self._inflate.decompress(chunk)

    def readline(self) -> bytes:
        if self._inflate is None:
            return super().readline()
        for _ in range(10_000):
            if b"\n" in self._plain:
                break
            self._fill()
        line, _, self._plain = self._plain.partition(b"\n")
        return line + b"\n"

    def read(self, size: int) -> bytes:
        if self._inflate is None:
            return super().read(size)
        for _ in range(10_000):
            if len(self._plain) >= size:
                break
            self._fill()
        data, self._plain = self._plain[:size], self._plain[size:]
        return data


class DeflateIMAP4(DeflateMixin, imaplib.IMAP4):
    pass


class DeflateIMAP4SSL(DeflateMixin, imaplib.IMAP4_SSL):
    pass


@pytest.fixture
def server(imap_server):  # noqa: F811
    imap_server.clear()
    return imap_server


def test_compressed_session(server):
    body = b"The quick brown fox jumps over the lazy dog.\r\n" * 2000
    message = sample_message(1, body=body)
    server.store.deliver(server.mailbox_id, message)
    client = DeflateIMAP4("127.0.0.1", server.imap_port, timeout=10)
    assert "COMPRESS=DEFLATE" not in client.capabilities  # RFC 4978 §3: only after authentication
    client.login(server.address, server.password)
    typ, data = client.capability()
    assert typ == "OK" and b"COMPRESS=DEFLATE" in data[0].split()
    typ, _ = client.compress()
    assert typ == "OK"
    typ, data = client.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = client.uid("FETCH", "1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == message
    assert client.compressed_in < len(message) // 4  # the body really travelled compressed
    # RFC 4978 §3: a second COMPRESS is refused with COMPRESSIONACTIVE.
    typ, data = client._simple_command("COMPRESS", "DEFLATE")
    assert typ == "NO" and b"[COMPRESSIONACTIVE]" in data[0]
    assert client.noop()[0] == "OK"
    assert client.logout()[0] == "BYE"


def test_compression_inside_implicit_tls(server):
    message = sample_message(2, body=b"Compressed inside TLS.\r\n" * 500)
    server.store.deliver(server.mailbox_id, message)
    client = DeflateIMAP4SSL("127.0.0.1", server.imaps_port, ssl_context=server.tls_context(), timeout=10)
    client.login(server.address, server.password)
    assert client.compress()[0] == "OK"
    assert client.select("INBOX") == ("OK", [b"1"])
    typ, data = client.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == message
    assert client.logout()[0] == "BYE"
