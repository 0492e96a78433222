"""IMAP command parser: grammar of every command, split-frame feeding, literals, limits, resynchronisation."""

from __future__ import annotations

import datetime as dt

import pytest

from courriel.imap.protocol import commands as c
from courriel.imap.protocol.parser import Limits, Parser
from courriel.imap.protocol.sequence import SequenceSet

S = SequenceSet.parse
F = c.FetchAttribute
UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))

GRAMMAR = [
    (b"a CAPABILITY", c.Capability("a")),
    (b"a noop", c.Noop("a")),
    (b"a LOGOUT", c.Logout("a")),
    (b"a STARTTLS", c.StartTls("a")),
    (b"a AUTHENTICATE plain", c.Authenticate("a", "PLAIN", None)),
    (b"a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==", c.Authenticate("a", "PLAIN", b"\0user\0pass")),
    (b"a AUTHENTICATE PLAIN =", c.Authenticate("a", "PLAIN", b"")),
    (b"a LOGIN joe secret", c.Login("a", "joe", "secret")),
    (b'a LOGIN "joe@example.org" "se\\"cr\\\\et"', c.Login("a", "joe@example.org", 'se"cr\\et')),
    (b"a SELECT inbox", c.Select("a", "INBOX")),
    (b'a SELECT "Sent Items" (CONDSTORE)', c.Select("a", "Sent Items", condstore=True)),
    (b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
     c.Select("a", "INBOX", qresync=c.QresyncParameters(67890007, 20050715194045000, S("41,43:211,214:541")))),
    (b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000 15000,22500,27000)))",
     c.Select("a", "INBOX", qresync=c.QresyncParameters(67890007, 90060115194045000, S("1:29997"),
                                                        S("5000,7500,9000"), S("15000,22500,27000")))),
    (b"a SELECT INBOX (QRESYNC (1 2 (3 4)))",
     c.Select("a", "INBOX", qresync=c.QresyncParameters(1, 2, None, S("3"), S("4")))),
    (b"a EXAMINE Archive", c.Examine("a", "Archive")),
    (b"a CREATE Drafts2 (USE (\\Drafts))", c.Create("a", "Drafts2", ("\\Drafts",))),
    (b"a CREATE foo/bar", c.Create("a", "foo/bar")),
    (b"a CREATE &ZeVnLIqe-", c.Create("a", "日本語")),
    (b"a DELETE foo", c.Delete("a", "foo")),
    (b"a RENAME foo bar", c.Rename("a", "foo", "bar")),
    (b"a SUBSCRIBE foo", c.Subscribe("a", "foo")),
    (b"a UNSUBSCRIBE foo", c.Unsubscribe("a", "foo")),
    (b'a LIST "" *', c.List("a", "", ("*",))),
    (b'a LIST "" %/%', c.List("a", "", ("%/%",))),
    (b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "foo*") RETURN (CHILDREN SPECIAL-USE)',
     c.List("a", "", ("INBOX", "foo*"), ("SUBSCRIBED", "RECURSIVEMATCH"), ("CHILDREN", "SPECIAL-USE"), (), True)),
    (b'a LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
     c.List("a", "", ("%",), (), ("STATUS",), ("MESSAGES", "UNSEEN"), True)),
    (b'a LIST (SPECIAL-USE) "" *', c.List("a", "", ("*",), ("SPECIAL-USE",), (), (), True)),
    (b'a LIST "" * RETURN ()', c.List("a", "", ("*",), (), (), (), True)),
    (b'a LSUB "" *', c.Lsub("a", "", "*")),
    (b"a STATUS INBOX (MESSAGES UIDNEXT uidvalidity UNSEEN HIGHESTMODSEQ SIZE DELETED)",
     c.Status("a", "INBOX", ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE", "DELETED"))),
    (b"a NAMESPACE", c.Namespace("a")),
    (b"a ENABLE CONDSTORE qresync", c.Enable("a", ("CONDSTORE", "QRESYNC"))),
    (b"a IDLE", c.Idle("a")),
    (b"a ID NIL", c.Id("a", None)),
    (b'a ID ("name" "mutt" "version" NIL)', c.Id("a", (("name", "mutt"), ("version", None)))),
    (b"a COMPRESS DEFLATE", c.Compress("a", "DEFLATE")),
    (b"a UNAUTHENTICATE", c.Unauthenticate("a")),
    (b'a GETQUOTA ""', c.GetQuota("a", "")),
    (b"a GETQUOTAROOT INBOX", c.GetQuotaRoot("a", "INBOX")),
    (b'a SETQUOTA "" (STORAGE 512 MESSAGE 1000)', c.SetQuota("a", "", (("STORAGE", 512), ("MESSAGE", 1000)))),
    (b"a GETMETADATA (DEPTH 1) INBOX /private", c.GetMetadata("a", "INBOX", ("/private",), 1)),
    (b'a SETMETADATA INBOX (/shared/comment "x")', c.SetMetadata("a", "INBOX", (("/shared/comment", b"x"),))),
    (b"a CHECK", c.Check("a")),
    (b"a CLOSE", c.Close("a")),
    (b"a UNSELECT", c.Unselect("a")),
    (b"a EXPUNGE", c.Expunge("a")),
    (b"a UID EXPUNGE 3000:3002", c.Expunge("a", S("3000:3002"))),
    (b"a SEARCH ALL", c.Search("a", ("ALL",))),
    (b"a UID SEARCH 1:* UNSEEN", c.Search("a", ("AND", (("SEQ", S("1:*")), ("UNSEEN",))), uid=True)),
    (b"a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
     c.Search("a", ("AND", (("FLAGGED",), ("SINCE", dt.date(1994, 2, 1)), ("NOT", ("FROM", "Smith")))))),
    (b"a SEARCH OR (SEEN LARGER 100) NOT (DELETED UID 1:5) HEADER X-Spam yes",
     c.Search("a", ("AND", (("OR", ("AND", (("SEEN",), ("LARGER", 100))),
                                   ("NOT", ("AND", (("DELETED",), ("UID", S("1:5")))))),
                            ("HEADER", "X-Spam", "yes"))))),
    (b'a SEARCH BEFORE "5-Jan-2020" ON 12-dec-2019 SENTBEFORE 1-Jan-2000 SENTON 1-Jan-2000 SENTSINCE 1-Jan-2000',
     c.Search("a", ("AND", (("BEFORE", dt.date(2020, 1, 5)), ("ON", dt.date(2019, 12, 12)),
                            ("SENTBEFORE", dt.date(2000, 1, 1)), ("SENTON", dt.date(2000, 1, 1)),
                            ("SENTSINCE", dt.date(2000, 1, 1)))))),
    (b"a SEARCH ANSWERED UNANSWERED DELETED UNDELETED DRAFT UNDRAFT FLAGGED UNFLAGGED NEW OLD RECENT SEEN UNSEEN",
     c.Search("a", ("AND", tuple((k,) for k in ("ANSWERED", "UNANSWERED", "DELETED", "UNDELETED", "DRAFT", "UNDRAFT",
                                                 "FLAGGED", "UNFLAGGED", "NEW", "OLD", "RECENT", "SEEN", "UNSEEN"))))),
    (b"a SEARCH BCC a BODY b CC c FROM d SUBJECT e TEXT f TO g KEYWORD $Junk UNKEYWORD Work SMALLER 5",
     c.Search("a", ("AND", (("BCC", "a"), ("BODY", "b"), ("CC", "c"), ("FROM", "d"), ("SUBJECT", "e"), ("TEXT", "f"),
                            ("TO", "g"), ("KEYWORD", "$Junk"), ("UNKEYWORD", "Work"), ("SMALLER", 5))))),
    (b"a SEARCH RETURN (MIN MAX COUNT) UNSEEN", c.Search("a", ("UNSEEN",), None, ("MIN", "MAX", "COUNT"))),
    (b"a UID SEARCH RETURN () ALL", c.Search("a", ("ALL",), None, ("ALL",), uid=True)),
    (b"a SEARCH RETURN (SAVE) CHARSET us-ascii DELETED", c.Search("a", ("DELETED",), "US-ASCII", ("SAVE",))),
    (b"a SEARCH CHARSET ISO-8859-1 SUBJECT {4}\r\ncaf\xe9", c.Search("a", ("SUBJECT", "caf\xe9"), "ISO-8859-1")),
    (b"a SEARCH $", c.Search("a", ("SEQ", SequenceSet(saved=True)))),
    (b"a UID SEARCH UID $ SEEN", c.Search("a", ("AND", (("UID", SequenceSet(saved=True)), ("SEEN",))), uid=True)),
    (b"a SEARCH MODSEQ 620162338", c.Search("a", ("MODSEQ", 620162338))),
    (b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338', c.Search("a", ("MODSEQ", 620162338))),
    (b"a SEARCH OLDER 3600 YOUNGER 60", c.Search("a", ("AND", (("OLDER", 3600), ("YOUNGER", 60))))),
    (b"a FETCH 1 ALL", c.Fetch("a", S("1"), (F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"), F("ENVELOPE")))),
    (b"a FETCH 1:* FAST", c.Fetch("a", S("1:*"), (F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE")))),
    (b"a FETCH 2 full", c.Fetch("a", S("2"), (F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"), F("ENVELOPE"),
                                                F("BODY")))),
    (b"a FETCH 1 flags", c.Fetch("a", S("1"), (F("FLAGS"),))),
    (b"a FETCH 1 BODY[]", c.Fetch("a", S("1"), (F("BODY[]"),))),
    (b"a FETCH 2:4 (ENVELOPE BODYSTRUCTURE INTERNALDATE RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE UID MODSEQ BODY)",
     c.Fetch("a", S("2:4"), tuple(F(n) for n in ("ENVELOPE", "BODYSTRUCTURE", "INTERNALDATE", "RFC822",
                                                  "RFC822.HEADER", "RFC822.TEXT", "RFC822.SIZE", "UID", "MODSEQ",
                                                  "BODY")))),
    (b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From Subject)] BODY[1.2.MIME] BODY[TEXT]<0.2048> BODY[3])",
     c.Fetch("a", S("1"), (F("BODY[]", "HEADER.FIELDS (FROM SUBJECT)", None, True, (), "HEADER.FIELDS",
                             ("FROM", "SUBJECT")),
                           F("BODY[]", "1.2.MIME", None, False, (1, 2), "MIME"),
                           F("BODY[]", "TEXT", (0, 2048), False, (), "TEXT"),
                           F("BODY[]", "3", None, False, (3,))))),
    (b"a FETCH 1 (BODY[2.HEADER.FIELDS.NOT (\"X-A\" {3}\r\nX-B)])",
     c.Fetch("a", S("1"), (F("BODY[]", "2.HEADER.FIELDS.NOT (X-A X-B)", None, False, (2,), "HEADER.FIELDS.NOT",
                             ("X-A", "X-B")),))),
    (b"a FETCH 1 (BINARY[1] BINARY.PEEK[2]<10.20> BINARY.SIZE[1] BINARY[])",
     c.Fetch("a", S("1"), (F("BINARY[]", "1", None, False, (1,)), F("BINARY[]", "2", (10, 20), True, (2,)),
                           F("BINARY.SIZE[]", "1", None, False, (1,)), F("BINARY[]")))),
    (b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
     c.Fetch("a", S("1:*"), (F("FLAGS"),), True, 12345, True)),
    (b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)", c.Fetch("a", S("1:*"), (F("FLAGS"),), False, 12345)),
    (b"a STORE 2:4 +FLAGS (\\Deleted)", c.Store("a", S("2:4"), "+", False, ("\\Deleted",))),
    (b"a STORE 1 -FLAGS.SILENT \\SEEN $Junk", c.Store("a", S("1"), "-", True, ("\\Seen", "$Junk"))),
    (b"a STORE 1 FLAGS ()", c.Store("a", S("1"), "", False, ())),
    (b"a UID STORE 5 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
     c.Store("a", S("5"), "+", True, ("\\Deleted",), True, 320162338)),
    (b"a COPY 2:4 Archive", c.Copy("a", S("2:4"), "Archive")),
    (b"a UID COPY 10 INBOX", c.Copy("a", S("10"), "INBOX", True)),
    (b"a MOVE 1 Trash", c.Move("a", S("1"), "Trash")),
    (b"a UID MOVE 4:2 Trash", c.Move("a", S("4:2"), "Trash", True)),
    (b"a SORT (REVERSE DATE SUBJECT) UTF-8 ALL", c.Sort("a", ((True, "DATE"), (False, "SUBJECT")), "UTF-8", ("ALL",))),
    (b"a UID SORT (ARRIVAL) US-ASCII SEEN", c.Sort("a", ((False, "ARRIVAL"),), "US-ASCII", ("SEEN",), True)),
    (b"a SORT RETURN (MIN COUNT) (DISPLAYFROM) UTF-8 ALL",
     c.Sort("a", ((False, "DISPLAYFROM"),), "UTF-8", ("ALL",), False, ("MIN", "COUNT"))),
    (b"a UID SORT RETURN () (SIZE) UTF-8 ALL", c.Sort("a", ((False, "SIZE"),), "UTF-8", ("ALL",), True, ("ALL",))),
    (b"a THREAD REFERENCES UTF-8 SINCE 5-MAR-2000",
     c.Thread("a", "REFERENCES", "UTF-8", ("SINCE", dt.date(2000, 3, 5)))),
    (b"a APPEND saved-messages (\\Seen) {3}\r\nabc",
     c.Append("a", "saved-messages", (c.AppendMessage(b"abc", ("\\Seen",)),))),
    (b'a APPEND INBOX "05-Jul-2024 10:00:00 +0200" {2+}\r\nhi',
     c.Append("a", "INBOX", (c.AppendMessage(b"hi", (), dt.datetime(2024, 7, 5, 10, tzinfo=PLUS2)),))),
    (b'a APPEND INBOX () " 5-Jul-2024 10:00:00 +0000" ~{3}\r\na\0b',
     c.Append("a", "INBOX", (c.AppendMessage(b"a\0b", (), dt.datetime(2024, 7, 5, 10, tzinfo=UTC), True),))),
    (b"a APPEND INBOX (\\Seen) {1+}\r\nx (\\Flagged $Work) {1+}\r\ny {1+}\r\nz",
     c.Append("a", "INBOX", (c.AppendMessage(b"x", ("\\Seen",)), c.AppendMessage(b"y", ("\\Flagged", "$Work")),
                             c.AppendMessage(b"z")))),
    (b"a APPEND INBOX UTF8 (~{2}\r\nhi)", c.Append("a", "INBOX", (c.AppendMessage(b"hi", binary=True),))),
    (b"tag.1-x] NOOP", c.Noop("tag.1-x]")),
]

ERRORS = [
    (b"a FOO", "BAD", None),
    (b"a", "BAD", None),
    (b"+ NOOP", "BAD", None),
    (b"a UID NOOP", "BAD", None),
    (b"a NOOP extra", "BAD", None),
    (b"a LOGIN joe", "BAD", None),
    (b'a LOGIN joe "unterminated', "BAD", None),
    (b'a LOGIN joe "bad\\escape"', "BAD", None),
    (b"a SELECT", "BAD", None),
    (b"a SELECT INBOX (FOO)", "BAD", None),
    (b"a SELECT &Jjo", "BAD", None),
    (b"a CREATE &AGEAYgBj-", "BAD", None),  # printable ASCII in a shift sequence
    (b"a FETCH 0 FLAGS", "BAD", None),
    (b"a FETCH 1 FOO", "BAD", None),
    (b"a FETCH 1 (FLAGS", "BAD", None),
    (b"a FETCH 1 BODY[FOO]", "BAD", None),
    (b"a FETCH 1 BODY[MIME]", "BAD", None),
    (b"a FETCH 1 BODY[1]<5>", "BAD", None),
    (b"a FETCH 1 BINARY[1.HEADER]", "BAD", None),
    (b"a FETCH 1 (FLAGS) (VANISHED)", "BAD", None),
    (b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "BAD", None),
    (b"a FETCH 4294967296 FLAGS", "BAD", None),
    (b"a STORE 1 FLAGS.LOUD (\\Seen)", "BAD", None),
    (b"a SEARCH", "BAD", None),
    (b"a SEARCH FOO", "BAD", None),
    (b"a SEARCH SINCE 31-Feb-2020", "BAD", None),
    (b"a SEARCH RETURN (BOGUS) ALL", "BAD", None),
    (b"a SEARCH CHARSET X-NO-SUCH-CHARSET ALL", "NO", "BADCHARSET (UTF-8 US-ASCII)"),
    (b"a SEARCH CHARSET UTF-8 SUBJECT {2}\r\n\xc3\x28", "BAD", None),
    (b"a SEARCH CHARSET rot13 ALL", "NO", "BADCHARSET (UTF-8 US-ASCII)"),  # a codec, not a charset
    (b"a SEARCH CHARSET base64 SUBJECT eA==", "NO", "BADCHARSET (UTF-8 US-ASCII)"),
    (b"a SEARCH CHARSET utf-16 SUBJECT {1}\r\n\xff", "BAD", None),
    (b"a SORT (REVERSE) UTF-8 ALL", "BAD", None),
    (b"a APPEND INBOX", "BAD", None),
    (b'a APPEND INBOX "99-Jul-2024 10:00:00 +0200" {1+}\r\nx', "BAD", None),
    (b"a APPEND INBOX {0+}\r\n", "BAD", None),
    (b"a LOGIN ~{3}\r\nabc x", "BAD", None),
    (b"a AUTHENTICATE PLAIN !!!", "BAD", None),
    (b"a ENABLE", "BAD", None),
    (b"a LIST (RECURSIVEMATCH) \"\" *", "BAD", None),
    (b"a STATUS INBOX (BOGUS)", "BAD", None),
    (b"a STATUS INBOX ()", "BAD", None),
]


def feed_all(chunks, limits=None):
    parser = Parser(limits, authenticated=True)
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


@pytest.mark.parametrize(("raw", "expected"), GRAMMAR, ids=[r.split(b"\r")[0][:60].decode("latin-1")
                                                            for r, _ in GRAMMAR])
def test_grammar(raw, expected):
    events = [e for e in Parser().feed(raw + b"\r\n") if not isinstance(e, c.ContinuationRequest)]
    assert events == [expected]
    assert events[0].name == expected.name


@pytest.mark.parametrize(("raw", "status", "code"), ERRORS, ids=[r[:50].decode("latin-1") for r, *_ in ERRORS])
def test_grammar_errors(raw, status, code):
    parser = Parser()
    events = [e for e in parser.feed(raw + b"\r\n") if not isinstance(e, c.ContinuationRequest)]
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, c.CommandError), error
    assert (error.status, error.code) == (status, code)
    assert error.tag == ("*" if raw.startswith(b"+") else "a")
    # the parser resynchronised: the next command parses
    assert parser.feed(b"n NOOP\r\n") == [c.Noop("n")]


def test_every_command_has_a_grammar_row():
    names = {cmd.name for _, cmd in GRAMMAR}
    assert names == set(c.COMMANDS)


SPLIT_SAMPLES = [
    b"a1 LOGIN {3}\r\njoe {6+}\r\nsecret\r\n",
    b'a2 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From To)]<0.100> FLAGS) (CHANGEDSINCE 5)\r\n',
    b"a3 APPEND INBOX (\\Seen) {5}\r\nHello ~{3+}\r\na\0b\r\n",
    b"a4 UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (FROM x SINCE 1-Feb-2020) NOT 1:5 SUBJECT {2}\r\n\xc3\xa9\r\n",
    b"a5 SELECT INBOX (QRESYNC (1 2 1:9 (3 4)))\r\na6 NOOP\r\n\r\na7 BOGUS\r\na8 LIST \"\" *\r\n",
]


@pytest.mark.parametrize("stream", SPLIT_SAMPLES, ids=range(len(SPLIT_SAMPLES)))
def test_split_frame_feeding_gives_identical_results(stream):
    whole = feed_all([stream])
    assert whole and not any(isinstance(e, c.CommandError) and e.tag != "a7" for e in whole)
    assert feed_all([stream[i:i + 1] for i in range(len(stream))]) == whole
    for cut in range(1, len(stream)):
        assert feed_all([stream[:cut], stream[cut:]]) == whole, cut


def test_continuation_requested_once_the_literal_header_line_is_complete():
    parser = Parser()
    assert parser.feed(b"a LOGIN {3}") == []
    assert parser.feed(b"\r") == []
    assert parser.feed(b"\n") == [c.ContinuationRequest("a", 3, command="LOGIN")]
    assert parser.feed(b"jo") == []
    assert parser.feed(b"e") == []
    assert parser.feed(b" {4}\r\n") == [c.ContinuationRequest("a", 4, command="LOGIN")]
    assert parser.feed(b"pass\r\n") == [c.Login("a", "joe", "pass")]


def test_session_may_refuse_a_literal_instead_of_sending_continuation():
    parser = Parser(authenticated=True)
    assert parser.feed(b"a1 APPEND INBOX {5000}\r\n") == [c.ContinuationRequest("a1", 5000, command="APPEND")]
    parser.abandon_command()  # e.g. over the user's quota: the session answers a1 NO [OVERQUOTA]
    assert parser.feed(b"a2 NOOP\r\n") == [c.Noop("a2")]


def test_non_synchronising_literal_needs_no_continuation():
    assert Parser().feed(b"a LOGIN {3+}\r\njoe {4+}\r\npass\r\n") == [c.Login("a", "joe", "pass")]


def test_literal_data_may_hold_crlf_braces_and_quotes():
    data = b'line1\r\n{5}\r\n"x\r\n'
    events = Parser().feed(b"a APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
    assert events == [c.Append("a", "INBOX", (c.AppendMessage(data),))]


def test_zero_length_literal():
    assert Parser().feed(b"a LOGIN {0}\r\n {0+}\r\n\r\n")[1] == c.Login("a", "", "")


def test_pipelined_commands_come_out_in_order():
    events = Parser().feed(b"a NOOP\r\nb CHECK\r\nc LOGOUT\r\n")
    assert [e.tag for e in events] == ["a", "b", "c"]


def test_bare_lf_line_endings_are_accepted():
    assert Parser().feed(b"a NOOP\nb NOOP\n") == [c.Noop("a"), c.Noop("b")]


# --- limits and resynchronisation ---------------------------------------------------------------

def test_overlong_line_is_bad_toobig_and_the_next_command_parses():
    parser = Parser(Limits(max_line=100))
    events = parser.feed(b"a1 SEARCH " + b"X" * 500)
    assert events == [c.CommandError("a1", "BAD", "command line too long", "TOOBIG", "SEARCH")]
    assert parser.buffered == 0  # nothing of the overlong line is kept
    assert parser.feed(b"Y" * 500) == []
    assert parser.feed(b"ZZ\r\na2 NOOP\r\n") == [c.Noop("a2")]


def test_overlong_line_complete_in_one_chunk():
    parser = Parser(Limits(max_line=100))
    events = parser.feed(b"a1 NOOP " + b"X" * 200 + b"\r\na2 NOOP\r\n")
    assert [type(e) for e in events] == [c.CommandError, c.Noop]
    assert events[0].code == "TOOBIG"


def test_overlong_line_ending_in_non_sync_literal_skips_the_literal():
    parser = Parser(Limits(max_line=50))
    events = parser.feed(b"a1 APPEND INBOX " + b"(" * 80 + b" {10+}\r\n0123456789\r\na2 NOOP\r\n")
    assert [type(e) for e in events] == [c.CommandError, c.Noop]


def test_too_large_sync_literal_in_append_is_no_toobig_without_continuation():
    parser = Parser(Limits(max_message_size=100), authenticated=True)
    events = parser.feed(b"a1 APPEND INBOX {101}\r\n")
    assert events == [c.CommandError("a1", "NO", "message too large", "TOOBIG", "APPEND")]
    # the client never got "+", so it sends its next command, not the literal
    assert parser.feed(b"a2 NOOP\r\n") == [c.Noop("a2")]


def test_too_large_non_sync_literal_is_read_and_discarded():
    parser = Parser(Limits(max_message_size=100), authenticated=True)
    events = parser.feed(b"a1 APPEND INBOX {200+}\r\n" + b"x" * 150)
    assert events == [c.CommandError("a1", "NO", "message too large", "TOOBIG", "APPEND")]
    assert parser.feed(b"y" * 50 + b" {3+}\r\nabc\r\na2 NOOP\r\n") == [c.Noop("a2")]


def test_huge_refused_non_sync_literal_asks_to_close():
    parser = Parser(Limits(max_message_size=100, max_discard=1000), authenticated=True)
    events = parser.feed(b"a1 APPEND INBOX {1001+}\r\n")
    assert len(events) == 1 and events[0].close and (events[0].status, events[0].code) == ("NO", "TOOBIG")
    events = Parser(Limits(max_line=20, max_discard=1000)).feed(b"a1 LOGIN " + b"x" * 30 + b" {5000+}\r\n")
    assert [(e.close, e.code) for e in events] == [(True, "TOOBIG")]


def test_append_before_login_is_held_to_the_small_literal_limit():
    assert Parser(Limits(max_literal=10)).feed(b"a0 APPEND INBOX {11}\r\n")[0].size == 11  # login not tracked
    parser = Parser(Limits(max_literal=10, max_message_size=1000), authenticated=False)
    events = parser.feed(b"a1 APPEND INBOX {11}\r\n")
    assert len(events) == 1 and (events[0].status, events[0].code) == ("BAD", "TOOBIG")
    parser.authenticated = True
    assert parser.feed(b"a2 APPEND INBOX {11}\r\n") == [c.ContinuationRequest("a2", 11, command="APPEND")]


def test_command_text_across_literals_is_bounded():
    parser = Parser(Limits(max_line=40))
    events = parser.feed(b"a1 SEARCH TEXT {1+}\r\nx" + b" TEXT {1+}\r\nx" * 5 + b"\r\na2 NOOP\r\n")
    assert [type(e) for e in events] == [c.CommandError, c.Noop]
    assert events[0].code == "TOOBIG"


def test_literal_outside_append_has_its_own_limit():
    parser = Parser(Limits(max_literal=10))
    events = parser.feed(b"a1 LOGIN {11}\r\n")
    assert len(events) == 1 and (events[0].status, events[0].code) == ("BAD", "TOOBIG")
    assert parser.feed(b"a1 LOGIN {10}\r\n") == [c.ContinuationRequest("a1", 10, command="LOGIN")]


def test_unknown_command_gets_no_continuation():
    parser = Parser()
    events = parser.feed(b"a1 XYZZY {5}\r\n")
    assert len(events) == 1 and isinstance(events[0], c.CommandError) and events[0].status == "BAD"
    assert parser.feed(b"a2 NOOP\r\n") == [c.Noop("a2")]


def test_too_many_literals_is_limit():
    parser = Parser(Limits(max_literals=3))
    events = parser.feed(b"a1 APPEND INBOX {1+}\r\na {1+}\r\nb {1+}\r\nc {1+}\r\nd\r\na2 NOOP\r\n")
    assert [type(e) for e in events] == [c.CommandError, c.Noop]
    assert events[0].code == "LIMIT"


def test_nesting_limit():
    parser = Parser(Limits(max_depth=5))
    events = parser.feed(b"a1 SEARCH " + b"(" * 10 + b"ALL" + b")" * 10 + b"\r\n")
    assert len(events) == 1 and (events[0].status, events[0].code) == ("BAD", "LIMIT")
    assert parser.feed(b"a2 SEARCH ((ALL))\r\n") == [c.Search("a2", ("ALL",))]


def test_deeply_nested_search_keys_are_refused_not_a_crash():
    for program in [b"NOT " * 5000 + b"ALL", b"OR " * 900 + b"ALL " * 901, b"OR NOT " * 600 + b"ALL ALL"]:
        parser = Parser()
        events = parser.feed(b"a1 SEARCH " + program.strip() + b"\r\n")
        assert len(events) == 1 and events[0].status in ("BAD", "NO") and events[0].code == "LIMIT"
        assert parser.feed(b"a2 NOOP\r\n") == [c.Noop("a2")]
    nested = Parser().feed(b"a3 SEARCH " + b"NOT " * 50 + b"ALL\r\n")[0]
    assert isinstance(nested, c.Search)


def test_nul_in_command_line_is_bad():
    parser = Parser()
    events = parser.feed(b"a1 LOGIN jo\0e x\r\na2 NOOP\r\n")
    assert [type(e) for e in events] == [c.CommandError, c.Noop]


def test_missing_tag_is_answered_untagged():
    events = Parser().feed(b"(((\r\n")
    assert len(events) == 1 and events[0].tag == "*"


# --- special input modes -------------------------------------------------------------------------

def test_authenticate_mode_lines_and_cancel():
    parser = Parser()
    parser.receive(b"a1 AUTHENTICATE PLAIN\r\nAHVzZXIAcGFzcw==\r\na2 NOOP\r\n")
    assert parser.next_event() == c.Authenticate("a1", "PLAIN")
    parser.expect_authenticate_response("a1")
    assert parser.next_event() == c.AuthenticateResponse(b"\0user\0pass")
    parser.expect_command()
    assert parser.next_event() == c.Noop("a2")
    parser.expect_authenticate_response("a3")
    assert parser.feed(b"*\r\na4 NOOP\r\n") == [c.AuthenticateResponse(b"", cancelled=True), c.Noop("a4")]


def test_authenticate_mode_bad_base64_is_bad_and_back_to_commands():
    parser = Parser()
    parser.expect_authenticate_response("a1")
    assert parser.feed(b"@@@\r\na2 NOOP\r\n") == [
        c.CommandError("a1", "BAD", "invalid base64 in SASL response", None, "AUTHENTICATE"), c.Noop("a2")]


def test_authenticate_empty_response():
    parser = Parser()
    parser.expect_authenticate_response("a1")
    assert parser.feed(b"\r\n") == [c.AuthenticateResponse(b"")]


def test_idle_done_and_resume():
    parser = Parser()
    parser.receive(b"a1 IDLE\r\n")
    assert parser.next_event() == c.Idle("a1")
    parser.expect_idle_done("a1")
    assert parser.feed(b"do") == []
    assert parser.feed(b"ne\r\na2 NOOP\r\n") == [c.IdleDone(), c.Noop("a2")]


def test_idle_anything_but_done_is_bad():
    parser = Parser()
    parser.expect_idle_done("a1")
    assert parser.feed(b"a2 NOOP\r\n") == [c.CommandError("a1", "BAD", "expected DONE", None, "IDLE")]
    assert parser.mode == "command"


def test_starttls_discards_pipelined_plaintext():
    parser = Parser()
    parser.receive(b"a1 STARTTLS\r\na2 LOGIN evil injected\r\n")
    assert parser.next_event() == c.StartTls("a1")
    assert parser.discard_buffered() > 0
    assert parser.next_event() is None
    assert parser.feed(b"a3 NOOP\r\n") == [c.Noop("a3")]


def test_utf8_accept_mailbox_names_are_raw_utf8():
    parser = Parser(utf8=True)
    assert parser.feed('a SELECT "Données"\r\n'.encode()) == [c.Select("a", "Données")]
    assert Parser().feed('a SELECT "Données"\r\n'.encode())[0].status == "BAD"


def test_whole_grammar_table_pipelined_byte_by_byte():
    stream = b"".join(raw + b"\r\n" for raw, _ in GRAMMAR)
    expected = [command for _, command in GRAMMAR]

    def commands(events):
        return [e for e in events if not isinstance(e, c.ContinuationRequest)]

    assert commands(feed_all([stream])) == expected
    assert commands(feed_all([stream[i:i + 1] for i in range(len(stream))])) == expected
    assert commands(feed_all([stream[i:i + 7] for i in range(0, len(stream), 7)])) == expected


def test_large_literal_and_many_pipelined_commands_stay_linear():
    import time

    body = b"x" * (8 * 1024 * 1024)
    stream = b"a1 APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n" + b"n NOOP\r\n" * 20000
    parser = Parser(authenticated=True)
    started = time.monotonic()
    events = []
    for offset in range(0, len(stream), 4096):
        events += parser.feed(stream[offset:offset + 4096])
    assert time.monotonic() - started < 5
    assert len(events) == 20001 and events[0].messages[0].message == body
