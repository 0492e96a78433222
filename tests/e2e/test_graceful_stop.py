"""SIGTERM to `courriel serve` stops gracefully: no mail lost, none duplicated, sessions told.

- SMTP: a client half-way through DATA when the stop begins finishes sending and gets 250; the
  message then is delivered exactly once (by a server started again on the same data directory,
  if the stopping queue role did not get to it). So does a client between two BDAT chunks.
- IMAP: a client in IDLE gets `* BYE` and a clean TLS close (close_notify, then EOF) while the
  role stops; the role and the supervisor then exit with status 0. A FETCH in flight (a large
  body the client reads slowly) is answered in full with its tagged OK, then BYE; so is an APPEND
  whose literal is still arriving.
"""

from __future__ import annotations

import imaplib
import signal
import smtplib
import socket
import ssl
import time

import pytest
from serve_process import (
    STOP_DEADLINE,
    add_mailbox,
    admin_port,
    initialised_template,
    listener_environ,
    serve,
    served_data,
    wait_healthy,
    wait_until,
)

__all__ = ["initialised_template", "served_data"]

pytestmark = pytest.mark.timeout(180)

ADDRESS = "box@stop.test"
PASSWORD = "correct horse battery staple"


def port_of(environ, listener: str) -> int:
    return int(environ[f"COURRIEL_LISTENERS_{listener.upper()}"].rpartition(":")[2])


def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # the self-signed certificate of `courriel init`
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def messages_with_subject(environ, subject: str) -> int:
    client = imaplib.IMAP4_SSL("127.0.0.1", port_of(environ, "imaps"), ssl_context=client_context(), timeout=10)
    try:
        client.login(ADDRESS, PASSWORD)
        client.select("INBOX", readonly=True)
        typ, data = client.search(None, "SUBJECT", f'"{subject}"')
        assert typ == "OK"
        return len(data[0].split())
    finally:
        client.logout()


def assert_there_once_after_restart(data, environ, tmp_path, subject: str) -> None:
    """A server started again on the same data directory shows the message exactly once (the
    stopping queue role may have left its delivery to this one)."""
    again = serve(data, environ, tmp_path / "again.log")
    try:
        wait_healthy(admin_port(environ), again)
        wait_until(lambda: messages_with_subject(environ, subject) >= 1, 60, "the delivery of the message")
        assert messages_with_subject(environ, subject) == 1
    finally:
        again.stop()
    assert again.process.returncode == 0, again.log()


def test_sigterm_during_smtp_data_lets_the_client_finish_and_the_message_arrives_once(served_data, tmp_path):
    add_mailbox(served_data, ADDRESS, PASSWORD)
    environ = listener_environ()
    served = serve(served_data, environ, tmp_path / "serve.log")
    subject = f"graceful-{time.monotonic_ns()}"
    text = (f"From: {ADDRESS}\r\nTo: {ADDRESS}\r\nSubject: {subject}\r\n\r\n" + "line of the body\r\n" * 2000).encode()
    try:
        wait_healthy(admin_port(environ), served)
        smtp = wait_until(lambda: smtplib.SMTP_SSL("127.0.0.1", port_of(environ, "submissions"),
                                                   context=client_context(), timeout=10), 30, "the 465 listener")
        smtp.ehlo("client.stop.test")
        smtp.login(ADDRESS, PASSWORD)
        assert smtp.mail(ADDRESS)[0] == 250
        assert smtp.rcpt(ADDRESS)[0] == 250
        assert smtp.docmd("DATA")[0] == 354
        half = len(text) // 2
        smtp.sock.sendall(text[:half])
        served.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "smtp role stopping" in served.log(), 10, "the smtp role to begin its stop")
        smtp.sock.sendall(text[half:] + b".\r\n")
        code, reply = smtp.getreply()
        assert code == 250, reply  # the transaction in flight was finished, not cut
        assert b"queued as" in reply
        closing = smtp.getreply()  # then the stop goes on: 421, and the connection closes
        assert closing[0] in (421, -1), closing
        assert served.wait_exit(STOP_DEADLINE) == 0, served.log()
    finally:
        served.stop()
    assert "message queued" in served.log()

    assert_there_once_after_restart(served_data, environ, tmp_path, subject)


