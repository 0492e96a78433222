"""SORT and THREAD over the store's cache: the References / In-Reply-To parents cached at delivery
(RFC 5256 §2.2), kept by COPY, and the facts, order and threads that `courriel.imap.session_search`
computes from the cache without reading message files."""

from __future__ import annotations

import datetime as dt

from store_fixtures import blobs, mailbox_id, store  # noqa: F401

from courriel.imap.session_search import load_facts, sorted_facts, thread_text

__all__ = ["blobs"]


def message(message_id: str, subject: str, extra: str = "", date: str | None = "Mon, 06 Jan 2025 09:00:00 +0000"):
    lines = ["From: Alice <alice@example.net>", "To: bob@example.org", f"Subject: {subject}",
             f"Message-ID: <{message_id}>"]
    if date:
        lines.append(f"Date: {date}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\nHello.\r\n").encode()


def test_reference_ids_are_cached_and_copied(store, mailbox_id):  # noqa: F811
    store.append(mailbox_id, "INBOX", message("a@x", "root"))
    store.append(mailbox_id, "INBOX", message("b@x", "Re: root", "References: <a@x>\r\n <z@x>\r\nIn-Reply-To: <q@x>"))
    store.append(mailbox_id, "INBOX", message("c@x", "Re: root", "In-Reply-To: <b@x> <a@x>"))
    store.append(mailbox_id, "INBOX", message("d@x", "Re: root", "References: not an id\r\nIn-Reply-To: <c@x>"))
    inbox = store.get_folder(mailbox_id, "INBOX")
    cached = {s.uid: s.reference_ids for s in store.summaries(inbox.id)}
    assert cached == {1: "", 2: "a@x z@x", 3: "b@x", 4: "c@x"}
    archive = store.get_folder(mailbox_id, "Trash")
    store.copy(inbox.id, [2], archive.id)
    assert [s.reference_ids for s in store.summaries(archive.id)] == ["a@x z@x"]


def test_facts_sort_and_threads_from_the_cache(store, mailbox_id):  # noqa: F811
    arrival = dt.datetime(2025, 2, 1, tzinfo=dt.UTC)
    store.append(mailbox_id, "INBOX", message("a@x", "Plans", date="Tue, 07 Jan 2025 09:00:00 +0000"),
                 internaldate=arrival)
    store.append(mailbox_id, "INBOX", message("b@x", "Re: Plans", "References: <a@x>",
                                              date="Wed, 08 Jan 2025 09:00:00 +0000"), internaldate=arrival)
    store.append(mailbox_id, "INBOX", message("c@x", "Other", date=None),
                 internaldate=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    inbox = store.get_folder(mailbox_id, "INBOX")
    msns = {1: 1, 2: 2, 3: 3}
    facts = {f.uid: f for f in load_facts(store, inbox.id, msns)}
    assert facts[2].reference_ids == ("a@x",) and facts[2].message_id == "<b@x>"
    assert facts[3].sent is None and facts[3].internaldate == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert facts[1].envelope[1] == "Plans" and facts[1].size > 0
    assert [f.msn for f in sorted_facts(store, inbox.id, msns, [(False, "DATE")])] == [3, 1, 2]
    assert [f.msn for f in sorted_facts(store, inbox.id, msns, [(True, "SUBJECT")])] == [1, 2, 3]
    assert thread_text(store, inbox.id, msns, "REFERENCES", False) == "(3)(1 2)"
    assert thread_text(store, inbox.id, {1: 1, 3: 2}, "ORDEREDSUBJECT", False) == "(2)(1)"
    # An expunged message drops out of the facts.
    store.set_flags(inbox.id, [1], "add", ["\\Deleted"])
    store.expunge(inbox.id)
    assert thread_text(store, inbox.id, msns, "REFERENCES", True) == "(3)(2)"
