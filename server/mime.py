"""Message parsing for the store: the cached summary of a message (ring 0, pure).

Owns what `store.deliver`/`append` cache per message: the IMAP ENVELOPE and the MIME part
tree (BODYSTRUCTURE facts plus the byte offsets of every part) as JSON, and the header
fields that SEARCH and SORT read in SQL (Message-ID, Subject, From, To, Cc, Date). It is
also the front door to the MIME modules the IMAP server uses for FETCH:

  mime_envelope   ENVELOPE list + wire encoder       mime_structure  part tree + BODY/BODYSTRUCTURE
  mime_sections   BODY[section], BINARY[section]     mime_search     decoded values, base subject, sort keys, body text
  mime_headers    raw header blocks, parameters, HEADER.FIELDS filtering

FETCH from the cache, reading only what is needed from the blob file:
  ENVELOPE / BODYSTRUCTURE / BODY   envelope_wire(row.envelope), bodystructure_wire(row.bodystructure[, False])
  BODY[section]<o.n>                where = locate(tree, parse_section(text)); read blob[where.start:where.end]
                                    (streamed); if where.filtered: content = where.header_filter(content);
                                    then partial(content, o, n) (or offset arithmetic on the raw slice);
                                    nul_free() before sending it as a literal
  BINARY[part], BINARY.SIZE[part]   where = locate(tree, Section(part=...)); BinaryDecoder(where.node) fed
                                    with the slice in chunks; UnknownTransferEncoding -> NO [UNKNOWN-CTE]
where `tree = json.loads(row.bodystructure)`. A missing part resolves to empty content.
An empty cached value (the store could not summarise) means: summarise the blob again.

Standards: RFC 3501 §7.4.2 / RFC 9051 §7.5.2 (ENVELOPE, BODYSTRUCTURE), RFC 5322 §3.3
(Date), RFC 5256 §2.2 (References / In-Reply-To parents for THREAD), RFC 2047 (decoded
search columns), RFC 5322 §2.1 (CRLF line endings).
Security: parses untrusted input; never raises on bad MIME (a broken message is still
delivered, with what could be read).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from dataclasses import dataclass

from courriel.mime_envelope import build_envelope, envelope_bytes
from courriel.mime_headers import header_end, last_values, readable_text, split_fields
from courriel.mime_search import (
    base_subject,
    body_text,
    decoded,
    is_reply_or_forward,
    message_ids,
    sort_display,
    sort_mailbox,
    thread_references,
)
from courriel.mime_sections import (
    BinaryDecoder,
    Section,
    SectionLocation,
    SectionSyntaxError,
    UnknownTransferEncoding,
    binary_bytes,
    decode_binary,
    locate,
    nul_free,
    parse_section,
    partial,
    section_bytes,
)
from courriel.mime_structure import body_bytes, bodystructure_bytes, parse_structure


@dataclass(frozen=True)
class MessageSummary:
    envelope: str  # JSON: see mime_envelope (a list; None is NIL)
    bodystructure: str  # JSON: the part tree with offsets, see mime_structure
    message_id: str
    subject: str  # decoded (RFC 2047), for SEARCH/SORT
    from_addr: str
    to_addr: str
    cc_addr: str
    sent_date: dt.datetime | None
    reference_ids: str = ""  # RFC 5256 §2.2: parent msg-ids for THREAD=REFERENCES, space-separated


def summarize(data: bytes) -> MessageSummary:
    """Summarise a raw RFC 5322 message. Never raises.

    Offsets in the part tree index `data` exactly as given, so the store must keep these
    very bytes (see `canonical_line_endings` for CRLF normalisation before storing).
    """
    tree = parse_structure(data)
    fields = split_fields(data, 0, header_end(data, 0, len(data)))
    envelope = build_envelope(fields)
    values = last_values(fields, {"from", "to", "cc", "references", "in-reply-to"})
    # RFC 5256 §2.2 step 1: References, or else the first valid msg-id of In-Reply-To.
    parents = message_ids(values.get("references")) or message_ids(values.get("in-reply-to"))[:1]
    return MessageSummary(
        envelope=json.dumps(envelope),
        bodystructure=json.dumps(tree, separators=(",", ":")),
        message_id=readable_text(envelope[9] or "").strip()[:998],
        subject=decoded(envelope[1]),
        from_addr=decoded(values.get("from")),
        to_addr=decoded(values.get("to")),
        cc_addr=decoded(values.get("cc")),
        sent_date=_sent_date(envelope[0]),
        reference_ids=" ".join(parents),
    )


def _sent_date(value: str | None) -> dt.datetime | None:
    """RFC 5322 §3.3 date-time as an aware UTC datetime; None when absent or unparseable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    try:
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None


_BARE_LF = re.compile(rb"(?<!\r)\n")


def canonical_line_endings(data: bytes) -> bytes:
    """RFC 5322 §2.1 / RFC 3501 §2.2: lines end in CRLF; bare LF becomes CRLF."""
    return _BARE_LF.sub(b"\r\n", data)


def envelope_wire(envelope_json: str) -> bytes:
    """FETCH ENVELOPE bytes from the cached `MessageSummary.envelope` JSON."""
    return envelope_bytes(json.loads(envelope_json))


def bodystructure_wire(bodystructure_json: str, extensible: bool = True) -> bytes:
    """FETCH BODYSTRUCTURE (extensible) or BODY (not) bytes from the cached part-tree JSON."""
    return body_bytes(json.loads(bodystructure_json), extensible)


__all__ = [
    "BinaryDecoder",
    "MessageSummary",
    "Section",
    "SectionLocation",
    "SectionSyntaxError",
    "UnknownTransferEncoding",
    "base_subject",
    "binary_bytes",
    "body_text",
    "bodystructure_bytes",
    "bodystructure_wire",
    "canonical_line_endings",
    "decode_binary",
    "decoded",
    "envelope_bytes",
    "envelope_wire",
    "is_reply_or_forward",
    "locate",
    "message_ids",
    "nul_free",
    "parse_section",
    "parse_structure",
    "partial",
    "section_bytes",
    "sort_display",
    "sort_mailbox",
    "summarize",
    "thread_references",
]
