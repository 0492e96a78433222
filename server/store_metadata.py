"""IMAP METADATA entries of the mailbox store (ring 1): a mixin of `courriel.store.Store`.

Owns the `metadata_entries` rows: reading the entries of one folder or of the server as one
mailbox sees it (`metadata_entries`), and setting or removing several in one transaction
(`set_metadata`) with the per-target entry limit (`MetadataTooMany`). A folder's entries belong to
the folder row: RENAME keeps them (the row keeps its id) and DELETE removes them (the foreign key
cascades), as RFC 5464 §3.2 asks. Entry names arrive validated and lower-cased
(`courriel.imap.protocol.metadata.normalise_entry`); which entries a user may write is the
session's rule (`courriel.imap.session_metadata`).

Standards: RFC 5464 §3 (entries per mailbox and per server, /private and /shared), §4.3
(SETMETADATA: all or nothing; NIL removes), §4.3 [METADATA TOOMANY].
Security: values are opaque bytes, bounded by the caller; the count per target is bounded here.
Durability: `set_metadata` is one write transaction.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from courriel.models import MetadataEntry
from courriel.store_errors import StoreError
from courriel.store_folders import FolderInfo

MAX_ENTRIES = 100  # entries per folder, and on the server, for one mailbox (RFC 5464 §4.3 TOOMANY)


class MetadataTooMany(StoreError):
    """The change would leave more than the allowed number of entries (RFC 5464 [METADATA TOOMANY])."""


class MetadataStore:
    """The METADATA operations of `Store` (which provides db and `_named_folder`)."""

    def _metadata_target(self, session: Session, mailbox_id: int, folder: str) -> tuple[FolderInfo | None, int | None]:
        """"" is the server (folder_id NULL), else the named folder (NoSuchFolder when absent)."""
        if folder == "":
            return None, None
        info = self._named_folder(session, mailbox_id, folder)[1]
        return info, info.id

    @staticmethod
    def _entries_of(session: Session, mailbox_id: int, folder_id: int | None) -> dict[str, bytes]:
        where = (MetadataEntry.folder_id.is_(None) if folder_id is None else MetadataEntry.folder_id == folder_id)
        rows = session.execute(select(MetadataEntry.name, MetadataEntry.value)
                               .where(MetadataEntry.mailbox_id == mailbox_id, where))
        return {name: bytes(value) for name, value in rows}

    def metadata_entries(self, mailbox_id: int, folder: str) -> tuple[FolderInfo | None, dict[str, bytes]]:
        """The folder (None for the server "") and its stored entries, name → value."""
        with self.db.read() as session:
            info, folder_id = self._metadata_target(session, mailbox_id, folder)
            return info, self._entries_of(session, mailbox_id, folder_id)

    def set_metadata(self, mailbox_id: int, folder: str, changes: list[tuple[str, bytes | None]],
                     max_entries: int = MAX_ENTRIES) -> None:
        """Set (value bytes) or remove (None) entries of a folder or of the server, all or nothing."""
        with self.db.write() as session:
            _info, folder_id = self._metadata_target(session, mailbox_id, folder)
            stored = self._entries_of(session, mailbox_id, folder_id)
            after = dict(stored)
            for name, value in changes:
                if value is None:
                    after.pop(name, None)
                else:
                    after[name] = value
            if len(after) > max_entries and len(after) > len(stored):
                raise MetadataTooMany(f"at most {max_entries} entries")
            where = [MetadataEntry.mailbox_id == mailbox_id,
                     MetadataEntry.folder_id.is_(None) if folder_id is None else MetadataEntry.folder_id == folder_id]
            changed = [name for name in {n for n, _ in changes} if stored.get(name) != after.get(name)]
            if changed:
                session.execute(delete(MetadataEntry).where(*where, MetadataEntry.name.in_(changed))
                                .execution_options(synchronize_session=False))
                session.add_all(MetadataEntry(mailbox_id=mailbox_id, folder_id=folder_id, name=name,
                                              value=after[name]) for name in changed if name in after)
