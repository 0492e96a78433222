"""The spool: the single door for every new message, and the only writer of queue rows (ring 1).

Owns `accept` (inbound, submitted, DSNs, auto-replies all enter here) and every change of
`queue_messages` / `queue_recipients`: leases, per-recipient results, retries, the end of a
message's life in the queue, and the operator's read access and actions.

Message bodies are blobs (`courriel.blobs`): the queue entry holds one reference, each local
delivery adds its own, so a message to many local recipients is stored once.

Standards: RFC 5321 §4.5.4.1 (retry strategy is the scheduler's; here: next_attempt_at),
RFC 3461 §4.1–§4.4 (NOTIFY, ORCPT, RET, ENVID kept per message / recipient),
RFC 6152 (BODY=8BITMIME), RFC 6531 (SMTPUTF8).
Security: the envelope comes from SMTP clients; it is validated (lengths, states) before
anything is written, and invalid input raises `SpoolError` without side effects.
Durability: `accept` returns only after the body file is durable under its final name and the
rows are committed; any failure before that raises and leaves nothing visible (a file without
a committed row is removed by `BlobStore.collect`). Fault points for the crash tests:
`spool.accept.after_temp`, `.after_insert`, `.after_link`, `.after_commit`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from courriel import durable, notify
from courriel.blobs import BlobStore, Content
from courriel.db import Database
from courriel.models import QueueMessage, QueueRecipient, QueueState, RecipientState

SOURCES = frozenset({"mx", "submission", "local", "dsn"})
FINAL_STATES = frozenset({RecipientState.DELIVERED, RecipientState.RELAYED, RecipientState.BOUNCED})
RESULT_STATES = FINAL_STATES | {RecipientState.DEFERRED}
DUE_STATES = (QueueState.INCOMING, QueueState.DEFERRED)
DEFAULT_LEASE_SECONDS = 600


class SpoolError(ValueError):
    """Invalid envelope or unknown queue entry; nothing was changed."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_queue_id() -> str:
    """A short random upper-case hex id, like Postfix's short queue ids."""
    return secrets.token_hex(6).upper()


# ----------------------------------------------------------------------------- envelope


@dataclass(frozen=True)
class EnvelopeRecipient:
    address: str
    orcpt: str | None = None  # RFC 3461 §4.2, e.g. "rfc822;user@example.org"
    notify: str | None = None  # RFC 3461 §4.1: "NEVER" or a comma list of SUCCESS, FAILURE, DELAY
    mailbox_id: int | None = None  # local delivery target decided at RCPT time
    folder: str | None = None  # e.g. "Spam"; None: INBOX


@dataclass(frozen=True)
class Envelope:
    sender: str  # "" is the null reverse-path (RFC 5321 §4.5.5)
    recipients: tuple[EnvelopeRecipient, ...]
    source: str = "mx"  # mx | submission | local | dsn
    dsn_ret: str | None = None  # RFC 3461 §4.3: FULL | HDRS
    dsn_envid: str | None = None  # RFC 3461 §4.4
    body_type: str | None = None  # RFC 6152: 7BIT | 8BITMIME (RFC 3030: BINARYMIME)
    smtputf8: bool = False  # RFC 6531
    auth_user: str | None = None
    client_address: str | None = None
    client_helo: str | None = None

    def __post_init__(self):
        normalised = tuple(
            r if isinstance(r, EnvelopeRecipient) else EnvelopeRecipient(address=str(r)) for r in self.recipients
        )
        object.__setattr__(self, "recipients", normalised)

    def validate(self) -> None:
        def check(value: str | None, limit: int, what: str) -> None:
            if value is not None and (len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value)):
                raise SpoolError(f"invalid {what}: {value[:80]!r}")

        if not self.recipients:
            raise SpoolError("no recipients")
        if self.source not in SOURCES:
            raise SpoolError(f"unknown source {self.source!r}")
        if self.dsn_ret is not None and self.dsn_ret.upper() not in ("FULL", "HDRS"):
            raise SpoolError(f"invalid RET {self.dsn_ret!r}")
        check(self.sender, 320, "sender")
        check(self.dsn_envid, 100, "ENVID")
        check(self.body_type, 16, "BODY")
        check(self.auth_user, 320, "auth user")
        check(self.client_address, 64, "client address")
        check(self.client_helo, 255, "HELO name")
        for rcpt in self.recipients:
            if not rcpt.address:
                raise SpoolError("empty recipient address")
            check(rcpt.address, 320, "recipient")
            check(rcpt.orcpt, 500, "ORCPT")
            check(rcpt.notify, 40, "NOTIFY")
            if rcpt.notify is not None:
                # RFC 3461 §4.1: NEVER alone, or one or more of SUCCESS, FAILURE, DELAY.
                keywords = [k.strip().upper() for k in rcpt.notify.split(",")]
                if keywords != ["NEVER"] and not (keywords and set(keywords) <= {"SUCCESS", "FAILURE", "DELAY"}):
                    raise SpoolError(f"invalid NOTIFY {rcpt.notify!r}")
            check(rcpt.folder, 1000, "folder")


