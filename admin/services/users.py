"""Console accounts: administrators and users who own mailboxes.

Security: passwords are checked against the policy and stored as argon2id hashes only; a
generated password is returned once to the caller and never stored in clear.
Durability: each call is one database transaction.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from sqlalchemy import func, select

from courriel import passwords
from courriel.admin.services import lookups
from courriel.admin.services.errors import Conflict, Duplicate, InvalidInput
from courriel.db import Database
from courriel.models import Mailbox, Role, User

USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_DISPLAY_NAME = 200


@dataclass(frozen=True)
class UserInfo:
    name: str
    display_name: str
    email: str | None
    role: str
    mailboxes: int

    def as_dict(self) -> dict:
        return asdict(self)


def _info(session, row: User) -> UserInfo:
    count = session.scalar(select(func.count(Mailbox.id)).where(Mailbox.user_id == row.id)) or 0
    return UserInfo(row.name, row.display_name, row.email, row.role, count)


def user_name(text: str) -> str:
    name = (text or "").strip().lower()
    if not USER_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid user name {text!r}: use 1-64 lower-case letters, digits, '.', '_' or '-'", "invalid_name"
        )
    return name


def clean_display_name(text: str | None) -> str:
    value = (text or "").strip()
    if len(value) > MAX_DISPLAY_NAME or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput("display name must be at most 200 printable characters", "invalid_name")
    return value


def chosen_password(password: str | None, policy: passwords.PasswordPolicy) -> tuple[str, str | None]:
    """(password to hash, generated password to show once or None)."""
    if password is None:
        generated = passwords.generate(policy=policy)
        return generated, generated
    problems = policy.problems(password)
    if problems:
        raise InvalidInput("password " + "; ".join(problems), "invalid_password")
    return password, None


def add_user(
    db: Database,
    hasher: passwords.PasswordHasher,
    policy: passwords.PasswordPolicy,
    name: str,
    *,
    role: str = Role.USER,
    email: str | None = None,
    display_name: str | None = None,
    password: str | None = None,
) -> tuple[UserInfo, str | None]:
    """Create a console account; returns it and the generated password (None if given)."""
    key = user_name(name)
    if role not in (Role.ADMIN, Role.USER):
        raise InvalidInput(f"invalid role {role!r}: admin or user", "invalid_role")
    profile = str(lookups.address(email, "e-mail address")) if email else None
    shown = clean_display_name(display_name) or key
    clear, generated = chosen_password(password, policy)
    with lookups.writing(db) as session:
        if session.scalar(select(User.id).where(User.name == key)) is not None:
            raise Duplicate(f"user {key} already exists")
        row = User(name=key, display_name=shown, email=profile, role=str(role), password_hash=hasher.hash(clear))
        session.add(row)
        session.flush()
        return _info(session, row), generated


def list_users(db: Database) -> list[UserInfo]:
    with db.read() as session:
        return [_info(session, row) for row in session.scalars(select(User).order_by(User.name))]


def get_user(db: Database, name: str) -> UserInfo:
    key = user_name(name)
    with db.read() as session:
        return _info(session, lookups.user(session, key))


def set_user_password(
    db: Database, hasher: passwords.PasswordHasher, policy: passwords.PasswordPolicy, name: str,
    password: str | None = None,
) -> str | None:
    """Set a console password; returns the generated one when `password` is None."""
    key = user_name(name)
    clear, generated = chosen_password(password, policy)
    with lookups.writing(db) as session:
        lookups.user(session, key).password_hash = hasher.hash(clear)
    return generated


def remove_user(db: Database, name: str) -> None:
    """Remove an account that owns no mailbox; the last administrator cannot be removed."""
    key = user_name(name)
    with lookups.writing(db) as session:
        row = lookups.user(session, key)
        count = session.scalar(select(func.count(Mailbox.id)).where(Mailbox.user_id == row.id)) or 0
        if count:
            raise Conflict(f"user {key} still owns {count} mailbox(es); remove them first", "in_use")
        if row.role == Role.ADMIN:
            admins = session.scalar(select(func.count(User.id)).where(User.role == Role.ADMIN)) or 0
            if admins <= 1:
                raise Conflict("the last administrator cannot be removed", "in_use")
        session.delete(row)
