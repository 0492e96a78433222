"""METADATA entries in the store (`courriel.store_metadata`): set, replace and remove in one
transaction, the per-target limit (nothing changes when it is passed), entries per folder and per
server kept apart and per mailbox, RENAME keeps them and DELETE removes them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from store_fixtures import blobs, mailbox_id, make_mailbox, store  # noqa: F401

from courriel.models import MetadataEntry
from courriel.store import MetadataTooMany, NoSuchFolder


def _count(db) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(MetadataEntry))


def test_set_replace_remove_and_targets(store, mailbox_id, db):  # noqa: F811
    store.set_metadata(mailbox_id, "INBOX", [("/private/comment", b"a"), ("/shared/comment", b"b\x00")])
    store.set_metadata(mailbox_id, "", [("/private/comment", b"server")])
    folder, entries = store.metadata_entries(mailbox_id, "inbox")
    assert folder.name == "INBOX" and entries == {"/private/comment": b"a", "/shared/comment": b"b\x00"}
    assert store.metadata_entries(mailbox_id, "") == (None, {"/private/comment": b"server"})
    store.set_metadata(mailbox_id, "INBOX", [("/private/comment", b"new"), ("/shared/comment", None),
                                             ("/private/never", None)])
    assert store.metadata_entries(mailbox_id, "INBOX")[1] == {"/private/comment": b"new"}
    other = make_mailbox(db, "other")
    assert store.metadata_entries(other, "INBOX")[1] == {} and store.metadata_entries(other, "")[1] == {}
    with pytest.raises(NoSuchFolder):
        store.set_metadata(mailbox_id, "Missing", [("/private/comment", b"x")])
    assert _count(db) == 2


def test_limit_is_all_or_nothing(store, mailbox_id, db):  # noqa: F811
    store.set_metadata(mailbox_id, "Sent", [(f"/private/n{i}", b"v") for i in range(3)], max_entries=3)
    with pytest.raises(MetadataTooMany):
        store.set_metadata(mailbox_id, "Sent", [("/private/n0", b"changed"), ("/private/n3", b"v")], max_entries=3)
    assert store.metadata_entries(mailbox_id, "Sent")[1] == {f"/private/n{i}": b"v" for i in range(3)}
    # Replacing and swapping at the limit is fine.
    store.set_metadata(mailbox_id, "Sent", [("/private/n0", None), ("/private/n3", b"w")], max_entries=3)
    assert sorted(store.metadata_entries(mailbox_id, "Sent")[1]) == ["/private/n1", "/private/n2", "/private/n3"]


def test_rename_keeps_and_delete_removes(store, mailbox_id, db):  # noqa: F811
    store.create_folder(mailbox_id, "A/B")
    store.set_metadata(mailbox_id, "A/B", [("/shared/comment", b"c")])
    store.rename_folder(mailbox_id, "A", "Z")
    assert store.metadata_entries(mailbox_id, "Z/B")[1] == {"/shared/comment": b"c"}
    store.delete_folder(mailbox_id, "Z/B")
    assert _count(db) == 0
    store.create_folder(mailbox_id, "Z/B")
    assert store.metadata_entries(mailbox_id, "Z/B")[1] == {}
