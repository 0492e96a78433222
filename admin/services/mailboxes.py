"""Mailboxes: add (with its default folders), list, set password, quota, enable/disable, remove.

Standards: RFC 9208 §5.1 (STORAGE: the byte limit `quota_bytes`), §5.2 (MESSAGE: the message
count limit `quota_messages`); 0 is unlimited for both.

Security: passwords are checked against the policy and stored as argon2id hashes only; a
generated password is returned once to the caller and never stored in clear.
Durability: each call is one database transaction; a new mailbox and its folders
(`courriel.store.create_default_folders`) commit together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from courriel import passwords, store
from courriel.admin.services import lookups
from courriel.admin.services.errors import Conflict, InvalidInput
from courriel.admin.services.users import chosen_password, clean_display_name, user_name
from courriel.db import Database
from courriel.models import Domain, Mailbox, Role, User

if TYPE_CHECKING:
    from courriel.admin.services.notices import Notifier

DEFAULT_MAX_PER_USER_PER_DOMAIN = 2
MAX_QUOTA_BYTES = 2**62
MAX_QUOTA_MESSAGES = 2**62


@dataclass(frozen=True)
class MailboxInfo:
    id: int
    address: str
    domain: str
    user: str | None
    display_name: str
    quota_bytes: int
    enabled: bool
    quota_messages: int = 0  # RFC 9208 §5.2 MESSAGE limit; 0: unlimited

    def as_dict(self) -> dict:
        return asdict(self)


def _info(session, row: Mailbox) -> MailboxInfo:
    owner = session.scalar(select(User.name).where(User.id == row.user_id)) if row.user_id else None
    return MailboxInfo(row.id, row.address, row.domain.name, owner, row.display_name, row.quota_bytes, row.enabled,
                       row.quota_messages)


def max_per_user_per_domain(config) -> int:
    return int(config.get("mailboxes", "max_per_user_per_domain"))


def _quota(quota_bytes: int) -> int:
    if isinstance(quota_bytes, bool) or not isinstance(quota_bytes, int) or not 0 <= quota_bytes <= MAX_QUOTA_BYTES:
        raise InvalidInput("quota must be a whole number of bytes, 0 for unlimited", "invalid_quota")
    return quota_bytes


def _message_quota(quota_messages: int) -> int:
    if (isinstance(quota_messages, bool) or not isinstance(quota_messages, int)
            or not 0 <= quota_messages <= MAX_QUOTA_MESSAGES):
        raise InvalidInput("message quota must be a whole number of messages, 0 for unlimited", "invalid_quota")
    return quota_messages


def parse_message_count(text: str) -> int:
    """`1000`, `0` → a message quota (for the CLI and forms)."""
    value = (text or "").strip()
    if not value.isdigit() or not value.isascii():
        raise InvalidInput(f"invalid message count {text!r}: use a whole number, 0 for unlimited", "invalid_quota")
    return _message_quota(int(value))


def parse_size(text: str) -> int:
    """`500M`, `2G`, `1048576`, `0` → bytes (for the CLI and forms)."""
    value = (text or "").strip().upper().removesuffix("B")
    factor = 1
    for suffix, multiple in (("K", 1024), ("M", 1024**2), ("G", 1024**3), ("T", 1024**4)):
        if value.endswith(suffix):
            value, factor = value[:-1], multiple
            break
    if not value.isdigit():
        raise InvalidInput(f"invalid size {text!r}: use bytes or a K/M/G/T suffix", "invalid_quota")
    return _quota(int(value) * factor)


def add_mailbox(
    db: Database,
    hasher: passwords.PasswordHasher,
    policy: passwords.PasswordPolicy,
    address: str,
    *,
    user: str | None = None,
    password: str | None = None,
    quota_bytes: int = 0,
    quota_messages: int = 0,
    display_name: str | None = None,
    max_per_user: int = DEFAULT_MAX_PER_USER_PER_DOMAIN,
    notifier: Notifier | None = None,
) -> tuple[MailboxInfo, str | None]:
    """Create a mailbox (for `user` when given) on a local domain, with its default folders.

    After the commit, `notifier` (if given) mails the connection settings to the new mailbox
    and to its owner's profile address.

    Returns the mailbox and the generated password (None when `password` was given)."""
    parsed = lookups.address(address)
    owner_name = user_name(user) if user is not None else None
    shown = clean_display_name(display_name)
    quota = _quota(quota_bytes)
    message_quota = _message_quota(quota_messages)
    clear, generated = chosen_password(password, policy)
    key = str(parsed)
    with lookups.writing(db) as session:
        domain: Domain = lookups.ensure_local_domain(session, parsed)
        lookups.ensure_address_free(session, key)
        owner = lookups.user(session, owner_name) if owner_name else None
        if owner is not None and max_per_user > 0:
            count = session.scalar(
                select(func.count(Mailbox.id)).where(Mailbox.user_id == owner.id, Mailbox.domain_id == domain.id)
            ) or 0
            if count >= max_per_user:
                raise Conflict(
                    f"user {owner.name} already has {count} mailbox(es) on {domain.name} (limit {max_per_user})",
                    "limit_reached",
                )
        if not shown and owner is not None:
            shown = owner.display_name or owner.name
        row = Mailbox(
            domain_id=domain.id, local_part=parsed.local, address=key, user_id=owner.id if owner else None,
            display_name=shown, password_hash=hasher.hash(clear), quota_bytes=quota,
            quota_messages=message_quota, enabled=True,
        )
        session.add(row)
        session.flush()
        store.create_default_folders(session, row.id)
        info = _info(session, row)
    if notifier is not None:
        notifier.mailbox_created(info.address)
    return info, generated


def list_mailboxes(db: Database, *, domain: str | None = None, user: str | None = None) -> list[MailboxInfo]:
    domain_key = lookups.domain_name(domain) if domain else None
    owner_name = user_name(user) if user else None
    with db.read() as session:
        query = select(Mailbox).order_by(Mailbox.address)
        if domain_key:
            query = query.where(Mailbox.domain_id == lookups.domain(session, domain_key).id)
        if owner_name:
            query = query.where(Mailbox.user_id == lookups.user(session, owner_name).id)
        return [_info(session, row) for row in session.scalars(query)]


def get_mailbox(db: Database, address: str) -> MailboxInfo:
    key = str(lookups.address(address))
    with db.read() as session:
        return _info(session, lookups.mailbox(session, key))


def set_mailbox_password(
    db: Database, hasher: passwords.PasswordHasher, policy: passwords.PasswordPolicy, address: str,
    password: str | None = None, *, notifier: Notifier | None = None,
) -> str | None:
    """Set a mailbox password; returns the generated one when `password` is None.

    After the commit, `notifier` (if given) tells the mailbox and its owner about the change."""
    key = str(lookups.address(address))
    clear, generated = chosen_password(password, policy)
    with lookups.writing(db) as session:
        row = lookups.mailbox(session, key)
        row.password_hash = hasher.hash(clear)
    if notifier is not None:
        notifier.password_changed(key)
    return generated


def set_mailbox_enabled(db: Database, address: str, enabled: bool) -> MailboxInfo:
    key = str(lookups.address(address))
    with lookups.writing(db) as session:
        row = lookups.mailbox(session, key)
        row.enabled = bool(enabled)
        session.flush()
        return _info(session, row)


def set_mailbox_quota(db: Database, address: str, quota_bytes: int | None = None,
                      quota_messages: int | None = None) -> MailboxInfo:
    """Set the byte limit, the message limit, or both (None leaves a limit as it is; 0: unlimited)."""
    key = str(lookups.address(address))
    quota = _quota(quota_bytes) if quota_bytes is not None else None
    message_quota = _message_quota(quota_messages) if quota_messages is not None else None
    with lookups.writing(db) as session:
        row = lookups.mailbox(session, key)
        if quota is not None:
            row.quota_bytes = quota
        if message_quota is not None:
            row.quota_messages = message_quota
        session.flush()
        return _info(session, row)


def administrator_of(db: Database, mailbox_id: int) -> str | None:
    """The name of the administrator who owns this mailbox, or None (a user's or an unowned one):
    the IMAP role lets such a mailbox set quotas (RFC 9208 §4.1.3 SETQUOTA)."""
    with db.read() as session:
        return session.scalar(select(User.name).join(Mailbox, Mailbox.user_id == User.id)
                              .where(Mailbox.id == mailbox_id, User.role == Role.ADMIN))


def remove_mailbox(db: Database, address: str) -> None:
    """Remove a mailbox with its folders and messages (blob references dropped in the same
    transaction) and its group memberships. Aliases that point to it are left (they skip
    unknown targets)."""
    key = str(lookups.address(address))
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox(session, key)
        store.remove_mailbox_contents(session, mailbox.id)
        session.delete(mailbox)
