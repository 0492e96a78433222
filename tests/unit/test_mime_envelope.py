"""ENVELOPE (RFC 3501 §7.4.2): corpus table, address parser, wire encoding.

The expected wire bytes of the corpus table were checked against Dovecot 2.3 (see
tests/interop/test_mime_vs_dovecot.py, which compares them live).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from courriel import mime
from courriel.mime_envelope import envelope_bytes, imap_string, parse_addresses

CORPUS = Path(__file__).parent.parent / "corpus" / "mime"

ENVELOPES = [
    ("8bit-headers.eml",
     b'("Fri, 10 Jan 2025 12:00:00 +0100" "second subject line" (({12}\r\nZo\xc3\xab Ste\xc3\x9fel NI'
     b'L "zoe" "example.de")) (({12}\r\nZo\xc3\xab Ste\xc3\x9fel NIL "zoe" "example.de")) (({12}\r\nZo\xc3'
     b'\xab Ste\xc3\x9fel NIL "zoe" "example.de")) (({16}\r\nM\xc3\xbcller, J\xc3\xbcrgen NIL "juergen" "examp'
     b'le.de")) NIL NIL NIL "<8bit-8@example.de>")'),
    ("bad-boundary.eml",
     b'(NIL "boundary never appears, then a truncated part" ((NIL NIL "mua" "example.or'
     b'g")) ((NIL NIL "mua" "example.org")) ((NIL NIL "mua" "example.org")) NIL NIL NIL'
     b' NIL NIL)'),
    ("bare-lf.eml",
     b'(NIL "bare LF line endings" ((NIL NIL "unix" "example.org")) ((NIL NIL "unix" "e'
     b'xample.org")) ((NIL NIL "unix" "example.org")) ((NIL NIL "mbox" "example.org")) '
     b'NIL NIL NIL NIL)'),
    ("broken-content-type.eml",
     b'(NIL "broken content type" ((NIL NIL "broken" "example.org")) ((NIL NIL "broken"'
     b' "example.org")) ((NIL NIL "broken" "example.org")) NIL NIL NIL NIL NIL)'),
    ("digest.eml",
     b'(NIL "Digest, Vol 1" ((NIL NIL "list" "example.org")) ((NIL NIL "list" "example.'
     b'org")) ((NIL NIL "list" "example.org")) ((NIL NIL "reader" "example.org")) NIL N'
     b'IL NIL NIL)'),
    ("empty-fields.eml",
     b'("" "" ((NIL NIL "empty" "example.org")) ((NIL NIL "empty" "example.org")) ((NIL'
     b' NIL "empty" "example.org")) NIL NIL NIL "<a@example.org> (comment)" "")'),
    ("encoded-words.eml",
     b'("Thu, 9 Jan 2025 08:00:00 +0100" "=?UTF-8?B?UsOpc3Vtw6k=?= of the =?UTF-8?Q?caf'
     b'=C3=A9?= meeting" (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de"'
     b')) (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de")) (("=?UTF-8?Q'
     b'?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de")) (("=?ISO-8859-1?B?RnJhbudva'
     b'XM=?=" NIL "francois" "example.fr")("Plain, Name" NIL "plain" "example.com")) NI'
     b'L NIL NIL "<ew-4@example.de>")'),
    ("encodings.eml",
     b'(NIL "transfer encodings" ((NIL NIL "enc" "example.org")) ((NIL NIL "enc" "examp'
     b'le.org")) ((NIL NIL "enc" "example.org")) NIL NIL NIL NIL NIL)'),
    ("groups.eml",
     b'(NIL "Group addresses" (("Team Lead" NIL "lead" "example.org")) (("Assistant" NI'
     b'L "assistant" "example.org")) ((NIL NIL "replies" "example.org")) ((NIL NIL "Pro'
     b'ject team" NIL)(NIL NIL "anna" "example.org")("Ben B." NIL "ben" "example.org")('
     b'NIL NIL NIL NIL)(NIL NIL "solo" "example.org")) ((NIL NIL "undisclosed-recipient'
     b's" NIL)(NIL NIL NIL NIL)) ((NIL "@relay.example.org" "hidden" "example.org")) NI'
     b'L "<groups-6@example.org>")'),
    ("headers-only.eml",
     b'(NIL "a message with no body and no blank line" ((NIL NIL "nobody" "example.org"'
     b')) ((NIL NIL "nobody" "example.org")) ((NIL NIL "nobody" "example.org")) NIL NIL'
     b' NIL NIL NIL)'),
    ("nested-multipart.eml",
     b'("Tue, 7 Jan 2025 09:30:00 -0500" "Quarterly report" (("Carol (Sales)" NIL "caro'
     b'l" "example.com")) (("Carol (Sales)" NIL "carol" "example.com")) (("Carol (Sales'
     b')" NIL "carol" "example.com")) (("Dave" NIL "dave" "example.net")(NIL NIL "erin"'
     b' "example.net")) ((NIL NIL "frank" "example.net")) NIL "<prev-1@example.net>" "<'
     b'nested-2@example.com>")'),
    ("no-content-type.eml",
     b'(NIL "no content type" ((NIL NIL "legacy" "example.org")) ((NIL NIL "legacy" "ex'
     b'ample.org")) ((NIL NIL "legacy" "example.org")) ((NIL NIL "someone" "example.org'
     b'")) NIL NIL NIL NIL)'),
    ("nul-bytes.eml",
     b'(NIL {5}\r\na\xef\xbf\xbdb (({5}\r\nn\xef\xbf\xbdm NIL "nul" "example.org")) '
     b'(({5}\r\nn\xef\xbf\xbdm NIL "nul" "example.org")) (({5}\r\nn\xef\xbf\xbdm NIL "nul" "example.org")) '
     b'NIL NIL NIL NIL NIL)'),
    ("rfc2231.eml",
     b'(NIL "RFC 2231 parameters" ((NIL NIL "kim" "example.org")) ((NIL NIL "kim" "exam'
     b'ple.org")) ((NIL NIL "kim" "example.org")) ((NIL NIL "lee" "example.org")) NIL N'
     b'IL NIL NIL)'),
    ("rfc822-in-multipart.eml",
     b'("Wed, 8 Jan 2025 14:00:00 +0000" "Fwd: Meeting notes" ((NIL NIL "gina" "example'
     b'.org")) ((NIL NIL "gina" "example.org")) ((NIL NIL "gina" "example.org")) ((NIL '
     b'NIL "hank" "example.org")) NIL NIL NIL "<fwd-3@example.org>")'),
    ("simple.eml",
     b'("Mon, 6 Jan 2025 10:00:00 +0100" "Lunch tomorrow?" (("Alice Example" NIL "alice'
     b'" "example.org")) (("Alice Example" NIL "alice" "example.org")) (("Alice Example'
     b'" NIL "alice" "example.org")) ((NIL NIL "bob" "example.net")) NIL NIL NIL "<simp'
     b'le-1@example.org>")'),
    ("truncated.eml",
     b'(NIL "truncated multipart" ((NIL NIL "mua" "example.org")) ((NIL NIL "mua" "exam'
     b'ple.org")) ((NIL NIL "mua" "example.org")) NIL NIL NIL NIL NIL)'),]


def test_table_covers_the_whole_corpus():
    assert {name for name, _ in ENVELOPES} == {path.name for path in CORPUS.glob("*.eml")}


@pytest.mark.parametrize(("name", "expected"), ENVELOPES)
def test_corpus_envelope(name, expected):
    summary = mime.summarize((CORPUS / name).read_bytes())
    assert mime.envelope_wire(summary.envelope) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@b", [[None, None, "a", "b"]]),
        ("Alice <alice@example.org>", [["Alice", None, "alice", "example.org"]]),
        ('"Doe, John" <john@x>', [["Doe, John", None, "john", "x"]]),
        ('"john doe"@x.example', [[None, None, "john doe", "x.example"]]),
        ("(comment) Joe  Q. Public  <jqp(c)@ex.com>", [["Joe Q. Public", None, "jqp", "ex.com"]]),
        ("=?utf-8?q?J=C3=B6rg?= <j@x>", [["=?utf-8?q?J=C3=B6rg?=", None, "j", "x"]]),
        ("nodomain", [[None, None, "nodomain", "MISSING_DOMAIN"]]),
        ("<@r1,@r2:route@x>", [[None, "@r1,@r2", "route", "x"]]),
        ("<@x>", [[None, None, "MISSING_MAILBOX", "x"]]),
        ("undisclosed-recipients:;", [[None, None, "undisclosed-recipients", None], [None, None, None, None]]),
        ("grp: a@b, c@d;, e@f", [
            [None, None, "grp", None], [None, None, "a", "b"], [None, None, "c", "d"], [None, None, None, None],
            [None, None, "e", "f"],
        ]),
        ("unterminated: a@b", [[None, None, "unterminated", None], [None, None, "a", "b"], [None, None, None, None]]),
        ("a@[192.0.2.1]", [[None, None, "a", "[192.0.2.1]"]]),
        ("first.last@sub.example.org", [[None, None, "first.last", "sub.example.org"]]),
        ("", None),
        ("  ,  ,", None),
        (None, None),
    ],
)
def test_parse_addresses(value, expected):
    assert parse_addresses(value) == expected


def test_sender_and_reply_to_default_to_from():
    summary = mime.summarize(b"From: a@b\r\nSender:\r\nSubject: x\r\n\r\n")
    envelope = json.loads(summary.envelope)
    assert envelope[2] == envelope[3] == envelope[4] == [[None, None, "a", "b"]]


def test_absent_fields_are_nil_and_empty_ones_are_empty_strings():
    envelope = json.loads(mime.summarize(b"Subject:\r\n\r\nbody").envelope)
    assert envelope == ["" if i == 1 else None for i in range(10)]


def test_last_of_repeated_fields_wins():
    envelope = json.loads(mime.summarize(b"Subject: one\r\nSubject: two\r\n\r\n").envelope)
    assert envelope[1] == "two"


def test_folded_value_is_unfolded_with_one_space_per_fold():
    envelope = json.loads(mime.summarize(b"Subject: folded\r\n\tline\r\n  two  \r\n\r\n").envelope)
    assert envelope[1] == "folded line two  "


def test_eight_bit_values_round_trip_as_literals():
    raw = "Grüße".encode()
    summary = mime.summarize(b"Subject: " + raw + b"\r\n\r\n")
    wire = mime.envelope_wire(summary.envelope)
    assert b"{%d}\r\n%s" % (len(raw), raw) in wire
    # The JSON stays ASCII-safe and restores the exact bytes, even for invalid UTF-8.
    latin = mime.summarize(b"Subject: caf\xe9\r\n\r\n")
    assert b"{4}\r\ncaf\xe9" in mime.envelope_wire(latin.envelope)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"NIL"),
        ("", b'""'),
        ('say "hi" \\ bye', b'"say \\"hi\\" \\\\ bye"'),
        ("line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        ("nul\0", b"{4}\r\nnul\0"),
    ],
)
def test_imap_string(value, expected):
    assert imap_string(value) == expected


def test_envelope_bytes_shape():
    envelope = [None, "s", [["n", None, "m", "h"], [None, None, "x", "y"]], None, None, None, None, None, None, "<i>"]
    assert envelope_bytes(envelope) == b'(NIL "s" (("n" NIL "m" "h")(NIL NIL "x" "y")) NIL NIL NIL NIL NIL NIL "<i>")'


def test_nul_in_header_becomes_replacement_character():
    wire = mime.envelope_wire(mime.summarize(b'Subject: a\x00b\r\nFrom: "n\x00m" <a@b>\r\n\r\n').envelope)
    assert wire.startswith(b"(NIL {5}\r\na\xef\xbf\xbdb ((" + b"{5}\r\nn\xef\xbf\xbdm NIL")
    assert b"\x00" not in wire
