"""Property-based fuzzing of the IMAP parser: random and mutated input never raises, never hangs,
and always leaves the parser able to parse the next command."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from courriel.imap.protocol import commands as c
from courriel.imap.protocol.grammar import GrammarError
from courriel.imap.protocol.parser import Limits, Parser, parse_command
from courriel.imap.protocol.search import resolve

VALID = [
    b"a1 LOGIN {3+}\r\njoe {6+}\r\nsecret\r\n",
    b"a2 FETCH 1:*,$ (BODY.PEEK[1.HEADER.FIELDS (From To)]<0.100> FLAGS BINARY[2]) (CHANGEDSINCE 5)\r\n",
    b"a3 APPEND INBOX (\\Seen) \"05-Jul-2024 10:00:00 +0200\" {5+}\r\nHello ~{3+}\r\na\0b\r\n",
    b"a4 UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (FROM x SINCE 1-Feb-2020) NOT 1:5 HEADER X y\r\n",
    b"a5 SELECT INBOX (QRESYNC (1 2 1:9 (3 4)))\r\n",
    b'a6 LIST (SUBSCRIBED) "" ("INBOX" "&ZeVnLIqe-*") RETURN (CHILDREN STATUS (MESSAGES))\r\n',
    b"a7 UID STORE 1:3 (UNCHANGEDSINCE 7) +FLAGS.SILENT (\\Deleted $Junk)\r\n",
    b'a8 ID ("name" "x") \r\na9 SORT (REVERSE DATE) UTF-8 ALL\r\n',
    b"b1 AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n",
]
LIMITS = Limits(max_line=200, max_literal=64, max_message_size=128, max_literals=8, max_depth=6, max_discard=1024)
ALPHABET = b' ()[]<>{}~+*%$"\\\r\n0123456789.:,aAbBxX'


def run(chunks) -> list:
    parser = Parser(LIMITS)
    events = []
    started = time.monotonic()
    for chunk in chunks:
        events += parser.feed(chunk)
    for event in events:  # session-like reactions to mode-switching commands
        assert isinstance(event, c.Command | c.ContinuationRequest | c.CommandError | c.AuthenticateResponse
                          | c.IdleDone)
    assert time.monotonic() - started < 2
    return events, parser


def recovers(parser: Parser, events) -> bool:
    if any(isinstance(e, c.CommandError) and e.close for e in events):
        return True  # the session closes the connection: nothing to recover
    # terminate whatever is pending (an open literal or line), then a fresh command must parse
    parser.expect_command()
    parser.feed(b"\r\n")
    events = parser.feed(b"\r\n" * 2 + b"z9 NOOP\r\n")
    for _ in range(3):
        if c.Noop("z9") in events:
            return True
        events = parser.feed(b"x" * 256 + b"\r\nz9 NOOP\r\n")
    return False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes(chunks):
    events, parser = run(chunks)
    assert recovers(parser, events)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([bytes([b]) for b in ALPHABET]), max_size=120))
def test_random_imap_like_bytes(pieces):
    events, parser = run([b"a1 SEARCH ", b"".join(pieces), b"\r\n"])
    assert recovers(parser, events)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] = draw(st.sampled_from([*ALPHABET, 0, 0xFF, 0x80]))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=6))
        elif action == "delete" and data:
            del data[position:position + draw(st.integers(1, 5))]
        elif action == "duplicate":
            data[position:position] = data[position:position + draw(st.integers(1, 20))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    return bytes(data), cuts


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_commands(case):
    data, cuts = case
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    events, parser = run(chunks)
    whole, _ = run([data])
    assert events == whole  # any split gives the same events
    for event in events:
        if isinstance(event, c.Search):
            resolve(event.key, 10, 100, (1,), (5,))  # resolution of any parsed key tree works
    assert recovers(parser, events)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_parse_command_raises_only_grammar_errors(line):
    try:
        command = parse_command(line.replace(b"\0", b""), [])
    except GrammarError as exc:
        assert exc.status in ("BAD", "NO")
    else:
        assert isinstance(command, c.Command) and command.name in c.COMMANDS


TOKENS = [*(name.encode() for name in c.COMMANDS), b"UID", b"RETURN", b"CHARSET", b"UTF-8", b"rot13", b"utf-16",
          b"NIL", b"OR", b"NOT", b"HEADER", b"SINCE", b"1-Feb-2020", b"99-Foo-2020", b"MODSEQ", b"ALL", b"MIN",
          b"SAVE", b"BODY[]", b"BODY.PEEK[1.MIME]", b"BINARY[1]<0.5>", b"BODY[HEADER.FIELDS", b"FLAGS", b"+FLAGS",
          b"\\Seen", b"(", b")", b"((", b"))", b"[", b"]", b"<1.2>", b"1", b"0", b"*", b"$", b"1:*", b"4294967296",
          b"18446744073709551616", b'""', b'"a\\"b"', b'"\xc3\xa9"', b"&ZeVnLIqe-", b"&Jjo", b"INBOX",
          b"{3+}\r\nabc", b"~{2+}\r\n\0\0", b"{0+}\r\n", b"CONDSTORE", b"QRESYNC", b"(CHANGEDSINCE 5 VANISHED)",
          b"(UNCHANGEDSINCE 1)", b"USE", b"(\\Drafts)", b"STATUS", b"(MESSAGES)", b"SUBSCRIBED", b"REVERSE",
          b"DATE", b"REFERENCES", b"=", b"AHVzZXIAcGFzcw==", b'"05-Jul-2024 10:00:00 +9999"']


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=12), st.sampled_from([b" ", b""]))
def test_token_soup(tokens, joiner):
    data = b"t1 " + (b" " + joiner).join(tokens) + b"\r\n"
    parser = Parser(LIMITS, authenticated=True)
    events = parser.feed(data)
    assert events
    assert isinstance(events[-1], c.Command | c.CommandError | c.ContinuationRequest)
    for event in events:
        if isinstance(event, c.Search | c.Sort | c.Thread):
            resolve(event.key, 3, 30)
    assert recovers(parser, events)
