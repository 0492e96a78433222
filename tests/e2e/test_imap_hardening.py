"""IMAP hardening over real sockets to the IMAP role process: what a client may make the server
hold before and after login (literal limits, APPENDLIMIT, spooled APPEND), how long an
unauthenticated connection lives, the connection cap, repeated failed logins, and what the log
says about a hostile user name.

The server runs with a 2 s login timeout (6 s to log in at all), at most 8 connections and a
1 MB message size, so each limit is reached quickly.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import time
from pathlib import Path

import pytest
from imap_server import running_imap_server
from serve_process import descendants_of
from sqlalchemy import delete

from courriel.imap.session import loggable
from courriel.models import LoginFailure

pytestmark = pytest.mark.timeout(90)

LOGIN_TIMEOUT = 2
MAX_CONNECTIONS = 8
MAX_MESSAGE = 1_000_000


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    settings = {"COURRIEL_IMAP_LOGIN_TIMEOUT": str(LOGIN_TIMEOUT),
                "COURRIEL_IMAP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                "COURRIEL_SMTP_MAX_MESSAGE_SIZE": str(MAX_MESSAGE)}
    with running_imap_server(tmp_path_factory.mktemp("imap-hardening"), **settings) as server:
        yield server


@pytest.fixture
def server(module_server):
    module_server.clear()
    with module_server.db.write() as session:  # failed logins of one test must not throttle the next
        session.execute(delete(LoginFailure))
    return module_server


class Raw:
    """A line-oriented raw client; every read waits on data with a deadline."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, pattern: bytes, deadline: float = 10.0) -> bytes:
        """Bytes up to and including the first line matching `pattern` (regex); b"" on EOF."""
        regex = re.compile(pattern)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for match in re.finditer(rb"[^\n]*\n", self.buffer):
                if regex.search(match.group(0)):
                    taken, self.buffer = self.buffer[:match.end()], self.buffer[match.end():]
                    return taken
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                return b""
            self.buffer += chunk
        raise AssertionError(f"no line matching {pattern!r} in {self.buffer[-500:]!r}")

    def closed_by_server(self, deadline: float = 10.0) -> bytes:
        """Everything until the server closes the connection (bounded)."""
        end = time.monotonic() + deadline
        received = self.buffer
        while time.monotonic() < end:
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk
        raise AssertionError(f"the server kept the connection open: {received[-500:]!r}")

    def login(self, user: str, password: str, tag: bytes = b"L1") -> bytes:
        self.send(tag + b' LOGIN "' + user.encode() + b'" "' + password.encode() + b'"\r\n')
        return self.read_until(rb"^" + tag + rb" (OK|NO|BAD)")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture
def raw(server):
    clients: list[Raw] = []

    def connect() -> Raw:
        client = Raw(server.imap_port)
        clients.append(client)
        assert client.read_until(rb"^\* OK").startswith(b"* OK")
        return client

    yield connect
    for client in clients:
        client.close()


def open_descriptors_under(directory: Path, pid: int) -> list[str]:
    """Paths (deleted ones too) under `directory` that the role process or its children hold open."""
    found = []
    for process in [pid, *descendants_of(pid)]:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{process}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{process}/fd/{fd}")
                    if target.startswith(str(directory)):
                        found.append(target)
    return found


# --------------------------------------------------------------------------- literals before login

def test_before_login_big_literals_are_refused_without_continuation(server, raw):
    client = raw()
    client.send(b"a1 APPEND INBOX {35000000}\r\n")
    answer = client.read_until(rb"^a1 ")
    assert re.match(rb"a1 BAD \[TOOBIG\]", answer), answer
    client.send(b"a2 LOGIN {5000}\r\n")
    assert re.match(rb"a2 BAD \[TOOBIG\]", client.read_until(rb"^a2 "))
    client.send(b"a3 NOOP\r\n")
    answer = client.read_until(rb"^a3 ")
    assert b"+ " not in answer and answer.startswith(b"a3 OK")
    # LOGIN with synchronising literals of ordinary size works.
    user, password = server.address.encode(), server.password.encode()
    client.send(b"a4 LOGIN {%d}\r\n" % len(user))
    assert client.read_until(rb"^\+").startswith(b"+")
    client.send(user + b" {%d}\r\n" % len(password))
    assert client.read_until(rb"^\+").startswith(b"+")
    client.send(password + b"\r\n")
    assert client.read_until(rb"^a4 ").startswith(b"a4 OK")
    # After login the same literal size is an APPEND like any other (the server invites it) ...
    client.send(b"a5 APPEND INBOX {100000}\r\n")
    assert client.read_until(rb"^(\+|a5 )").startswith(b"+")
    client.send(b"Subject: x\r\n\r\n" + b"y" * (100000 - 15) + b"\r\n")
    assert re.match(rb"a5 OK \[APPENDUID \d+ \d+\]", client.read_until(rb"^a5 "))
    # ... and after UNAUTHENTICATE the small bound is back.
    client.send(b"a6 UNAUTHENTICATE\r\n")
    assert client.read_until(rb"^a6 ").startswith(b"a6 OK")
    client.send(b"a7 APPEND INBOX {100000}\r\n")
    assert re.match(rb"a7 BAD \[TOOBIG\]", client.read_until(rb"^a7 "))


