"""SEARCH keys in SQL and FETCH items streamed from blob files, on both database backends."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from store_fixtures import blobs, make_mailbox, sample_message, store  # noqa: F401

from courriel.imap import fetch as fetch_mod
from courriel.imap.fetch import Literal, prepare
from courriel.imap.protocol.commands import FetchAttribute as FetchItem
from courriel.imap.protocol.encoder import fetch_response
from courriel.imap.search import search


@pytest.fixture
def folder(store, db):  # noqa: F811
    mailbox_id = make_mailbox(db)
    store.deliver(mailbox_id, sample_message(1, subject="Invoice March"), internaldate=dt.datetime(
        2026, 3, 1, 12, tzinfo=dt.UTC))
    store.deliver(mailbox_id, sample_message(2, subject="hello", body=b"the secret word is Papaya\r\n"),
                  flags=["\\Seen", "Work"])
    attachment = base64.encodebytes(b"\x00\x01binary\xff" * 10).replace(b"\n", b"\r\n")
    store.deliver(mailbox_id, (
        b"From: c@example.net\r\nBcc: hidden@example.org\r\nX-Tag: blue\r\nSubject: att\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment + b"--b--\r\n"))
    return store.get_folder(mailbox_id, "INBOX")


def run(store, folder, key, known=(1, 2, 3), recent=()):  # noqa: F811
    return search(store, folder.id, key, list(known), recent, uid_of_msn=lambda ranges: [
        msn for low, high in ranges for msn in range(low, high + 1)])


def test_search_keys(store, folder):  # noqa: F811
    assert run(store, folder, ("ALL",)) == [1, 2, 3]
    assert run(store, folder, ("SEEN",)) == [2]
    assert run(store, folder, ("NOT", ("SEEN",))) == [1, 3]
    assert run(store, folder, ("KEYWORD", "work")) == [2]
    assert run(store, folder, ("SUBJECT", "INVOICE")) == [1]
    assert run(store, folder, ("OR", ("SUBJECT", "att"), ("SUBJECT", "hello"))) == [2, 3]
    assert run(store, folder, ("BODY", "papaya")) == [2]
    assert run(store, folder, ("TEXT", "invoice")) == [1]
    assert run(store, folder, ("BCC", "hidden")) == [3]
    assert run(store, folder, ("HEADER", "X-Tag", "")) == [3]
    assert run(store, folder, ("BEFORE", dt.date(2026, 3, 2))) == [1]
    assert run(store, folder, ("ON", dt.date(2026, 3, 1))) == [1]
    assert run(store, folder, ("UID", [(2, 10)])) == [2, 3]
    assert run(store, folder, ("AND", [("SEQ", [(1, 2)]), ("UNSEEN",)])) == [1]
    assert run(store, folder, ("RECENT",), recent=[3]) == [3]
    assert run(store, folder, ("LARGER", 10_000)) == []
    # Messages the client has not been told about are never returned.
    assert run(store, folder, ("ALL",), known=(1, 2)) == [1, 2]
    # Wildcards in the client's string are literal.
    assert run(store, folder, ("SUBJECT", "%")) == []


def content(items) -> bytes:
    return b"".join(fetch_response(1, items))


def test_fetch_items(store, folder, monkeypatch):  # noqa: F811
    [message] = store.list_messages(folder.id, [3])
    [summary] = store.summaries(folder.id, [3])
    items = [FetchItem("FLAGS"), FetchItem("RFC822.SIZE"), FetchItem("BODY[]", "1"),
             FetchItem("BODY[]", "HEADER.FIELDS (X-Tag)", peek=True), FetchItem("BINARY[]", "2", partial=(0, 4)),
             FetchItem("BINARY.SIZE[]", "2"), FetchItem("BODY[]", "", partial=(0, 6))]
    result = prepare(store, folder.id, message, summary, items, ("\\Seen",), uid_requested=True)
    assert result.sets_seen
    text = content(result.items)
    assert text.startswith(b"* 1 FETCH (UID 3 FLAGS (\\Seen) RFC822.SIZE %d " % message.size)
    assert b"BODY[1] {4}\r\nbody" in text
    assert b"BODY[HEADER.FIELDS (X-Tag)] {15}\r\nX-Tag: blue\r\n\r\n" in text
    assert b"BINARY[2]<0> ~{4}\r\n\x00\x01bi" in text
    assert b"BINARY.SIZE[2] 90" in text
    assert text.endswith(b"BODY[]<0> {6}\r\nFrom: )\r\n")
    assert not prepare(store, folder.id, message, summary, [FetchItem("BODY[]", peek=True)], ()).sets_seen


def test_large_body_is_streamed_in_chunks(store, db, monkeypatch):  # noqa: F811
    mailbox_id = make_mailbox(db)
    big = sample_message(9, body=b"x" * 998 + b"\r\n") + b"y" * 3_000_000 + b"\r\n"
    store.deliver(mailbox_id, big)
    inbox = store.get_folder(mailbox_id, "INBOX")
    [message] = store.list_messages(inbox.id)
    [summary] = store.summaries(inbox.id)
    result = prepare(store, inbox.id, message, summary, [FetchItem("BODY[]", peek=True)], ())
    literal = next(v for _n, v in result.items if isinstance(v, Literal))
    assert literal.data is None and literal.size == message.size
    sizes = [len(chunk) for chunk in literal.chunks()]
    assert max(sizes) <= fetch_mod.CHUNK and sum(sizes) == message.size
