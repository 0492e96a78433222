"""MIME bombs through the store: delivered, then FETCH BODYSTRUCTURE, BODY[] and SEARCH BODY
answer in bounded time with a truncated but valid part tree (mime_structure's Security note)."""

from __future__ import annotations

import time

import pytest
from store_fixtures import blobs, make_mailbox, store  # noqa: F401

from courriel.imap.fetch import Literal, prepare
from courriel.imap.protocol.commands import FetchAttribute as FetchItem
from courriel.imap.protocol.encoder import fetch_response
from courriel.imap.search import search

CEILING = 15.0  # seconds for delivery, FETCH and SEARCH together; the old parsers took minutes


def wide_at_every_level(levels: int, width: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nneedle in the deepest part"
    for i in reversed(range(levels)):
        inner = (b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) + inner
                 + b"\r\n--b%d\r\n" % i * width + b"\r\n--b%d--" % i)
    return b"From: a@example.net\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n" + inner + b"\r\n"


def nested(levels: int) -> bytes:
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(levels))
    tail = b"".join(b"\r\n--b%d--" % i for i in reversed(range(levels)))
    return (b"From: a@example.net\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + head
            + b"Content-Type: text/plain\r\n\r\nneedle" + tail + b"\r\n")


def flat(parts: int) -> bytes:
    return (b"From: a@example.net\r\nSubject: flat\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nneedle\r\n" + b"--b\r\n\r\n" * parts
            + b"--b--\r\n")


@pytest.mark.parametrize(("build", "needle_found"), [
    (lambda: wide_at_every_level(64, 10_000), False),  # in a part past the budget: not in the tree
    (lambda: nested(10_000), False),  # deeper than MAX_DEPTH
    (lambda: flat(1_000_000), True),  # in the first part
], ids=["wide", "deep", "flat"])
def test_bomb_is_delivered_and_fetchable(store, db, build, needle_found):  # noqa: F811
    data = build()
    start = time.monotonic()
    mailbox_id = make_mailbox(db)
    store.deliver(mailbox_id, data)
    inbox = store.get_folder(mailbox_id, "INBOX")
    [message] = store.list_messages(inbox.id)
    [summary] = store.summaries(inbox.id)
    assert message.size == len(data)
    items = [FetchItem("BODYSTRUCTURE"), FetchItem("BODY"), FetchItem("ENVELOPE")]
    text = b"".join(fetch_response(1, prepare(store, inbox.id, message, summary, items, ()).items))
    assert text.startswith(b"* 1 FETCH (BODYSTRUCTURE ((") and text.endswith(b")\r\n")
    assert len(text) < 20_000_000
    result = prepare(store, inbox.id, message, summary, [FetchItem("BODY[]", peek=True)], ())
    literal = next(v for _n, v in result.items if isinstance(v, Literal))
    body = literal.data if literal.data is not None else b"".join(literal.chunks())
    assert body == data  # BODY[] is never truncated
    found = search(store, inbox.id, ("SUBJECT", ""), [1], (), uid_of_msn=lambda ranges: [1])
    assert found == [1]
    found = search(store, inbox.id, ("BODY", "needle"), [1], (), uid_of_msn=lambda ranges: [1])
    assert found == ([1] if needle_found else [])
    assert time.monotonic() - start < CEILING
