"""Rule records (ring 1): reading filters, tags, vacation settings and signatures for delivery,
and writing what delivery produces: the auto-reply log and calendar events.

Shared by the delivery hooks (`courriel.rules.hooks`) and the service layer
(`courriel.admin.services.rules`), which owns every other write of these tables.

Standards: RFC 3834 §2 (one auto-reply per sender and period: the reply log), RFC 5546 §2.1.4
and RFC 5545 §3.8.7.4 (an invitation replaces the stored event when its SEQUENCE is not older).
Security: stored JSON is validated again when read (a row edited by hand cannot break delivery).
Durability: each function runs inside the caller's session/transaction.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from courriel.models import CalendarEvent, RuleFilter, RuleTag, Signature, VacationReply, VacationSetting, utcnow
from courriel.rules import filters
from courriel.rules.calendar import Invitation, with_partstats
from courriel.rules.vacation import VacationSettings

log = logging.getLogger("courriel.rules")


def rule_of(row: RuleFilter) -> filters.Rule:
    return filters.Rule(
        conditions=filters.conditions_from_json(row.conditions), actions=filters.actions_from_json(row.actions),
        match=row.match, stop=row.stop, applies_to=tuple(row.folders.split()), enabled=row.enabled, id=row.id,
        name=row.name)


def load_rules(session: Session, mailbox_id: int, *, enabled_only: bool = True) -> list[filters.Rule]:
    """The mailbox's filters in order; a row that no longer validates is skipped (and logged)."""
    query = select(RuleFilter).where(RuleFilter.mailbox_id == mailbox_id)
    if enabled_only:
        query = query.where(RuleFilter.enabled.is_(True))
    rules = []
    for row in session.scalars(query.order_by(RuleFilter.position, RuleFilter.id)):
        try:
            rules.append(filters.check_rule(rule_of(row)))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("filter %s of mailbox %s is invalid and skipped: %s", row.id, mailbox_id, exc)
    return rules


def tag_keywords_for_sender(session: Session, mailbox_id: int, sender: str) -> list[str]:
    """Keywords of the tags whose sender list names `sender`."""
    if not sender:
        return []
    rows = session.scalars(select(RuleTag).where(RuleTag.mailbox_id == mailbox_id, RuleTag.senders != "")
                           .order_by(RuleTag.id))
    return [row.keyword for row in rows if filters.tag_senders_match(row.senders.split(), sender)]


def vacation_of(row: VacationSetting | None) -> VacationSettings | None:
    if row is None:
        return None
    return VacationSettings(enabled=row.enabled, start=dt.date.fromisoformat(row.start_date),
                            end=dt.date.fromisoformat(row.end_date) if row.end_date else None,
                            subject=row.subject, body=row.body, contacts_only=row.contacts_only)


def load_vacation(session: Session, mailbox_id: int) -> VacationSettings | None:
    return vacation_of(session.get(VacationSetting, mailbox_id))


def vacation_enabled(session: Session, mailbox_id: int) -> bool:
    """Whether the mailbox's auto-reply is switched on (one column: cheaper than `load_vacation`)."""
    return bool(session.scalar(select(VacationSetting.enabled).where(VacationSetting.mailbox_id == mailbox_id)))


def signature_text(session: Session, mailbox_id: int) -> str:
    row = session.get(Signature, mailbox_id)
    return row.text if row is not None else ""


def replied_on(session: Session, mailbox_id: int, sender: str, day: dt.date) -> bool:
    return session.scalar(select(VacationReply.id).where(
        VacationReply.mailbox_id == mailbox_id, VacationReply.sender == sender, VacationReply.day == day.isoformat()
    )) is not None


def record_reply(session: Session, mailbox_id: int, sender: str, day: dt.date, now: dt.datetime) -> None:
    session.add(VacationReply(mailbox_id=mailbox_id, sender=sender, day=day.isoformat(), sent_at=now))
    session.flush()


def store_invitation(session: Session, mailbox_id: int, invitation: Invitation,
                     senders: set[str] | frozenset[str] | None = None) -> str:
    """Apply one invitation to the mailbox's calendar; returns what happened
    (created | updated | cancelled | replied | stale | ignored | refused).

    RFC 6047 §3: a change to a stored event (update, cancellation) must come from its
    organizer, and a REPLY from the attendee it answers for: `senders` are the message's
    envelope sender and From addresses (None: trusted, e.g. the service layer)."""
    def from_organizer(organizer: str) -> bool:
        return senders is None or not organizer or organizer.lower() in senders

    def rows_for(recurrence_id: str | None) -> list[CalendarEvent]:
        query = select(CalendarEvent).where(CalendarEvent.mailbox_id == mailbox_id,
                                            CalendarEvent.uid == invitation.uid)
        if recurrence_id is not None:
            query = query.where(CalendarEvent.recurrence_id == recurrence_id)
        return list(session.scalars(query))

    now = utcnow()
    if invitation.method == "REQUEST":
        existing = next(iter(rows_for(invitation.recurrence_id)), None)
        if existing is not None and invitation.sequence < existing.sequence:
            return "stale"  # RFC 5546 §2.1.5: an older SEQUENCE is out of date
        if existing is not None and not from_organizer(existing.organizer):
            return "refused"
        row = existing or CalendarEvent(mailbox_id=mailbox_id, uid=invitation.uid,
                                        recurrence_id=invitation.recurrence_id)
        row.sequence = invitation.sequence
        row.status = invitation.status if invitation.status in ("CONFIRMED", "TENTATIVE", "CANCELLED") \
            else "CONFIRMED"
        row.summary = invitation.summary
        row.organizer = invitation.organizer
        row.starts_at = invitation.starts_at
        row.ends_at = invitation.ends_at
        row.ics = invitation.ics
        row.updated_at = now
        if existing is None:
            session.add(row)
        session.flush()
        return "updated" if existing is not None else "created"
    if invitation.method == "CANCEL":
        # RFC 5546 §3.2.5: without RECURRENCE-ID the whole series (and its overrides) is cancelled.
        rows = [row for row in rows_for(invitation.recurrence_id or None) if from_organizer(row.organizer)]
        changed = False
        for row in rows:
            if invitation.sequence < row.sequence:
                continue
            row.status = "CANCELLED"
            row.sequence = invitation.sequence
            if row.recurrence_id == invitation.recurrence_id:
                row.ics = invitation.ics
            row.updated_at = now
            changed = True
        if not rows and invitation.recurrence_id:
            session.add(CalendarEvent(mailbox_id=mailbox_id, uid=invitation.uid, sequence=invitation.sequence,
                                      recurrence_id=invitation.recurrence_id, status="CANCELLED",
                                      summary=invitation.summary, organizer=invitation.organizer,
                                      starts_at=invitation.starts_at, ends_at=invitation.ends_at,
                                      ics=invitation.ics, updated_at=now))
            changed = True
        session.flush()
        return "cancelled" if changed else "ignored"
    # METHOD:REPLY to an organizer: the attendee's answer, kept in the stored event's text.
    rows = rows_for(invitation.recurrence_id)
    answers = {address: partstat for address, partstat in invitation.attendees
               if senders is None or address in senders}
    if not rows or not answers:
        return "ignored"
    row = rows[0]
    row.ics = with_partstats(row.ics, answers)
    row.updated_at = now
    session.flush()
    return "replied"

