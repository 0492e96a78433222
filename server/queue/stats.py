"""Queue counters for operators and the metrics endpoint (ring 1, read-only).

Owns plain functions that read the queue tables: the number of messages per queue state, the
age of the oldest message, and when the next deferred message is due (the runner sleeps until
then). The admin role's /metrics can publish them as Prometheus gauges
(`courriel_queue_messages{state=...}`, `courriel_queue_oldest_message_age_seconds`).

Standards: none. Security: none (no input). Durability: reads only.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from courriel.db import Database
from courriel.models import QueueMessage, QueueState


def _as_utc(value) -> dt.datetime | None:
    """An aggregate's datetime: SQLite returns text or naive values (stored as UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


STATES = (QueueState.INCOMING, QueueState.ACTIVE, QueueState.DEFERRED, QueueState.HOLD, QueueState.CORRUPT)


def size_by_state(db: Database) -> dict[str, int]:
    """Messages in the queue per state; every state is present (0 when empty)."""
    with db.read() as session:
        rows = session.execute(select(QueueMessage.state, func.count()).group_by(QueueMessage.state)).all()
    counts = {str(state): 0 for state in STATES}
    for state, count in rows:
        counts[str(state)] = int(count)
    return counts


def oldest_age_seconds(db: Database, now: dt.datetime | None = None) -> float:
    """Seconds since the oldest queued message arrived (0 for an empty queue)."""
    now = now or dt.datetime.now(dt.UTC)
    with db.read() as session:
        oldest = _as_utc(session.scalar(select(func.min(QueueMessage.received_at))))
    if oldest is None:
        return 0.0
    return max(0.0, (now - oldest).total_seconds())


def oldest_age_by_state(db: Database, now: dt.datetime | None = None) -> dict[str, float]:
    """Seconds since the oldest message of each state arrived; every state present (0 when none)."""
    now = now or dt.datetime.now(dt.UTC)
    with db.read() as session:
        rows = session.execute(
            select(QueueMessage.state, func.min(QueueMessage.received_at)).group_by(QueueMessage.state)
        ).all()
    ages = {str(state): 0.0 for state in STATES}
    for state, received in rows:
        received = _as_utc(received)
        if received is not None:
            ages[str(state)] = max(0.0, (now - received).total_seconds())
    return ages


def next_due(db: Database) -> dt.datetime | None:
    """The earliest next attempt of a message waiting in the queue (incoming or deferred)."""
    with db.read() as session:
        value = session.scalar(
            select(func.min(QueueMessage.next_attempt_at))
            .where(QueueMessage.state.in_((QueueState.INCOMING, QueueState.DEFERRED)))
        )
    return _as_utc(value)


def earliest_lease_expiry(db: Database) -> dt.datetime | None:
    """When the first lease held by a vanished runner expires (it is due again then)."""
    with db.read() as session:
        value = session.scalar(
            select(func.min(QueueMessage.lease_expires_at)).where(QueueMessage.state == QueueState.ACTIVE)
        )
    return _as_utc(value)