# ----------------------------------------------------------------------------- read models


@dataclass(frozen=True)
class QueuedRecipient:
    id: int
    address: str
    orcpt: str | None
    notify: str | None
    mailbox_id: int | None
    folder: str | None
    state: str
    attempts: int
    last_reply: str | None


@dataclass(frozen=True)
class QueuedMessage:
    """A snapshot of one queue entry (leased, or listed for the operator)."""

    id: str
    blob_id: int
    sender: str
    source: str
    size: int
    dsn_ret: str | None
    dsn_envid: str | None
    body_type: str | None
    smtputf8: bool
    auth_user: str | None
    client_address: str | None
    client_helo: str | None
    state: str
    attempts: int
    next_attempt_at: dt.datetime
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    delay_notified: bool
    received_at: dt.datetime
    recipients: tuple[QueuedRecipient, ...] = field(default=())

    @property
    def pending_recipients(self) -> tuple[QueuedRecipient, ...]:
        return tuple(r for r in self.recipients if r.state not in FINAL_STATES)


def _snapshot(row: QueueMessage) -> QueuedMessage:
    return QueuedMessage(
        id=row.id, blob_id=row.blob_id, sender=row.sender, source=row.source, size=row.size,
        dsn_ret=row.dsn_ret, dsn_envid=row.dsn_envid, body_type=row.body_type, smtputf8=row.smtputf8,
        auth_user=row.auth_user, client_address=row.client_address, client_helo=row.client_helo,
        state=row.state, attempts=row.attempts, next_attempt_at=row.next_attempt_at,
        lease_owner=row.lease_owner, lease_expires_at=row.lease_expires_at,
        delay_notified=row.delay_notified, received_at=row.received_at,
        recipients=tuple(
            QueuedRecipient(id=r.id, address=r.address, orcpt=r.orcpt, notify=r.notify, mailbox_id=r.mailbox_id,
                            folder=r.folder, state=r.state, attempts=r.attempts, last_reply=r.last_reply)
            for r in row.recipients
        ),
    )


@contextlib.contextmanager
def _writing(db: Database | Session) -> Iterator[Session]:
    """A write transaction of our own, or the caller's session (the caller commits)."""
    if isinstance(db, Session):
        yield db
    else:
        with db.write() as session:
            yield session


# ----------------------------------------------------------------------------- the door


def accept(db: Database, blobs: BlobStore, envelope: Envelope, data: Content, *,
           now: dt.datetime | None = None, run_dir: Path | None = None) -> str:
    """Spool one message; returns its queue id once it is durable and committed.

    `data` is the message (bytes, a binary file, or an iterable of chunks; streamed to disk).
    Raises on any failure (the SMTP layer answers 451 4.3.0); then nothing is visible."""
    envelope.validate()
    now = now or _now()
    pending = blobs.write_temp(data)
    body_done = False  # True once the transaction reached its commit
    try:
        durable.fault_point("spool.accept.after_temp")
        with db.write() as session:
            queue_id = new_queue_id()
            while session.get(QueueMessage, queue_id) is not None:
                queue_id = new_queue_id()
            row = QueueMessage(
                id=queue_id, blob_id=None, sender=envelope.sender, source=envelope.source, size=pending.size,
                dsn_ret=envelope.dsn_ret.upper() if envelope.dsn_ret else None, dsn_envid=envelope.dsn_envid,
                body_type=envelope.body_type.upper() if envelope.body_type else None,
                smtputf8=envelope.smtputf8, auth_user=envelope.auth_user,
                client_address=envelope.client_address, client_helo=envelope.client_helo,
                state=QueueState.INCOMING, attempts=0, next_attempt_at=now, delay_notified=False, received_at=now,
                recipients=[
                    QueueRecipient(address=r.address, orcpt=r.orcpt, notify=r.notify.upper() if r.notify else None,
                                   mailbox_id=r.mailbox_id, folder=r.folder, state=RecipientState.PENDING,
                                   attempts=0, updated_at=now)
                    for r in envelope.recipients
                ],
            )
            # The queue entry is the blob's first reference.
            row.blob_id = blobs.insert_row(session, pending, refcount=1)
            session.add(row)
            session.flush()
            durable.fault_point("spool.accept.after_insert")
            blobs.place(pending)
            durable.fault_point("spool.accept.after_link")
            body_done = True
        durable.fault_point("spool.accept.after_commit")
    finally:
        blobs.discard(pending, rolled_back=not body_done)
    notify.queue_changed(run_dir, queue_id)
    return queue_id


