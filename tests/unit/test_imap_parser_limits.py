"""IMAP parser limits of the security review: literals before login, the per-command literal total,
and APPEND literals spooled to a sink as they arrive (split-frame feeding)."""

from __future__ import annotations

import io
from typing import ClassVar

import pytest

from courriel.imap.protocol import commands as c
from courriel.imap.protocol.parser import Limits, Parser


class Sink(io.BytesIO):
    """A stand-in for the session's temporary file: BytesIO that knows its length and its closing."""

    made: ClassVar[list[Sink]] = []

    def __len__(self) -> int:
        return len(self.getvalue())

    @classmethod
    def factory(cls, size: int) -> Sink:
        sink = cls()
        sink.announced = size
        cls.made.append(sink)
        return sink


@pytest.fixture(autouse=True)
def _fresh_sinks():
    Sink.made = []


def test_before_login_only_small_literals_and_no_continuation_for_big_ones():
    parser = Parser(authenticated=False)
    limit = parser.limits.max_unauthenticated_literal
    assert limit <= 8192
    # An APPEND literal of a whole message, or a big LOGIN literal: BAD [TOOBIG], never "+".
    for raw in (b"a1 APPEND INBOX {35000000}\r\n", b"a2 LOGIN {%d}\r\n" % (limit + 1)):
        events = parser.feed(raw)
        assert len(events) == 1 and (events[0].status, events[0].code) == ("BAD", "TOOBIG"), events
    # A LOGIN with literals up to the bound works.
    user = b"u" * limit
    events = parser.feed(b"a3 LOGIN {%d}\r\n" % limit)
    assert events == [c.ContinuationRequest("a3", limit, command="LOGIN")]
    events = parser.feed(user + b" {6}\r\n")
    assert events == [c.ContinuationRequest("a3", 6, command="LOGIN")]
    assert parser.feed(b"secret\r\n") == [c.Login("a3", user.decode(), "secret")]
    assert parser.buffered == 0


def test_before_login_a_refused_non_sync_literal_is_discarded_only_when_small():
    parser = Parser(authenticated=False)
    events = parser.feed(b"a1 LOGIN {5000+}\r\n" + b"x" * 5000 + b" pw\r\na2 NOOP\r\n")
    assert [type(e) for e in events] == [c.CommandError, c.Noop] and not events[0].close
    # Past `max_unauthenticated_discard` the session is asked to close, not to read 64 MB.
    big = parser.limits.max_unauthenticated_discard + 1
    events = parser.feed(b"a3 APPEND INBOX {%d+}\r\n" % big)
    assert len(events) == 1 and events[0].close and events[0].code == "TOOBIG"
    # The same literal after login is an APPEND like any other.
    after = Parser(authenticated=True)
    assert after.feed(b"a3 APPEND INBOX {%d+}\r\n" % big) == []


def test_login_switches_the_limits_and_unauthenticate_switches_back():
    parser = Parser(Limits(max_message_size=100_000), authenticated=False)
    assert parser.feed(b"a1 APPEND INBOX {50000}\r\n")[0].code == "TOOBIG"
    parser.authenticated = True
    assert parser.feed(b"a2 APPEND INBOX {50000}\r\n") == [c.ContinuationRequest("a2", 50000, command="APPEND")]
    parser.abandon_command()
    parser.authenticated = False
    assert parser.feed(b"a3 APPEND INBOX {50000}\r\n")[0].code == "TOOBIG"


def test_all_literals_of_one_command_are_held_to_the_message_size():
    limits = Limits(max_message_size=1000)
    assert limits.command_size == 1000
    parser = Parser(limits, authenticated=True)
    events = parser.feed(b"a1 APPEND INBOX {600+}\r\n" + b"x" * 600 + b" {600}\r\n")
    assert events == [c.CommandError("a1", "NO", "command too large", "TOOBIG", "APPEND")]
    assert parser.feed(b"a2 NOOP\r\n") == [c.Noop("a2")]
    # An explicit total still wins.
    assert Limits(max_message_size=1000, max_command_size=5000).command_size == 5000


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
def test_large_append_literal_goes_to_the_sink_in_any_split(piece):
    message = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 8192  # 131 KB
    parser = Parser(Limits(spool_threshold=64 * 1024), authenticated=True, spool=Sink.factory)
    raw = (b"a1 APPEND INBOX (\\Seen) {%d+}\r\n" % len(message) + message
           + b" {5+}\r\nsmall\r\n")
    events = []
    for start in range(0, len(raw), piece):
        events += parser.feed(raw[start:start + piece])
        # Never more than one piece of the message is held by the parser itself.
        assert parser.buffered <= max(piece, 64)
    assert len(events) == 1 and isinstance(events[0], c.Append), events
    first, second = events[0].messages
    assert first.message is Sink.made[0] and first.message.getvalue() == message and len(first.message) == len(message)
    assert Sink.made[0].announced == len(message) and len(Sink.made) == 1
    assert first.flags == ("\\Seen",)
    assert second.message == b"small"  # under the threshold: plain bytes


def test_a_spooled_literal_where_a_string_belongs_is_a_bad_command_not_a_crash():
    parser = Parser(Limits(spool_threshold=10), authenticated=True, spool=Sink.factory)
    events = parser.feed(b"a1 APPEND {20+}\r\n" + b"m" * 20 + b" {3+}\r\nabc\r\na2 NOOP\r\n")
    assert [type(e) for e in events] == [c.CommandError, c.Noop]
    assert events[0].status == "BAD"


def test_an_abandoned_or_discarded_spooled_literal_closes_its_sink():
    parser = Parser(Limits(spool_threshold=10), authenticated=True, spool=Sink.factory)
    assert parser.feed(b"a1 APPEND INBOX {100}\r\n") == [c.ContinuationRequest("a1", 100, command="APPEND")]
    parser.abandon_command()
    assert Sink.made[0].closed
    parser.feed(b"a2 APPEND INBOX {100+}\r\n" + b"x" * 50)
    assert parser.discard_buffered() == 0 and Sink.made[1].closed
    assert parser.feed(b"a3 NOOP\r\n") == [c.Noop("a3")]


def test_without_a_spool_large_literals_stay_in_memory():
    parser = Parser(Limits(spool_threshold=10), authenticated=True)
    events = parser.feed(b"a1 APPEND INBOX {20+}\r\n" + b"y" * 20 + b"\r\n")
    assert events[0].messages[0].message == b"y" * 20