class TLSLines:
    """A line reader on an implicit-TLS IMAP connection that tells a clean close from a cut one."""

    def __init__(self, port: int, receive_buffer: int | None = None):
        raw = socket.socket()
        if receive_buffer is not None:  # before connect: the window the server may fill
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        raw.settimeout(10)
        raw.connect(("127.0.0.1", port))
        self.sock = client_context().wrap_socket(raw, suppress_ragged_eofs=False)
        self.buffer = b""

    def line(self) -> bytes | None:
        """The next line, or None at a clean end of the connection (TLS close_notify, then EOF)."""
        deadline = time.monotonic() + 10
        while b"\r\n" not in self.buffer:
            assert time.monotonic() < deadline, self.buffer
            data = self.sock.recv(65536)  # an unclean end raises SSLEOFError here
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.sock.recv(min(1 << 20, size - len(self.buffer)))
            assert data, "connection closed inside a literal"
            self.buffer += data
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def command(self, tag: bytes, text: bytes) -> bytes:
        self.sock.sendall(tag + b" " + text + b"\r\n")
        for _ in range(100):
            line = self.line()
            assert line is not None, "connection closed"
            if line.startswith(tag + b" "):
                return line
        raise AssertionError("no tagged response")


def test_sigterm_between_bdat_chunks_lets_the_client_send_the_last_one(served_data, tmp_path):
    """RFC 3030: a BDAT transaction is in flight from its first chunk to BDAT LAST; a stop that
    begins in between lets the client finish it (250), then says 421."""
    add_mailbox(served_data, ADDRESS, PASSWORD)
    environ = listener_environ()
    served = serve(served_data, environ, tmp_path / "serve.log")
    subject = f"chunked-{time.monotonic_ns()}"
    text = (f"From: {ADDRESS}\r\nTo: {ADDRESS}\r\nSubject: {subject}\r\n\r\n" + "chunked body line\r\n" * 500).encode()
    half = len(text) // 2
    try:
        wait_healthy(admin_port(environ), served)
        smtp = wait_until(lambda: smtplib.SMTP_SSL("127.0.0.1", port_of(environ, "submissions"),
                                                   context=client_context(), timeout=10), 30, "the 465 listener")
        smtp.ehlo("client.stop.test")
        assert "chunking" in smtp.esmtp_features
        smtp.login(ADDRESS, PASSWORD)
        assert smtp.mail(ADDRESS)[0] == 250
        assert smtp.rcpt(ADDRESS)[0] == 250
        smtp.send(b"BDAT %d\r\n" % half + text[:half])
        assert smtp.getreply()[0] == 250
        served.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "smtp role stopping" in served.log(), 10, "the smtp role to begin its stop")
        smtp.send(b"BDAT %d LAST\r\n" % (len(text) - half) + text[half:])
        code, reply = smtp.getreply()
        assert code == 250, reply
        assert b"queued as" in reply
        closing = smtp.getreply()
        assert closing[0] in (421, -1), closing
        assert served.wait_exit(STOP_DEADLINE) == 0, served.log()
    finally:
        served.stop()

    assert_there_once_after_restart(served_data, environ, tmp_path, subject)


def logged_in_imap(environ, receive_buffer: int | None = None) -> TLSLines:
    """A raw 993 connection, greeted and logged in (tag "a")."""
    client = wait_until(lambda: TLSLines(port_of(environ, "imaps"), receive_buffer), 30, "the 993 listener")
    assert client.line().startswith(b"* OK")
    assert client.command(b"a", b'LOGIN ' + ADDRESS.encode() + b' "' + PASSWORD.encode() + b'"').startswith(b"a OK")
    return client


