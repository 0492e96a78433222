"""Auto-reply (vacation), pure (ring 0): whether to answer a message, and the answer itself.

`reason_not_to_reply` applies RFC 3834 and the mailbox's settings; `compose_reply` builds the
reply. The delivery hook (`courriel.rules.hooks`) supplies what needs state: the mailbox's own
addresses and groups, whether the sender was already answered that day, the contacts.

Never answered: the null sender, a sender address that is not one plain address, the mailbox
itself or a group it belongs to, mail marked Auto-Submitted (other than "no") or by the
Microsoft and older auto-responder fields (X-Auto-Response-Suppress: All/OOF, X-Autoreply,
X-Autorespond), Precedence bulk/list/junk/auto_reply, mailing-list mail (List-Id,
List-Unsubscribe and the other RFC 2369 fields), list and system senders (owner-*, *-request,
*-bounces, MAILER-DAEMON, LISTSERV, majordomo, noreply), mail that names none of the mailbox's
addresses in To/Cc/Bcc/Resent-To/Resent-Cc/Resent-Bcc (Bcc'd bulk mail), a sender already
answered on that day, and, when the option is on, a sender outside the contacts.

Standards: RFC 3834 §2 (when not to reply: automatic or list mail, a recipient address not
explicitly named; reply to the Return-Path; at most one reply per sender per period: one a
day, the minimum RFC 5230 §4.1 allows), §3.1.5 (Subject "Auto:" prefix), §3.1.7
(Auto-Submitted: auto-replied), §3.1.3 and §3.1.4 (In-Reply-To, References), §5 (the
Auto-Submitted field); RFC 5230 §4.5-4.6 (the same rules for Sieve vacation); RFC 2369 (List-*
fields), RFC 2919 (List-Id); RFC 5322 §3.6.4 (identification fields).
Security: the original message's headers are untrusted: only its Message-ID, References and
Subject are copied: message ids that pass `mime_compose.msg_id`, the Subject decoded then made
one safe line by `mime_compose.header_text` (no CR/LF, no encoded word for the email package
to decode into a new header field); the reply goes only to a plain sender address
(`mime_compose.plain_address`). Only the first MAX_HEADER_FIELDS header fields are read.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import email.utils
import secrets
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage, Message
from enum import StrEnum

from courriel.mime_compose import display_name as safe_display_name
from courriel.mime_compose import header_text, msg_id, plain_address
from courriel.mime_headers import header_end, split_fields
from courriel.mime_search import decoded, message_ids
from courriel.rules.signature import append_signature

LIST_FIELDS = ("list-id", "list-unsubscribe", "list-post", "list-help", "list-subscribe", "list-owner",
               "list-archive")
BULK_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply"})
SYSTEM_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply",
                                "do-not-reply", "listserv", "majordomo", "bounce", "bounces"})
RECIPIENT_FIELDS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
AUTO_RESPONDER_FIELDS = ("x-autoreply", "x-autorespond")
MAX_SUBJECT = 400


class Skip(StrEnum):
    """Why no auto-reply is sent."""

    DISABLED = "disabled"
    NOT_ACTIVE = "outside the dates"
    NULL_SENDER = "null sender"
    UNUSABLE_SENDER = "sender is not one plain address"
    OWN_ADDRESS = "from the mailbox itself or one of its groups"
    AUTO_SUBMITTED = "auto-submitted"
    BULK = "bulk precedence"
    LIST = "mailing list"
    SYSTEM_SENDER = "list or system sender"
    NOT_ADDRESSED = "none of the mailbox's addresses in To/Cc/Bcc"
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
    """The header block of a message (compat32: never raises on malformed fields), read from
    at most MAX_HEADER_FIELDS fields of its first MAX_HEADER_SCAN octets (mime_headers): a
    hostile header of a million fields costs no more than a normal one."""
    fields = split_fields(data, 0, header_end(data, 0, len(data)))
    block = b"".join(field.raw if field.raw.endswith(b"\n") else field.raw + b"\r\n" for field in fields)
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(block + b"\r\n")


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
    try:
        plain_address(sender)
    except ValueError:  # quoted local parts, lists, controls: nothing a reply can be addressed to
        return Skip.UNUSABLE_SENDER
    froms = {a.lower() for _, a in email.utils.getaddresses([_value(headers, "From")]) if a}
    owned = {a.lower() for a in own_addresses}
    if sender in owned or froms & owned:
        return Skip.OWN_ADDRESS
    # RFC 3834 §2 and §5: anything but "Auto-Submitted: no" is automatic.
    auto = _value(headers, "Auto-Submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        return Skip.AUTO_SUBMITTED
    # [MS-OXCMAIL] 2.2.3.2.20: X-Auto-Response-Suppress All or OOF asks for no out-of-office reply.
    suppress = {word.strip().lower() for word in _value(headers, "X-Auto-Response-Suppress").split(",")}
    if suppress & {"all", "oof"} or any(headers.get(name) is not None for name in AUTO_RESPONDER_FIELDS):
        return Skip.AUTO_SUBMITTED
    if _value(headers, "Precedence").lower() in BULK_PRECEDENCE:
        return Skip.BULK
    if any(headers.get(name) is not None for name in LIST_FIELDS):  # RFC 2369, RFC 2919
        return Skip.LIST
    local = sender.rpartition("@")[0]
    if local in SYSTEM_LOCAL_PARTS or local.startswith("owner-") or local.endswith(("-request", "-bounces", "-owner")):
        return Skip.SYSTEM_SENDER  # RFC 3834 §2, RFC 5230 §4.6
    # RFC 3834 §2 / RFC 5230 §4.5: only mail that names one of the mailbox's addresses.
    named = {a.lower() for _, a in email.utils.getaddresses(
        [_value(headers, name) for name in RECIPIENT_FIELDS if headers.get(name) is not None]) if a}
    if not {_without_detail(a) for a in named} & {_without_detail(a) for a in owned}:
        return Skip.NOT_ADDRESSED
    if already_replied:
        return Skip.ALREADY_REPLIED
    if settings.contacts_only and not sender_in_contacts:
        return Skip.NOT_IN_CONTACTS
    return None


def _without_detail(address: str) -> str:
    """RFC 5233 §1: "user+detail@domain" names the same mailbox as "user@domain"."""
    local, at, domain = address.rpartition("@")
    return f"{local.partition('+')[0]}{at}{domain}" if at else address


def reply_subject(settings: VacationSettings, original_subject: str) -> str:
    """The reply's Subject: the mailbox's own, else "Auto: " and the original (RFC 3834 §3.1.5),
    always one safe line (`mime_compose.header_text`)."""
    own = header_text(settings.subject, MAX_SUBJECT)
    if own:
        return own
    base = header_text(original_subject, MAX_SUBJECT)
    return header_text(f"Auto: {base}", MAX_SUBJECT) if base else "Auto: out of office"


def compose_reply(settings: VacationSettings, *, mailbox_address: str, display_name: str, recipient: str,
                  original: Message, now: dt.datetime, hostname: str, signature: str = "") -> bytes:
    """The auto-reply message (RFC 3834 §3), UTF-8 text with the signature appended.

    ValueError when `recipient` is not one plain address (`reason_not_to_reply` skips those)."""
    recipient = plain_address(recipient)
    # RFC 2047 words in headers; raw UTF-8 (RFC 6532) only when an address needs it.
    ascii_only = recipient.isascii() and mailbox_address.isascii()
    reply = EmailMessage(policy=email.policy.SMTP if ascii_only else email.policy.SMTPUTF8)
    name = safe_display_name(display_name)
    reply["From"] = Address(name, *mailbox_address.rpartition("@")[::2]) if name else mailbox_address
    reply["To"] = recipient
    reply["Subject"] = reply_subject(settings, _value(original, "Subject"))
    reply["Date"] = email.utils.format_datetime(now.astimezone(dt.UTC))
    # RFC 5322 §3.6.4: unique from the given time and 64 random bits (no hidden clock here).
    reply["Message-ID"] = f"<{now.astimezone(dt.UTC):%Y%m%d%H%M%S}.vacation.{secrets.token_hex(8)}@{hostname}>"
    original_id = next((i for i in map(msg_id, message_ids(_value(original, "Message-ID"))) if i), None)
    if original_id:
        # RFC 3834 §3.1.3 / §3.1.4 (RFC 5322 §3.6.4).
        reply["In-Reply-To"] = f"<{original_id}>"
        kept = [i for i in map(msg_id, message_ids(_value(original, "References"))) if i]
        references = [*kept[-20:], original_id]
        reply["References"] = " ".join(f"<{ref}>" for ref in dict.fromkeys(references))
    reply["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    reply["Precedence"] = "bulk"
    body = settings.body or "I am away and will read your message when I return."
    reply.set_content(append_signature(body, signature), charset="utf-8")
    return reply.as_bytes()
