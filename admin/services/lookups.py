"""Input parsing and row look-ups shared by the service modules; each raises a ServiceError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from courriel.admin.services.errors import Duplicate, InvalidInput, NotFound
from courriel.db import Database
from courriel.models import Alias, Domain, Mailbox, MailGroup, User
from courriel.registry import Address, AddressError, parse_address, validate_mail_domain


def domain_name(text: str) -> str:
    try:
        return validate_mail_domain(text)
    except AddressError as exc:
        raise InvalidInput(str(exc), "invalid_domain") from None


def address(text: str, what: str = "address") -> Address:
    try:
        return parse_address(text)
    except AddressError as exc:
        raise InvalidInput(f"invalid {what} {text!r}: {exc}", "invalid_address") from None


def domain(session: Session, name: str) -> Domain:
    row = session.scalar(select(Domain).where(Domain.name == name))
    if row is None:
        raise NotFound(f"domain {name} does not exist")
    return row


def mailbox(session: Session, key: str) -> Mailbox:
    row = session.scalar(select(Mailbox).where(Mailbox.address == key))
    if row is None:
        raise NotFound(f"mailbox {key} does not exist")
    return row


def mailbox_at(session: Session, text: str) -> Mailbox:
    """The mailbox named by an address as a user typed it (validated, then normalised)."""
    return mailbox(session, str(address(text, "mailbox address")))


def user(session: Session, name: str) -> User:
    row = session.scalar(select(User).where(User.name == name.strip().lower()))
    if row is None:
        raise NotFound(f"user {name} does not exist")
    return row


def ensure_address_free(session: Session, key: str) -> None:
    """Refuse an address already used by a mailbox, an alias or a group."""
    for model, kind in ((Mailbox, "mailbox"), (Alias, "alias"), (MailGroup, "group")):
        if session.scalar(select(model.id).where(model.address == key)) is not None:
            raise Duplicate(f"{key} is already a {kind}")


def ensure_local_domain(session: Session, parsed: Address) -> Domain:
    row = session.scalar(select(Domain).where(Domain.name == parsed.domain))
    if row is None:
        raise NotFound(f"domain {parsed.domain} is not a local domain (add it first)")
    return row


@contextmanager
def writing(db: Database) -> Iterator[Session]:
    """`db.write()`, with a unique-key race against a concurrent writer reported as Duplicate
    (the checks above run first, so this only happens when two requests cross)."""
    try:
        with db.write() as session:
            yield session
    except IntegrityError:
        raise Duplicate("a concurrent change conflicts with this one; nothing was written, try again") from None