def test_sigterm_during_imap_idle_says_bye_and_closes_cleanly(served_data, tmp_path):
    add_mailbox(served_data, ADDRESS, PASSWORD)
    environ = listener_environ()
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(admin_port(environ), served)
        client = logged_in_imap(environ)
        assert client.command(b"b", b"SELECT INBOX").startswith(b"b OK")
        client.sock.sendall(b"c IDLE\r\n")
        assert client.line().startswith(b"+ ")
        served.process.send_signal(signal.SIGTERM)
        lines = []
        for _ in range(20):
            line = client.line()
            if line is None:
                break
            lines.append(line)
        assert lines and lines[-1].startswith(b"* BYE"), lines
        assert line is None  # close_notify then EOF: not a cut connection
        client.sock.close()
        assert served.wait_exit(STOP_DEADLINE) == 0, served.log()
    finally:
        served.stop()
    log = served.log()
    assert "imap role stopped" in log
    assert [line for line in log.splitlines() if "role stopped role=imap" in line and "exit status 0" in line]


def test_sigterm_lets_an_imap_fetch_in_flight_finish_then_says_bye(served_data, tmp_path):
    add_mailbox(served_data, ADDRESS, PASSWORD)
    environ = listener_environ()
    body = b"".join(b"%07d the body of a large message, read slowly by its client\r\n" % n for n in range(180_000))
    message = f"From: {ADDRESS}\r\nTo: {ADDRESS}\r\nSubject: large\r\n\r\n".encode() + body  # ~12 MB
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(admin_port(environ), served)
        client = logged_in_imap(environ, receive_buffer=32 * 1024)
        client.sock.sendall(b"b APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
        for _ in range(100):
            line = client.line()
            if line.startswith(b"b "):
                break
        assert line.startswith(b"b OK"), line
        assert client.command(b"c", b"SELECT INBOX").startswith(b"c OK")
        client.sock.sendall(b"d FETCH 1 BODY.PEEK[]\r\n")
        head = client.line()  # the response has begun; the rest waits for this client to read
        assert head.startswith(b"* 1 FETCH") and head.endswith(b"{%d}" % len(message)), head
        served.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "imap role stopping" in served.log(), 10, "the imap role to begin its stop")
        (stopping,) = [line for line in served.log().splitlines() if "imap role stopping" in line]
        assert "finishing=1" in stopping, stopping
        assert client.read_exactly(len(message)) == message
        assert client.line() == b")"
        assert client.line().startswith(b"d OK")
        assert client.line().startswith(b"* BYE")
        assert client.line() is None  # then a clean close
        client.sock.close()
        assert served.wait_exit(STOP_DEADLINE) == 0, served.log()
    finally:
        served.stop()


def test_sigterm_lets_an_imap_append_still_arriving_finish_then_says_bye(served_data, tmp_path):
    """An APPEND whose literal is half sent when the stop begins is a command in flight: the
    rest is read, the message stored and OK'd (APPENDUID), then BYE; it is there afterwards."""
    add_mailbox(served_data, ADDRESS, PASSWORD)
    environ = listener_environ()
    message = (f"From: {ADDRESS}\r\nTo: {ADDRESS}\r\nSubject: arriving\r\n\r\n".encode()
               + b"a line of the body that is still on its way\r\n" * 2000)
    half = len(message) // 2
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(admin_port(environ), served)
        client = logged_in_imap(environ)
        client.sock.sendall(b"b APPEND INBOX {%d}\r\n" % len(message))
        assert client.line().startswith(b"+")  # a synchronising literal: the server asked for it
        client.sock.sendall(message[:half])
        served.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "imap role stopping" in served.log(), 10, "the imap role to begin its stop")
        (stopping,) = [line for line in served.log().splitlines() if "imap role stopping" in line]
        assert "finishing=1" in stopping, stopping
        client.sock.sendall(message[half:] + b"\r\n")
        done = client.line()
        assert done.startswith(b"b OK [APPENDUID "), done
        assert client.line().startswith(b"* BYE")
        assert client.line() is None
        client.sock.close()
        assert served.wait_exit(STOP_DEADLINE) == 0, served.log()
    finally:
        served.stop()
    assert_there_once_after_restart(served_data, environ, tmp_path, "arriving")
