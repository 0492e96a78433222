"""Mail groups: an address on a local domain delivered to every member mailbox.

Members are local mailboxes; when `members_can_send` is set they may also use the group
address as sender (see `courriel.registry.addresses_owned_by`).
Security: validates operator input. Durability: each call is one database transaction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from courriel.admin.services import lookups
from courriel.admin.services.errors import Duplicate, InvalidInput, NotFound
from courriel.db import Database
from courriel.models import GroupMember, Mailbox, MailGroup


@dataclass(frozen=True)
class GroupInfo:
    address: str
    domain: str
    members_can_send: bool
    members: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _info(session, row: MailGroup) -> GroupInfo:
    members = list(session.scalars(
        select(Mailbox.address).join(GroupMember, GroupMember.mailbox_id == Mailbox.id)
        .where(GroupMember.group_id == row.id).order_by(Mailbox.address)
    ))
    return GroupInfo(row.address, row.address.rpartition("@")[2], bool(row.members_can_send), members)


def _member_keys(members: list[str]) -> list[str]:
    if isinstance(members, str):
        members = [members]
    found: dict[str, None] = {}
    for member in members:
        found.setdefault(str(lookups.address(member, "member address")), None)
    return list(found)


def _group(session, key: str) -> MailGroup:
    row = session.scalar(select(MailGroup).where(MailGroup.address == key))
    if row is None:
        raise NotFound(f"group {key} does not exist")
    return row


def _mailboxes(session, keys: list[str]) -> list[Mailbox]:
    return [lookups.mailbox(session, key) for key in keys]


def add_group(db: Database, address: str, members: list[str] = (), *, members_can_send: bool = True) -> GroupInfo:
    parsed = lookups.address(address)
    key = str(parsed)
    member_keys = _member_keys(list(members))
    with lookups.writing(db) as session:
        domain = lookups.ensure_local_domain(session, parsed)
        lookups.ensure_address_free(session, key)
        mailboxes = _mailboxes(session, member_keys)
        row = MailGroup(domain_id=domain.id, address=key, members_can_send=bool(members_can_send))
        session.add(row)
        session.flush()
        session.add_all(GroupMember(group_id=row.id, mailbox_id=m.id) for m in mailboxes)
        session.flush()
        return _info(session, row)


def list_groups(db: Database, *, domain: str | None = None) -> list[GroupInfo]:
    domain_key = lookups.domain_name(domain) if domain else None
    with db.read() as session:
        query = select(MailGroup).order_by(MailGroup.address)
        if domain_key:
            query = query.where(MailGroup.domain_id == lookups.domain(session, domain_key).id)
        return [_info(session, row) for row in session.scalars(query)]


def get_group(db: Database, address: str) -> GroupInfo:
    key = str(lookups.address(address))
    with db.read() as session:
        return _info(session, _group(session, key))


def add_group_members(db: Database, address: str, members: list[str]) -> GroupInfo:
    key = str(lookups.address(address))
    member_keys = _member_keys(members)
    if not member_keys:
        raise InvalidInput("name at least one member", "invalid_address")
    with lookups.writing(db) as session:
        row = _group(session, key)
        mailboxes = _mailboxes(session, member_keys)
        present = set(session.scalars(select(GroupMember.mailbox_id).where(GroupMember.group_id == row.id)))
        for mailbox in mailboxes:
            if mailbox.id in present:
                raise Duplicate(f"{mailbox.address} is already a member of {key}")
        session.add_all(GroupMember(group_id=row.id, mailbox_id=m.id) for m in mailboxes)
        session.flush()
        return _info(session, row)


def remove_group_members(db: Database, address: str, members: list[str]) -> GroupInfo:
    key = str(lookups.address(address))
    member_keys = _member_keys(members)
    if not member_keys:
        raise InvalidInput("name at least one member", "invalid_address")
    with lookups.writing(db) as session:
        row = _group(session, key)
        by_address = dict(session.execute(
            select(Mailbox.address, GroupMember).join(GroupMember, GroupMember.mailbox_id == Mailbox.id)
            .where(GroupMember.group_id == row.id)
        ).all())
        missing = [m for m in member_keys if m not in by_address]
        if missing:
            raise NotFound(f"not a member of {key}: {', '.join(missing)}")
        for member in member_keys:
            session.delete(by_address[member])
        session.flush()
        return _info(session, row)


def list_group_members(db: Database, address: str) -> list[str]:
    return get_group(db, address).members


def remove_group(db: Database, address: str) -> None:
    key = str(lookups.address(address))
    with lookups.writing(db) as session:
        session.delete(_group(session, key))
