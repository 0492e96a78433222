"""Local delivery in batches: `Store.deliver_batch` (one transaction for many copies) and
`LocalDelivery.deliver_batch` (the queue's group commit: copies and results together, then the
hooks, then the finished queue entries; a failed batch falls back to one transaction per
recipient)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete
from store_fixtures import blob_files, blobs, make_mailbox, refcount_problems, sample_message, store

from courriel.models import Folder, Mailbox, RecipientState
from courriel.queue import spool
from courriel.queue.local import DeliveryHooks, FilterDecision, LocalDelivery, LocalRequest
from courriel.queue.spool import Envelope, EnvelopeRecipient
from courriel.store import NoSuchMailbox

__all__ = ["blobs", "store"]


def test_batch_gives_each_folder_ascending_uids_and_one_modseq(store, db, blobs):
    first, second = make_mailbox(db), make_mailbox(db)
    shared, other, third = (blobs.put(sample_message(n)) for n in range(3))
    before = {b: blobs.lookup(b).refcount for b in (shared, other, third)}
    seen = []
    delivered = store.deliver_batch(
        [(first, shared, "INBOX", ()), (second, shared, None, ("\\Seen",)), (first, other, "Spam", ()),
         (first, third, "INBOX", ("$Label1",))],
        in_transaction=lambda session: seen.append(session))
    assert len(seen) == 1
    assert [(d.mailbox_id, d.folder, d.uid) for d in delivered] == [
        (first, "INBOX", 1), (second, "INBOX", 1), (first, "Spam", 1), (first, "INBOX", 2)]
    assert delivered[0].modseq == delivered[3].modseq  # one change per folder per transaction
    inbox = store.get_folder(first, "INBOX")
    assert [m.uid for m in store.list_messages(inbox.id)] == [1, 2]
    assert store.status(inbox.id).highestmodseq == delivered[0].modseq
    assert store.list_messages(delivered[3].folder_id)[1].keywords == ("$Label1",)
    assert blobs.lookup(shared).refcount == before[shared] + 2
    assert store.deliver(first, other).uid == 3  # the single path continues the same sequence
    assert not refcount_problems(db)


def test_batch_is_all_or_none(store, db, blobs):
    mailbox = make_mailbox(db)
    blob_id = blobs.put(sample_message(1))
    refcount = blobs.lookup(blob_id).refcount
    with pytest.raises(NoSuchMailbox):
        store.deliver_batch([(mailbox, blob_id, None, ()), (10_000, blob_id, None, ())])
    inbox = store.get_folder(mailbox, "INBOX")
    assert store.status(inbox.id).messages == 0
    assert blobs.lookup(blob_id).refcount == refcount
    assert store.deliver_batch([(mailbox, blob_id, None, ())])[0].uid == 1  # no UID burnt


def _leased(db, blobs, mailbox_ids, *, notify=None):
    for mailbox_id in mailbox_ids:
        envelope = Envelope(sender="alice@example.net", source="mx", recipients=(
            EnvelopeRecipient(f"m{mailbox_id}@example.org", mailbox_id=mailbox_id, notify=notify),))
        spool.accept(db, blobs, envelope, sample_message(mailbox_id))
    return spool.lease(db, "test", 100)


def test_queue_batch_records_results_then_finishes_the_messages_after_the_hooks(store, db, blobs):
    mailboxes = [make_mailbox(db) for _ in range(3)]
    messages = _leased(db, blobs, mailboxes)
    filtered = []

    def file_second_into_spam(message, recipient, mailbox_id):
        filtered.append(mailbox_id)
        return FilterDecision(folder="Spam") if mailbox_id == mailboxes[1] else FilterDecision()

    after = []

    def still_queued(message, recipient, mailbox_id):  # an auto-reply is spooled before its cause leaves
        assert spool.get(db, message.id) is not None
        after.append(mailbox_id)

    local = LocalDelivery(store, DeliveryHooks(filter=file_second_into_spam, after_delivery=still_queued))
    requests = [LocalRequest(m, m.recipients[0], (m.recipients[0].mailbox_id,), finish=True) for m in messages]
    results = local.deliver_batch(requests)
    assert [r.state for r in results] == [RecipientState.DELIVERED] * 3
    assert all(r.finished for r in results)
    assert spool.list_entries(db) == []
    assert sorted(filtered) == sorted(after) == sorted(mailboxes)
    assert store.status(store.get_folder(mailboxes[1], "Spam").id).messages == 1
    assert store.status(store.get_folder(mailboxes[0], "INBOX").id).messages == 1
    assert not refcount_problems(db)


def test_queue_batch_with_a_deleted_mailbox_bounces_only_that_recipient(store, db, blobs):
    mailboxes = [make_mailbox(db) for _ in range(3)]
    messages = _leased(db, blobs, mailboxes)
    with db.write() as session:  # deleted after the message was queued
        session.execute(delete(Folder).where(Folder.mailbox_id == mailboxes[1]))
        session.execute(delete(Mailbox).where(Mailbox.id == mailboxes[1]))
    local = LocalDelivery(store)
    results = local.deliver_batch([LocalRequest(m, m.recipients[0], (m.recipients[0].mailbox_id,), finish=True)
                                   for m in messages])
    assert [r.state for r in results] == [RecipientState.DELIVERED, RecipientState.BOUNCED, RecipientState.DELIVERED]
    assert [r.finished for r in results] == [True, False, True]
    remaining = spool.list_entries(db)
    assert [m.id for m in remaining] == [messages[1].id]
    assert remaining[0].recipients[0].state == RecipientState.PENDING  # the runner records the bounce
    assert not refcount_problems(db)
    assert blob_files(blobs.root)


def test_queue_batch_does_not_finish_a_message_with_a_recipient_still_waiting(store, db, blobs):
    first, second = make_mailbox(db), make_mailbox(db)
    envelope = Envelope(sender="alice@example.net", source="mx", recipients=(
        EnvelopeRecipient("a@example.org", mailbox_id=first), EnvelopeRecipient("b@example.org", mailbox_id=second)))
    spool.accept(db, blobs, envelope, sample_message(1))
    [message] = spool.lease(db, "test", 10)
    result = LocalDelivery(store).deliver_batch([LocalRequest(message, message.recipients[0], (first,),
                                                              finish=True)])[0]
    assert result.state == RecipientState.DELIVERED and not result.finished
    [entry] = spool.list_entries(db)
    assert [r.state for r in entry.recipients] == [RecipientState.DELIVERED, RecipientState.PENDING]
