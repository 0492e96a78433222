"""The sync client adapters against small hostile servers on 127.0.0.1 (scripted in the test):
huge uid-sets in VANISHED and COPYUID, literals larger than the limit or than announced, POP3
lines longer than poplib's 2,048 octets, oversized RETR answers, control characters in errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from courriel.imapsync import plan
from courriel.imapsync.client import Endpoint, ImapRemote, MessageTooLarge, PopRemote, RemoteError

CAPS = b"IMAP4rev1 UIDPLUS QRESYNC CONDSTORE ENABLE"
DATE = b'"26-Nov-2026 10:00:00 +0000"'


class ScriptedServer:
    """A one-connection-at-a-time TCP server on loopback: `answer(line)` → bytes to send (None
    closes the connection). Every read has a timeout; the thread ends when the test closes it."""

    def __init__(self, greeting: bytes, answer: Callable[[bytes], bytes | None]):
        self.greeting = greeting
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            reader = conn.makefile("rb")
            conn.sendall(self.greeting)
            for _ in range(100):  # bounded: a test sends a few commands
                try:
                    line = reader.readline(65536)
                except OSError:
                    return
                if not line:
                    return
                self.received.append(line)
                reply = self.answer(line.rstrip(b"\r\n"))
                if reply is None:
                    return
                try:
                    conn.sendall(reply)
                except OSError:
                    return

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


def imap_answer(extra: Callable[[bytes, bytes], bytes | None]) -> Callable[[bytes], bytes | None]:
    def answer(line: bytes) -> bytes | None:
        tag, _, command = line.partition(b" ")
        upper = command.upper()
        custom = extra(tag, upper)
        if custom is not None:
            return custom
        if upper.startswith(b"CAPABILITY"):
            return b"* CAPABILITY " + CAPS + b"\r\n" + tag + b" OK done\r\n"
        if upper.startswith(b"LOGIN"):
            return tag + b" OK [CAPABILITY " + CAPS + b"] logged in\r\n"
        if upper.startswith(b"ENABLE"):
            return b"* ENABLED QRESYNC\r\n" + tag + b" OK enabled\r\n"
        if upper.startswith((b"SELECT", b"EXAMINE")):
            return (b"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 10] n\r\n* OK [HIGHESTMODSEQ 20] m\r\n"
                    + tag + b" OK [READ-WRITE] selected\r\n")
        if upper.startswith(b"LOGOUT"):
            return b"* BYE bye\r\n" + tag + b" OK bye\r\n"
        return tag + b" OK fine\r\n"

    return answer


@pytest.fixture
def imap_server():
    servers = []

    def start(extra=lambda tag, command: None) -> tuple[ScriptedServer, ImapRemote]:
        server = ScriptedServer(b"* OK [CAPABILITY " + CAPS + b"] hostile ready\r\n", imap_answer(extra))
        servers.append(server)
        remote = ImapRemote(Endpoint("127.0.0.1", server.port, "none", "jo"), "secret", timeout=10,
                            max_message_size=1000)
        servers.append(remote)
        return server, remote

    yield start
    for item in reversed(servers):
        item.close()


def test_vanished_of_every_uid_is_kept_as_one_range(imap_server):
    def extra(tag, command):
        if command.startswith(b"UID FETCH") and b"CHANGEDSINCE" in command:
            return (b"* VANISHED (EARLIER) 1:4294967295\r\n* 1 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (21))\r\n"
                    + tag + b" OK fetched\r\n")
        return None

    _server, remote = imap_server(extra)
    remote.select("INBOX")
    started = time.monotonic()
    flags, vanished = remote.changes_since(5)
    assert time.monotonic() - started < 2.0  # not four billion integers
    assert vanished == [(1, plan.UID_MAX)]
    assert flags == {3: frozenset({"\\Seen"})}
    assert plan.uids_within(vanished, {1, 2, 3}) == {1, 2, 3}


def test_malformed_vanished_makes_the_caller_diff_uids(imap_server):
    def extra(tag, command):
        if command.startswith(b"UID FETCH") and b"CHANGEDSINCE" in command:
            return b"* VANISHED 5:*\r\n" + tag + b" OK fetched\r\n"
        return None

    _server, remote = imap_server(extra)
    remote.select("INBOX")
    assert remote.changes_since(5) == ({}, None)


@pytest.mark.parametrize(("code", "expected"), [
    (b"[COPYUID 7 1 9]", {1: 9}),
    (b"[COPYUID 7 1 9:11]", {}),  # RFC 4315 §3: sets of different sizes are refused, not zipped
    (b"[COPYUID 7 1:4294967295 1:4294967295]", {}),  # never expanded: more UIDs than we copied
    (b"[COPYUID 7 2 9]", {}),  # a UID we did not copy
])
def test_copyuid_is_checked_against_what_was_copied(imap_server, code, expected):
    def extra(tag, command):
        if command.startswith(b"UID COPY"):
            return tag + b" OK " + code + b" copied\r\n"
        return None

    _server, remote = imap_server(extra)
    remote.select("INBOX")
    started = time.monotonic()
    assert remote.copy([1], "Archive") == expected
    assert time.monotonic() - started < 2.0


def _fetch_item(uid: int, announced_size: int, body: bytes) -> bytes:
    return (b"* %d FETCH (UID %d FLAGS (\\Seen) INTERNALDATE " % (uid, uid) + DATE
            + b" RFC822.SIZE %d BODY[] {%d}\r\n" % (announced_size, len(body)) + body + b")\r\n")


def test_literal_over_the_limit_is_drained_and_the_message_refused(imap_server):
    small = b"Subject: a\r\n\r\nhello\r\n"
    liar = b"Subject: b\r\n\r\n" + b"x" * 3000 + b"\r\n"  # RFC822.SIZE says 10

    def extra(tag, command):
        if command.startswith(b"UID FETCH") and b"BODY.PEEK[]" in command:
            return (_fetch_item(1, len(small), small) + _fetch_item(2, 10, liar) + _fetch_item(3, len(small), small)
                    + tag + b" OK fetched\r\n")
        return None

    _server, remote = imap_server(extra)
    remote.select("INBOX")
    fetched = {m.uid: m for m in remote.fetch([1, 2, 3])}
    assert fetched[1].body == small and fetched[3].body == small and not fetched[1].refused
    assert fetched[2].body == b"" and "over the 1000-octet limit" in fetched[2].refused
    remote.noop()  # the connection is still in step


def test_absurd_literal_ends_the_connection_without_reading_it(imap_server):
    def extra(tag, command):
        if command.startswith(b"UID FETCH") and b"BODY.PEEK[]" in command:
            return b"* 1 FETCH (UID 1 RFC822.SIZE 10 BODY[] {4294967295}\r\n" + b"x" * 1000
        return None

    _server, remote = imap_server(extra)
    remote.select("INBOX")
    with pytest.raises(RemoteError, match="literal of 4294967295 octets"):
        remote.fetch([1])


def test_server_error_text_is_cleaned_before_it_is_shown(imap_server):
    def extra(tag, command):
        if command.startswith(b"SELECT"):
            return tag + b" NO \x1b[2Jgone\x07 " + b"y" * 2000 + b"\r\n"
        return None

    _server, remote = imap_server(extra)
    with pytest.raises(RemoteError) as caught:
        remote.select("INBOX")
    text = str(caught.value)
    assert "\x1b" not in text and "\x07" not in text and len(text) <= 300
    assert "gone" in text


# ----------------------------------------------------------------------------- POP3

LONG_LINE = b"L" * 5000  # poplib._MAXLINE is 2048


def pop_answer(messages: dict[int, bytes]) -> Callable[[bytes], bytes | None]:
    def answer(line: bytes) -> bytes | None:
        command = line.upper()
        if command.startswith((b"USER", b"PASS")):
            return b"+OK\r\n"
        if command.startswith(b"LIST"):
            return b"+OK\r\n" + b"".join(b"%d 10\r\n" % n for n in messages) + b".\r\n"  # understated sizes
        if command.startswith(b"UIDL"):
            return b"+OK\r\n" + b"".join(b"%d u%d\r\n" % (n, n) for n in messages) + b".\r\n"
        if command.startswith(b"RETR"):
            number = int(command.split()[1])
            return b"+OK message follows\r\n" + messages[number] + b".\r\n"
        if command.startswith(b"QUIT"):
            return b"+OK bye\r\n"
        return b"-ERR unknown\r\n"

    return answer


def test_pop3_retr_reads_long_lines_and_bounds_the_message():
    messages = {
        1: b"Subject: long\r\n\r\n" + LONG_LINE + b"\r\n..stuffed line\r\n.\r\n"[:-3],
        2: b"Subject: big\r\n\r\n" + (b"y" * 900 + b"\r\n") * 20,  # 18 KB, over the 10 KB limit
        3: b"Subject: after\r\n\r\nfine\r\n",
    }
    server = ScriptedServer(b"+OK hostile POP3 ready\r\n", pop_answer(messages))
    remote = PopRemote(Endpoint("127.0.0.1", server.port, "none", "jo"), "secret", timeout=10,
                       max_message_size=10_000)
    try:
        assert remote.sizes() == {1: 10, 2: 10, 3: 10}
        assert remote.retrieve(1) == b"Subject: long\r\n\r\n" + LONG_LINE + b"\r\n.stuffed line\r\n"
        with pytest.raises(MessageTooLarge) as caught:
            remote.retrieve(2)
        assert caught.value.limit == 10_000 and caught.value.size > 10_000
        assert remote.retrieve(3) == b"Subject: after\r\n\r\nfine\r\n"  # still in step after the drain
        remote.quit()
    finally:
        remote.close()
        server.close()


def test_understated_sizes_cannot_make_one_fetch_hold_more_than_its_budget(imap_server):
    bodies = {uid: b"Subject: %d\r\n\r\n" % uid + b"w" * 600 + b"\r\n" for uid in (1, 2, 3)}
    commands = []

    def extra(tag, command):
        if command.startswith(b"UID FETCH") and b"BODY.PEEK[]" in command:
            commands.append(command.split()[2])
            wanted = [int(u) for u in command.split()[2].split(b",")] if b":" not in command.split()[2] else [1, 2, 3]
            return b"".join(_fetch_item(uid, 10, bodies[uid]) for uid in wanted) + tag + b" OK fetched\r\n"
        return None

    _server, remote = imap_server(extra)  # limit 1000 octets
    remote.select("INBOX")
    fetched = remote.fetch([1, 2, 3], budget=100)  # planned as 30 octets: the server said 10 each
    assert [(m.uid, m.body, m.refused) for m in fetched] == [(uid, bodies[uid], "") for uid in (1, 2, 3)]
    assert commands[1:] == [b"2", b"3"]  # the bodies past the budget came again, one at a time
