"""Domains: add, list, set the default and the catch-all, remove.

Standards: RFC 5890/5891 (IDNA2008; names are stored as lower-case A-labels).
Security: validates operator input; the verification token is random (proves control of
the domain through a DNS TXT record, checked by `courriel.dns`).
Durability: each call is one database transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass

from sqlalchemy import func, select, update

from courriel.admin.services import lookups
from courriel.admin.services.errors import Conflict, Duplicate, NotFound
from courriel.db import Database
from courriel.models import Alias, Domain, Mailbox, MailGroup
from courriel.registry import Address


@dataclass(frozen=True)
class DomainInfo:
    name: str  # A-label
    unicode_name: str
    is_default: bool
    verification_token: str
    verified: bool
    catch_all: str | None
    mailboxes: int

    def as_dict(self) -> dict:
        return asdict(self)


def _info(session, row: Domain) -> DomainInfo:
    count = session.scalar(select(func.count(Mailbox.id)).where(Mailbox.domain_id == row.id)) or 0
    return DomainInfo(
        name=row.name,
        unicode_name=Address("x", row.name).unicode_domain,
        is_default=bool(row.is_default),
        verification_token=row.verification_token,
        verified=row.verified_at is not None,
        catch_all=row.catch_all,
        mailboxes=count,
    )


def _catch_all_target(session, name: str, target: str | None) -> str | None:
    if target is None or target == "":
        return None
    parsed = lookups.address(target, "catch-all address")
    if parsed.domain == name:
        # A catch-all inside its own domain must name an existing mailbox, alias or group,
        # otherwise every unknown address would loop back to the catch-all.
        key = str(parsed)
        if not any(
            session.scalar(select(model.id).where(model.address == key)) is not None
            for model in (Mailbox, Alias, MailGroup)
        ):
            raise NotFound(f"catch-all target {key} does not exist")
    return str(parsed)


def add_domain(db: Database, name: str, *, is_default: bool = False, catch_all: str | None = None) -> DomainInfo:
    key = lookups.domain_name(name)
    with lookups.writing(db) as session:
        if session.scalar(select(Domain.id).where(Domain.name == key)) is not None:
            raise Duplicate(f"domain {key} already exists")
        target = _catch_all_target(session, key, catch_all)
        if is_default:
            session.execute(update(Domain).values(is_default=False))
        row = Domain(name=key, verification_token=secrets.token_hex(16), is_default=is_default, catch_all=target)
        session.add(row)
        session.flush()
        return _info(session, row)


def list_domains(db: Database) -> list[DomainInfo]:
    with db.read() as session:
        return [_info(session, row) for row in session.scalars(select(Domain).order_by(Domain.name))]


def get_domain(db: Database, name: str) -> DomainInfo:
    key = lookups.domain_name(name)
    with db.read() as session:
        return _info(session, lookups.domain(session, key))


def set_default_domain(db: Database, name: str) -> DomainInfo:
    key = lookups.domain_name(name)
    with lookups.writing(db) as session:
        row = lookups.domain(session, key)
        session.execute(update(Domain).where(Domain.id != row.id).values(is_default=False))
        row.is_default = True
        session.flush()
        return _info(session, row)


def set_catch_all(db: Database, name: str, target: str | None) -> DomainInfo:
    """Set (or clear with None) the address that receives mail for unknown local parts."""
    key = lookups.domain_name(name)
    with lookups.writing(db) as session:
        row = lookups.domain(session, key)
        row.catch_all = _catch_all_target(session, key, target)
        session.flush()
        return _info(session, row)


def remove_domain(db: Database, name: str) -> None:
    """Remove a domain with no mailboxes; its aliases and groups go with it."""
    key = lookups.domain_name(name)
    with lookups.writing(db) as session:
        row = lookups.domain(session, key)
        count = session.scalar(select(func.count(Mailbox.id)).where(Mailbox.domain_id == row.id)) or 0
        if count:
            raise Conflict(f"domain {key} still has {count} mailbox(es); remove them first", "in_use")
        for model in (Alias, MailGroup):
            for item in session.scalars(select(model).where(model.domain_id == row.id)):
                session.delete(item)
        session.flush()
        session.delete(row)
