"""IMAP response encoder: quoting rules, literals, lists, status lines, FETCH streaming, ESEARCH, LIST/STATUS."""

from __future__ import annotations

import datetime as dt

import pytest

from courriel.imap.protocol import commands as c
from courriel.imap.protocol import encoder as e
from courriel.imap.protocol.parser import Parser
from courriel.imap.protocol.sequence import SequenceSet


@pytest.mark.parametrize(("data", "wire"), [
    (None, b"NIL"),
    ("", b'""'),
    ("hello world", b'"hello world"'),
    ('say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
    ("line\r\nbreak", b"{11}\r\nline\r\nbreak"),
    ("café", b"{5}\r\ncaf\xc3\xa9"),  # RFC 3501 §4.3: 8-bit data is always a literal
    (b"\xff\xfe", b"{2}\r\n\xff\xfe"),
    (b"a\0b", b"~{3}\r\na\0b"),  # NUL only in literal8
    ("x" * 2000, b"{2000}\r\n" + b"x" * 2000),
])
def test_string_quoting_rules(data, wire):
    assert e.string(data) == wire


def test_utf8_accept_allows_utf8_quoted():
    assert e.string("café", utf8=True) == '"café"'.encode()
    assert e.string(b"\xff", utf8=True) == b"{1}\r\n\xff"  # invalid UTF-8 still a literal


@pytest.mark.parametrize(("data", "wire"), [
    ("joe", b"joe"), ("NIL", b'"NIL"'), ("nil", b'"nil"'), ("a b", b'"a b"'), ("", b'""'), ("x]", b"x]"),
    ("a(b", b'"a(b"'), ("100%", b'"100%"'),
])
def test_astring(data, wire):
    assert e.astring(data) == wire


def test_mailbox_names_use_modified_utf7_or_utf8():
    assert e.mailbox("inbox") == b"INBOX"
    assert e.mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert e.mailbox("Sent Items") == b'"Sent Items"'
    assert e.mailbox("Entwürfe", utf8=True) == '"Entwürfe"'.encode()


def test_nested_lists_and_values():
    when = dt.datetime(2024, 7, 5, 10, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    assert e.value([1, None, "a b", [e.Atom("\\Seen"), []], SequenceSet.parse("1:*"), when]) == (
        b'(1 NIL "a b" (\\Seen ()) 1:* "05-Jul-2024 10:00:01 -0700")')
    with pytest.raises(TypeError):
        e.value(object())


def test_status_responses():
    assert e.tagged("a1", "OK", "done") == b"a1 OK done\r\n"
    assert e.tagged("a1", "NO", "too big", "TOOBIG") == b"a1 NO [TOOBIG] too big\r\n"
    assert e.tagged("a1", "OK", "x", ("APPENDUID", 38505, SequenceSet.parse("3955:3957"))) == (
        b"a1 OK [APPENDUID 38505 3955:3957] x\r\n")
    assert e.untagged_status("OK", "flags", ("PERMANENTFLAGS", [e.Atom("\\Seen"), e.Atom("\\*")])) == (
        b"* OK [PERMANENTFLAGS (\\Seen \\*)] flags\r\n")
    assert e.untagged_status("BYE", "bye\r\n* injected") == b"* BYE bye  * injected\r\n"  # no line injection
    assert e.untagged(5, "EXISTS") == b"* 5 EXISTS\r\n"
    assert e.continuation() == b"+ \r\n"
    assert e.continuation("Ready") == b"+ Ready\r\n"
    assert e.sasl_challenge(b"\0") == b"+ AA==\r\n"
    with pytest.raises(ValueError):
        e.tagged("a", "MAYBE", "x")


def test_error_events_encode():
    error = Parser(authenticated=True).feed(b"a1 APPEND INBOX {999999999999}\r\n")[0]
    assert e.tagged(error.tag, error.status, error.text, error.code) == b"a1 NO [TOOBIG] message too large\r\n"


def test_fetch_response_streams_a_large_literal_in_chunks():
    pulled = []

    def chunks():
        for index in range(4):
            pulled.append(index)
            yield bytes([0x41 + index]) * 1000

    body = e.StreamedLiteral(4000, chunks())
    parts = e.fetch_response(12, [("UID", 7), ("FLAGS", [e.Atom("\\Seen")]), ("BODY[]", body),
                                  ("RFC822.SIZE", 4000)])
    first = next(parts)
    assert first == b"* 12 FETCH (UID 7 FLAGS (\\Seen) BODY[] "
    assert pulled == []  # nothing read before the transport asks for it
    rest = list(parts)
    assert pulled == [0, 1, 2, 3]
    assert rest[0] == b"{4000}\r\n"
    assert all(len(chunk) <= 1000 for chunk in rest[1:])
    wire = first + b"".join(rest)
    assert wire == (b"* 12 FETCH (UID 7 FLAGS (\\Seen) BODY[] {4000}\r\n" + b"A" * 1000 + b"B" * 1000 + b"C" * 1000
                    + b"D" * 1000 + b" RFC822.SIZE 4000)\r\n")


def test_fetch_response_binary_literal8_and_raw_values():
    wire = b"".join(e.fetch_response(1, [("BINARY[1]", e.StreamedLiteral(3, [b"a\0b"], binary=True)),
                                         ("ENVELOPE", e.Raw(b'(NIL "s" NIL)'))]))
    assert wire == b'* 1 FETCH (BINARY[1] ~{3}\r\na\0b ENVELOPE (NIL "s" NIL))\r\n'


def test_fetch_names_echo_the_request():
    fetch = Parser().feed(b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (date)]<0.100> BINARY.PEEK[1]<5.9> BINARY.SIZE[2] "
                          b"BODY[] RFC822.SIZE)\r\n")[0]
    names = [e.fetch_name(a.name, a.section, a.partial) for a in fetch.items]
    assert names == ["BODY[HEADER.FIELDS (DATE)]<0>", "BINARY[1]<5>", "BINARY.SIZE[2]", "BODY[]", "RFC822.SIZE"]


def test_stream_flattens_parts():
    assert b"".join(e.stream([b"* 1 FETCH (", b"BODY[] ", e.StreamedLiteral(2, [b"hi"]), b")\r\n"])) == (
        b"* 1 FETCH (BODY[] {2}\r\nhi)\r\n")


def test_esearch_and_search_lines():
    assert e.esearch("a1", True, minimum=2, maximum=9, count=4, all_numbers=[2, 3, 4, 9]) == (
        b'* ESEARCH (TAG "a1") UID MIN 2 MAX 9 COUNT 4 ALL 2:4,9\r\n')
    assert e.esearch("a2", False, count=0, all_numbers=[]) == b'* ESEARCH (TAG "a2") COUNT 0\r\n'
    assert e.esearch(None, False, modseq=5) == b"* ESEARCH MODSEQ 5\r\n"
    assert e.search_line([1, 5]) == b"* SEARCH 1 5\r\n"
    assert e.search_line([], modseq=None) == b"* SEARCH\r\n"
    assert e.search_line([3], modseq=917162500) == b"* SEARCH 3 (MODSEQ 917162500)\r\n"


def test_list_and_status_lines():
    assert e.list_line(["\\HasNoChildren", "\\Sent"], "/", "Envoyés") == (
        b'* LIST (\\HasNoChildren \\Sent) "/" Envoy&AOk-s\r\n')
    assert e.list_line([], None, "INBOX", command="LSUB") == b"* LSUB () NIL INBOX\r\n"
    assert e.list_line(["\\Subscribed"], "/", "Foo", extended={"CHILDINFO": ["SUBSCRIBED"]}) == (
        b'* LIST (\\Subscribed) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n')
    assert e.status_line("Sent Items", {"MESSAGES": 3, "UIDNEXT": 10}) == (
        b'* STATUS "Sent Items" (MESSAGES 3 UIDNEXT 10)\r\n')


def test_other_lines():
    assert e.capability_line(["IMAP4rev1", "IDLE"]) == b"* CAPABILITY IMAP4rev1 IDLE\r\n"
    assert e.enabled_line([]) == b"* ENABLED\r\n"
    assert e.enabled_line(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"
    assert e.id_line(None) == b"* ID NIL\r\n"
    assert e.id_line({"name": "Courriel", "version": None}) == b'* ID ("name" "Courriel" "version" NIL)\r\n'
    assert e.namespace_line([("", "/")]) == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert e.vanished(SequenceSet.parse("1:3,5"), earlier=True) == b"* VANISHED (EARLIER) 1:3,5\r\n"
    assert e.flags_line(["\\Seen", "$Junk"]) == b"* FLAGS (\\Seen $Junk)\r\n"
    assert (e.exists(3), e.recent(0), e.expunge(2)) == (b"* 3 EXISTS\r\n", b"* 0 RECENT\r\n", b"* 2 EXPUNGE\r\n")


@pytest.mark.parametrize("name", ["Entwürfe", "a & b", 'quote"d', "日本語/子", "Sent Items", "x" * 1500, "~p/%"])
def test_mailbox_encoding_round_trips_through_the_parser(name):
    for utf8 in (False, True):
        wire = b"a SELECT " + e.mailbox(name, utf8=utf8) + b"\r\n"
        events = [ev for ev in Parser(utf8=utf8).feed(wire) if not isinstance(ev, c.ContinuationRequest)]
        assert events == [c.Select("a", name)]


@pytest.mark.parametrize("data", [b"", b"plain", b'"\\', b"\r\n", "ünï".encode(), bytes(range(1, 256))])
def test_strings_round_trip_through_the_parser(data):
    wire = b"a LOGIN " + e.string(data) + b" x\r\n"
    events = [ev for ev in Parser().feed(wire) if not isinstance(ev, c.ContinuationRequest)]
    try:
        expected = data.decode("utf-8")
    except UnicodeDecodeError:
        assert isinstance(events[0], c.CommandError)
        return
    assert events == [c.Login("a", expected, "x")]
