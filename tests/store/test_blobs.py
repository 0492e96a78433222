"""Blob files: streaming writes, reference counts shared by recipients, garbage collection."""

from __future__ import annotations

import io
import os
import time

import pytest
from sqlalchemy import delete, update
from store_fixtures import blob_files, blobs, make_mailbox, refcount_problems, sample_message, store

from courriel.blobs import TEMP_PREFIX, BlobError, canonical_chunks
from courriel.models import Blob, Mailbox, RecipientState
from courriel.queue import spool

__all__ = ["blobs", "store"]


def age(path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_put_streams_and_open_returns_binary_file(blobs):
    chunks = [bytes([n]) * 50_000 for n in range(10)]
    blob_id = blobs.put(iter(chunks), refcount=1)
    row = blobs.lookup(blob_id)
    assert row.size == 500_000 and len(row.sha256) == 64
    with blobs.open(blob_id) as handle:
        assert isinstance(handle, io.BufferedReader)
        assert handle.read(50_000) == chunks[0]
        assert handle.read() == b"".join(chunks[1:])
    assert blob_files(blobs.root) == {row.path}
    with pytest.raises(BlobError):
        blobs.open(blob_id + 1000)


def test_line_endings_become_crlf_while_streaming(blobs):
    raw = b"Subject: lf\nX: y\r\n\nbody\r\nend\n"
    expected = b"Subject: lf\r\nX: y\r\n\r\nbody\r\nend\r\n"
    for size in (1, 2, 3, 7, len(raw)):  # every split, including a CR | LF boundary
        chunks = [raw[i:i + size] for i in range(0, len(raw), size)]
        blob_id = blobs.put(iter(chunks))
        assert blobs.read(blob_id) == expected, size
        assert blobs.lookup(blob_id).size == len(expected)
    assert list(canonical_chunks([b"a\r", b"\nb\n", b"", b"\n"])) == [b"a\r", b"\nb\r\n", b"\r\n"]


def test_failed_write_leaves_no_file(blobs):
    def broken():
        yield b"first part"
        raise OSError("client went away")

    with pytest.raises(OSError):
        blobs.put(broken())
    assert blob_files(blobs.root) == set()
    with blobs.db.read() as session:
        assert session.query(Blob).count() == 0


def test_one_blob_shared_by_several_recipients(db, blobs, store):
    mailboxes = [make_mailbox(db) for _ in range(3)]
    envelope = spool.Envelope(
        sender="alice@example.net",
        recipients=tuple(spool.EnvelopeRecipient(f"r{n}@example.org", mailbox_id=m) for n, m in enumerate(mailboxes)),
    )
    queue_id = spool.accept(db, blobs, envelope, sample_message(1))
    entry = spool.get(db, queue_id)
    assert blobs.lookup(entry.blob_id).refcount == 1  # the queue's reference

    for rcpt in entry.recipients:
        store.deliver(rcpt.mailbox_id, entry.blob_id,
                      in_transaction=lambda s, r=rcpt: spool.record_result(s, r.id, RecipientState.DELIVERED, "250"))
    assert blobs.lookup(entry.blob_id).refcount == 4
    assert spool.finish(db, queue_id)
    assert blobs.lookup(entry.blob_id).refcount == 3
    assert len(blob_files(blobs.root)) == 1
    assert not refcount_problems(db)

    # Expunging every copy brings the count to 0; only then does the collector remove it.
    for mailbox_id in mailboxes[:2]:
        folder = store.get_folder(mailbox_id, "INBOX")
        store.set_flags(folder.id, [1], "add", ["\\Deleted"])
        store.expunge(folder.id)
    assert blobs.collect(grace_seconds=0).blobs == []
    last = store.get_folder(mailboxes[2], "INBOX")
    store.move(last.id, [1], store.get_folder(mailboxes[2], "Trash").id)
    assert blobs.collect(grace_seconds=0).blobs == []  # moved, still referenced
    trash = store.get_folder(mailboxes[2], "Trash")
    store.set_flags(trash.id, [1], "add", ["\\Deleted"])
    store.expunge(trash.id)
    assert blobs.lookup(entry.blob_id).refcount == 0
    report = blobs.collect(grace_seconds=0)
    assert len(report.blobs) == 1
    assert blob_files(blobs.root) == set()
    with pytest.raises(BlobError):
        blobs.lookup(entry.blob_id)


def test_collect_removes_crash_leftovers_after_grace(db, blobs, store):
    kept = store.deliver(make_mailbox(db), b"kept").blob_id
    kept_path = blobs.lookup(kept).path
    unreferenced = blobs.put(b"unreferenced", refcount=0)
    directory = blobs.root / "ab"
    directory.mkdir(exist_ok=True)
    temp = directory / (TEMP_PREFIX + "abc")
    temp.write_bytes(b"half written")
    orphan = directory / ("c" * 30)
    orphan.write_bytes(b"linked, never committed")
    young_orphan = directory / ("d" * 30)
    young_orphan.write_bytes(b"a transaction still running")
    for path in (temp, orphan, blobs.root / kept_path, blobs.root / blobs.lookup(unreferenced).path):
        age(path, 7200)

    report = blobs.collect(grace_seconds=3600)
    assert report.temp_files == [f"ab/{TEMP_PREFIX}abc"]
    assert report.orphan_files == [f"ab/{'c' * 30}"]
    # The row was created just now: within the grace period even with refcount 0.
    assert report.blobs == []
    assert young_orphan.exists() and (blobs.root / kept_path).exists()

    report = blobs.collect(grace_seconds=0)
    assert len(report.blobs) == 1 and report.orphan_files == [f"ab/{'d' * 30}"]
    assert blob_files(blobs.root) == {kept_path}
    assert blobs.read(kept) == b"kept"


def test_recount_repairs_counts(db, blobs):
    blob_id = blobs.put(b"x", refcount=5)
    assert refcount_problems(db)
    assert blobs.recount() == 1
    assert not refcount_problems(db)
    assert blobs.lookup(blob_id).refcount == 0


def test_collect_trusts_references_over_counts(db, blobs, store):
    mailbox_id = make_mailbox(db)
    delivered = store.deliver(mailbox_id, sample_message(1))
    # A wrong count of 0 never removes a blob that a message still refers to.
    with db.write() as session:
        session.execute(update(Blob).values(refcount=0))
    assert blobs.collect(grace_seconds=0).blobs == []
    assert blobs.read(delivered.blob_id).startswith(b"From: Alice")
    assert blobs.recount() == 1

    # A mailbox row deleted by a cascade outside the store leaves a count without references.
    with db.write() as session:
        session.execute(delete(Mailbox).where(Mailbox.id == mailbox_id))
    report = blobs.collect(grace_seconds=0)
    assert report.leaked == [delivered.blob_id] and len(report.blobs) == 1
    assert blob_files(blobs.root) == set()
