"""Contacts (ring 1): the address book of a mailbox's owner, added by hand or learnt from the
recipients of mail the mailbox sends.

The address book of a mailbox is shared by every mailbox of the same console user (a person
with two addresses has one address book); a mailbox without an owner has its own.

Standards: RFC 5321 §2.4 (the local part is compared as given, lower-cased like the registry).
Security: addresses come from users and from submitted mail; they are validated with
`courriel.registry.parse_address` and stored lower case; invalid ones are skipped when learnt
and refused when added by hand.
Durability: one transaction per call (`learn_recipients` may share the caller's session).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from courriel import registry
from courriel.db import Database
from courriel.models import Contact, GroupMember, Mailbox, MailGroup

MAX_LEARNT_PER_CALL = 100


def clean_address(text: str) -> str | None:
    """The canonical lower-case form of an address, or None when it is not one."""
    try:
        return registry.canonical_address(text).lower()
    except registry.AddressError:
        return None


def book_mailbox_ids(session: Session, mailbox_id: int) -> list[int]:
    """The mailboxes sharing an address book with `mailbox_id` (same console user)."""
    user_id = session.scalar(select(Mailbox.user_id).where(Mailbox.id == mailbox_id))
    if user_id is None:
        return [mailbox_id]
    return sorted(set(session.scalars(select(Mailbox.id).where(Mailbox.user_id == user_id))) | {mailbox_id})


def in_contacts(session: Session, mailbox_id: int, address: str) -> bool:
    wanted = clean_address(address)
    if wanted is None:
        return False
    found = session.scalar(select(func.count()).select_from(Contact).where(
        Contact.mailbox_id.in_(book_mailbox_ids(session, mailbox_id)), Contact.address == wanted))
    return bool(found)


def own_addresses(session: Session, mailbox_id: int) -> set[str]:
    """The mailbox's address, its aliases and every group it belongs to (lower case)."""
    owned = {a.lower() for a in registry.addresses_owned_by(session, mailbox_id)}
    groups = session.scalars(select(MailGroup.address).join(GroupMember, GroupMember.group_id == MailGroup.id)
                             .where(GroupMember.mailbox_id == mailbox_id))
    owned.update(g.lower() for g in groups)
    return owned


def learn(session: Session, mailbox_id: int, addresses: Iterable[str]) -> int:
    """Add the addresses not yet in the address book as learnt contacts; returns how many."""
    wanted: list[str] = []
    for text in list(addresses)[:MAX_LEARNT_PER_CALL]:
        address = clean_address(text)
        if address is not None and address not in wanted:
            wanted.append(address)
    if not wanted:
        return 0
    owned = own_addresses(session, mailbox_id)
    known = set(session.scalars(select(Contact.address).where(
        Contact.mailbox_id.in_(book_mailbox_ids(session, mailbox_id)), Contact.address.in_(wanted))))
    added = 0
    for address in wanted:
        if address in known or address in owned:
            continue
        session.add(Contact(mailbox_id=mailbox_id, address=address, name="", source="learnt"))
        added += 1
    session.flush()
    return added


def learn_recipients(db: Database | Session, mailbox_id: int, addresses: Iterable[str]) -> int:
    """For the submission path: remember the recipients of mail `mailbox_id` sent (best effort:
    a concurrent insert of the same address is not an error). Returns how many were added."""
    addresses = list(addresses)
    if isinstance(db, Session):
        return learn(db, mailbox_id, addresses)
    try:
        with db.write() as session:
            return learn(session, mailbox_id, addresses)
    except IntegrityError:  # another process learnt one of them first: nothing to add
        return 0
