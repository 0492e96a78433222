"""SEARCH/SORT values: RFC 5256 base subject and sort keys, RFC 2047 decoded columns, body text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from courriel import mime
from courriel.mime_search import (
    CC,
    FROM,
    TO,
    base_subject,
    body_text,
    decoded,
    is_reply_or_forward,
    message_ids,
    sort_display,
    sort_mailbox,
    thread_references,
)

CORPUS = Path(__file__).parent.parent / "corpus" / "mime"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "Hello"),
        ("Re: Hello", "Hello"),
        ("RE: re: Fwd: Hello", "Hello"),
        ("Fw: Hello", "Hello"),
        ("Re[2]: Hello", "Hello"),  # subj-refwd allows a blob between "re" and ":"
        ("Re [2]: Hello", "Hello"),
        ("[list] Re: Hello", "Hello"),
        ("[list] [tag] Hello", "Hello"),
        ("[only-a-blob]", "[only-a-blob]"),
        ("Hello (fwd)", "Hello"),
        ("Hello (fwd) (FWD)  ", "Hello"),
        ("[Fwd: Re: Hello]", "Hello"),
        ("[fwd: [list] Hello (fwd)]", "Hello"),
        ("  Re:   Hello   world  ", "Hello world"),
        ("Re:\tfolded\r\n subject", "folded subject"),
        ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café"),
        ("Re: =?utf-8?q?caf=C3=A9?=", "café"),
        ("", ""),
        (None, ""),
        ("Re:", ""),
    ],
)
def test_base_subject(subject, expected):
    assert base_subject(subject) == expected


@given(st.text(max_size=80))
def test_base_subject_never_raises_and_is_idempotent(subject):
    once = base_subject(subject)
    assert base_subject(once) == once or once.startswith("[")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?UTF-8?B?UsOpc3Vtw6k=?= of the =?UTF-8?Q?caf=C3=A9?=\r\n meeting", "Résumé of the café meeting"),
        ("=?ISO-8859-1?B?RnJhbudvaXM=?= <f@x>", "François <f@x>"),
        ("=?x-unknown?q?abc?= tail", "abc tail"),
        ("=?utf-8?q?broken", "=?utf-8?q?broken"),
        ("plain", "plain"),
        ("", ""),
        (None, ""),
    ],
)
def test_decoded(value, expected):
    assert decoded(value) == expected


def summary_of(name: str):
    data = (CORPUS / name).read_bytes()
    summary = mime.summarize(data)
    return data, json.loads(summary.envelope), json.loads(summary.bodystructure)


def test_sort_keys_of_addresses():
    _data, envelope, _tree = summary_of("groups.eml")
    assert sort_mailbox(envelope, FROM) == "lead"
    # RFC 5957 §3: the first address structure counts, for a group its start marker (the group name).
    assert sort_mailbox(envelope, TO) == "Project team"
    assert sort_mailbox(envelope, CC) == "undisclosed-recipients"  # an empty group: its name
    assert sort_display(envelope, FROM) == "Team Lead"
    assert sort_display(envelope, TO) == "Project team"
    assert sort_display([None] * 5 + [[[None, None, "box", "example.org"]]] + [None] * 4, TO) == "box@example.org"
    _data, envelope, _tree = summary_of("encoded-words.eml")
    assert sort_display(envelope, FROM) == "Jörg Müller"
    assert sort_display(None, FROM) == sort_mailbox(None, TO) == ""


def test_body_text_decodes_transfer_encoding_and_charset():
    data, _envelope, tree = summary_of("nested-multipart.eml")
    text = body_text(data, tree)
    assert "Voici le rapport trimestriel à lire.\r\nMerci!" in text
    assert "<p>Voici le rapport trimestriel à lire.</p>" in text
    assert "JVBERi0" not in text  # the PDF attachment is not text
    data, _envelope, tree = summary_of("rfc822-in-multipart.eml")
    assert "Notes: ship it." in body_text(data, tree)  # inside the encapsulated message
    assert len(body_text(data, tree, limit=5)) <= 5 + 2


def test_body_text_of_unknown_charset_and_encoding():
    data = b"Content-Type: text/plain; charset=x-unknown\r\nContent-Transfer-Encoding: x-weird\r\n\r\ncaf\xc3\xa9"
    tree = json.loads(mime.summarize(data).bodystructure)
    assert body_text(data, tree) == "café"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("Hello", False), ("Re: Hello", True), ("[list] Hello", False), ("[list] Fwd: Hello", True),
     ("Hello (fwd)", True), ("Hello  ", False), ("[Fwd: Hello]", True), ("  Hello", False), (None, False)],
)
def test_is_reply_or_forward(subject, expected):
    assert is_reply_or_forward(subject) is expected


def test_message_ids_and_thread_references():
    assert message_ids("<a@x> <b@y>\r\n <c@z> junk <>") == ["a@x", "b@y", "c@z"]
    assert message_ids(None) == []
    data = (b"Message-ID: <own@x>\r\nIn-Reply-To: <p1@x> <p2@x>\r\nReferences: <r1@x>\r\n <r2@x>\r\n\r\nbody")
    assert thread_references(data) == ("own@x", ["r1@x", "r2@x"])
    assert thread_references(b"In-Reply-To: <p1@x> <p2@x>\r\n\r\n") == (None, ["p1@x"])
    assert thread_references(b"") == (None, [])