# ----------------------------------------------------------------------------- the queue role


def _due(now: dt.datetime):
    waiting = and_(QueueMessage.state.in_(DUE_STATES), QueueMessage.next_attempt_at <= now)
    abandoned = and_(QueueMessage.state == QueueState.ACTIVE, QueueMessage.lease_expires_at < now)
    return or_(waiting, abandoned)


def lease(db: Database, owner: str, limit: int, now: dt.datetime | None = None,
          duration: float = DEFAULT_LEASE_SECONDS) -> list[QueuedMessage]:
    """Take up to `limit` due messages for `owner` until now + `duration` seconds.

    Two queue processes never lease the same message: PostgreSQL skips rows another
    transaction has locked (FOR UPDATE SKIP LOCKED); SQLite write sessions are BEGIN IMMEDIATE."""
    now = now or _now()
    if limit <= 0:
        return []
    with db.write() as session:
        query = select(QueueMessage.id).where(_due(now)).order_by(QueueMessage.next_attempt_at).limit(limit)
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        if not ids:
            return []
        session.execute(
            update(QueueMessage).where(QueueMessage.id.in_(ids)).values(
                state=QueueState.ACTIVE, lease_owner=owner,
                lease_expires_at=now + dt.timedelta(seconds=duration))
            .execution_options(synchronize_session=False)
        )
        session.expire_all()
        rows = session.scalars(select(QueueMessage).where(QueueMessage.id.in_(ids))
                               .order_by(QueueMessage.next_attempt_at)).all()
        return [_snapshot(row) for row in rows]


