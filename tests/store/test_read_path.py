"""The batched read path (files located in one query, SEARCH narrowing the files it reads),
cheap quota checks, and the expunge log's retention (RFC 7162 VANISHED past a pruned log)."""

from __future__ import annotations

import datetime as dt

import pytest
from store_fixtures import blobs, make_mailbox, sample_message, store  # noqa: F401

from courriel.imap import fetch as fetch_mod
from courriel.imap.protocol.commands import FetchAttribute as FetchItem
from courriel.imap.protocol.encoder import fetch_response
from courriel.imap.search import search
from courriel.models import Expunge, Folder
from courriel.store import MessageFile, StoreError


@pytest.fixture
def inbox(store, db):  # noqa: F811
    mailbox_id = make_mailbox(db)
    for n in range(1, 7):
        body = b"the secret word is Papaya\r\n" if n in (2, 5) else b"nothing here\r\n"
        store.deliver(mailbox_id, sample_message(n, subject=f"note {n}", body=body), flags=["\\Seen"] if n > 4 else [])
    return store.get_folder(mailbox_id, "INBOX")


@pytest.fixture
def opened(monkeypatch):
    """UIDs whose message file was opened, in order."""
    uids: list[int] = []
    real_open = MessageFile.open

    def counting_open(self):
        uids.append(self.uid)
        return real_open(self)

    monkeypatch.setattr(MessageFile, "open", counting_open)
    return uids


def run(store, folder, key, known=range(1, 7)):  # noqa: F811
    return search(store, folder.id, key, list(known), (), uid_of_msn=lambda ranges: [
        msn for low, high in ranges for msn in range(low, high + 1)])


def test_open_messages_locates_existing_files_in_one_call(store, inbox):  # noqa: F811
    files = store.open_messages(inbox.id, [1, 3, 99])
    assert sorted(files) == [1, 3]
    with files[3].open() as handle:
        assert b"Subject: note 3" in handle.read()
    files[1].path.unlink()
    with pytest.raises(StoreError):
        files[1].open()


def test_body_search_reads_only_the_candidates(store, inbox, opened):  # noqa: F811
    assert run(store, inbox, ("AND", [("UID", [(1, 3)]), ("BODY", "papaya")])) == [2]
    assert sorted(opened) == [1, 2, 3]
    opened.clear()
    assert run(store, inbox, ("AND", [("SEQ", [(4, 6)]), ("TEXT", "PAPAYA")])) == [5]
    assert sorted(opened) == [4, 5, 6]
    opened.clear()
    assert run(store, inbox, ("AND", [("SEEN",), ("BODY", "papaya")])) == [5]
    assert sorted(opened) == [5, 6]
    opened.clear()
    assert run(store, inbox, ("AND", [("SUBJECT", "note 2"), ("BODY", "papaya")])) == [2]
    assert opened == [2]
    opened.clear()
    # Messages the client does not know are neither read nor returned.
    assert run(store, inbox, ("BODY", "papaya"), known=[1, 2, 3]) == [2]
    assert sorted(opened) == [1, 2, 3]


def test_body_search_under_not_and_or_stays_exact(store, inbox):  # noqa: F811
    assert run(store, inbox, ("NOT", ("BODY", "papaya"))) == [1, 3, 4, 6]
    assert run(store, inbox, ("AND", [("UID", [(1, 3)]), ("NOT", ("BODY", "papaya"))])) == [1, 3]
    assert run(store, inbox, ("OR", ("BODY", "papaya"), ("UID", [(6, 6)]))) == [2, 5, 6]
    assert run(store, inbox, ("NOT", ("OR", ("BODY", "papaya"), ("SEEN",)))) == [1, 3, 4]
    assert run(store, inbox, ("AND", [("NOT", ("NOT", ("BODY", "papaya"))), ("UNSEEN",)])) == [2]
    assert run(store, inbox, ("HEADER", "Subject", "note 4")) == [4]
    assert run(store, inbox, ("HEADER", "Date", "26 Nov")) == [1, 2, 3, 4, 5, 6]


