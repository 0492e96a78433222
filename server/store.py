"""The mailbox store: folders and messages (the only writer of mailbox tables)."""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from courriel.models import DEFAULT_FOLDERS, Folder


def new_uidvalidity() -> int:
    # RFC 3501 §2.3.1.1: UIDVALIDITY is a non-zero 32-bit value.
    return secrets.randbelow(2**31 - 1) + 1


def create_default_folders(session: Session, mailbox_id: int) -> None:
    """Create INBOX, Sent, Drafts, Trash and Spam for a new mailbox."""
    for name, special_use in DEFAULT_FOLDERS:
        session.add(Folder(mailbox_id=mailbox_id, name=name, special_use=special_use,
                           uidvalidity=new_uidvalidity(), uidnext=1, highestmodseq=1, subscribed=True))
    session.flush()
