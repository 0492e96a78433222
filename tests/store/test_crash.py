"""Crash safety: a process killed (SIGKILL) at each fault point of spool.accept and store.deliver.

After the "restart" (stale leases cleared, garbage collected) every acknowledged message is
present exactly once, nothing half-written is visible, and no stray file is left.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

from store_child import drain, fork_child
from store_fixtures import blob_files, blobs, make_mailbox, refcount_problems, store

from courriel.durable import FAULT_ENV
from courriel.models import Blob, Message, QueueMessage, RecipientState
from courriel.queue import spool

__all__ = ["blobs", "store"]

CHILD = Path(__file__).parents[1] / "support" / "store_child.py"
ACCEPT_POINTS = ["spool.accept.after_temp", "spool.accept.after_insert", "spool.accept.after_link",
                 "spool.accept.after_commit"]
DELIVER_POINTS = ["store.deliver.after_temp", "store.deliver.after_insert", "store.deliver.after_link",
                  "store.deliver.after_commit"]
CRASH_AT = 3  # two messages are acknowledged, the third is in flight when the process dies


def spawn_child(db_url: str, data_dir: Path, mailbox_id: int, mode: str, count: int,
                fault: str | None) -> subprocess.CompletedProcess:
    """A fresh interpreter with COURRIEL_FAULT in its environment (the production mechanism)."""
    env = dict(os.environ)
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run([sys.executable, str(CHILD), db_url, str(data_dir), str(mailbox_id), str(count), mode],
                          capture_output=True, text=True, env=env, timeout=60)


def assert_consistent(db, blobs) -> None:
    """Every row's blob is whole on disk; every file has a row; counts are right."""
    with db.read() as session:
        rows = {row.path: (row.size, row.sha256) for row in session.query(Blob)}
        referenced = {m.blob_id for m in session.query(Message)} | {q.blob_id for q in session.query(QueueMessage)}
        assert referenced <= {row.id for row in session.query(Blob)}
    for path, (size, sha256) in rows.items():
        data = (blobs.root / path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha256), f"blob {path} is damaged"
    assert blob_files(blobs.root) == set(rows), "stray files after recovery"
    assert not refcount_problems(db)


def run_child(db_url: str, data_dir: Path, mailbox_id: int, mode: str, count: int, fault: str | None):
    """A forked child with the fault point armed (fast: no interpreter start-up)."""
    return fork_child(db_url, data_dir, mailbox_id, count, mode, fault)


def recover(db, blobs):
    spool.clear_stale_leases(db)
    return blobs.collect(grace_seconds=0)


def test_crash_during_accept(db, data_dir, blobs, store):
    for point in ACCEPT_POINTS:
        check_crash_during_accept(db, data_dir, blobs, store, point)


def check_crash_during_accept(db, data_dir, blobs, store, point):
    assert spool.list_entries(db) == []
    mailbox_id = make_mailbox(db)
    result = run_child(db.url, data_dir, mailbox_id, "accept", 5, f"{point}:{CRASH_AT}")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    acknowledged = [line.split()[0] for line in result.stdout.splitlines()]
    assert len(acknowledged) == CRASH_AT - 1

    report = recover(db, blobs)
    assert report.temp_files, "the crash should have left a temporary file"
    if point == "spool.accept.after_link":
        assert len(report.orphan_files) == 1  # linked, never committed
    entries = spool.list_entries(db)
    ids = [entry.id for entry in entries]
    assert set(acknowledged) <= set(ids) and len(ids) == len(set(ids))
    # Only a commit makes a message exist; the one in flight exists iff its commit happened.
    assert len(ids) == len(acknowledged) + (point.endswith("after_commit"))
    for entry in entries:
        assert len(entry.recipients) == 2
        assert blobs.read(entry.blob_id).startswith(b"From: child@example.net")
    assert_consistent(db, blobs)

    # After the restart the queue delivers each spooled message exactly once.
    finished = io.StringIO()
    drain(db, store, finished)
    assert sorted(finished.getvalue().split()) == sorted(ids)
    inbox = store.get_folder(mailbox_id, "INBOX")
    with db.read() as session:
        subjects = [m.subject for m in session.query(Message).filter_by(folder_id=inbox.id)]
    assert len(subjects) == len(set(subjects)) == len(ids)
    assert spool.list_entries(db) == []
    recover(db, blobs)
    assert_consistent(db, blobs)


def test_crash_during_deliver(db, data_dir, blobs, store):
    for point in DELIVER_POINTS:
        check_crash_during_deliver(db, data_dir, blobs, store, point)


def check_crash_during_deliver(db, data_dir, blobs, store, point):
    mailbox_id = make_mailbox(db)
    result = run_child(db.url, data_dir, mailbox_id, "deliver", 5, f"{point}:{CRASH_AT}")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    acknowledged = {int(uid): tag for uid, tag in (line.split() for line in result.stdout.splitlines())}
    assert len(acknowledged) == CRASH_AT - 1

    report = recover(db, blobs)
    assert report.temp_files
    if point == "store.deliver.after_link":
        assert len(report.orphan_files) == 1
    folder = store.get_folder(mailbox_id, "INBOX")
    messages = store.list_messages(folder.id)
    uids = [m.uid for m in messages]
    assert set(acknowledged) <= set(uids)
    assert len(uids) == len(acknowledged) + (point.endswith("after_commit"))
    with store.db.read() as session:
        subjects = {m.uid: m.subject for m in session.query(Message).filter_by(folder_id=folder.id)}
    assert all(subjects[uid] == tag.replace(".", " ") for uid, tag in acknowledged.items())
    assert_consistent(db, blobs)

    # The restarted process goes on with larger UIDs.
    after = store.deliver(mailbox_id, b"Subject: after restart\r\n\r\nok\r\n")
    assert after.uid > max(uids)


def test_crash_between_delivery_and_queue_bookkeeping(db, data_dir, blobs, store):
    """The queue records a local recipient's result in the delivery transaction: a crash right
    after that commit neither loses nor duplicates the message."""
    mailbox_id = make_mailbox(db)
    queued = run_child(db.url, data_dir, mailbox_id, "accept", 3, None)
    assert queued.returncode == 0
    crashed = spawn_child(db.url, data_dir, mailbox_id, "drain", 0, "store.deliver.after_commit:2")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert len(crashed.stdout.split()) == 1
    states = [r.state for e in spool.list_entries(db) for r in e.recipients if r.mailbox_id]
    assert RecipientState.DELIVERED in states  # recorded with the delivery, before the crash

    drain(db, store, io.StringIO())
    assert spool.list_entries(db) == []
    folder = store.get_folder(mailbox_id, "INBOX")
    with db.read() as session:
        subjects = [m.subject for m in session.query(Message).filter_by(folder_id=folder.id)]
    assert len(subjects) == len(set(subjects)) == 3
    recover(db, blobs)
    assert_consistent(db, blobs)
