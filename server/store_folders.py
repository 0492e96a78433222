"""Folder management of the mailbox store (ring 1): a mixin of `courriel.store.Store`.

Owns folder names (`normalise_folder_name`, INBOX, the hierarchy delimiter), the default folders
of a new mailbox (`create_default_folders`), UIDVALIDITY allocation (`new_uidvalidity`), the folder
results (`FolderInfo`, `FolderStatus`) and the folder operations of `Store`: listing and lookup
(`list_folders`, `get_folder`, `folder`), `create_folder`, `delete_folder`, `rename_folder`,
`subscribe`, and `status` / `status_by_name`. The message side of DELETE and RENAME (locking folders,
moving or removing their messages) and the STATUS counts are `Store`'s (`_lock`, `_messages`,
`_move_rows`, `_remove_rows`, `_status`); every name here is re-exported by `courriel.store`, which
stays the only writer of mailbox tables and the module callers import.

Standards: RFC 3501 §5.1 (INBOX is case-insensitive, also as a superior; hierarchy delimiter),
§2.3.1.1 (UIDVALIDITY: a non-zero 32-bit value), §6.3.3 (CREATE with missing superiors), §6.3.4
(DELETE: not INBOX, not with inferiors), §6.3.5 (RENAME: inferiors follow, superiors are created,
the INBOX rule), §6.3.6 / §6.3.7 (SUBSCRIBE, UNSUBSCRIBE), §6.3.10 (STATUS); RFC 7162 §3.1
(HIGHESTMODSEQ in STATUS), RFC 8438 (STATUS SIZE); RFC 6154 (special uses, \\Trash receives
the messages of a deleted folder).
Security: folder names come from clients: `normalise_folder_name` refuses control characters,
wildcards, empty levels and over-long names with `StoreError`, before any change.
Durability: every write is one transaction (`Database.write`); a commit that changed a folder
sends a `mailbox` hint (`Store._changed`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from courriel.models import DEFAULT_FOLDERS, Expunge, Folder, Mailbox, SpecialUse
from courriel.store_errors import FolderExists, NoSuchFolder, NoSuchMailbox, StoreError

INBOX = "INBOX"
DELIMITER = "/"


def new_uidvalidity() -> int:
    # RFC 3501 §2.3.1.1: UIDVALIDITY is a non-zero 32-bit value.
    return secrets.randbelow(2**31 - 1) + 1


def create_default_folders(session: Session, mailbox_id: int) -> None:
    """Create INBOX, Sent, Drafts, Trash and Spam for a new mailbox."""
    for name, special_use in DEFAULT_FOLDERS:
        session.add(Folder(mailbox_id=mailbox_id, name=name, special_use=special_use,
                           uidvalidity=new_uidvalidity(), uidnext=1, highestmodseq=1, subscribed=True))
    session.flush()


def normalise_folder_name(name: str) -> str:
    """Validate a folder name; RFC 3501 §5.1: INBOX is case-insensitive (also as a superior)."""
    if not isinstance(name, str) or not name or len(name) > 1000:
        raise StoreError("invalid folder name")
    if any(ord(c) < 32 or ord(c) == 127 or c in "*%" for c in name):
        raise StoreError(f"invalid character in folder name {name!r}")
    parts = name.split(DELIMITER)
    if any(part == "" for part in parts):
        raise StoreError(f"empty hierarchy level in folder name {name!r}")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return DELIMITER.join(parts)


def _superiors(name: str) -> list[str]:
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FolderInfo:
    id: int
    mailbox_id: int
    name: str
    parent_id: int | None
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    subscribed: bool
    has_children: bool = False


@dataclass(frozen=True)
class FolderStatus:
    """RFC 3501 §6.3.10 STATUS items (+ RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE)."""

    messages: int
    unseen: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int
    size: int
    deleted: int


def _folder_info(row: Folder, has_children: bool = False) -> FolderInfo:
    return FolderInfo(id=row.id, mailbox_id=row.mailbox_id, name=row.name, parent_id=row.parent_id,
                      special_use=row.special_use, uidvalidity=row.uidvalidity, uidnext=row.uidnext,
                      highestmodseq=row.highestmodseq, subscribed=row.subscribed, has_children=has_children)


# ----------------------------------------------------------------------------- folders


class FolderStore:
    """The folder operations of `Store` (which provides db, _changed, _lock, _messages, _move_rows,
    _remove_rows and _status)."""

    def list_folders(self, mailbox_id: int) -> list[FolderInfo]:
        with self.db.read() as session:
            rows = list(session.scalars(select(Folder).where(Folder.mailbox_id == mailbox_id).order_by(Folder.name)))
        parents = {row.parent_id for row in rows}
        return [_folder_info(row, row.id in parents) for row in rows]

    def get_folder(self, mailbox_id: int, name: str) -> FolderInfo:
        with self.db.read() as session:
            return self._named_folder(session, mailbox_id, name)[1]

    def _named_folder(self, session: Session, mailbox_id: int, name: str) -> tuple[Folder, FolderInfo]:
        name = normalise_folder_name(name)
        row = self._find(session, mailbox_id, name)
        if row is None:
            raise NoSuchFolder(f"no folder {name}")
        # Inferiors are looked up among the mailbox's folders (indexed), not in every folder.
        children = session.scalar(select(Folder.id).where(Folder.mailbox_id == mailbox_id,
                                                           Folder.parent_id == row.id).limit(1))
        return row, _folder_info(row, children is not None)

    def folder(self, folder_id: int) -> FolderInfo:
        with self.db.read() as session:
            row = session.get(Folder, folder_id)
            if row is None:
                raise NoSuchFolder(f"no folder {folder_id}")
            return _folder_info(row)

    @staticmethod
    def _find(session: Session, mailbox_id: int, name: str) -> Folder | None:
        return session.scalar(select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == name))

    def _create(self, session: Session, mailbox_id: int, name: str, special_use: str | None = None) -> Folder:
        """Create `name` and its missing superiors (RFC 3501 §6.3.3)."""
        parent_id = None
        for superior in _superiors(name):
            row = self._find(session, mailbox_id, superior)
            if row is None:
                row = Folder(mailbox_id=mailbox_id, name=superior, parent_id=parent_id,
                             uidvalidity=new_uidvalidity(), uidnext=1, highestmodseq=1, subscribed=True)
                session.add(row)
                session.flush()
            parent_id = row.id
        row = Folder(mailbox_id=mailbox_id, name=name, parent_id=parent_id, special_use=special_use,
                     uidvalidity=new_uidvalidity(), uidnext=1, highestmodseq=1, subscribed=True)
        session.add(row)
        session.flush()
        return row

    def create_folder(self, mailbox_id: int, name: str, special_use: str | None = None) -> FolderInfo:
        name = normalise_folder_name(name)
        if special_use is not None and special_use not in set(SpecialUse):
            raise StoreError(f"unknown special use {special_use}")
        with self.db.write() as session:
            if session.get(Mailbox, mailbox_id) is None:
                raise NoSuchMailbox(f"no mailbox {mailbox_id}")
            if self._find(session, mailbox_id, name) is not None:
                raise FolderExists(f"folder {name} exists")
            info = _folder_info(self._create(session, mailbox_id, name, special_use))
        self._changed(mailbox_id)
        return info

    def _trash(self, session: Session, mailbox_id: int) -> Folder:
        row = session.scalar(select(Folder).where(Folder.mailbox_id == mailbox_id,
                                                  Folder.special_use == SpecialUse.TRASH).order_by(Folder.id))
        if row is None:
            row = self._find(session, mailbox_id, "Trash") or self._create(session, mailbox_id, "Trash",
                                                                           SpecialUse.TRASH)
        return row

    def delete_folder(self, mailbox_id: int, name: str) -> None:
        """RFC 3501 §6.3.4 DELETE. INBOX cannot be deleted; a folder with inferiors is refused;
        its messages move to Trash (or are expunged when it is the Trash itself)."""
        name = normalise_folder_name(name)
        if name == INBOX:
            raise StoreError("INBOX cannot be deleted")
        with self.db.write() as session:
            row = self._find(session, mailbox_id, name)
            if row is None:
                raise NoSuchFolder(f"no folder {name}")
            if session.scalar(select(Folder.id).where(Folder.mailbox_id == mailbox_id,
                                                      Folder.parent_id == row.id).limit(1)) is not None:
                raise StoreError(f"folder {name} has inferior folders; delete them first")
            self._lock(session, row.id)
            messages = self._messages(session, row.id, None)
            if messages:
                trash = self._trash(session, mailbox_id)
                if trash.id == row.id:
                    self._remove_rows(session, row.id, messages)
                else:
                    self._move_rows(session, messages, row.id, trash.id)
            session.execute(delete(Expunge).where(Expunge.folder_id == row.id))
            session.execute(delete(Folder).where(Folder.id == row.id).execution_options(synchronize_session=False))
        self._changed(mailbox_id)

    def rename_folder(self, mailbox_id: int, old: str, new: str) -> FolderInfo:
        """RFC 3501 §6.3.5 RENAME: inferiors follow, missing superiors are created. Renaming INBOX
        moves its messages to the new folder and leaves INBOX empty (its inferiors stay)."""
        old, new = normalise_folder_name(old), normalise_folder_name(new)
        if new == INBOX or new.startswith(old + DELIMITER):
            raise StoreError(f"cannot rename {old} to {new}")
        with self.db.write() as session:
            row = self._find(session, mailbox_id, old)
            if row is None:
                raise NoSuchFolder(f"no folder {old}")
            if self._find(session, mailbox_id, new) is not None:
                raise FolderExists(f"folder {new} exists")
            if old == INBOX:
                target = self._create(session, mailbox_id, new)
                self._lock(session, row.id, target.id)
                messages = self._messages(session, row.id, None)
                if messages:
                    self._move_rows(session, messages, row.id, target.id)
                session.refresh(target)
                info = _folder_info(target)
            else:
                parent_id = None
                superiors = _superiors(new)
                if superiors:
                    parent = self._find(session, mailbox_id, superiors[-1])
                    if parent is None:
                        parent = self._create(session, mailbox_id, superiors[-1])
                    parent_id = parent.id
                inferiors = session.scalars(select(Folder).where(Folder.mailbox_id == mailbox_id,
                                                                 Folder.name.startswith(old + DELIMITER,
                                                                                        autoescape=True)))
                for inferior in inferiors:
                    if not inferior.name.startswith(old + DELIMITER):
                        continue  # LIKE ignores case on SQLite
                    inferior.name = new + inferior.name[len(old):]
                row.name = new
                row.parent_id = parent_id
                session.flush()
                info = _folder_info(row)
        self._changed(mailbox_id)
        return info

    def subscribe(self, mailbox_id: int, name: str, subscribed: bool = True) -> None:
        """RFC 3501 §6.3.6 SUBSCRIBE / §6.3.7 UNSUBSCRIBE (existing folders only)."""
        name = normalise_folder_name(name)
        with self.db.write() as session:
            result = session.execute(update(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
                                     .values(subscribed=subscribed).execution_options(synchronize_session=False))
            if not result.rowcount:
                raise NoSuchFolder(f"no folder {name}")

    def status(self, folder_id: int) -> FolderStatus:
        """RFC 3501 §6.3.10 STATUS counts (unseen: messages without \\Seen)."""
        with self.db.read() as session:
            folder = session.get(Folder, folder_id)
            if folder is None:
                raise NoSuchFolder(f"no folder {folder_id}")
            return self._status(session, folder)

    def status_by_name(self, mailbox_id: int, name: str) -> tuple[FolderInfo, FolderStatus]:
        """`get_folder` and `status` in one read transaction (IMAP STATUS, which clients poll)."""
        with self.db.read() as session:
            row, info = self._named_folder(session, mailbox_id, name)
            return info, self._status(session, row)
