"""IMAP METADATA (RFC 5464), the pure part: GETMETADATA/SETMETADATA grammar fed whole and a byte at
a time, entry names, DEPTH/MAXSIZE selection, the METADATA response and the capability."""

from __future__ import annotations

import pytest

from courriel.imap.protocol import commands as c
from courriel.imap.protocol import encoder as enc
from courriel.imap.protocol.capabilities import CapabilityOptions, capabilities
from courriel.imap.protocol.grammar import GrammarError
from courriel.imap.protocol.metadata import DEPTH_INFINITY, normalise_entry, select_entries
from courriel.imap.protocol.parser import Parser
from courriel.imap.protocol.states import State, refusal

GRAMMAR = [
    (b'a GETMETADATA "" /shared/admin', c.GetMetadata("a", "", ("/shared/admin",))),
    (b"a GETMETADATA INBOX (/private/comment /Shared/Comment)",
     c.GetMetadata("a", "INBOX", ("/private/comment", "/shared/comment"))),
    (b"a getmetadata (MAXSIZE 1024) INBOX /private", c.GetMetadata("a", "INBOX", ("/private",), 0, 1024)),
    (b"a GETMETADATA (DEPTH infinity MAXSIZE 7) Sent /shared",
     c.GetMetadata("a", "Sent", ("/shared",), DEPTH_INFINITY, 7)),
    (b"a GETMETADATA (DEPTH 1) \"\" (/private)", c.GetMetadata("a", "", ("/private",), 1)),
    (b"a GETMETADATA inbox /private/vendor/x-y.z", c.GetMetadata("a", "INBOX", ("/private/vendor/x-y.z",))),
    (b'a SETMETADATA INBOX (/private/comment "hello")', c.SetMetadata("a", "INBOX", (("/private/comment", b"hello"),))),
    (b'a SETMETADATA "" (/private/comment NIL /private/vendor/a "")',
     c.SetMetadata("a", "", (("/private/comment", None), ("/private/vendor/a", b"")))),
]

BAD = [
    b"a GETMETADATA INBOX",  # no entry
    b"a GETMETADATA INBOX /comment",  # neither /private nor /shared
    b"a GETMETADATA INBOX /private/",  # trailing slash
    b"a GETMETADATA INBOX /private//x",  # empty component
    b'a GETMETADATA INBOX "/private/a*"',  # wildcard
    b"a GETMETADATA INBOX ()",  # empty list
    b"a GETMETADATA (DEPTH 2) INBOX /private",
    b"a GETMETADATA (FOO 1) INBOX /private",
    b"a GETMETADATA (MAXSIZE x) INBOX /private",
    b"a SETMETADATA INBOX /private/comment NIL",  # not a list
    b"a SETMETADATA INBOX ()",
    b"a SETMETADATA INBOX (/private/comment)",
    b'a SETMETADATA INBOX (/private/\xc3\xa9 "x")',
]


@pytest.mark.parametrize(("line", "expected"), GRAMMAR)
def test_grammar_whole_and_byte_by_byte(line, expected):
    assert Parser().feed(line + b"\r\n") == [expected]
    parser = Parser()
    events = []
    for byte in line + b"\r\n":
        events += parser.feed(bytes([byte]))
    assert events == [expected]


@pytest.mark.parametrize("line", BAD)
def test_bad_commands_answer_bad_and_parsing_goes_on(line):
    events = Parser().feed(line + b"\r\nb NOOP\r\n")
    assert isinstance(events[0], c.CommandError) and events[0].status == "BAD" and events[0].tag == "a"
    assert events[1] == c.Noop("b")


def test_values_as_literal_and_literal8_split_anywhere():
    """A value with CR, LF and NUL comes as a literal8 (RFC 5464 §5 value = nstring / literal8)."""
    wire = (b"a SETMETADATA INBOX (/private/comment {4}\r\nx\r\ny /shared/vendor/bin ~{3}\r\n\x00\r\n"
            b" /private/gone NIL)\r\n")
    expected = c.SetMetadata("a", "INBOX", (("/private/comment", b"x\r\ny"), ("/shared/vendor/bin", b"\x00\r\n"),
                                            ("/private/gone", None)))
    for size in (1, 2, 5, len(wire)):
        parser = Parser()
        events = []
        for at in range(0, len(wire), size):
            events += parser.feed(wire[at:at + size])
        assert [e for e in events if not isinstance(e, c.ContinuationRequest)] == [expected]


def test_literal8_is_refused_outside_values():
    events = Parser().feed(b"a GETMETADATA INBOX ~{3+}\r\n/pr\r\n")
    assert isinstance(events[-1], c.CommandError) and events[-1].status == "BAD"


def test_entry_names():
    assert normalise_entry(b"/Private/Vendor/Foo") == "/private/vendor/foo"
    for bad in (b"/private/" + b"x" * 250, b"/private/a b", b"/private/a%", b"/priv", b"private/x", b""):
        with pytest.raises(GrammarError):
            normalise_entry(bad)


STORED = {"/private/comment": b"mine", "/private/vendor/a": b"1", "/private/vendor/a/b": b"22",
          "/private/vendor/a/b/c": b"333", "/shared/comment": b"x" * 50}


def test_depth_and_maxsize():
    assert select_entries(STORED, ("/private/comment",)) == ([("/private/comment", b"mine")], None)
    assert select_entries(STORED, ("/private/missing",)) == ([("/private/missing", None)], None)
    assert select_entries(STORED, ("/private/vendor/a",), 1)[0] == [("/private/vendor/a", b"1"),
                                                                    ("/private/vendor/a/b", b"22")]
    assert [n for n, _ in select_entries(STORED, ("/private",), DEPTH_INFINITY)[0]] == [
        "/private/comment", "/private/vendor/a", "/private/vendor/a/b", "/private/vendor/a/b/c"]
    # RFC 5464 §4.2.1: longer values are left out; LONGENTRIES is the longest left out.
    entries, longest = select_entries(STORED, ("/private/vendor", "/shared"), DEPTH_INFINITY, 2)
    assert entries == [("/private/vendor/a", b"1"), ("/private/vendor/a/b", b"22")]
    assert longest == 50


def test_metadata_line():
    line = enc.metadata_line("INBOX", [("/private/comment", b"a\r\nb"), ("/shared/x", None),
                                       ("/shared/bin", b"\0"), ("/private/q", b"plain text")])
    assert line == (b'* METADATA INBOX (/private/comment {4}\r\na\r\nb /shared/x NIL /shared/bin ~{1}\r\n\0'
                    b' /private/q "plain text")\r\n')
    assert enc.metadata_line("", [("/shared/admin", b"mailto:p@x")]) == (
        b'* METADATA "" (/shared/admin "mailto:p@x")\r\n')
    assert enc.response_code(("METADATA", "LONGENTRIES", 9)) == b"[METADATA LONGENTRIES 9]"


def test_capability_and_states():
    assert "METADATA" in capabilities(tls_active=True, authenticated=True, options=CapabilityOptions(metadata=True))
    assert "METADATA" not in capabilities(tls_active=True, authenticated=True)
    for name in ("GETMETADATA", "SETMETADATA"):
        assert refusal(name, State.AUTHENTICATED) is None and refusal(name, State.SELECTED) is None
        assert refusal(name, State.NOT_AUTHENTICATED).status == "BAD"
