"""The spool: accept (the single door), leases, per-recipient results, retries, operator access."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
from store_fixtures import blob_files, blobs, refcount_problems, sample_message

from courriel import notify
from courriel.db import Database
from courriel.models import QueueMessage, QueueRecipient, QueueState, RecipientState
from courriel.queue import spool

__all__ = ["blobs"]

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def envelope(*addresses: str, **fields) -> spool.Envelope:
    return spool.Envelope(sender=fields.pop("sender", "alice@example.net"),
                          recipients=tuple(addresses or ("bob@example.org",)), **fields)


def queue_rows(db: Database) -> tuple[int, int]:
    with db.read() as session:
        return session.query(QueueMessage).count(), session.query(QueueRecipient).count()


def test_accept_stores_the_whole_envelope(db, blobs, data_dir):
    env = spool.Envelope(
        sender="",
        recipients=(
            spool.EnvelopeRecipient("bob@example.org", orcpt="rfc822;bob@example.org", notify="success,failure",
                                    mailbox_id=7, folder="Spam"),
            "carol@example.com",
        ),
        source="submission", dsn_ret="hdrs", dsn_envid="QQ314159", body_type="8bitmime", smtputf8=True,
        auth_user="alice@example.org", client_address="192.0.2.1", client_helo="client.example.net",
    )
    message = sample_message(1)
    with notify.Listener(data_dir / "run", topics=[notify.QUEUE]) as listener:
        queue_id = spool.accept(db, blobs, env, message, now=T0, run_dir=data_dir / "run")
        hints = listener.wait(timeout=5)
    assert re.fullmatch(r"[0-9A-F]{12}", queue_id)
    assert notify.Hint("queue", queue_id) in hints
    entry = spool.get(db, queue_id)
    assert (entry.sender, entry.source, entry.state) == ("", "submission", QueueState.INCOMING)
    assert (entry.dsn_ret, entry.dsn_envid, entry.body_type, entry.smtputf8) == ("HDRS", "QQ314159", "8BITMIME", True)
    assert (entry.auth_user, entry.client_address, entry.client_helo) == (
        "alice@example.org", "192.0.2.1", "client.example.net")
    assert entry.size == len(message) and entry.received_at == T0
    bob, carol = entry.recipients
    assert (bob.orcpt, bob.notify, bob.mailbox_id, bob.folder) == ("rfc822;bob@example.org", "SUCCESS,FAILURE", 7,
                                                                   "Spam")
    assert (carol.address, carol.mailbox_id, carol.state) == ("carol@example.com", None, RecipientState.PENDING)
    assert blobs.read(entry.blob_id) == message
    assert not refcount_problems(db)


BAD_ENVELOPES = [
    {"recipients": ()},
    {"source": "carrier-pigeon"},
    {"sender": "a" * 400},
    {"sender": "evil\r\nRCPT TO:<x>"},
    {"dsn_ret": "MAYBE"},
    {"recipients": ("",)},
    {"recipients": (spool.EnvelopeRecipient("bob@example.org", notify="X" * 50),)},
    {"recipients": (spool.EnvelopeRecipient("bob@example.org", notify="NEVER,SUCCESS"),)},
    {"recipients": (spool.EnvelopeRecipient("bob@example.org", notify="SOMETIMES"),)},
]


def test_invalid_envelope_changes_nothing(db, blobs):
    for bad in BAD_ENVELOPES:
        fields = {"sender": "alice@example.net", "recipients": ("bob@example.org",), **bad}
        with pytest.raises(spool.SpoolError):
            spool.accept(db, blobs, spool.Envelope(**fields), sample_message(1))
    assert queue_rows(db) == (0, 0)
    assert blob_files(blobs.root) == set()


def test_failure_before_commit_leaves_nothing_visible(db, blobs, monkeypatch):
    def broken_stream():
        yield b"Subject: x\r\n\r\n"
        raise ConnectionResetError("client vanished during DATA")

    with pytest.raises(ConnectionResetError):
        spool.accept(db, blobs, envelope(), broken_stream())

    def failing_place(pending):
        raise OSError("disk full")

    monkeypatch.setattr(blobs, "place", failing_place)
    with pytest.raises(OSError):
        spool.accept(db, blobs, envelope(), sample_message(1))
    assert queue_rows(db) == (0, 0)
    assert blob_files(blobs.root) == set()

    # Linked under its final name, then the transaction fails: the file goes with the rollback.
    real_place = type(blobs).place.__get__(blobs)

    def place_then_fail(pending):
        real_place(pending)
        assert blob_files(blobs.root) - {str(pending.temp_path.relative_to(blobs.root))}
        raise OSError("directory fsync failed")

    monkeypatch.setattr(blobs, "place", place_then_fail)
    with pytest.raises(OSError, match="directory fsync"):
        spool.accept(db, blobs, envelope(), sample_message(1))
    assert queue_rows(db) == (0, 0)
    assert blob_files(blobs.root) == set()


def test_lease_takes_due_messages_once(db, blobs):
    due = [spool.accept(db, blobs, envelope(), sample_message(n), now=T0) for n in range(3)]
    later = spool.accept(db, blobs, envelope(), sample_message(9), now=T0 + dt.timedelta(hours=1))

    first = spool.lease(db, "queue-a", limit=2, now=T0)
    second = spool.lease(db, "queue-b", limit=10, now=T0)
    assert len(first) == 2 and len(second) == 1
    assert {m.id for m in first + second} == set(due)
    assert all(m.state == QueueState.ACTIVE and m.lease_owner == "queue-a" for m in first)
    assert spool.lease(db, "queue-b", limit=10, now=T0) == []

    # The later message becomes due; an expired lease is taken over by another process.
    taken = spool.lease(db, "queue-b", limit=10, now=T0 + dt.timedelta(hours=2))
    assert {m.id for m in taken} == set(due) | {later}


def test_concurrent_leases_never_overlap(db, blobs):
    ids = {spool.accept(db, blobs, envelope(), sample_message(n), now=T0) for n in range(30)}
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def worker(owner: str) -> None:
        try:
            taken: list[str] = []
            for _ in range(50):
                batch = spool.lease(db, owner, limit=3, now=T0)
                if not batch:
                    break
                taken.extend(m.id for m in batch)
            results[owner] = taken
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"q{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    leased = [queue_id for taken in results.values() for queue_id in taken]
    assert sorted(leased) == sorted(ids)


def test_results_reschedule_and_finish(db, blobs):
    queue_id = spool.accept(db, blobs, envelope("local@example.org", "remote@example.com"), sample_message(1),
                            now=T0)
    [entry] = spool.lease(db, "q", limit=1, now=T0)
    local, remote = entry.recipients
    spool.record_result(db, local.id, RecipientState.DELIVERED, "250 2.0.0 delivered", now=T0)
    spool.record_result(db, remote.id, RecipientState.DEFERRED, "451 4.7.1 greylisted", now=T0)
    assert not spool.finish(db, queue_id)  # a recipient is still deferred
    retry_at = T0 + dt.timedelta(minutes=5)
    spool.reschedule(db, queue_id, retry_at)
    entry = spool.get(db, queue_id)
    assert (entry.state, entry.attempts, entry.next_attempt_at, entry.lease_owner) == (
        QueueState.DEFERRED, 1, retry_at, None)
    assert [r.last_reply for r in entry.recipients] == ["250 2.0.0 delivered", "451 4.7.1 greylisted"]
    assert [r.address for r in entry.pending_recipients] == ["remote@example.com"]

    assert spool.lease(db, "q", limit=5, now=T0) == []
    [again] = spool.lease(db, "q", limit=5, now=retry_at)
    spool.record_result(db, again.recipients[1].id, RecipientState.RELAYED, "250 ok: queued as 1234", now=retry_at)
    assert spool.finish(db, queue_id)
    assert spool.get(db, queue_id) is None and queue_rows(db) == (0, 0)
    assert blobs.lookup(again.blob_id).refcount == 0
    assert len(blobs.collect(grace_seconds=0).blobs) == 1

    with pytest.raises(spool.SpoolError):
        spool.record_result(db, 424242, RecipientState.DELIVERED, "250")
    with pytest.raises(spool.SpoolError):
        spool.record_result(db, local.id, RecipientState.PENDING, "?")


def test_clear_stale_leases(db, blobs):
    queue_id = spool.accept(db, blobs, envelope(), sample_message(1), now=T0)
    other = spool.accept(db, blobs, envelope(), sample_message(2), now=T0)
    spool.lease(db, "old-process", limit=1, now=T0, duration=60)
    spool.lease(db, "live-process", limit=1, now=T0, duration=3600)
    assert spool.clear_stale_leases(db, now=T0 + dt.timedelta(seconds=30)) == 0
    assert spool.clear_stale_leases(db, now=T0 + dt.timedelta(seconds=120)) == 1
    states = {queue_id: spool.get(db, queue_id).state, other: spool.get(db, other).state}
    assert sorted(states.values()) == [QueueState.ACTIVE, QueueState.DEFERRED]
    # A restarted process clears its own leases at once.
    assert spool.clear_stale_leases(db, now=T0, owner="live-process") == 1
    assert {m.state for m in spool.list_entries(db)} == {QueueState.DEFERRED}


def test_operator_actions(db, blobs):
    first = spool.accept(db, blobs, envelope(), sample_message(1), now=T0)
    second = spool.accept(db, blobs, envelope(), sample_message(2), now=T0 + dt.timedelta(seconds=1))
    assert [m.id for m in spool.list_entries(db)] == [first, second]
    assert spool.hold(db, first)
    assert spool.lease(db, "q", limit=10, now=T0 + dt.timedelta(hours=1))[0].id == second
    assert [m.id for m in spool.list_entries(db, state=QueueState.HOLD)] == [first]
    spool.reschedule(db, second, T0 + dt.timedelta(days=1))
    assert spool.flush(db, now=T0) == 1
    assert spool.unhold(db, first, now=T0)
    spool.mark_delay_notified(db, first)
    assert spool.get(db, first).delay_notified
    assert {m.id for m in spool.lease(db, "q", limit=10, now=T0)} == {first, second}
    assert spool.remove(db, first) and not spool.remove(db, first)
    assert not refcount_problems(db)
