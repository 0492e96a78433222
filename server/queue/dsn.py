"""Delivery status notifications (ring 0, pure): who gets one, and the RFC 3464 message itself.

Owns `wanted` (the RFC 3461 NOTIFY rules, and "never a DSN for a DSN") and `compose`, which
builds a multipart/report (RFC 6522) with a human-readable part, a message/delivery-status part
(RFC 3464 §2) and the returned message or its header (RFC 3461 §4.3 RET). The caller sends the
result with a null reverse-path through `spool.accept` (source "dsn").

Standards: RFC 3461 §4.1 (NOTIFY: NEVER, or SUCCESS/FAILURE/DELAY; absent: FAILURE and DELAY
at the MTA's choice — we send both), §4.2 (ORCPT → Original-Recipient), §4.3 (RET FULL/HDRS),
§4.4 (ENVID → Original-Envelope-Id), §6.2 (a "relayed" notice when the next hop cannot carry
the request); RFC 3464 §2.2–§2.3 (fields), §2.1.2 (the report's Content-Type); RFC 6522
(multipart/report); RFC 5321 §4.5.5 (notifications use the null reverse-path; none is sent
for mail whose reverse-path is null); RFC 3834 §5 (Auto-Submitted: auto-replied);
RFC 6533 §3 (message/global-delivery-status and message/global for internationalised mail).
Security: the returned message and the remote server's reply are untrusted: replies are
reduced to printable single-line text before they go into header fields (CR, LF and every
other control become spaces, so no value can start a field of its own); a status that is
not RFC 3463 syntax is replaced by the generic code of its class; in a message/delivery-status
part (7bit, RFC 3464 §2.1.3 / RFC 6522) non-ASCII becomes "?" (only the RFC 6533 global form
carries UTF-8); the top-level Content-Transfer-Encoding says 8bit whenever any octet of the
body is 8-bit. The original is copied verbatim as the last part and never interpreted.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

FULL_RETURN_LIMIT = 512 * 1024  # without RET, failures return the whole message up to this size
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\s]+")
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")  # RFC 3463 §2 status-code
_GENERIC_STATUS = {"failed": "5.0.0", "delayed": "4.0.0"}


class Action(StrEnum):
    """RFC 3464 §2.3.3 action values."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


_NOTIFY_KEYWORD = {
    Action.FAILED: "FAILURE",
    Action.DELAYED: "DELAY",
    Action.DELIVERED: "SUCCESS",
    Action.RELAYED: "SUCCESS",
    Action.EXPANDED: "SUCCESS",
}


def wanted(sender: str, notify: str | None, action: Action) -> bool:
    """Whether the sender asked for (or by default gets) a notice of `action` for one recipient."""
    if not sender:
        return False  # RFC 5321 §4.5.5 / RFC 3464 §1: never a DSN for a DSN (null reverse-path)
    keywords = {k.strip().upper() for k in (notify or "").split(",") if k.strip()}
    if "NEVER" in keywords:
        return False
    if not keywords:  # RFC 3461 §4.1: no NOTIFY → failures and delays, never success
        return action in (Action.FAILED, Action.DELAYED)
    return _NOTIFY_KEYWORD[action] in keywords


@dataclass(frozen=True)
class RecipientReport:
    """One recipient's per-recipient fields (RFC 3464 §2.3)."""

    final_recipient: str
    action: Action
    status: str  # enhanced status code, e.g. "5.1.1" (RFC 3463)
    original_recipient: str | None = None  # the ORCPT value "type;address"
    diagnostic: str | None = None  # the remote reply or our own reason
    diagnostic_type: str = "smtp"
    remote_mta: str | None = None  # host name of the server that answered
    last_attempt: dt.datetime | None = None
    will_retry_until: dt.datetime | None = None


@dataclass(frozen=True)
class Report:
    """Everything `compose` needs about the original message and its recipients."""

    reporting_mta: str  # our host name
    original_sender: str  # the DSN's recipient
    queue_id: str
    arrival_date: dt.datetime
    recipients: tuple[RecipientReport, ...]
    original: bytes  # the message as queued (or at least its header)
    envid: str | None = None
    ret: str | None = None  # FULL | HDRS | None
    smtputf8: bool = False  # the original needed SMTPUTF8: use the RFC 6533 types


