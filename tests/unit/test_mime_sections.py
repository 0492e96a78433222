"""FETCH BODY[section]<partial>, RFC822.HEADER/TEXT and BINARY (RFC 3501 §6.4.5, RFC 3516).

Every kind of section specifier on corpus messages, byte-exact; the answers for the corpus
were checked against Dovecot 2.3 (tests/interop/test_mime_vs_dovecot.py compares them live).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from courriel import mime
from courriel.mime_sections import (
    BinaryDecoder,
    Section,
    SectionSyntaxError,
    UnknownTransferEncoding,
    decode_binary,
    locate,
    parse_section,
    rfc822_header,
    rfc822_text,
)

CORPUS = Path(__file__).parent.parent / "corpus" / "mime"


def load(name: str) -> tuple[bytes, dict]:
    data = (CORPUS / name).read_bytes()
    return data, json.loads(mime.summarize(data).bodystructure)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1", Section(part=(1,))),
        ("1.2.3", Section(part=(1, 2, 3))),
        ("HEADER", Section(text="HEADER")),
        ("text", Section(text="TEXT")),
        ("2.MIME", Section(part=(2,), text="MIME")),
        ("", Section()),
        ("HEADER.FIELDS (From To)", Section(text="HEADER.FIELDS", fields=("From", "To"))),
        ('1.HEADER.FIELDS.NOT ("Subject" X-A)',
         Section(part=(1,), text="HEADER.FIELDS.NOT", fields=("Subject", "X-A"))),
    ],
)
def test_parse_section(spec, expected):
    assert parse_section(spec) == expected


@pytest.mark.parametrize("spec", ["0", "1.0", "MIME", "HEADER.FIELDS", "HEADER.FIELDS ()", "1..2", "BOGUS", "1.TEXT.2",
                                  "HEADER (From)", "99999999"])
def test_parse_section_rejects(spec):
    with pytest.raises(SectionSyntaxError):
        parse_section(spec)


def test_whole_message_header_and_text():
    data, tree = load("simple.eml")
    header_end = data.index(b"\r\n\r\n") + 4
    assert mime.section_bytes(data, tree, "") == data
    assert mime.section_bytes(data, tree, "HEADER") == data[:header_end]
    assert mime.section_bytes(data, tree, "TEXT") == data[header_end:]
    assert rfc822_header(data, tree) == data[:header_end]
    assert rfc822_text(data, tree) == data[header_end:]
    # A non-multipart message has one part: its body.
    assert mime.section_bytes(data, tree, "1") == data[header_end:]
    assert mime.section_bytes(data, tree, "2") == b""


def test_header_fields_are_exact_and_keep_repeats_and_eight_bit_bytes():
    data, tree = load("8bit-headers.eml")
    assert mime.section_bytes(data, tree, "HEADER.FIELDS (subject X-REPEATED)") == (
        "Subject: Grüße aus Köln\r\nSubject: second subject line\r\nX-Repeated: one\r\nX-Repeated: two\r\n\r\n"
    ).encode()
    not_fields = mime.section_bytes(data, tree, "HEADER.FIELDS.NOT (Subject X-Repeated Date Message-ID MIME-Version "
                                                "Content-Type Content-Transfer-Encoding)")
    assert not_fields == (
        'From: Zoë Steßel <zoe@example.de>\r\nTo: "Müller, Jürgen" <juergen@example.de>\r\n\r\n'.encode())


def test_header_fields_keep_folding():
    data, tree = load("encoded-words.eml")
    assert mime.section_bytes(data, tree, "HEADER.FIELDS (Subject)") == (
        b"Subject: =?UTF-8?B?UsOpc3Vtw6k=?= of the =?UTF-8?Q?caf=C3=A9?=\r\n meeting\r\n\r\n")
    assert mime.section_bytes(data, tree, "HEADER.FIELDS (X-Absent)") == b"\r\n"


def test_header_fields_without_blank_line():
    data, tree = load("headers-only.eml")
    # RFC 3501 §6.4.5: no body and no blank line -> no blank line in the answer.
    assert mime.section_bytes(data, tree, "HEADER.FIELDS (Subject)") == (
        b"Subject: a message with no body and no blank line\r\n")
    assert mime.section_bytes(data, tree, "HEADER") == data
    assert mime.section_bytes(data, tree, "TEXT") == b""


def test_nested_parts_and_mime_headers():
    data, tree = load("nested-multipart.eml")
    assert mime.section_bytes(data, tree, "1.1") == b"Voici le rapport trimestriel =E0 lire.\r\nMerci=21\r\n"
    assert mime.section_bytes(data, tree, "1.2") == b"<p>Voici le rapport trimestriel =E0 lire.</p>\r\n"
    assert mime.section_bytes(data, tree, "1.1.MIME") == (
        b'Content-Type: text/plain; charset="iso-8859-1"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n')
    assert mime.section_bytes(data, tree, "1.MIME") == (
        b'Content-Type: multipart/alternative;\r\n boundary="inner-boundary"\r\n\r\n')
    assert mime.section_bytes(data, tree, "1").startswith(b"--inner-boundary\r\n")
    assert mime.section_bytes(data, tree, "1").endswith(b"--inner-boundary--\r\n")
    assert mime.section_bytes(data, tree, "2").startswith(b"JVBERi0xLjQK")
    assert mime.section_bytes(data, tree, "3") == b""
    assert mime.section_bytes(data, tree, "1.3") == b""
    # HEADER/TEXT only apply to messages: empty for a text part (as Dovecot answers).
    assert mime.section_bytes(data, tree, "1.1.HEADER") == b""


def test_message_rfc822_part():
    data, tree = load("rfc822-in-multipart.eml")
    inner = mime.section_bytes(data, tree, "2")
    assert inner.startswith(b"From: Ivan <ivan@example.com>\r\n")
    assert inner.endswith(b"--b2--\r\n")  # the close delimiter line keeps its line ending
    header = mime.section_bytes(data, tree, "2.HEADER")
    assert header.startswith(b"From: Ivan") and header.endswith(b"boundary=b2\r\n\r\n")
    assert inner == header + mime.section_bytes(data, tree, "2.TEXT")
    assert mime.section_bytes(data, tree, "2.HEADER.FIELDS (Subject)") == b"Subject: Meeting notes\r\n\r\n"
    assert mime.section_bytes(data, tree, "2.MIME") == (
        b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n")
    assert mime.section_bytes(data, tree, "2.1") == b"Notes: ship it."
    assert mime.section_bytes(data, tree, "2.2") == b"<p>Notes: ship it.</p>"
    assert mime.section_bytes(data, tree, "2.2.MIME") == b"Content-Type: text/html; charset=us-ascii\r\n\r\n"
    assert mime.section_bytes(data, tree, "3.MIME").startswith(b"Content-Type: image/png")


def test_message_rfc822_with_single_part_body():
    data = (b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n")
    tree = json.loads(mime.summarize(data).bodystructure)
    assert mime.section_bytes(data, tree, "1") == b"Subject: inner\r\n\r\ninner body\r\n"
    assert mime.section_bytes(data, tree, "1.HEADER") == b"Subject: inner\r\n\r\n"
    assert mime.section_bytes(data, tree, "1.TEXT") == b"inner body\r\n"
    assert mime.section_bytes(data, tree, "1.1") == b"inner body\r\n"


def test_locate_gives_a_slice_for_streaming():
    data, tree = load("rfc822-in-multipart.eml")
    for spec in ("", "TEXT", "2", "2.1", "3.MIME", "2.HEADER.FIELDS (To)"):
        where = locate(tree, parse_section(spec))
        content = data[where.start:where.end]
        if where.filtered:
            content = where.header_filter(content)
        assert content == mime.section_bytes(data, tree, spec)
    assert locate(tree, parse_section("2.HEADER.FIELDS (To)")).filtered


@pytest.mark.parametrize(("origin", "count", "expected"), [
    (None, None, b"0123456789"), (0, 4, b"0123"), (8, 10, b"89"), (12, 3, b""), (3, 0, b""), (2, None, b"23456789"),
])
def test_partial(origin, count, expected):
    assert mime.partial(b"0123456789", origin, count) == expected


def test_binary_decodes_quoted_printable_and_base64():
    data, tree = load("encodings.eml")
    assert mime.binary_bytes(data, tree, (1,)) == "café crème brûlée".encode("latin-1")
    assert mime.binary_bytes(data, tree, (2,)) == b"Hello, world!"
    with pytest.raises(UnknownTransferEncoding):
        mime.binary_bytes(data, tree, (3,))
    # BINARY[] of the whole message and of a multipart is the stored content.
    assert mime.binary_bytes(data, tree, ()) == data


def test_binary_of_identity_encodings_and_lenient_base64():
    assert decode_binary(b"abc", {"encoding": "8bit"}) == b"abc"
    assert decode_binary(b"abc", {"encoding": "BINARY"}) == b"abc"
    assert decode_binary(b"SGVs\r\nbG8*!", {"encoding": "Base64"}) == b"Hello"
    assert decode_binary(b"SGVsbG8", {"encoding": "base64"}) == b"Hello"
    assert decode_binary(b"a=3D=\r\nb", {"encoding": "quoted-printable"}) == b"a=b"
    assert decode_binary(b"a=\nb", {"encoding": "quoted-printable"}) == b"ab"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=6),
       st.sampled_from(["base64", "quoted-printable", "7bit"]))
def test_streamed_binary_equals_whole(content, cuts, encoding):
    node = {"encoding": encoding}
    if encoding == "base64":
        content = base64.encodebytes(content) + content[:3]  # valid data, then noise after it
    decoder = BinaryDecoder(node)
    pieces, last = [], 0
    for cut in sorted(cuts):
        pieces.append(decoder.feed(content[last:cut]))
        last = max(last, cut)
    pieces.append(decoder.feed(content[last:]))
    pieces.append(decoder.finish())
    assert b"".join(pieces) == decode_binary(content, node)


def test_streamed_base64_of_a_large_part():
    payload = bytes(range(256)) * 4000
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    decoder = BinaryDecoder({"encoding": "base64"})
    out = b"".join(decoder.feed(encoded[i:i + 8191]) for i in range(0, len(encoded), 8191)) + decoder.finish()
    assert out == payload


def test_nul_free_keeps_sizes():
    data, tree = load("nul-bytes.eml")
    text = mime.section_bytes(data, tree, "TEXT")
    assert text == b"x\x00y\r\n"  # exact bytes as stored
    assert mime.nul_free(text) == b"x\x80y\r\n"
