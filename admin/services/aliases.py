"""Aliases: an address on a local domain that forwards to one or more local or external targets.

Security: validates operator input; a target may not be the alias itself (other loops are
cut by `courriel.registry.resolve`, which never hangs on them).
Durability: each call is one database transaction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from courriel.admin.services import lookups
from courriel.admin.services.errors import InvalidInput, NotFound
from courriel.db import Database
from courriel.models import Alias, AliasTarget

MAX_TARGETS = 1000


@dataclass(frozen=True)
class AliasInfo:
    address: str
    domain: str
    targets: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _info(session, row: Alias) -> AliasInfo:
    targets = list(session.scalars(select(AliasTarget.target).where(AliasTarget.alias_id == row.id)
                                   .order_by(AliasTarget.id)))
    return AliasInfo(row.address, row.address.rpartition("@")[2], targets)


def _targets(key: str, targets: list[str]) -> list[str]:
    if isinstance(targets, str):
        targets = [targets]
    if not targets:
        raise InvalidInput("an alias needs at least one target", "invalid_target")
    if len(targets) > MAX_TARGETS:
        raise InvalidInput(f"an alias has at most {MAX_TARGETS} targets", "invalid_target")
    found: dict[str, None] = {}
    for target in targets:
        canonical = str(lookups.address(target, "target"))
        if canonical == key:
            raise InvalidInput(f"alias {key} cannot point to itself", "invalid_target")
        found.setdefault(canonical, None)
    return list(found)


def add_alias(db: Database, address: str, targets: list[str]) -> AliasInfo:
    parsed = lookups.address(address)
    key = str(parsed)
    wanted = _targets(key, targets)
    with lookups.writing(db) as session:
        domain = lookups.ensure_local_domain(session, parsed)
        lookups.ensure_address_free(session, key)
        row = Alias(domain_id=domain.id, address=key)
        session.add(row)
        session.flush()
        session.add_all(AliasTarget(alias_id=row.id, target=t) for t in wanted)
        session.flush()
        return _info(session, row)


def list_aliases(db: Database, *, domain: str | None = None) -> list[AliasInfo]:
    domain_key = lookups.domain_name(domain) if domain else None
    with db.read() as session:
        query = select(Alias).order_by(Alias.address)
        if domain_key:
            query = query.where(Alias.domain_id == lookups.domain(session, domain_key).id)
        return [_info(session, row) for row in session.scalars(query)]


def _alias(session, key: str) -> Alias:
    row = session.scalar(select(Alias).where(Alias.address == key))
    if row is None:
        raise NotFound(f"alias {key} does not exist")
    return row


def set_alias_targets(db: Database, address: str, targets: list[str]) -> AliasInfo:
    """Replace the targets of an existing alias."""
    key = str(lookups.address(address))
    wanted = _targets(key, targets)
    with lookups.writing(db) as session:
        row = _alias(session, key)
        for target in session.scalars(select(AliasTarget).where(AliasTarget.alias_id == row.id)):
            session.delete(target)
        session.flush()
        session.add_all(AliasTarget(alias_id=row.id, target=t) for t in wanted)
        session.flush()
        return _info(session, row)


def remove_alias(db: Database, address: str) -> None:
    key = str(lookups.address(address))
    with lookups.writing(db) as session:
        session.delete(_alias(session, key))
