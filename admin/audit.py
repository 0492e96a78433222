"""The audit log of administrative changes: who, what, when, from where.

Owns the `audit_log` table: `record` appends one entry after a change succeeded (the JSON API
and the web console call it for every change they make), `entries` reads them newest first
for the console and the API.

Security: entries hold names, addresses and actions, never a password, a key or a token;
`detail` is free text chosen by the caller and must not carry secrets (`record` drops any
detail key that looks like one as a second line of defence).
Durability: one short write transaction per entry.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

from sqlalchemy import select

from courriel.db import Database
from courriel.models import AuditEntry, utcnow

MAX_LIMIT = 500
SECRET_WORDS = ("password", "token", "secret", "key_value", "private")


@dataclass(frozen=True)
class Actor:
    """Who asks: the account name (user name, mailbox address or `key:<prefix>`), its role,
    and the client address the request came from."""

    name: str
    role: str
    client_address: str | None = None


@dataclass(frozen=True)
class AuditInfo:
    id: int
    at: dt.datetime
    actor: str
    actor_role: str
    client_address: str | None
    action: str
    target: str
    detail: str

    def as_dict(self) -> dict:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


def _clean_detail(detail: dict | None) -> str:
    if not detail:
        return ""
    kept = {k: v for k, v in detail.items() if not any(word in k.lower() for word in SECRET_WORDS)}
    return json.dumps(kept, sort_keys=True, default=str)[:4000]


def record(db: Database, actor: Actor, action: str, target: str = "", detail: dict | None = None,
           now: dt.datetime | None = None) -> None:
    """Append one entry (after the change it describes has been committed)."""
    with db.write() as session:
        session.add(AuditEntry(
            at=now or utcnow(), actor=actor.name[:320], actor_role=actor.role[:16],
            client_address=(actor.client_address or None) and actor.client_address[:64],
            action=action[:64], target=(target or "")[:320], detail=_clean_detail(detail),
        ))


def entries(db: Database, limit: int = 100, before_id: int | None = None) -> list[AuditInfo]:
    """Entries newest first; `before_id` pages back through older ones."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    with db.read() as session:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(AuditEntry.id < before_id)
        return [
            AuditInfo(row.id, row.at, row.actor, row.actor_role, row.client_address, row.action, row.target,
                      row.detail)
            for row in session.scalars(query)
        ]
