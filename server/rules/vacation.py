"""Auto-reply (vacation), pure (ring 0): whether to answer a message, and the answer itself.

`reason_not_to_reply` applies RFC 3834 and the mailbox's settings; `compose_reply` builds the
reply. The delivery hook (`courriel.rules.hooks`) supplies what needs state: the mailbox's own
addresses and groups, whether the sender was already answered that day, the contacts.

Never answered: the null sender, the mailbox itself or a group it belongs to, mail marked
Auto-Submitted (other than "no"), Precedence bulk/list/junk, mailing-list mail (List-Id,
List-Unsubscribe and the other RFC 2369 fields), list and system senders (owner-*, *-request,
MAILER-DAEMON), a sender already answered on that day, and, when the option is on, a sender
outside the contacts.

Standards: RFC 3834 §2 (when not to reply; reply to the Return-Path; at most one reply per
sender per period), §3.1.5 (Subject "Auto:" prefix), §3.1.7 (Auto-Submitted: auto-replied),
§3.1.3 and §3.1.4 (In-Reply-To, References), §5 (the Auto-Submitted field); RFC 2369 (List-*
fields), RFC 2919 (List-Id); RFC 5322 §3.6.4 (identification fields).
Security: the original message's headers are untrusted: only its Message-ID, References and
Subject are copied, as unfolded single lines through the email package's header folding.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import email.utils
import secrets
from dataclasses import dataclass
from email.message import EmailMessage, Message
from enum import StrEnum

from courriel.mime_search import decoded, message_ids
from courriel.rules.signature import append_signature

LIST_FIELDS = ("list-id", "list-unsubscribe", "list-post", "list-help", "list-subscribe", "list-owner",
               "list-archive")
BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
SYSTEM_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply",
                                "do-not-reply"})
MAX_SUBJECT = 400


class Skip(StrEnum):
    """Why no auto-reply is sent."""

    DISABLED = "disabled"
    NOT_ACTIVE = "outside the dates"
    NULL_SENDER = "null sender"
    OWN_ADDRESS = "from the mailbox itself or one of its groups"
    AUTO_SUBMITTED = "auto-submitted"
    BULK = "bulk precedence"
    LIST = "mailing list"
    SYSTEM_SENDER = "list or system sender"
    ALREADY_REPLIED = "already answered today"
    NOT_IN_CONTACTS = "sender not in contacts"


@dataclass(frozen=True)
class VacationSettings:
    enabled: bool
    start: dt.date
    end: dt.date | None = None
    subject: str = ""
    body: str = ""
    contacts_only: bool = False

    def active_on(self, day: dt.date) -> bool:
        return self.enabled and self.start <= day and (self.end is None or day <= self.end)


def headers_of(data: bytes) -> Message:
    """The header block of a message (compat32: never raises on malformed fields)."""
    end = data.find(b"\r\n\r\n")
    end2 = data.find(b"\n\n")
    cut = min(x for x in (end, end2, len(data)) if x >= 0)
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data[:cut + 4])


def _value(headers: Message, name: str) -> str:
    value = headers.get(name)
    return " ".join(decoded(str(value)).split()) if value is not None else ""


def reason_not_to_reply(settings: VacationSettings, *, envelope_sender: str, headers: Message,
                        own_addresses: set[str] | frozenset[str], today: dt.date, already_replied: bool,
                        sender_in_contacts: bool) -> Skip | None:
    """None when a reply is due, else the first reason not to send one."""
    if not settings.enabled:
        return Skip.DISABLED
    if not settings.active_on(today):
        return Skip.NOT_ACTIVE
    sender = (envelope_sender or "").strip().lower()
    if not sender or sender == "<>" or "@" not in sender:  # RFC 3834 §2: never to the null reverse-path
        return Skip.NULL_SENDER
    froms = {a.lower() for _, a in email.utils.getaddresses([_value(headers, "From")]) if a}
    owned = {a.lower() for a in own_addresses}
    if sender in owned or froms & owned:
        return Skip.OWN_ADDRESS
    # RFC 3834 §2 and §5: anything but "Auto-Submitted: no" is automatic.
    auto = _value(headers, "Auto-Submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        return Skip.AUTO_SUBMITTED
    if _value(headers, "Precedence").lower() in BULK_PRECEDENCE:
        return Skip.BULK
    if any(headers.get(name) is not None for name in LIST_FIELDS):  # RFC 2369, RFC 2919
        return Skip.LIST
    local = sender.rpartition("@")[0]
    if local in SYSTEM_LOCAL_PARTS or local.startswith("owner-") or local.endswith("-request"):
        return Skip.SYSTEM_SENDER
    if already_replied:
        return Skip.ALREADY_REPLIED
    if settings.contacts_only and not sender_in_contacts:
        return Skip.NOT_IN_CONTACTS
    return None


def reply_subject(settings: VacationSettings, original_subject: str) -> str:
    if settings.subject.strip():
        return settings.subject.strip()[:MAX_SUBJECT]
    base = " ".join(original_subject.split())
    return f"Auto: {base}"[:MAX_SUBJECT] if base else "Auto: out of office"  # RFC 3834 §3.1.5


def compose_reply(settings: VacationSettings, *, mailbox_address: str, display_name: str, recipient: str,
                  original: Message, now: dt.datetime, hostname: str, signature: str = "") -> bytes:
    """The auto-reply message (RFC 3834 §3), UTF-8 text with the signature appended."""
    # RFC 2047 words in headers; raw UTF-8 (RFC 6532) only when an address needs it.
    reply = EmailMessage(policy=email.policy.SMTP if recipient.isascii() else email.policy.SMTPUTF8)
    reply["From"] = email.utils.formataddr((display_name, mailbox_address)) if display_name else mailbox_address
    reply["To"] = recipient
    reply["Subject"] = reply_subject(settings, _value(original, "Subject"))
    reply["Date"] = email.utils.format_datetime(now.astimezone(dt.UTC))
    # RFC 5322 §3.6.4: unique from the given time and 64 random bits (no hidden clock here).
    reply["Message-ID"] = f"<{now.astimezone(dt.UTC):%Y%m%d%H%M%S}.vacation.{secrets.token_hex(8)}@{hostname}>"
    original_id = next(iter(message_ids(_value(original, "Message-ID"))), None)
    if original_id:
        # RFC 3834 §3.1.3 / §3.1.4 (RFC 5322 §3.6.4).
        reply["In-Reply-To"] = f"<{original_id}>"
        references = [*message_ids(_value(original, "References"))[-20:], original_id]
        reply["References"] = " ".join(f"<{ref}>" for ref in dict.fromkeys(references))
    reply["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    reply["Precedence"] = "bulk"
    body = settings.body or "I am away and will read your message when I return."
    reply.set_content(append_signature(body, signature), charset="utf-8")
    return reply.as_bytes()
