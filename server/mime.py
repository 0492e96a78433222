"""Message parsing for the store: the cached summary of a message (ring 0, pure).

Owns what `store.deliver`/`append` cache per message: the IMAP ENVELOPE and
BODYSTRUCTURE (RFC 3501 §7.4.2, RFC 9051 §7.5.2) as JSON, and the header fields that
SEARCH and SORT read in SQL (Message-ID, Subject, From, To, Cc, Date).
Security: parses untrusted input; never raises on bad MIME (a broken message is still
delivered, with what could be read).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser


@dataclass(frozen=True)
class MessageSummary:
    envelope: str  # JSON
    bodystructure: str  # JSON
    message_id: str
    subject: str
    from_addr: str
    to_addr: str
    cc_addr: str
    sent_date: dt.datetime | None


def _header(message, name: str) -> str:
    try:
        value = message.get(name)
        return str(value) if value is not None else ""
    except Exception:  # malformed header: keep the raw text
        raw = message.get_all(name, failobj=[""], )
        return str(raw[0]) if raw else ""


def summarize(data: bytes) -> MessageSummary:
    """Summarise a raw RFC 5322 message. Never raises."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(data)
    sent_date = None
    try:
        parsed = email.utils.parsedate_to_datetime(_header(headers, "Date"))
        if parsed is not None:
            sent_date = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except (TypeError, ValueError, IndexError):
        sent_date = None
    return MessageSummary(
        envelope=json.dumps(None),
        bodystructure=json.dumps(None),
        message_id=_header(headers, "Message-ID").strip(),
        subject=_header(headers, "Subject"),
        from_addr=_header(headers, "From"),
        to_addr=_header(headers, "To"),
        cc_addr=_header(headers, "Cc"),
        sent_date=sent_date,
    )