def clean_text(text: str, limit: int = 900) -> str:
    """Untrusted reply text as one printable line (no CR/LF or other controls)."""
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")  # lone surrogates → "?"
    return _UNPRINTABLE.sub(" ", text).strip()[:limit]


HEADER_LIMIT = 1024 * 1024  # as mime_headers.MAX_HEADER_SCAN


def header_of(message: bytes, limit: int = HEADER_LIMIT) -> bytes:
    """The header block of `message`, including the blank line that ends it when present.

    At most `limit` octets, cut after a line ending: a message without a blank line (or with a
    huge header) is not returned whole as "headers", and the queue's From-domain lookup never
    parses more than this."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = message.find(separator, 0, limit)
        if index >= 0:
            return message[:index + len(separator)]
    if len(message) <= limit:
        return message
    cut = message.rfind(b"\n", 0, limit)
    return message[:cut + 1] if cut >= 0 else message[:limit]


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def _date(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.astimezone(dt.UTC))


def _field(name: str, value: str, ascii_only: bool = False) -> str:
    text = clean_text(value, 990 - len(name))
    if ascii_only:  # RFC 3464 §2.1.3: message/delivery-status is 7bit (RFC 6533: the global form is not)
        text = text.encode("ascii", "replace").decode("ascii")
    return f"{name}: {text}\r\n"


def _status(rcpt: RecipientReport) -> str:
    """The RFC 3463 status code, or the generic code of the action's class when the given one
    (possibly from a remote reply) is not one."""
    status = clean_text(rcpt.status or "", 20)
    return status if _STATUS.match(status) else _GENERIC_STATUS.get(rcpt.action.value, "2.0.0")


def _typed_address(value: str) -> str:
    """`rfc822;addr` as RFC 3464 writes it; a bare address gets the rfc822 type (or utf-8, RFC 6533)."""
    address_type, sep, address = value.partition(";")
    if sep and address_type and "@" not in address_type:
        return f"{address_type.strip()}; {address.strip()}"
    kind = "utf-8" if any(ord(c) > 127 for c in value) else "rfc822"
    return f"{kind}; {value.strip()}"


def delivery_status(report: Report) -> str:
    """The message/delivery-status body (RFC 3464 §2.1.3): per-message fields, then one block per recipient."""
    seven = not report.smtputf8
    blocks = [_field("Reporting-MTA", f"dns; {report.reporting_mta}", seven)]
    if report.envid:
        blocks[0] += _field("Original-Envelope-Id", report.envid, seven)
    blocks[0] += _field("Arrival-Date", _date(report.arrival_date))
    for rcpt in report.recipients:
        block = ""
        if rcpt.original_recipient:
            block += _field("Original-Recipient", _typed_address(rcpt.original_recipient), seven)
        block += _field("Final-Recipient", _typed_address(rcpt.final_recipient), seven)
        block += _field("Action", rcpt.action.value)
        block += _field("Status", _status(rcpt))
        if rcpt.remote_mta:
            block += _field("Remote-MTA", f"dns; {rcpt.remote_mta}", seven)
        if rcpt.diagnostic:
            block += _field("Diagnostic-Code", f"{rcpt.diagnostic_type}; {rcpt.diagnostic}", seven)
        if rcpt.last_attempt:
            block += _field("Last-Attempt-Date", _date(rcpt.last_attempt))
        if rcpt.will_retry_until:
            block += _field("Will-Retry-Until", _date(rcpt.will_retry_until))
        blocks.append(block)
    return "\r\n".join(blocks)


_SUBJECTS = {
    Action.FAILED: "Undelivered Mail Returned to Sender",
    Action.DELAYED: "Delayed Mail (still being retried)",
    Action.DELIVERED: "Successful Mail Delivery Report",
    Action.RELAYED: "Successful Mail Delivery Report",
    Action.EXPANDED: "Successful Mail Delivery Report",
}


def _human_text(report: Report, main: Action) -> str:
    lines = [f"This is the mail system at host {report.reporting_mta}.", ""]
    if main is Action.FAILED:
        lines += ["I'm sorry to have to inform you that your message could not",
                  "be delivered to one or more recipients. The details are below."]
    elif main is Action.DELAYED:
        lines += ["Your message could not be delivered yet to one or more recipients.",
                  "It will be retried until it is too old; you do not need to resend it."]
    else:
        lines += ["Your message was successfully delivered to the destination(s)",
                  "listed below, as you requested."]
    lines.append("")
    for rcpt in report.recipients:
        detail = f": {clean_text(rcpt.diagnostic)}" if rcpt.diagnostic else ""
        lines.append(f"<{clean_text(rcpt.final_recipient)}>: {rcpt.action.value} ({_status(rcpt)}){detail}")
    return "\r\n".join(lines) + "\r\n"


def _returned_part(report: Report, main: Action) -> tuple[str, bytes]:
    """The third part (RFC 3462 §2 / RFC 3461 §4.3): the whole message or its header."""
    ret = (report.ret or "").upper()
    whole = ret == "FULL" or (not ret and main is Action.FAILED and len(report.original) <= FULL_RETURN_LIMIT)
    if whole:
        kind = "message/global" if report.smtputf8 else "message/rfc822"
        return kind, _crlf(report.original)
    kind = "message/global-headers" if report.smtputf8 else "text/rfc822-headers"
    header = _crlf(header_of(report.original))
    if not header.endswith(b"\r\n"):
        header += b"\r\n"
    return kind, header


def main_action(report: Report) -> Action:
    actions = {r.action for r in report.recipients}
    for action in (Action.FAILED, Action.DELAYED, Action.DELIVERED, Action.RELAYED, Action.EXPANDED):
        if action in actions:
            return action
    raise ValueError("a report needs at least one recipient")


def compose(report: Report, now: dt.datetime, boundary: str | None = None) -> bytes:
    """The complete DSN message (header and body, CRLF line endings)."""
    main = main_action(report)
    boundary = boundary or f"{report.queue_id}.{secrets.token_hex(8)}/{report.reporting_mta}"
    status_type = "message/global-delivery-status" if report.smtputf8 else "message/delivery-status"
    returned_type, returned = _returned_part(report, main)
    status_text = delivery_status(report)
    human_text = _human_text(report, main)
    # RFC 2045 §6.4: the multipart's encoding must cover every part (the notification text can
    # quote a UTF-8 reply even when the returned message is ASCII).
    eight_bit = (report.smtputf8 or not returned.isascii() or not human_text.isascii()
                 or not status_text.isascii())
    description = "Undelivered message" if returned_type.startswith("message/") else "Message header"
    header = (
        _field("From", f"Mail Delivery System <MAILER-DAEMON@{report.reporting_mta}>")
        + _field("To", f"<{report.original_sender}>")
        + _field("Subject", _SUBJECTS[main])
        + _field("Date", _date(now))
        + _field("Message-ID", f"<{report.queue_id}.{secrets.token_hex(6)}.dsn@{report.reporting_mta}>")
        + _field("Auto-Submitted", "auto-replied")  # RFC 3834 §5
        + _field("MIME-Version", "1.0")
        + f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
        + _field("Content-Transfer-Encoding", "8bit" if eight_bit else "7bit")
    )
    body = (
        "This is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        + human_text
        + f"\r\n--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        f"Content-Type: {status_type}\r\n"
        + ("Content-Transfer-Encoding: 8bit\r\n" if report.smtputf8 else "")
        + "\r\n"
        + status_text
        + f"\r\n--{boundary}\r\n"
        f"Content-Description: {description}\r\n"
        f"Content-Type: {returned_type}\r\n"
        + ("Content-Transfer-Encoding: 8bit\r\n" if eight_bit else "")
        + "\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    return (header + "\r\n").encode("utf-8") + body.encode("utf-8") + returned + tail
