"""BODYSTRUCTURE / BODY (RFC 3501 §7.4.2) and the part tree with offsets; summary fields.

The expected wire bytes of the corpus table were checked against Dovecot 2.3 (see
tests/interop/test_mime_vs_dovecot.py, which compares them live, with the documented
difference for broken-content-type.eml).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from courriel import mime
from courriel.mime_structure import MAX_DEPTH, body_bytes, parse_structure

CORPUS = Path(__file__).parent.parent / "corpus" / "mime"

BODYSTRUCTURES = [
    ("8bit-headers.eml",
     b'("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 18 1 NIL NIL NIL NIL)'),
    ("bad-boundary.eml",
     b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mix'
     b'ed" ("boundary" "declared") NIL NIL NIL)'),
    ("bare-lf.eml",
     b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 17 1 NIL NIL NIL NIL)("te'
     b'xt" "html" ("charset" "us-ascii") NIL NIL "7bit" 15 0 NIL NIL NIL NIL) "alternat'
     b'ive" ("boundary" "lf") NIL NIL NIL)'),
    ("broken-content-type.eml",
     b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 36 1 NIL ("inline" NIL) NI'
     b'L NIL)'),
    ("digest.eml",
     b'(("message" "rfc822" NIL NIL NIL "7bit" 53 (NIL "first" ((NIL NIL "a" "example.o'
     b'rg")) ((NIL NIL "a" "example.org")) ((NIL NIL "a" "example.org")) NIL NIL NIL NI'
     b'L NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 0 NIL NIL NIL NI'
     b'L) 3 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 35 0 '
     b'NIL NIL NIL NIL) "digest" ("boundary" "digest") NIL NIL NIL)'),
    ("empty-fields.eml",
     b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)'),
    ("encoded-words.eml",
     b'("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 16 1 NIL NIL NIL NIL)'),
    ("encodings.eml",
     b'(("text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable" 28 1 NIL NI'
     b'L NIL NIL)("application" "octet-stream" NIL NIL NIL "base64" 24 NIL NIL NIL NIL)'
     b'("application" "x-thing" NIL NIL NIL "x-uuencode" 16 NIL NIL NIL NIL) "mixed" ("'
     b'boundary" "enc") NIL NIL NIL)'),
    ("groups.eml",
     b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)'),
    ("headers-only.eml",
     b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'),
    ("nested-multipart.eml",
     b'((("text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable" 50 2 NIL N'
     b'IL NIL NIL)("text" "html" ("charset" "iso-8859-1") NIL NIL "quoted-printable" 47'
     b' 1 NIL NIL NIL NIL) "alternative" ("boundary" "inner-boundary") NIL NIL NIL)("ap'
     b'plication" "pdf" ("name" "report.pdf") "<report@example.com>" "The report" "base'
     b'64" 130 NIL ("attachment" ("filename" "report.pdf")) NIL NIL) "mixed" ("boundary'
     b'" "outer-boundary") NIL NIL NIL)'),
    ("no-content-type.eml",
     b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 37 2 NIL NIL NIL NIL)'),
    ("nul-bytes.eml",
     b'("text" "plain" ("charset" "utf-8" "format" "flowed" "delsp" "yes") NIL NIL "Quo'
     b'ted-Printable" 5 1 NIL NIL NIL NIL)'),
    ("rfc2231.eml",
     b'(("application" "octet-stream" ("name" "very-long-file-name.bin") NIL NIL "base6'
     b'4" 8 NIL ("attachment" ("filename*" "utf-8\'\'%C3%A9t%C3%A9-summer.bin")) NIL NIL)'
     b'("text" "plain" ("charset*" "us-ascii\'en\'us-ascii" "charset" "us-ascii") NIL NIL'
     b' "7bit" 10 0 NIL NIL ("en-GB" "fr") NIL) "mixed" ("boundary" "=_rfc2231") NIL NI'
     b'L NIL)'),
    ("rfc822-in-multipart.eml",
     b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 32 0 NIL NIL NIL NIL)("me'
     b'ssage" "rfc822" NIL NIL NIL "7bit" 373 ("Tue, 7 Jan 2025 17:00:00 +0000" "Meetin'
     b'g notes" (("Ivan" NIL "ivan" "example.com")) (("Ivan" NIL "ivan" "example.com"))'
     b' (("Ivan" NIL "ivan" "example.com")) ((NIL NIL "gina" "example.org")) NIL NIL NI'
     b'L "<notes-1@example.com>") (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit'
     b'" 15 0 NIL NIL NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 22 0'
     b' NIL NIL NIL NIL) "alternative" ("boundary" "b2") NIL NIL NIL) 17 NIL ("inline" '
     b'NIL) NIL NIL)("image" "png" NIL NIL NIL "base64" 96 NIL NIL NIL NIL) "mixed" ("b'
     b'oundary" "b1") NIL NIL NIL)'),
    ("simple.eml",
     b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 54 5 NIL NIL NIL NIL)'),
    ("truncated.eml",
     b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL)("te'
     b'xt" "plain" ("charset" "us-ascii") NIL NIL "7bit" 27 1 NIL NIL NIL NIL) "mixed" '
     b'("boundary" "cut") NIL NIL NIL)'),]


def test_table_covers_the_whole_corpus():
    assert {name for name, _ in BODYSTRUCTURES} == {path.name for path in CORPUS.glob("*.eml")}


@pytest.mark.parametrize(("name", "expected"), BODYSTRUCTURES)
def test_corpus_bodystructure(name, expected):
    summary = mime.summarize((CORPUS / name).read_bytes())
    assert mime.bodystructure_wire(summary.bodystructure) == expected


def test_body_is_bodystructure_without_extension_data():
    tree = parse_structure((CORPUS / "rfc822-in-multipart.eml").read_bytes())
    assert body_bytes(tree, extensible=False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 32 0)("message" "rfc822" NIL NIL NIL "7bit" 373 '
        b'("Tue, 7 Jan 2025 17:00:00 +0000" "Meeting notes" (("Ivan" NIL "ivan" "example.com")) '
        b'(("Ivan" NIL "ivan" "example.com")) (("Ivan" NIL "ivan" "example.com")) ((NIL NIL "gina" "example.org")) '
        b'NIL NIL NIL "<notes-1@example.com>") (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 15 0)'
        b'("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 22 0) "alternative") 17)'
        b'("image" "png" NIL NIL NIL "base64" 96) "mixed")'
    )


def walk(node):
    yield node
    for child in node.get("parts", []):
        yield from walk(child)
    if "message" in node:
        yield from walk(node["message"]["body"])


@pytest.mark.parametrize("name", sorted(path.name for path in CORPUS.glob("*.eml")))
def test_offsets_are_consistent(name):
    data = (CORPUS / name).read_bytes()
    tree = parse_structure(data)
    assert tree["offsets"] == [0, tree["offsets"][1], len(data)]
    for node in walk(tree):
        start, body_start, end = node["offsets"]
        assert 0 <= start <= body_start <= end <= len(data)
        assert node["size"] == end - body_start
        if "lines" in node:
            assert node["lines"] == data.count(b"\n", body_start, end)
        for child in node.get("parts", []):
            assert body_start <= child["offsets"][0] <= child["offsets"][2] <= end
        if "message" in node:
            assert node["message"]["body"]["offsets"][0] == body_start


def test_part_offsets_point_at_the_part_content():
    data = (CORPUS / "nested-multipart.eml").read_bytes()
    tree = parse_structure(data)
    plain = tree["parts"][0]["parts"][0]
    start, body_start, end = plain["offsets"]
    assert data[start:body_start].startswith(b"Content-Type: text/plain")
    assert data[body_start:end] == b"Voici le rapport trimestriel =E0 lire.\r\nMerci=21\r\n"


def test_bare_lf_and_crlf_give_the_same_structure_apart_from_sizes():
    lf = (CORPUS / "bare-lf.eml").read_bytes()
    crlf = mime.canonical_line_endings(lf)
    assert b"\r\n" not in lf and b"\n" not in crlf.replace(b"\r\n", b"")

    def shape(node):
        return {k: v for k, v in node.items() if k not in ("size", "offsets", "parts")} | {
            "parts": [shape(child) for child in node.get("parts", [])]}

    assert shape(parse_structure(lf)) == shape(parse_structure(crlf))
    # "line one\nline two" (the last line ending belongs to the delimiter): one more octet per line.
    assert parse_structure(crlf)["parts"][0]["size"] == parse_structure(lf)["parts"][0]["size"] + 1


def test_canonical_line_endings_keeps_existing_crlf():
    assert mime.canonical_line_endings(b"a\nb\r\nc\n") == b"a\r\nb\r\nc\r\n"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 1'),
        (b"text/html", b'("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 2 1'),
        (b"text/plain; charset", b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 1'),
        (b"image/", b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 1'),
        (b'IMAGE/JPEG; NAME="a b.jpg" (comment)', b'("IMAGE" "JPEG" ("NAME" "a b.jpg") NIL NIL "7bit" 2 NIL'),
        (b"application/x; a=1; a=2; b", b'("application" "x" ("a" "1") NIL NIL "7bit" 2 NIL'),
        (b"application/x; title*0*=us-ascii'en'A%20; title*1=B",
         b'("application" "x" ("title*" "us-ascii\'en\'A%20B") NIL NIL "7bit" 2 NIL'),
    ],
)
def test_content_type_defaults_and_parameters(content_type, expected):
    header = b"" if content_type is None else b"Content-Type: " + content_type + b"\r\n"
    tree = parse_structure(header + b"\r\nx\n")
    assert body_bytes(tree).startswith(expected)


def test_multipart_digest_defaults_to_message_rfc822():
    tree = parse_structure((CORPUS / "digest.eml").read_bytes())
    assert [(p["type"], p["subtype"]) for p in tree["parts"]] == [("message", "rfc822"), ("text", "plain")]


def test_boundary_prefix_in_content_is_not_a_delimiter():
    data = (b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n\r\n--abc is text\r\n--ab--\r\n")
    tree = parse_structure(data)
    assert len(tree["parts"]) == 1
    assert tree["parts"][0]["size"] == len(b"--abc is text")


def test_deep_nesting_is_bounded():
    depth = MAX_DEPTH + 50
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
    data = head + b"\r\ninnermost\r\n"
    tree = parse_structure(data)
    levels = 0
    node = tree
    while "parts" in node:
        node = node["parts"][0]
        levels += 1
    assert levels <= MAX_DEPTH + 1
    body_bytes(tree)  # the encoder copes with what was kept


def test_many_parts_are_bounded():
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 20_000 + b"--b--\r\n"
    tree = parse_structure(data)
    assert 1 <= len(tree["parts"]) <= 10_000


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data):
    summary = mime.summarize(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" + data)
    json.loads(summary.envelope)
    mime.bodystructure_wire(summary.bodystructure)
    summary = mime.summarize(data)
    mime.envelope_wire(summary.envelope)
    mime.bodystructure_wire(summary.bodystructure, extensible=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([
    b"From: a@b\r\n", b"Content-Type: multipart/mixed; boundary=q\r\n", b"Content-Type: message/rfc822\r\n",
    b"\r\n", b"--q\r\n", b"--q--\r\n", b"text\r\n", b"Subject: =?x?q?y?=\r\n", b"To: g: ;\r\n", b"\n",
]), max_size=40))
def test_structured_noise_never_raises(chunks):
    data = b"".join(chunks)
    tree = parse_structure(data)
    body_bytes(tree)
    assert tree["offsets"][2] >= len(data) - 2


def test_summary_columns():
    summary = mime.summarize((CORPUS / "encoded-words.eml").read_bytes())
    assert summary.subject == "Résumé of the café meeting"
    assert summary.from_addr == "Jörg Müller <joerg@example.de>"
    assert summary.to_addr == 'François <francois@example.fr>, "Plain, Name" <plain@example.com>'
    assert summary.cc_addr == ""
    assert summary.message_id == "<ew-4@example.de>"
    assert summary.sent_date == dt.datetime(2025, 1, 9, 7, 0, tzinfo=dt.UTC)


def test_summary_of_garbage_date_and_eight_bit_subject():
    summary = mime.summarize(b"Date: yesterday-ish\r\nSubject: caf\xe9\r\n\r\n")
    assert summary.sent_date is None
    assert summary.subject == "café"


def test_message_global_is_reported_as_a_leaf():
    # RFC 3501 grammar has no encapsulated form for message/global (Dovecot agrees).
    tree = parse_structure(b"Content-Type: message/global\r\n\r\nSubject: g\r\n\r\nbody\r\n")
    assert body_bytes(tree) == b'("message" "global" NIL NIL NIL "7bit" 20 NIL NIL NIL NIL)'


def test_top_level_message_rfc822():
    data = b"Content-Type: message/rfc822\r\n\r\nSubject: top\r\n\r\ntop body\r\n"
    assert body_bytes(parse_structure(data)) == (
        b'("message" "rfc822" NIL NIL NIL "7bit" 26 (NIL "top" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)')


def test_too_deep_message_rfc822_keeps_the_body_type_msg_grammar():
    depth = MAX_DEPTH + 5
    data = b"".join(b"Content-Type: message/rfc822\r\nX-Level: %d\r\n\r\n" % i for i in range(depth)) + b"deep\r\n"
    tree = parse_structure(data)
    node, levels = tree, 0
    while "message" in node:
        node = node["message"]["body"]
        levels += 1
    assert levels == MAX_DEPTH + 1
    wire = body_bytes(tree)
    # The innermost message/rfc822 still has (envelope) (body) lines.
    assert b'"message" "rfc822" NIL NIL NIL "7bit" ' in wire
    assert wire.count(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)") >= 1


def test_huge_header_blocks_are_cheap_and_offsets_stay_exact():
    data = b"Subject: first\r\n" + b"X-A: b\r\n" * 300_000 + b"\r\nbody"
    started = time.monotonic()
    summary = mime.summarize(data)
    assert time.monotonic() - started < 5  # bounded field scan (typically well under 0.1 s)
    assert summary.subject == "first"
    tree = json.loads(summary.bodystructure)
    assert tree["offsets"] == [0, len(data) - 4, len(data)]
    assert mime.section_bytes(data, tree, "HEADER.FIELDS (X-A)").count(b"X-A: b\r\n") == 300_000
