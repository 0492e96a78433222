"""Calendar invitations of a mailbox, the use cases: list the events, answer one (RSVP), and
the secret token of the mailbox's .ics feed.

Shared by the CLI (`courriel calendar`), the JSON API and the web console; the console serves
`calendar_feed(db, token) -> bytes | None` at its feed URL. Every function names the mailbox
by address, validates its input and raises a `ServiceError` before writing. The events
themselves are recorded at delivery (`courriel.rules.hooks`).

Standards: RFC 5546 §3.2.3 and RFC 6047 (iTIP REPLY by mail), RFC 5545 (the feed).
Security: all input is untrusted; the feed token is 256 random bits, shown once, stored as a
SHA-256 digest and compared through the digest (no timing leak of the token).
Durability: one transaction per call; `rsvp` spools the reply (`spool.accept`) before
recording the answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import asdict, dataclass

from sqlalchemy import delete, select

from courriel.admin.services import lookups
from courriel.admin.services.errors import Conflict, InvalidInput, NotFound
from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.models import CalendarEvent, CalendarFeedToken, Mailbox, utcnow
from courriel.queue import spool
from courriel.queue.spool import Envelope, EnvelopeRecipient
from courriel.rules import contacts as contact_book
from courriel.rules.calendar import CalendarError, attendees_of, compose_rsvp, feed, partstat_of


@dataclass(frozen=True)
class EventInfo:
    id: int
    uid: str
    recurrence_id: str
    sequence: int
    status: str
    summary: str
    organizer: str
    starts_at: str | None
    ends_at: str | None
    answer: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def _event_info(row: CalendarEvent) -> EventInfo:
    def iso(value):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds") if value else None
    return EventInfo(row.id, row.uid, row.recurrence_id, row.sequence, row.status, row.summary, row.organizer,
                     iso(row.starts_at), iso(row.ends_at), row.partstat)


def list_events(db: Database, address: str) -> list[EventInfo]:
    with db.read() as session:
        mailbox = lookups.mailbox_at(session, address)
        rows = session.scalars(select(CalendarEvent).where(CalendarEvent.mailbox_id == mailbox.id)
                               .order_by(CalendarEvent.starts_at, CalendarEvent.id))
        return [_event_info(r) for r in rows]


def rsvp(db: Database, blobs: BlobStore, address: str, event_id: int, answer: str, *, hostname: str,
         run_dir=None, now: dt.datetime | None = None) -> EventInfo:
    """Answer an invitation yes / maybe / no: sends an iTIP REPLY (PARTSTAT ACCEPTED, TENTATIVE
    or DECLINED) to the organizer through the spool and records the answer. Answering again
    (a change of mind) sends a new reply."""
    try:
        partstat = partstat_of(answer)
    except CalendarError as exc:
        raise InvalidInput(str(exc), "invalid_answer") from None
    if isinstance(event_id, bool) or not isinstance(event_id, int):
        raise InvalidInput("an event id is a number", "invalid_input")
    now = now or dt.datetime.now(dt.UTC)
    with db.read() as session:
        mailbox = lookups.mailbox_at(session, address)
        row = session.scalar(select(CalendarEvent).where(CalendarEvent.id == event_id,
                                                         CalendarEvent.mailbox_id == mailbox.id))
        if row is None:
            raise NotFound(f"event {event_id} does not exist in this calendar")
        if row.status == "CANCELLED":
            raise Conflict("the event was cancelled by its organizer", "cancelled")
        owned = contact_book.own_addresses(session, mailbox.id)
        ics, mailbox_address, display_name = row.ics, mailbox.address, mailbox.display_name
    # Answer as the attendee address of ours that the organizer invited (an alias or group), if any.
    attendee = mailbox_address
    for invited in attendees_of(ics):
        if invited in owned:
            attendee = invited
            break
    try:
        organizer, message = compose_rsvp(ics, attendee=attendee, attendee_name=display_name, answer=partstat,
                                          now=now, hostname=hostname)
    except CalendarError as exc:
        raise Conflict(str(exc), "cannot_reply") from None
    envelope = Envelope(sender=mailbox_address, recipients=(EnvelopeRecipient(address=organizer),), source="local",
                        body_type=None if message.isascii() else "8BITMIME")
    spool.accept(db, blobs, envelope, message, run_dir=run_dir)
    with db.write() as session:
        row = session.get(CalendarEvent, event_id)
        row.partstat = partstat
        row.updated_at = utcnow()
        session.flush()
        return _event_info(row)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_feed_token(db: Database, address: str, *, rotate: bool = False) -> str:
    """A new secret for the mailbox's .ics feed; shown once. Without `rotate`, refuses when one
    was already issued (a new one would break subscribed clients)."""
    token = secrets.token_urlsafe(32)
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        row = session.get(CalendarFeedToken, mailbox.id)
        if row is not None and not rotate:
            raise Conflict("a feed token was already issued; rotate it to get a new URL (the old one stops working)",
                           "exists")
        if row is None:
            session.add(CalendarFeedToken(mailbox_id=mailbox.id, token_hash=_digest(token)))
        else:
            row.token_hash, row.created_at = _digest(token), utcnow()
    return token


def revoke_feed_token(db: Database, address: str) -> None:
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        session.execute(delete(CalendarFeedToken).where(CalendarFeedToken.mailbox_id == mailbox.id))


def calendar_feed(db: Database, token: str) -> bytes | None:
    """The .ics feed of the mailbox the token belongs to, or None for an unknown token."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    with db.read() as session:
        row = session.scalar(select(CalendarFeedToken).where(CalendarFeedToken.token_hash == _digest(token)))
        if row is None:
            return None
        mailbox = session.get(Mailbox, row.mailbox_id)
        events = list(session.scalars(select(CalendarEvent.ics).where(CalendarEvent.mailbox_id == row.mailbox_id)
                                      .order_by(CalendarEvent.starts_at, CalendarEvent.id)))
        return feed(events, name=mailbox.address if mailbox else "")


__all__ = ["EventInfo", "calendar_feed", "issue_feed_token", "list_events", "revoke_feed_token", "rsvp"]
