"""The selected-mailbox view: MSN bookkeeping across expunges and deliveries (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from courriel.imap.selected import (
    ExistsUpdate,
    ExpungeUpdate,
    FlagsUpdate,
    RecentClaims,
    SelectedMailbox,
    SequenceError,
)
from courriel.store import Changes, MessageInfo

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def info(uid: int, modseq: int = 1, flags=(), keywords=()) -> MessageInfo:
    return MessageInfo(uid=uid, modseq=modseq, flags=tuple(flags), keywords=tuple(keywords), size=10,
                       internaldate=NOW, blob_id=1, id=uid)


def view(uids=(1, 2, 3, 4)) -> SelectedMailbox:
    mailbox = SelectedMailbox(folder_id=1, name="INBOX", uidvalidity=7, readonly=False)
    mailbox.load([info(u) for u in uids], uidnext=max(uids) + 1, highestmodseq=5)
    return mailbox


def test_msn_uid_mapping_and_ranges():
    mailbox = view((3, 5, 9))
    assert mailbox.uid_of(2) == 5
    assert mailbox.msn_of(9) == 3 and mailbox.msn_of(4) is None
    assert mailbox.resolve_msns([(2, 3)]) == [5, 9]
    assert mailbox.resolve_uids([(4, 100)]) == [5, 9]
    with pytest.raises(SequenceError):
        mailbox.resolve_msns([(1, 4)])
    # A SEARCH key's message set matches what exists (an empty mailbox resolves `*` to 0).
    assert mailbox.resolve_msns([(0, 9)], strict=False) == [3, 5, 9]


def test_expunge_elsewhere_waits_until_allowed():
    mailbox = view()
    mailbox.apply(Changes(messages=[info(5, 6)], vanished=[2], highestmodseq=6, uidnext=6))
    # RFC 3501 §7.4.1: during FETCH/STORE/SEARCH no EXPUNGE; the new message is still announced.
    assert mailbox.updates(expunge_allowed=False) == [ExistsUpdate(5)]
    assert mailbox.uid_of(2) == 2 and not mailbox.live(2)
    assert mailbox.updates(expunge_allowed=True) == [ExpungeUpdate(2)]
    assert mailbox.known_uids() == [1, 3, 4, 5]
    assert mailbox.updates(expunge_allowed=True) == []


def test_several_expunges_are_sent_highest_first():
    mailbox = view()
    assert mailbox.note_expunged([1, 3]) == [3, 1]
    assert mailbox.known_uids() == [2, 4] and mailbox.exists == 2


def test_flag_changes_by_others_are_announced_once_and_own_changes_not():
    mailbox = view()
    mailbox.apply(Changes(messages=[info(1, 6, ["\\Seen"]), info(2, 6, ["\\Flagged"])], vanished=[],
                          highestmodseq=6, uidnext=5))
    mailbox.note_flags(2, ("\\Flagged",))
    assert mailbox.updates(expunge_allowed=True) == [FlagsUpdate(1, 1, ("\\Seen",), 6)]
    assert mailbox.updates(expunge_allowed=True) == []
    assert mailbox.modseq == 6


def test_recent_claims_go_to_one_session():
    claims = RecentClaims()
    claims.first_claim(1, 7, uidnext=5)
    assert claims.claim(1, 7, [5, 6]) == {5, 6}
    assert claims.claim(1, 7, [5, 6]) == set()
    assert claims.claim(1, 7, [3, 7]) == {7}
