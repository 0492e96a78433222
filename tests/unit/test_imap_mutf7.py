"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3) and the UTF8=ACCEPT path (RFC 6855)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from courriel.imap.protocol.mutf7 import MUTF7Error, decode, decode_name, encode, encode_name

KNOWN = [
    ("INBOX", b"INBOX"),
    ("&", b"&-"),
    ("Tom & Jerry", b"Tom &- Jerry"),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3 example
    ("Entwürfe", b"Entw&APw-rfe"),
    ("Éléments envoyés", b"&AMk-l&AOk-ments envoy&AOk-s"),
    ("😀", b"&2D3eAA-"),
    ("a\u0000b", b"a&AAA-b"),
    ("", b""),
]


@pytest.mark.parametrize(("text", "wire"), KNOWN)
def test_known_names(text, wire):
    assert encode(text) == wire
    assert decode(wire) == text


@pytest.mark.parametrize("wire", [
    b"&",  # unterminated
    b"&Jjo",  # unterminated
    b"&AGE-",  # "a" (printable ASCII) must not be encoded
    b"&ZeVnLIqe-&U,BTFw-",  # adjacent shift sequences must be one
    b"&ZeVnLIqe",  # no terminating "-"
    b"&ZeV=-",  # padding / bad character
    b"&Z/Vn-",  # "/" instead of ","
    b"&AP-",  # odd number of bytes
    b"&2D0-",  # lone high surrogate
    b"&APx-",  # non-zero trailing bits: not canonical
    b"caf\xc3\xa9",  # raw 8-bit is not modified UTF-7
    b"tab\there",
])
def test_bad_input_rejected(wire):
    with pytest.raises(MUTF7Error):
        decode(wire)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip(text):
    wire = encode(text)
    assert all(0x20 <= b <= 0x7E for b in wire)
    assert decode(wire) == text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_decode_either_succeeds_canonically_or_raises(data):
    try:
        text = decode(data)
    except MUTF7Error:
        return
    assert encode(text) == data  # one Unicode name has exactly one wire form


def test_utf8_accept_leaves_names_raw():
    assert encode_name("Entwürfe", utf8=True) == "Entwürfe".encode()
    assert decode_name("Entwürfe".encode(), utf8=True) == "Entwürfe"
    assert decode_name(b"Entw&APw-rfe", utf8=True) == "Entw&APw-rfe"  # not decoded as modified UTF-7
    assert decode_name(b"Entw&APw-rfe") == "Entwürfe"
    with pytest.raises(MUTF7Error):
        decode_name(b"\xff", utf8=True)