def test_before_login_pipelined_commands_past_the_input_mark_are_all_answered(server, raw):
    """Before login the server stops reading at 128 KiB of unparsed input (1 MiB after): a client
    that pipelines more is slowed down, and every command is still answered, in order."""
    client = raw()
    count = 15_000  # ~165 kB of NOOPs in one write
    client.send(b"".join(b"p%05d NOOP\r\n" % number for number in range(count)))
    answers = client.read_until(rb"^p%05d " % (count - 1), deadline=60)
    tags = re.findall(rb"^(p\d{5}) OK", answers, re.MULTILINE)
    assert len(tags) == count and tags[0] == b"p00000" and tags[-1] == b"p%05d" % (count - 1)


def test_before_login_a_huge_non_sync_literal_closes_the_connection(server, raw):
    client = raw()
    client.send(b"a1 APPEND INBOX {30000000+}\r\n")
    rest = client.closed_by_server()
    assert re.search(rb"a1 BAD \[TOOBIG\]", rest), rest


# --------------------------------------------------------------------------- APPEND after login

def test_append_limit_is_advertised_and_enforced_per_command(server, raw):
    client = raw()
    client.login(server.address, server.password)
    client.send(b"c1 CAPABILITY\r\n")
    caps = client.read_until(rb"^\* CAPABILITY")
    assert f"APPENDLIMIT={MAX_MESSAGE}".encode() in caps
    client.read_until(rb"^c1 OK")
    client.send(b"c2 APPEND INBOX {%d}\r\n" % (MAX_MESSAGE + 1))
    answer = client.read_until(rb"^(\+|c2 )")
    assert re.match(rb"c2 NO \[TOOBIG\]", answer), answer  # no "+": the client never sends it
    # MULTIAPPEND: two messages that each fit but together pass the limit are refused.
    half = MAX_MESSAGE // 2 + 1
    client.send(b"c3 APPEND INBOX {%d+}\r\n" % half + b"x" * half + b" {%d}\r\n" % half)
    assert re.match(rb"c3 NO \[TOOBIG\]", client.read_until(rb"^(\+|c3 )"))
    client.send(b"c4 NOOP\r\n")
    assert client.read_until(rb"^c4 ").startswith(b"c4 OK")


