"""IMAP metrics at the admin role's /metrics: a scripted IMAP session against `courriel serve`
(login, append, select, fetch, UID fetch, sort, IDLE, logout; then a failed login) moves the
counters of the IMAP role process by exactly what happened (sessions, commands by name and
completion, latency histogram counts, failed logins), and the open-session and IDLE gauges read
one while the session idles and fall back after it.
"""

from __future__ import annotations

import socket
import time

import pytest
from imap_server import wait_port
from metrics_scrape import scrape, value
from serve_process import (
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

pytestmark = pytest.mark.timeout(120)

ADDRESS = "box@metrics.test"
PASSWORD = "correct horse battery staple"
MESSAGE = b"From: a@example.net\r\nTo: box@metrics.test\r\nSubject: m\r\n\r\nbody\r\n"


class RawIMAP:
    """A line-level IMAP client: exactly the commands the test sends, nothing else."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        assert self.line().startswith(b"* OK")
        self.tags = 0

    def line(self) -> bytes:
        deadline = time.monotonic() + 10
        while b"\r\n" not in self.buffer:
            assert time.monotonic() < deadline, self.buffer
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def send(self, text: bytes) -> bytes:
        self.tags += 1
        tag = b"t%d" % self.tags
        self.sock.sendall(tag + b" " + text + b"\r\n")
        return tag

    def command(self, text: bytes) -> bytes:
        """Send a command and return its tagged status word (OK, NO, BAD)."""
        tag = self.send(text)
        for _ in range(1000):
            line = self.line()
            if line.startswith(tag + b" "):
                return line.split(b" ")[1]
        raise AssertionError("no tagged response")

    def close(self) -> None:
        self.sock.close()


COMMANDS = [("LOGIN", "ok", 1), ("LOGIN", "no", 1), ("APPEND", "ok", 1), ("SELECT", "ok", 1), ("FETCH", "ok", 1),
            ("UID FETCH", "ok", 1), ("SORT", "ok", 1), ("UID SORT", "ok", 0), ("IDLE", "ok", 1), ("LOGOUT", "ok", 2),
            ("FETCH", "bad", 1), ("NOOP", "ok", 0), ("CAPABILITY", "ok", 0)]


def test_imap_counters_move_by_exactly_the_scripted_session(served_data, tmp_path):
    add_mailbox(served_data, ADDRESS, PASSWORD)
    environ = listener_environ()
    port = admin_port(environ)
    imap_port = int(environ["COURRIEL_LISTENERS_IMAP"].rpartition(":")[2])
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(port, served)
        wait_port(imap_port, served)  # one greeting-only connection: counted before `before`
        wait_until(lambda: value(scrape(port), "courriel_imap_open_sessions") == 0, 20.0, "the probe to close")
        before = scrape(port)

        client = RawIMAP(imap_port)
        assert client.command(b"LOGIN " + ADDRESS.encode() + b' "' + PASSWORD.encode() + b'"') == b"OK"
        assert client.command(b"APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE) == b"OK"
        assert client.command(b"SELECT INBOX") == b"OK"
        assert client.command(b"FETCH 1 (FLAGS)") == b"OK"
        assert client.command(b"UID FETCH 1:* (UID)") == b"OK"
        assert client.command(b"SORT (DATE) UTF-8 ALL") == b"OK"
        assert client.command(b"FETCH 5 (FLAGS)") == b"BAD"  # no message 5
        tag = client.send(b"IDLE")
        assert client.line().startswith(b"+ ")
        during = wait_until(lambda: (found := scrape(port)) and value(found, "courriel_imap_idle_sessions") == 1
                            and found, 20.0, "the IDLE gauge")
        assert value(during, "courriel_imap_open_sessions") == 1
        client.sock.sendall(b"DONE\r\n")
        assert client.line().startswith(tag + b" OK")
        assert client.command(b"LOGOUT") == b"OK"
        client.close()

        failed = RawIMAP(imap_port)
        assert failed.command(b"LOGIN " + ADDRESS.encode() + b" wrong-password") == b"NO"
        assert failed.command(b"LOGOUT") == b"OK"
        failed.close()

        after = wait_until(lambda: (found := scrape(port)) and value(found, "courriel_imap_open_sessions") == 0
                           and value(found, "courriel_imap_commands_total", command="LOGOUT", status="ok")
                           >= value(before, "courriel_imap_commands_total", command="LOGOUT", status="ok") + 2
                           and found, 20.0, "both sessions to end")

        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("courriel_imap_sessions_total") == 2
        assert value(after, "courriel_imap_idle_sessions") == 0
        assert moved("courriel_auth_failures_total", protocol="imap") == 1
        for command, status, count in COMMANDS:
            assert moved("courriel_imap_commands_total", command=command, status=status) == count, (command, status)
        # One latency observation per command, whatever its completion.
        for command, total in (("LOGIN", 2), ("FETCH", 2), ("IDLE", 1), ("LOGOUT", 2), ("SORT", 1)):
            assert moved("courriel_imap_command_duration_seconds_count", command=command) == total, command
            assert moved("courriel_imap_command_duration_seconds_bucket", command=command, le="+Inf") == total
        # Nothing else was counted.
        counted = sum(v for (name, _), v in after.items() if name == "courriel_imap_commands_total") \
            - sum(v for (name, _), v in before.items() if name == "courriel_imap_commands_total")
        assert counted == sum(count for _, _, count in COMMANDS)
    finally:
        served.stop()
