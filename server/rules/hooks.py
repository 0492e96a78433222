"""The queue's delivery hooks for server-side rules (ring 1).

`filter` runs before a local copy is stored: it evaluates the mailbox's filters
(`courriel.rules.filters`), adds the keywords of tags whose sender list names the sender,
marks calendar invitations with `$HasCalendar`, and returns the folder, flags or discard
decision. `after_delivery` runs once the copy is stored: it applies calendar invitations to the
mailbox's calendar and sends the auto-reply (`courriel.rules.vacation`) through
`spool.accept`, the single door.

Both hooks never fail a delivery: any error is logged and the message is delivered as if no
rule existed (a broken rule must never lose or delay mail).

Standards: RFC 3834 §2 and §4 (auto-replies: conditions, sent to the envelope sender from the
null reverse-path so that the reply itself is never answered or bounced), RFC 5321 §4.5.5
(null reverse-path), RFC 5546 / RFC 6047 (invitations), RFC 3501 §2.3.2 (keywords).
Security: message bytes are untrusted; they are read-only here and parsed by the pure modules
that never raise. Nothing from the message is logged but the queue id.
Durability: calendar events and the reply log commit in their own transactions; the reply log
row is written before the reply is spooled (a crash in between loses that one auto-reply,
never sends two).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from courriel.models import Mailbox, VacationReply
from courriel.queue import spool
from courriel.queue.local import DeliveryHooks, FilterDecision
from courriel.queue.spool import Envelope, EnvelopeRecipient, QueuedMessage, QueuedRecipient
from courriel.rules import contacts, filters, records, vacation
from courriel.rules.calendar import HAS_CALENDAR_KEYWORD, Invitation, invitations_of
from courriel.store import NoSuchFolder, Store, StoreError, parse_flags

log = logging.getLogger("courriel.rules")

SPAM_FOLDERS = frozenset({"spam", "junk"})
_PENDING_LIMIT = 256


@dataclass(frozen=True)
class _Pending:
    folder: str
    invitations: tuple[Invitation, ...]
    senders: frozenset[str]  # envelope sender and From address, lower case
    vacation: bool = True  # an auto-reply was switched on when the filters ran (else none is tried)


class RuleHooks:
    """Filters, tags, calendar and auto-reply at local delivery (called from worker threads)."""

    def __init__(self, store: Store, *, hostname: str, run_dir: Path | None = None,
                 clock: Callable[[], dt.datetime] | None = None):
        self.store = store
        self.db = store.db
        self.blobs = store.blobs
        self.hostname = hostname
        self.run_dir = run_dir
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._pending: OrderedDict[tuple[str, int, int], _Pending] = OrderedDict()
        self._lock = threading.Lock()

    def delivery_hooks(self) -> DeliveryHooks:
        return DeliveryHooks(filter=self.filter, after_delivery=self.after_delivery)

    # ------------------------------------------------------------------ before the copy is stored

    def filter(self, message: QueuedMessage, recipient: QueuedRecipient, mailbox_id: int) -> FilterDecision:
        try:
            return self._filter(message, recipient, mailbox_id)
        except Exception:
            log.exception("filters of mailbox %s failed for %s; delivering without them", mailbox_id, message.id)
            return FilterDecision()

    def _filter(self, message: QueuedMessage, recipient: QueuedRecipient, mailbox_id: int) -> FilterDecision:
        data = self.blobs.read(message.blob_id)
        facts = filters.facts_of(data)
        folder = recipient.folder or "INBOX"
        invitations = tuple(invitations_of(data)) if facts.has_calendar else ()
        with self.db.read() as session:  # one read for everything the delivery's hooks need
            rules = records.load_rules(session, mailbox_id)
            tag_keywords = records.tag_keywords_for_sender(session, mailbox_id, facts.sender)
            vacation_on = records.vacation_enabled(session, mailbox_id)
        outcome = filters.evaluate(rules, facts, folder)
        if outcome.delete:
            log.info("%s discarded for mailbox %s by filter %s", message.id, mailbox_id, outcome.matched[-1])
            return FilterDecision(discard=True)
        keywords = list(outcome.keywords)
        for keyword in tag_keywords:
            if keyword.lower() not in {k.lower() for k in keywords}:
                keywords.append(keyword)
        if invitations:
            keywords.append(HAS_CALENDAR_KEYWORD)
        if outcome.folder is not None:
            self._ensure_folder(mailbox_id, outcome.folder)
        final_folder = outcome.folder or folder
        with self._lock:
            self._pending[(message.id, recipient.id, mailbox_id)] = _Pending(
                final_folder, invitations, _senders(message, facts), vacation_on)
            while len(self._pending) > _PENDING_LIMIT:
                self._pending.popitem(last=False)
        return FilterDecision(folder=outcome.folder, flags=_storable(tuple(outcome.flags) + tuple(keywords)))

    def _ensure_folder(self, mailbox_id: int, name: str) -> None:
        """Create a filter's target folder when it is missing (the store falls back to INBOX when
        it cannot be created)."""
        try:
            self.store.get_folder(mailbox_id, name)
        except NoSuchFolder:
            with contextlib.suppress(StoreError):
                self.store.create_folder(mailbox_id, name)
        except StoreError:
            pass

    # ------------------------------------------------------------------ after the copy is stored

    def after_delivery(self, message: QueuedMessage, recipient: QueuedRecipient, mailbox_id: int) -> None:
        with self._lock:
            pending = self._pending.pop((message.id, recipient.id, mailbox_id), None)
        try:
            if pending is None:  # the filter hook did not run (or failed): read what we need again
                data = self.blobs.read(message.blob_id)
                pending = _Pending(recipient.folder or "INBOX", tuple(invitations_of(data)),
                                   _senders(message, filters.facts_of(data)))
            for invitation in pending.invitations:
                with self.db.write() as session:
                    result = records.store_invitation(session, mailbox_id, invitation, pending.senders)
                log.info("%s: calendar %s %s for mailbox %s", message.id, invitation.method.lower(), result,
                         mailbox_id)
        except Exception:
            log.exception("calendar update of mailbox %s from %s failed", mailbox_id, message.id)
        try:
            if pending is None or (pending.vacation and pending.folder.lower() not in SPAM_FOLDERS):
                self.auto_reply(message, mailbox_id)
        except Exception:
            log.exception("auto-reply of mailbox %s to %s failed", mailbox_id, message.id)

    def auto_reply(self, message: QueuedMessage, mailbox_id: int) -> str | None:
        """Send the mailbox's auto-reply to the message's sender when due; returns the queue id
        of the reply, or None (with the reason logged at debug level)."""
        now = self.clock()
        today = now.astimezone(dt.UTC).date()
        sender = (message.sender or "").strip().lower()
        with self.db.read() as session:
            settings = records.load_vacation(session, mailbox_id)
            if settings is None or not settings.enabled:
                return None
            mailbox = session.get(Mailbox, mailbox_id)
            if mailbox is None:
                return None
            owned = contacts.own_addresses(session, mailbox_id)
            already = bool(sender) and records.replied_on(session, mailbox_id, sender, today)
            known = bool(sender) and contacts.in_contacts(session, mailbox_id, sender)
            signature = records.signature_text(session, mailbox_id)
            address, display_name = mailbox.address, mailbox.display_name
        original = vacation.headers_of(self.blobs.read(message.blob_id))
        skip = vacation.reason_not_to_reply(settings, envelope_sender=sender, headers=original,
                                            own_addresses=owned, today=today, already_replied=already,
                                            sender_in_contacts=known)
        if skip is not None:
            log.debug("%s: no auto-reply from mailbox %s (%s)", message.id, mailbox_id, skip.value)
            return None
        try:
            with self.db.write() as session:
                records.record_reply(session, mailbox_id, sender, today, now)
        except IntegrityError:  # a concurrent delivery answered this sender today
            return None
        reply = vacation.compose_reply(settings, mailbox_address=address, display_name=display_name,
                                       recipient=sender, original=original, now=now, hostname=self.hostname,
                                       signature=signature)
        # RFC 3834 §4 and RFC 5321 §4.5.5: sent from the null reverse-path, to the envelope sender.
        envelope = Envelope(sender="", recipients=(EnvelopeRecipient(address=sender),), source="local",
                            body_type=None if reply.isascii() else "8BITMIME",
                            smtputf8=not (sender.isascii() and address.isascii()))  # RFC 6531: UTF-8 in From too
        try:
            queue_id = spool.accept(self.db, self.blobs, envelope, reply, run_dir=self.run_dir)
        except Exception:
            with self.db.write() as session:  # not sent: allow a later message to be answered
                session.execute(delete(VacationReply).where(VacationReply.mailbox_id == mailbox_id,
                                                            VacationReply.sender == sender,
                                                            VacationReply.day == today.isoformat()))
            raise
        log.info("%s: auto-reply %s from mailbox %s", message.id, queue_id, mailbox_id)
        return queue_id


def _senders(message: QueuedMessage, facts: filters.MessageFacts) -> frozenset[str]:
    return frozenset(a for a in ((message.sender or "").strip().lower(), facts.sender) if a)


def _storable(flags: tuple[str, ...]) -> tuple[str, ...]:
    """Only flags the store accepts: a keyword damaged in the database must not turn every
    delivery into a temporary failure."""
    kept = []
    for flag in flags:
        try:
            parse_flags([flag])
        except StoreError:
            log.warning("ignoring invalid flag %r from the rules", flag[:100])
            continue
        kept.append(flag)
    return tuple(kept)


def delivery_hooks(store: Store, *, hostname: str, run_dir: Path | None = None,
                   clock: Callable[[], dt.datetime] | None = None) -> DeliveryHooks:
    """The hooks the queue runner installs for local delivery."""
    return RuleHooks(store, hostname=hostname, run_dir=run_dir, clock=clock).delivery_hooks()


__all__ = ["RuleHooks", "delivery_hooks"]