def test_large_append_is_spooled_to_a_file_while_it_arrives(server, raw):
    """A 900 kB APPEND literal half sent is in an unlinked file of DATA/tmp, not in memory;
    the message stored is byte for byte what was sent."""
    message = b"Subject: spooled\r\n\r\n" + (b"line of the spooled message\r\n" * 32000)[:900_000 - 20]
    assert len(message) == 900_000
    client = raw()
    client.login(server.address, server.password)
    client.send(b"s1 APPEND INBOX (\\Flagged) {%d}\r\n" % len(message))
    assert client.read_until(rb"^(\+|s1 )").startswith(b"+")
    client.send(message[:500_000])
    tmp = server.data / "tmp"
    end = time.monotonic() + 10
    while not open_descriptors_under(tmp, server.served.pid) and time.monotonic() < end:
        time.sleep(0.02)
    held = open_descriptors_under(tmp, server.served.pid)
    assert held and all(path.endswith("(deleted)") for path in held), held
    client.send(message[500_000:] + b"\r\n")
    assert re.match(rb"s1 OK \[APPENDUID \d+ \d+\]", client.read_until(rb"^s1 "))
    end = time.monotonic() + 10
    while open_descriptors_under(tmp, server.served.pid) and time.monotonic() < end:
        time.sleep(0.02)
    assert open_descriptors_under(tmp, server.served.pid) == []  # closed once stored
    assert list(tmp.iterdir()) == []
    imap = server.login()
    try:
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(FLAGS BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == message and b"\\Flagged" in data[0][0]
    finally:
        imap.logout()


# --------------------------------------------------------------------------- timeouts and caps

def test_unauthenticated_connection_times_out_quickly(server, raw):
    silent = raw()
    started = time.monotonic()
    rest = silent.closed_by_server(deadline=LOGIN_TIMEOUT + 8)
    waited = time.monotonic() - started
    assert b"* BYE" in rest and LOGIN_TIMEOUT - 0.5 <= waited <= LOGIN_TIMEOUT + 6, (rest, waited)


def test_an_active_client_that_never_logs_in_is_closed_at_the_login_deadline(server, raw):
    chatty = raw()
    started = time.monotonic()
    received = b""
    for number in range(40):  # a NOOP every 0.3 s resets the silence timer, not the deadline
        try:
            chatty.send(b"n%d NOOP\r\n" % number)
            received += chatty.read_until(rb"^(n%d |\* BYE)" % number)
        except (OSError, AssertionError):
            break
        if b"* BYE" in received or not received:
            break
        time.sleep(0.3)
    received += chatty.closed_by_server()
    waited = time.monotonic() - started
    assert b"* BYE Login timeout" in received, received[-300:]
    assert 3 * LOGIN_TIMEOUT - 0.5 <= waited <= 3 * LOGIN_TIMEOUT + 4, waited


def test_after_login_the_silence_timer_is_the_long_one(server, raw):
    client = raw()
    assert client.login(server.address, server.password).startswith(b"L1 OK")
    # Longer than the login timeout and the login deadline: the session lives on.
    client.sock.settimeout(3 * LOGIN_TIMEOUT + 1)
    with pytest.raises(TimeoutError):
        client.sock.recv(100)
    client.send(b"n1 NOOP\r\n")
    assert client.read_until(rb"^n1 ").startswith(b"n1 OK")


def test_global_connection_cap(server):
    clients: list[Raw] = []
    try:
        refused = None
        end = time.monotonic() + 20  # connections of earlier tests may still be closing
        while refused is None and time.monotonic() < end and len(clients) <= MAX_CONNECTIONS:
            client = Raw(server.imap_port)
            greeting = client.read_until(rb"^\* (OK|BYE)")
            if greeting.startswith(b"* BYE"):
                refused = greeting
                assert client.closed_by_server() is not None
                client.close()
            else:
                clients.append(client)
        assert refused is not None and b"Too many connections" in refused, len(clients)
        assert len(clients) <= MAX_CONNECTIONS
        for client in clients:
            client.close()
        clients = []
        # Once they are gone a new client is served again.
        end = time.monotonic() + 10
        greeting = b""
        while time.monotonic() < end:
            client = Raw(server.imap_port)
            greeting = client.read_until(rb"^\* (OK|BYE)")
            client.close()
            if greeting.startswith(b"* OK"):
                break
            time.sleep(0.05)
        assert greeting.startswith(b"* OK")
    finally:
        for client in clients:
            client.close()


# --------------------------------------------------------------------------- failed logins

def test_three_failed_logins_in_one_connection_get_bye(server, raw):
    client = raw()
    assert re.match(rb"L1 NO \[AUTHENTICATIONFAILED\]", client.login("nobody@example.org", "guess one", b"L1"))
    assert re.match(rb"L2 NO \[AUTHENTICATIONFAILED\]", client.login(server.address, "guess two", b"L2"))
    token = base64.b64encode(f"\0{server.address}\0guess three".encode())
    client.send(b"L3 AUTHENTICATE PLAIN " + token + b"\r\n")
    assert re.match(rb"L3 NO \[AUTHENTICATIONFAILED\]", client.read_until(rb"^L3 "))
    rest = client.closed_by_server()
    assert rest.startswith(b"* BYE Too many failed logins"), rest
    # The account itself is not locked: the owner logs in from a new connection.
    imap = server.login()
    assert imap.noop()[0] == "OK"
    imap.logout()


def test_the_log_gets_a_printable_bounded_user_name(server, raw):
    client = raw()
    hostile = b"evil\x1b[31m\r\n2026-11-27T00:00:00Z info imap[1] forged=yes " + b"A" * 2000
    client.send(b"h1 LOGIN {%d}\r\n" % len(hostile))
    assert client.read_until(rb"^\+").startswith(b"+")
    client.send(hostile + b' "pw"\r\n')
    assert client.read_until(rb"^h1 ").startswith(b"h1 NO")
    end = time.monotonic() + 10
    line = None
    while line is None and time.monotonic() < end:
        line = next((entry for entry in server.served.log().splitlines() if "evil" in entry), None)
        if line is None:
            time.sleep(0.05)
    assert line is not None
    assert "\x1b" not in line and "forged=yes" not in line.split("account=", 1)[1][:20]
    account = re.search(r'account="?([^" ]+)', line).group(1)
    assert account.startswith("evil?[31m??2026") and len(account) <= 140


def test_loggable():
    assert loggable("user@example.org") == "user@example.org"
    assert loggable("a b\tc\r\nd\x00e\x7f") == "a?b?c??d?e?"
    assert loggable("x\u202ey\u2028z") == "x?y?z"  # bidirectional override, line separator
    assert loggable("jörg@bücher.example") == "jörg@bücher.example"
    assert loggable("a" * 500) == "a" * 128 + "..."
