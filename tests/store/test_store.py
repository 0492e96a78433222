"""Store semantics on SQLite and PostgreSQL: delivery, APPEND, flags, COPY/MOVE, EXPUNGE,
CONDSTORE/QRESYNC change log, folder rules and quota usage."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from sqlalchemy import delete
from store_fixtures import blob_files, blobs, mailbox_id, make_mailbox, refcount_problems, sample_message, store

from courriel import notify
from courriel.models import DEFAULT_FOLDERS, Folder
from courriel.store import FolderExists, NoSuchFolder, StoreError, parse_flags

__all__ = ["blobs", "mailbox_id", "store"]


def inbox(store, mailbox_id):
    return store.get_folder(mailbox_id, "INBOX")


def test_default_folders_and_special_use(store, mailbox_id):
    folders = {f.name: f for f in store.list_folders(mailbox_id)}
    assert set(folders) == {name for name, _ in DEFAULT_FOLDERS}
    assert folders["Trash"].special_use == "\\Trash"
    assert folders["Spam"].special_use == "\\Junk"
    assert all(f.uidnext == 1 and f.uidvalidity > 0 for f in folders.values())


def test_deliver_allocates_growing_uids_and_modseqs(store, mailbox_id, blobs):
    delivered = [store.deliver(mailbox_id, sample_message(n)) for n in range(5)]
    uids = [d.uid for d in delivered]
    modseqs = [d.modseq for d in delivered]
    assert uids == [1, 2, 3, 4, 5]
    assert modseqs == sorted(set(modseqs)) and modseqs[0] > 1
    listing = store.list_messages(delivered[0].folder_id)
    assert [m.uid for m in listing] == uids
    assert listing[0].size == len(sample_message(0))
    with store.open_message(delivered[0].folder_id, 1) as handle:
        assert handle.read().startswith(b"From: Alice")
    status = store.status(delivered[0].folder_id)
    assert (status.messages, status.unseen, status.uidnext) == (5, 5, 6)
    assert status.highestmodseq == modseqs[-1]
    assert not refcount_problems(store.db)


def test_deliver_caches_summary_and_never_fails_on_bad_mime(store, mailbox_id):
    good = store.deliver(mailbox_id, sample_message(1, subject="Quarterly report"))
    bad = store.deliver(mailbox_id, b"\x00\xff\xfe garbage without headers \x00\r\n\r\n--\r\n")
    summary, broken = store.summaries(good.folder_id, [good.uid, bad.uid])
    assert summary.subject == "Quarterly report"
    assert "alice@example.net" in summary.from_addr
    assert summary.sent_date == dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
    assert json.loads(summary.envelope)[1] is not None
    assert broken.uid == bad.uid and store.list_messages(bad.folder_id, [bad.uid])[0].size > 0


def test_deliver_streams_from_file_and_chunks(store, mailbox_id):
    body = sample_message(1, body=b"x" * 200_000 + b"\r\n")
    from_file = store.deliver(mailbox_id, io.BytesIO(body))
    from_chunks = store.deliver(mailbox_id, (body[i:i + 7000] for i in range(0, len(body), 7000)))
    for delivered in (from_file, from_chunks):
        with store.open_message(delivered.folder_id, delivered.uid) as handle:
            assert handle.read() == body


def test_failed_delivery_transaction_leaves_nothing(store, mailbox_id, blobs):
    def refuse(session):
        raise RuntimeError("queue bookkeeping failed")

    with pytest.raises(RuntimeError):
        store.deliver(mailbox_id, sample_message(1), in_transaction=refuse)
    assert store.status(inbox(store, mailbox_id).id).messages == 0
    assert blob_files(blobs.root) == set()
    assert store.deliver(mailbox_id, sample_message(2)).uid == 1  # the rolled back UID is not burnt


def test_deliver_to_missing_folder_falls_back_to_inbox(store, mailbox_id):
    spam = store.deliver(mailbox_id, sample_message(1), folder="Spam")
    assert spam.folder == "Spam"
    missing = store.deliver(mailbox_id, sample_message(2), folder="No/Such")
    assert missing.folder == "INBOX"


def test_deliver_into_a_mailbox_without_folders_creates_them_and_keeps_the_folder(store, db):
    mailbox = make_mailbox(db)
    with db.write() as session:
        session.execute(delete(Folder).where(Folder.mailbox_id == mailbox))
    delivered = store.deliver(mailbox, sample_message(1), folder="Spam")
    assert delivered.folder == "Spam"
    assert {f.name for f in store.list_folders(mailbox)} >= {name for name, _use in DEFAULT_FOLDERS}


def test_deliver_shares_one_blob_between_mailboxes(store, db, blobs):
    first, second = make_mailbox(db), make_mailbox(db)
    blob_id = blobs.put(sample_message(1))
    a = store.deliver(first, blob_id)
    b = store.deliver(second, blob_id, flags=["\\Seen"])
    assert a.blob_id == b.blob_id == blob_id
    assert blobs.lookup(blob_id).refcount == 2
    assert len([f for f in blob_files(blobs.root)]) == 1
    assert store.list_messages(b.folder_id)[0].flags == ("\\Seen",)


def test_append_returns_uidvalidity_and_uid(store, mailbox_id):
    when = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    uidvalidity, uid = store.append(mailbox_id, "Sent", sample_message(1), flags=["\\Seen", "$Label1"],
                                    internaldate=when)
    sent = store.get_folder(mailbox_id, "sent".capitalize())
    assert (uidvalidity, uid) == (sent.uidvalidity, 1)
    [message] = store.list_messages(sent.id)
    assert message.internaldate == when
    assert message.flags == ("\\Seen",) and message.keywords == ("$Label1",)
    with pytest.raises(NoSuchFolder):
        store.append(mailbox_id, "Nope", sample_message(2))
    with pytest.raises(StoreError):
        store.append(mailbox_id, "Sent", sample_message(3), flags=["\\Bogus"])
    assert store.status(sent.id).messages == 1


def test_flags_and_keywords(store, mailbox_id):
    folder = inbox(store, mailbox_id)
    for n in range(3):
        store.deliver(mailbox_id, sample_message(n))
    before = store.status(folder.id).highestmodseq
    update = store.set_flags(folder.id, [1, 2], "add", ["\\Seen", "$Work", "$work", "\\Recent"])
    assert [m.uid for m in update.changed] == [1, 2]
    assert all(m.modseq == before + 1 for m in update.changed)
    assert update.changed[0].keywords == ("$Work",)
    # Adding what is there changes nothing and does not bump MODSEQ.
    again = store.set_flags(folder.id, [1], "add", ["\\seen", "$WORK"])
    assert again.changed == [] and store.status(folder.id).highestmodseq == before + 1
    removed = store.set_flags(folder.id, [1], "remove", ["$WORK"])
    assert removed.changed[0].keywords == () and removed.changed[0].modseq == before + 2
    replaced = store.set_flags(folder.id, [2], "replace", ["\\Flagged", "Important"])
    assert replaced.changed[0].flags == ("\\Flagged",) and replaced.changed[0].keywords == ("Important",)
    assert store.status(folder.id).unseen == 2
    with pytest.raises(StoreError):
        store.set_flags(folder.id, [3], "add", ["bad keyword"])
    assert store.list_messages(folder.id, [3])[0].flags == ()


def test_unchangedsince_reports_failed_uids(store, mailbox_id):
    folder = inbox(store, mailbox_id)
    for n in range(3):
        store.deliver(mailbox_id, sample_message(n))
    old = store.status(folder.id).highestmodseq
    store.set_flags(folder.id, [2], "add", ["\\Flagged"])
    # RFC 7162 §3.1.3: message 2 changed after `old`; 1 and 3 did not.
    result = store.set_flags(folder.id, [1, 2, 3], "add", ["\\Seen"], unchanged_since=old)
    assert result.failed == [2]
    assert [m.uid for m in result.changed] == [1, 3]
    assert store.list_messages(folder.id, [2])[0].flags == ("\\Flagged",)


def test_copy_move_expunge_and_changes_since(store, mailbox_id, db):
    source = inbox(store, mailbox_id)
    archive = store.create_folder(mailbox_id, "Archive/2026")
    for n in range(4):
        store.deliver(mailbox_id, sample_message(n))
    store.set_flags(source.id, [1], "add", ["\\Flagged"])
    mark = store.status(source.id).highestmodseq

    copied = store.copy(source.id, [1, 2, 99], archive.id)
    assert copied.uidvalidity == archive.uidvalidity
    assert copied.pairs == [(1, 1), (2, 2)]
    assert store.list_messages(archive.id, [1])[0].flags == ("\\Flagged",)

    moved = store.move(source.id, [3, 4], archive.id)
    assert moved.pairs == [(3, 3), (4, 4)]
    assert [m.uid for m in store.list_messages(source.id)] == [1, 2]

    store.set_flags(source.id, [2], "add", ["\\Deleted"])
    assert store.expunge(source.id, uids=[1]) == []  # 1 is not \Deleted
    assert store.expunge(source.id) == [2]

    changes = store.changes_since(source.id, mark)
    assert changes.vanished == [2, 3, 4]
    assert changes.messages == []  # message 1 did not change after `mark`
    assert changes.highestmodseq > mark
    everything = store.changes_since(source.id, 0)
    assert [m.uid for m in everything.messages] == [1]
    flagged = store.set_flags(source.id, [1], "add", ["\\Seen"]).changed[0]
    later = store.changes_since(source.id, changes.highestmodseq)
    assert [(m.uid, m.modseq) for m in later.messages] == [(1, flagged.modseq)] and later.vanished == []
    # New UIDs never reuse old ones.
    assert store.deliver(mailbox_id, sample_message(9)).uid == 5
    assert not refcount_problems(db)
    with pytest.raises(StoreError):
        store.move(source.id, [1], source.id)


def test_create_delete_rename_folders(store, mailbox_id):
    store.create_folder(mailbox_id, "Projects/Alpha/Notes")
    names = {f.name for f in store.list_folders(mailbox_id)}
    assert {"Projects", "Projects/Alpha", "Projects/Alpha/Notes"} <= names
    assert store.get_folder(mailbox_id, "Projects").has_children
    with pytest.raises(FolderExists):
        store.create_folder(mailbox_id, "Projects/Alpha")
    with pytest.raises(FolderExists):
        store.create_folder(mailbox_id, "inbox")
    for bad in ("", "/lead", "trail/", "a//b", "wild*", "ctl\x01"):
        with pytest.raises(StoreError):
            store.create_folder(mailbox_id, bad)

    renamed = store.rename_folder(mailbox_id, "Projects", "Work/Old Projects")
    names = {f.name for f in store.list_folders(mailbox_id)}
    assert {"Work", "Work/Old Projects", "Work/Old Projects/Alpha", "Work/Old Projects/Alpha/Notes"} <= names
    assert not any(name.startswith("Projects") for name in names)
    assert renamed.name == "Work/Old Projects"

    with pytest.raises(StoreError):
        store.delete_folder(mailbox_id, "Work")  # has inferiors
    with pytest.raises(StoreError):
        store.delete_folder(mailbox_id, "INBOX")
    with pytest.raises(NoSuchFolder):
        store.delete_folder(mailbox_id, "Nope")

    store.subscribe(mailbox_id, "Work", False)
    assert not store.get_folder(mailbox_id, "Work").subscribed


def test_delete_folder_moves_messages_to_trash(store, mailbox_id, db):
    folder = store.create_folder(mailbox_id, "Old")
    store.append(mailbox_id, "Old", sample_message(1), flags=["$Keep"])
    store.append(mailbox_id, "Old", sample_message(2))
    store.delete_folder(mailbox_id, "Old")
    with pytest.raises(NoSuchFolder):
        store.get_folder(mailbox_id, "Old")
    trash = store.get_folder(mailbox_id, "Trash")
    moved = store.list_messages(trash.id)
    assert len(moved) == 2 and moved[0].keywords == ("$Keep",)
    # A folder created again under the same name is a new UIDVALIDITY epoch (RFC 3501 §2.3.1.1).
    again = store.create_folder(mailbox_id, "Old")
    assert again.uidvalidity != folder.uidvalidity and again.uidnext == 1
    # Deleting the Trash itself expunges what it holds.
    store.rename_folder(mailbox_id, "Trash", "Bin")
    store.delete_folder(mailbox_id, "Bin")
    assert not refcount_problems(db)
    assert store.quota_usage(mailbox_id).messages == 0


def test_rename_inbox_moves_messages_and_leaves_inbox_empty(store, mailbox_id):
    store.create_folder(mailbox_id, "INBOX/Child")
    for n in range(3):
        store.deliver(mailbox_id, sample_message(n))
    old_inbox = inbox(store, mailbox_id)
    renamed = store.rename_folder(mailbox_id, "inbox", "Old Mail")
    assert renamed.name == "Old Mail" and renamed.uidnext == 4
    assert len(store.list_messages(renamed.id)) == 3
    now_inbox = inbox(store, mailbox_id)
    assert now_inbox.id == old_inbox.id and store.status(now_inbox.id).messages == 0
    assert store.changes_since(now_inbox.id, 0).vanished == [1, 2, 3]
    assert store.get_folder(mailbox_id, "INBOX/Child")  # inferiors of INBOX stay
    assert store.deliver(mailbox_id, sample_message(4)).uid == 4


def test_quota_usage(store, db):
    mailbox = make_mailbox(db, quota_bytes=1000)
    other = make_mailbox(db)
    store.deliver(mailbox, b"Subject: a\r\n\r\n" + b"a" * 300)
    store.append(mailbox, "Sent", b"Subject: b\r\n\r\n" + b"b" * 300)
    store.deliver(other, b"Subject: c\r\n\r\n" + b"c" * 5000)
    usage = store.quota_usage(mailbox)
    assert usage.messages == 2 and usage.used_bytes == 2 * (14 + 300)
    assert usage.limit_bytes == 1000 and not usage.over
    store.deliver(mailbox, b"Subject: d\r\n\r\n" + b"d" * 500)
    assert store.quota_usage(mailbox).over


def test_quota_usage_counts_messages_against_the_message_limit(store, db):
    """RFC 9208 §5.2 MESSAGE: the count alone can fill a mailbox; an unlimited one is not summed."""
    mailbox = make_mailbox(db, quota_messages=2)
    store.deliver(mailbox, b"Subject: a\r\n\r\na")
    usage = store.quota_usage(mailbox, only_if_limited=True)
    assert usage.limited and usage.messages == 1 and usage.limit_messages == 2 and usage.limit_bytes == 0
    assert not usage.over and not usage.would_exceed(10**9, 1) and usage.would_exceed(0, 2)
    store.append(mailbox, "Sent", b"Subject: b\r\n\r\nb")
    usage = store.quota_usage(mailbox, only_if_limited=True)
    assert usage.over and usage.would_exceed(0, 1) and not usage.would_exceed(0, 0)
    both = store.quota_usage(make_mailbox(db, quota_bytes=100, quota_messages=5))
    assert both.would_exceed(101, 0) and both.would_exceed(0, 6) and not both.would_exceed(100, 5)


def test_commit_sends_mailbox_hint(store, mailbox_id, data_dir):
    with notify.Listener(data_dir / "run", topics=[notify.MAILBOX]) as listener:
        store.deliver(mailbox_id, sample_message(1))
        hints = listener.wait(timeout=5)
    assert notify.Hint("mailbox", str(mailbox_id)) in hints


def test_purge_mailbox_keeps_refcounts(store, db, blobs):
    first, second = make_mailbox(db), make_mailbox(db)
    blob_id = blobs.put(sample_message(1))
    store.deliver(first, blob_id)
    store.deliver(second, blob_id)
    assert store.purge_mailbox(first) == 1
    assert store.list_folders(first) == []
    assert blobs.lookup(blob_id).refcount == 1
    assert not refcount_problems(db)


def test_parse_flags_table():
    assert parse_flags(["\\SEEN", "\\answered", "Foo", "foo", "$Bar"]) == (1 | 2, ("Foo", "$Bar"))
    for bad in ["\\Unknown", "a b", "a(b", "", "ünïcode"]:
        with pytest.raises(StoreError):
            parse_flags([bad])