def test_body_search_reads_only_up_to_the_text_parts(store, db, monkeypatch):  # noqa: F811
    mailbox_id = make_mailbox(db)
    attachment = b"QUFBQUFB\r\n" * 20_000  # 200 KB of base64 after the text part
    store.deliver(mailbox_id, (
        b"From: c@example.net\r\nSubject: att\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nfind the kiwi\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment + b"--b--\r\n"))
    folder = store.get_folder(mailbox_id, "INBOX")
    read_sizes = []
    real_open = MessageFile.open

    def recording_open(self):
        handle = real_open(self)
        real_read = handle.read

        def read(size=-1):
            data = real_read(size)
            read_sizes.append(len(data))
            return data

        handle.read = read
        return handle

    monkeypatch.setattr(MessageFile, "open", recording_open)
    assert run(store, folder, ("BODY", "kiwi"), known=[1]) == [1]
    assert read_sizes and sum(read_sizes) < 1000
    assert run(store, folder, ("TEXT", "QUFBQUFB"), known=[1]) == []  # attachments are not text


def test_prepare_batch_inlines_small_bodies_and_streams_large_ones(store, db, opened):  # noqa: F811
    mailbox_id = make_mailbox(db)
    store.deliver(mailbox_id, sample_message(1))
    store.deliver(mailbox_id, sample_message(2, body=b"z" * 998 + b"\r\n") + b"y" * 300_000 + b"\r\n")
    store.deliver(mailbox_id, sample_message(3))
    folder = store.get_folder(mailbox_id, "INBOX")
    messages = store.list_messages(folder.id)
    summaries = {s.uid: s for s in store.summaries(folder.id)}
    store.set_flags(folder.id, [3], "add", ["\\Deleted"])
    store.expunge(folder.id)  # gone between the listing and the FETCH: left out
    prepared = fetch_mod.prepare_batch(store, folder.id, messages, summaries, [FetchItem("BODY[]", peek=True)],
                                       lambda uid: (), uid_requested=True)
    assert [m.uid for m, _ in prepared] == [1, 2]
    small, large = (result.items[-1][1] for _, result in prepared)
    assert small.data is not None and not prepared[0][1].streams
    assert large.data is None and prepared[1][1].streams
    assert opened == [1]  # the large file is opened only when its chunks are read
    text = b"".join(fetch_response(2, prepared[1][1].items))
    assert opened == [1, 2]
    assert text.endswith(b"y" * 300_000 + b"\r\n)\r\n") and b"BODY[] {%d}" % messages[1].size in text
    assert b"".join(fetch_response(1, prepared[0][1].items)).endswith(b"Hello.\r\n)\r\n")


def test_quota_check_skips_unlimited_mailboxes(store, db):  # noqa: F811
    unlimited = make_mailbox(db)
    limited = make_mailbox(db, quota_bytes=10_000)
    for mailbox_id in (unlimited, limited):
        store.deliver(mailbox_id, sample_message(1))
        store.append(mailbox_id, "Sent", sample_message(2))
    assert store.quota_usage(unlimited, only_if_limited=True).used_bytes == 0
    exact = store.quota_usage(unlimited)
    assert exact.messages == 2 and exact.used_bytes > 0 and exact.limit_bytes == 0
    assert store.quota_usage(limited, only_if_limited=True) == store.quota_usage(limited)
    assert store.quota_usage(limited).messages == 2


def expunge(store, folder_id, uids):  # noqa: F811
    store.set_flags(folder_id, uids, "add", ["\\Deleted"])
    return store.expunge(folder_id, uids)


def age_expunges(db, folder_id, days):
    with db.write() as session:
        for row in session.query(Expunge).filter_by(folder_id=folder_id):
            row.expunged_at = row.expunged_at - dt.timedelta(days=days)


def test_pruned_expunge_log_reports_every_missing_uid(store, db, inbox):  # noqa: F811
    start = inbox.highestmodseq
    expunge(store, inbox.id, [2, 3])
    age_expunges(db, inbox.id, 100)
    expunge(store, inbox.id, [5])
    middle = store.folder(inbox.id).highestmodseq
    assert store.changes_since(inbox.id, start).vanished == [2, 3, 5]
    assert store.prune_expunges(dt.datetime.now(dt.UTC) - dt.timedelta(days=90)) == 2
    with db.read() as session:
        assert [e.uid for e in session.query(Expunge).filter_by(folder_id=inbox.id)] == [5]
        pruned = session.get(Folder, inbox.id).expunges_pruned_modseq
    assert start < pruned < middle
    # Older than the retained log: every UID below UIDNEXT that no longer exists (a superset).
    changes = store.changes_since(inbox.id, start)
    assert not changes.log_complete and changes.vanished == [2, 3, 5]
    store.deliver(store.folder(inbox.id).mailbox_id, sample_message(7))
    assert store.changes_since(inbox.id, 0).vanished == [2, 3, 5]
    # From the pruned MODSEQ on, the log is exact again.
    changes = store.changes_since(inbox.id, pruned)
    assert changes.log_complete and changes.vanished == [5]
    assert [m.uid for m in changes.messages] == [7]
    assert store.changes_since(inbox.id, middle).vanished == []
    # Nothing older than the retention is left: pruning again changes nothing.
    assert store.prune_expunges(dt.datetime.now(dt.UTC) - dt.timedelta(days=90)) == 0
    with db.read() as session:
        assert session.get(Folder, inbox.id).expunges_pruned_modseq == pruned


def test_prune_keeps_recent_entries_and_other_folders(store, db, inbox):  # noqa: F811
    other = make_mailbox(db)
    store.deliver(other, sample_message(1))
    other_inbox = store.get_folder(other, "INBOX")
    expunge(store, other_inbox.id, [1])
    expunge(store, inbox.id, [1])
    assert store.prune_expunges(dt.datetime.now(dt.UTC) - dt.timedelta(days=90)) == 0
    age_expunges(db, inbox.id, 91)
    assert store.prune_expunges(dt.datetime.now(dt.UTC) - dt.timedelta(days=90)) == 1
    assert store.changes_since(other_inbox.id, 0).log_complete
    assert store.changes_since(other_inbox.id, 0).vanished == [1]
    assert not store.changes_since(inbox.id, 0).log_complete


def test_queue_maintenance_prunes_after_the_configured_retention(store, db, inbox):  # noqa: F811
    from types import SimpleNamespace

    from courriel.queue.runner import QueueRunner

    expunge(store, inbox.id, [1])
    age_expunges(db, inbox.id, 10)
    settings = {"expunge_log_days": 0}
    runner = SimpleNamespace(store=store, config=SimpleNamespace(get=lambda section, key: settings[key]))
    assert QueueRunner.prune_expunge_log(runner) == 0  # 0: keep forever
    settings["expunge_log_days"] = 30
    assert QueueRunner.prune_expunge_log(runner) == 0
    settings["expunge_log_days"] = 7
    assert QueueRunner.prune_expunge_log(runner) == 1
    assert not store.changes_since(inbox.id, 0).log_complete


def test_expunge_log_days_default_is_documented(config):
    assert config.get("imap", "expunge_log_days") == 90


def test_status_by_name_matches_get_folder_and_status(store, inbox):  # noqa: F811
    store.set_flags(inbox.id, [1], "add", ["\\Deleted"])
    store.create_folder(inbox.mailbox_id, "INBOX/Child")
    info, status = store.status_by_name(inbox.mailbox_id, "inbox")
    assert info == store.get_folder(inbox.mailbox_id, "INBOX") and info.has_children
    assert status == store.status(inbox.id)
    assert (status.messages, status.unseen, status.deleted) == (6, 4, 1)
    with pytest.raises(StoreError):
        store.status_by_name(inbox.mailbox_id, "Nowhere")
