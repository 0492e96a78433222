"""Reading messages from the mailbox store (ring 1): a mixin of `courriel.store.Store`.

Owns what reading a folder returns and how it is read: the system flag bits and their names
(`SYSTEM_FLAGS`, `system_flag_names`), the result types (`MessageInfo`, `MessageFile`,
`StoredSummary`, `Changes`), listing by UID column by column (`list_messages`, no ORM objects),
the cached summaries (`summaries`), locating message files in one query (`open_messages`), and
the change log read by CONDSTORE/QRESYNC (`changes_since`). `courriel.store` re-exports these
names; callers keep importing them from there.

Standards: RFC 3501 §2.3.1.1 (UIDs), §2.3.2 (system flags and keywords); RFC 7162 §3.1.4.1 and
§3.2.5 (changes since a MODSEQ), §3.2.10 (VANISHED from the expunge log), §3.2.5.2 and §3.2.6
(past the retained log, a superset of the expunged UIDs).
Security: reads only; message bytes are opened, never parsed, here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from courriel.models import Blob, Expunge, Folder, Message
from courriel.store_errors import NoSuchFolder, StoreError

# RFC 3501 §2.3.2: the system flags a client may set, as bits of Message.flags.
SYSTEM_FLAGS: dict[str, int] = {
    "\\Seen": 1,
    "\\Answered": 2,
    "\\Flagged": 4,
    "\\Deleted": 8,
    "\\Draft": 16,
}
_BATCH = 500


def _flag_names(bits: int) -> tuple[str, ...]:
    return tuple(name for name, bit in SYSTEM_FLAGS.items() if bits & bit)


# Every combination of the system flag bits, named once (listing a folder names each row's flags).
_FLAG_NAMES = [_flag_names(bits) for bits in range(2 ** len(SYSTEM_FLAGS))]


def system_flag_names(bits: int) -> tuple[str, ...]:
    return _FLAG_NAMES[bits] if 0 <= bits < len(_FLAG_NAMES) else _flag_names(bits)


def _split_keywords(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


def _missing_uids(present: Iterable[int], uidnext: int) -> list[int]:
    """UIDs from 1 to UIDNEXT-1 not in `present` (ascending): the expunged ones, and any never used."""
    missing: list[int] = []
    expected = 1
    for uid in present:
        if uid >= uidnext:
            break
        if uid > expected:
            missing.extend(range(expected, uid))
        expected = max(expected, uid + 1)
    missing.extend(range(expected, uidnext))
    return missing


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MessageInfo:
    uid: int
    modseq: int
    flags: tuple[str, ...]  # system flags
    keywords: tuple[str, ...]
    size: int
    internaldate: dt.datetime
    blob_id: int
    id: int

    @property
    def all_flags(self) -> tuple[str, ...]:
        return self.flags + self.keywords


@dataclass(frozen=True)
class MessageFile:
    """Where the bytes of one message are (`Store.open_messages`); opened only when read."""

    uid: int
    blob_id: int
    size: int
    path: Path

    def open(self) -> BinaryIO:
        """The raw message as a binary file (stream it; the caller closes it)."""
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise StoreError(f"message {self.uid} has no file") from None


@dataclass(frozen=True)
class StoredSummary:
    """The cached parse of one message (`courriel.mime.summarize` at delivery), for FETCH,
    SEARCH and SORT without reading the body."""

    uid: int
    envelope: str  # JSON
    bodystructure: str  # JSON
    message_id: str
    subject: str
    from_addr: str
    to_addr: str
    cc_addr: str
    reference_ids: str  # RFC 5256 §2.2: parent msg-ids, space-separated
    sent_date: dt.datetime | None


@dataclass(frozen=True)
class Changes:
    messages: list[MessageInfo]  # changed or added since the given MODSEQ, by UID
    # RFC 7162 §3.2.10: expunged since the given MODSEQ. When that MODSEQ is older than the
    # retained expunge log (`log_complete` false), every UID below UIDNEXT that no longer
    # exists: a superset that RFC 7162 §3.2.5.2 and §3.2.6 allow (clients ignore unknown UIDs).
    vanished: list[int]
    highestmodseq: int
    uidnext: int
    log_complete: bool = True


# The columns of MessageInfo: listing a folder never loads the cached summaries.
_INFO_COLUMNS = (Message.uid, Message.modseq, Message.flags, Message.keywords, Message.size, Message.internaldate,
                 Message.blob_id, Message.id)


def _message_info(row: Message) -> MessageInfo:
    return MessageInfo(uid=row.uid, modseq=row.modseq, flags=system_flag_names(row.flags),
                       keywords=_split_keywords(row.keywords), size=row.size, internaldate=row.internaldate,
                       blob_id=row.blob_id, id=row.id)


_SUMMARY_COLUMNS = ("envelope", "bodystructure", "message_id", "subject", "from_addr", "to_addr", "cc_addr",
                    "reference_ids", "sent_date")


# ----------------------------------------------------------------------------- reading


class MessageReads:
    """The read side of `courriel.store.Store` (needs `self.db` and `self.blobs`)."""

    @staticmethod
    def _messages(session: Session, folder_id: int, uids: Iterable[int] | None, *extra) -> list[Message]:
        query = select(Message).where(Message.folder_id == folder_id, *extra).order_by(Message.uid)
        if uids is None:
            return list(session.scalars(query))
        wanted = sorted(set(uids))
        rows: list[Message] = []
        for start in range(0, len(wanted), _BATCH):
            rows.extend(session.scalars(query.where(Message.uid.in_(wanted[start:start + _BATCH]))))
        rows.sort(key=lambda m: m.uid)
        return rows

    @staticmethod
    def _columns(session: Session, folder_id: int, uids: Iterable[int] | None, columns, *extra) -> list:
        """Rows of `columns` (Message.uid among them) by UID: no ORM objects are built."""
        query = select(*columns).where(Message.folder_id == folder_id, *extra).order_by(Message.uid)
        if uids is None:
            return list(session.execute(query))
        wanted = sorted(set(uids))
        rows = []
        for start in range(0, len(wanted), _BATCH):
            rows.extend(session.execute(query.where(Message.uid.in_(wanted[start:start + _BATCH]))))
        rows.sort(key=lambda r: r.uid)
        return rows

    @classmethod
    def _infos(cls, session: Session, folder_id: int, uids: Iterable[int] | None, *extra) -> list[MessageInfo]:
        """MessageInfo rows by UID, read column by column (no ORM objects, no summaries)."""
        rows = cls._columns(session, folder_id, uids, _INFO_COLUMNS, *extra)
        return [MessageInfo(uid=r.uid, modseq=r.modseq, flags=system_flag_names(r.flags),
                            keywords=_split_keywords(r.keywords), size=r.size, internaldate=r.internaldate,
                            blob_id=r.blob_id, id=r.id) for r in rows]

    def list_messages(self, folder_id: int, uids: Iterable[int] | None = None) -> list[MessageInfo]:
        """Messages of a folder by UID (all, or those of `uids` that exist)."""
        with self.db.read() as session:
            return self._infos(session, folder_id, uids)

    def summaries(self, folder_id: int, uids: Iterable[int] | None = None) -> list[StoredSummary]:
        """The cached ENVELOPE/BODYSTRUCTURE JSON and header fields of messages, by UID."""
        columns = (Message.uid, *(getattr(Message, name) for name in _SUMMARY_COLUMNS))
        with self.db.read() as session:
            return [StoredSummary(uid=row.uid, **{name: getattr(row, name) for name in _SUMMARY_COLUMNS})
                    for row in self._columns(session, folder_id, uids, columns)]

    def open_message(self, folder_id: int, uid: int) -> BinaryIO:
        """The raw message as a binary file (stream it; the caller closes it)."""
        found = self.open_messages(folder_id, [uid]).get(uid)
        if found is None:
            raise StoreError(f"no message with UID {uid}")
        return found.open()

    def open_messages(self, folder_id: int, uids: Iterable[int]) -> dict[int, MessageFile]:
        """Where the files of many messages are, in one query (FETCH and SEARCH of many
        messages): {uid: MessageFile} for the UIDs that exist. Nothing is opened here; a file
        stays readable after an expunge until the blob collector's grace period has passed."""
        wanted = sorted(set(uids))
        found: dict[int, MessageFile] = {}
        with self.db.read() as session:
            for start in range(0, len(wanted), _BATCH):
                rows = session.execute(
                    select(Message.uid, Message.blob_id, Blob.size, Blob.path)
                    .join(Blob, Blob.id == Message.blob_id)
                    .where(Message.folder_id == folder_id, Message.uid.in_(wanted[start:start + _BATCH])))
                for row in rows:
                    found[row.uid] = MessageFile(uid=row.uid, blob_id=row.blob_id, size=row.size,
                                                 path=self.blobs.path_of(row.path))
        return found

    def changes_since(self, folder_id: int, modseq: int) -> Changes:
        """RFC 7162 §3.1.4.1 / §3.2.5: messages with MODSEQ above `modseq`, and UIDs expunged since.

        The expunge log keeps entries for `prune_expunges`' retention only: for a `modseq`
        older than what was pruned, `vanished` is every UID below UIDNEXT that no longer
        exists (RFC 7162 §3.2.5.2, §3.2.6 allow that superset) and `log_complete` is false."""
        with self.db.read() as session:
            folder = session.get(Folder, folder_id)
            if folder is None:
                raise NoSuchFolder(f"no folder {folder_id}")
            messages = self._infos(session, folder_id, None, Message.modseq > modseq)
            complete = modseq >= (folder.expunges_pruned_modseq or 0)
            if complete:
                vanished = sorted(set(session.scalars(select(Expunge.uid).where(
                    Expunge.folder_id == folder_id, Expunge.modseq > modseq))))
            else:
                present = session.scalars(select(Message.uid).where(Message.folder_id == folder_id)
                                          .order_by(Message.uid))
                vanished = _missing_uids(present, folder.uidnext)
            return Changes(messages=messages, vanished=vanished, highestmodseq=folder.highestmodseq,
                           uidnext=folder.uidnext, log_complete=complete)