def clear_stale_leases(db: Database, now: dt.datetime | None = None, owner: str | None = None) -> int:
    """Return expired leases (and every lease of `owner`, a restarted process) to the queue.

    Returns how many messages were released. A message keeps its next_attempt_at, so it is
    due again at once unless it was rescheduled."""
    now = now or _now()
    condition = and_(QueueMessage.state == QueueState.ACTIVE, QueueMessage.lease_expires_at < now)
    if owner is not None:
        condition = or_(condition, and_(QueueMessage.state == QueueState.ACTIVE, QueueMessage.lease_owner == owner))
    with db.write() as session:
        result = session.execute(
            update(QueueMessage).where(condition)
            .values(state=QueueState.DEFERRED, lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount or 0


def record_result(db: Database | Session, recipient_id: int, state: str, reply: str | None,
                  now: dt.datetime | None = None) -> None:
    """Record one recipient's delivery attempt: delivered, relayed, deferred or bounced.

    Pass the Session of a store delivery to record the result in the same transaction."""
    if state not in RESULT_STATES:
        raise SpoolError(f"not a delivery result: {state!r}")
    now = now or _now()
    with _writing(db) as session:
        result = session.execute(
            update(QueueRecipient).where(QueueRecipient.id == recipient_id)
            .values(state=state, last_reply=reply, attempts=QueueRecipient.attempts + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:
            raise SpoolError(f"no queue recipient {recipient_id}")


def reschedule(db: Database | Session, queue_id: str, next_attempt_at: dt.datetime) -> None:
    """Give a leased message back for a later attempt (RFC 5321 §4.5.4.1)."""
    with _writing(db) as session:
        result = session.execute(
            update(QueueMessage).where(QueueMessage.id == queue_id)
            .values(state=QueueState.DEFERRED, attempts=QueueMessage.attempts + 1, next_attempt_at=next_attempt_at,
                    lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:
            raise SpoolError(f"no queue entry {queue_id}")


def release(db: Database | Session, queue_id: str) -> None:
    """Drop a lease without an attempt (shutdown): the message is due again at once."""
    with _writing(db) as session:
        session.execute(
            update(QueueMessage).where(QueueMessage.id == queue_id, QueueMessage.state == QueueState.ACTIVE)
            .values(state=QueueState.DEFERRED, lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


def mark_delay_notified(db: Database | Session, queue_id: str) -> None:
    """Remember that the RFC 3464 delay notice for this message was sent."""
    with _writing(db) as session:
        session.execute(update(QueueMessage).where(QueueMessage.id == queue_id).values(delay_notified=True)
                        .execution_options(synchronize_session=False))


def _remove(session: Session, queue_id: str) -> bool:
    blob_id = session.scalar(select(QueueMessage.blob_id).where(QueueMessage.id == queue_id))
    if blob_id is None:
        return False
    session.execute(delete(QueueRecipient).where(QueueRecipient.message_id == queue_id))
    session.execute(delete(QueueMessage).where(QueueMessage.id == queue_id))
    BlobStore.drop_ref(session, blob_id)
    return True


def finish(db: Database | Session, queue_id: str) -> bool:
    """Remove a message whose recipients are all final, dropping its blob reference.

    Returns False (and changes nothing) while a recipient is still pending or deferred."""
    with _writing(db) as session:
        states = set(session.scalars(select(QueueRecipient.state).where(QueueRecipient.message_id == queue_id)))
        if not states <= FINAL_STATES:
            return False
        return _remove(session, queue_id)


def record_delivered(session: Session, recipient_ids: Sequence[int], reply: str,
                     now: dt.datetime | None = None) -> None:
    """`record_result(..., "delivered", ...)` for several recipients in the caller's transaction
    (the local delivery batch), in one statement."""
    if recipient_ids:
        session.execute(
            update(QueueRecipient).where(QueueRecipient.id.in_(recipient_ids))
            .values(state=RecipientState.DELIVERED, last_reply=reply, attempts=QueueRecipient.attempts + 1,
                    updated_at=now or _now())
            .execution_options(synchronize_session=False))


def finish_many(db: Database | Session, queue_ids: Sequence[str]) -> set[str]:
    """`finish` for several messages in one transaction; returns the ids removed."""
    with _writing(db) as session:
        waiting = set(session.scalars(select(QueueRecipient.message_id).where(
            QueueRecipient.message_id.in_(queue_ids), QueueRecipient.state.not_in(FINAL_STATES))))
        done = [queue_id for queue_id in dict.fromkeys(queue_ids) if queue_id not in waiting]
        if not done:
            return set()
        rows = session.execute(select(QueueMessage.id, QueueMessage.blob_id).where(QueueMessage.id.in_(done))).all()
        removed = [row.id for row in rows]
        if removed:
            session.execute(delete(QueueRecipient).where(QueueRecipient.message_id.in_(removed)))
            session.execute(delete(QueueMessage).where(QueueMessage.id.in_(removed)))
            for blob_id, count in Counter(row.blob_id for row in rows).items():
                BlobStore.drop_ref(session, blob_id, count)
        return set(removed)


# ----------------------------------------------------------------------------- operator


def get(db: Database, queue_id: str) -> QueuedMessage | None:
    with db.read() as session:
        row = session.get(QueueMessage, queue_id)
        return _snapshot(row) if row is not None else None


def list_entries(db: Database, state: str | None = None, limit: int = 1000) -> list[QueuedMessage]:
    """Queue entries, oldest first (the operator's `mailq`)."""
    with db.read() as session:
        query = select(QueueMessage).order_by(QueueMessage.received_at, QueueMessage.id).limit(limit)
        if state is not None:
            query = query.where(QueueMessage.state == state)
        return [_snapshot(row) for row in session.scalars(query)]


def hold(db: Database, queue_id: str) -> bool:
    """Put a message on hold (never leased until released with `unhold`)."""
    with db.write() as session:
        result = session.execute(update(QueueMessage).where(QueueMessage.id == queue_id)
                                 .values(state=QueueState.HOLD, lease_owner=None, lease_expires_at=None)
                                 .execution_options(synchronize_session=False))
        return bool(result.rowcount)


def unhold(db: Database, queue_id: str, now: dt.datetime | None = None) -> bool:
    with db.write() as session:
        result = session.execute(update(QueueMessage)
                                 .where(QueueMessage.id == queue_id, QueueMessage.state == QueueState.HOLD)
                                 .values(state=QueueState.DEFERRED, next_attempt_at=now or _now())
                                 .execution_options(synchronize_session=False))
        return bool(result.rowcount)


def flush(db: Database, now: dt.datetime | None = None) -> int:
    """Make every deferred message due now (`postqueue -f`); returns how many."""
    with db.write() as session:
        result = session.execute(update(QueueMessage).where(QueueMessage.state == QueueState.DEFERRED)
                                 .values(next_attempt_at=now or _now())
                                 .execution_options(synchronize_session=False))
        return result.rowcount or 0


def remove(db: Database, queue_id: str) -> bool:
    """Delete a message from the queue without delivering it (`postsuper -d`)."""
    with db.write() as session:
        return _remove(session, queue_id)

