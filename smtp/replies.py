"""SMTP replies (ring 0, pure): every reply the SMTP role sends, with its enhanced status code.

Owns the reply texts of the MX and submission listeners and `with_enhanced_code`, which gives
a reply from the underlying protocol library an RFC 3463 code when it lacks one, so that
every 2xx/4xx/5xx reply carries one once ENHANCEDSTATUSCODES is advertised.

Standards: RFC 5321 §4.2 (reply lines), §4.2.5 (reply codes after DATA), RFC 2034 §3 (enhanced
codes prefix the text of every 2xx, 4xx and 5xx reply except the greeting and the replies to
HELO and EHLO), RFC 3463 / RFC 5248 (the codes), RFC 4954 §6 (AUTH replies), RFC 3030 (BDAT).
Security: reply texts never echo secrets; addresses echoed back are the client's own input,
stripped of control characters by `printable`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    status: str  # RFC 3463 enhanced status code, e.g. "5.1.1"
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 300

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500


def printable(text: str, limit: int = 200) -> str:
    """Client input made safe to echo in one reply line."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned[:limit]


# ----------------------------------------------------------------------------- fixed replies

OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")

# Session and syntax (RFC 5321 §4.2.2, RFC 3463 §3.6 "X.5.x protocol status").
SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error, command unrecognised")
LINE_TOO_LONG = Reply(500, "5.5.6", "Line too long (RFC 5321 §4.5.3.1)")
# RFC 5321 §2.3.8: CR and LF only as CRLF. A bare CR, or a dot line between bare line endings, could let a
# downstream server see an end of data that this one did not (SMTP smuggling): the message is refused whole.
BARE_LINE_ENDING = Reply(550, "5.6.0", "Bare CR or bare end of data in message text (RFC 5321 §2.3.8)")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
EHLO_FIRST = Reply(503, "5.5.1", "Send EHLO first")
NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified")
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command first")
NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command first")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")  # RFC 2920 §3.1
DATA_AFTER_BDAT = Reply(503, "5.5.1", "DATA cannot follow BDAT in one transaction")  # RFC 3030 §2
BDAT_UNREADABLE = Reply(421, "4.5.0", "Cannot resynchronise after a bad BDAT command")  # RFC 3030 §2
UNKNOWN_PARAMETER = Reply(555, "5.5.4", "Unsupported parameter")
ALREADY_TLS = Reply(503, "5.5.1", "TLS already active")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
AUTH_UNAVAILABLE = Reply(503, "5.5.1", "AUTH is not offered here; use the submission port")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
TLS_REQUIRED_FOR_AUTH = Reply(530, "5.7.0", "Must issue a STARTTLS command first")  # RFC 3207 §4
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")  # RFC 4954 §6
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")  # RFC 4954 §6
AUTH_THROTTLED = Reply(454, "4.7.0", "Too many failed logins, try again later")  # RFC 4954 §6
AUTH_ABORTED = Reply(501, "5.7.0", "Authentication cancelled")  # RFC 4954 §4
BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode base64")  # RFC 4954 §4

# Envelope (RFC 3463 §3.2 addressing, §3.4 mail system, §3.8 security).
BAD_ADDRESS = Reply(553, "5.1.3", "Bad address syntax")
NON_ASCII_ADDRESS = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")  # RFC 6531 §3.5
UNKNOWN_RECIPIENT = Reply(550, "5.1.1", "No such user here")
DISABLED_RECIPIENT = Reply(550, "5.2.1", "Mailbox disabled, not accepting messages")
UNVERIFIED_DOMAIN = Reply(550, "5.1.2", "Domain not accepting mail yet")
ALIAS_LOOP = Reply(550, "5.4.6", "Routing loop detected")
MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full, try again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")  # RFC 5321 §4.5.3.1.10
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
FROM_NOT_OWNED = Reply(553, "5.7.1", "From header address not owned by the authenticated user")
LOCAL_SENDER_NEEDS_AUTH = Reply(553, "5.7.1", "Sender address is local: authenticate on the submission port")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
DMARC_REJECT = Reply(550, "5.7.1", "Rejected by the sender domain's DMARC policy")
MALFORMED_MESSAGE = Reply(550, "5.6.0", "Message header is not parseable")

# Server side.
INTERNAL_ERROR = Reply(451, "4.3.0", "Internal error, try again later")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing connection")
IDLE_TIMEOUT = Reply(421, "4.4.2", "Timeout exceeded, closing connection")
SESSION_TOO_LONG = Reply(421, "4.4.2", "Session time limit exceeded, closing connection")
TOO_MANY_COMMANDS = Reply(421, "4.7.0", "Too many commands, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
TOO_MANY_AUTH_FAILURES = Reply(421, "4.7.0", "Too many failed authentications, closing connection")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections from your address, try again later")


def queued(queue_id: str) -> Reply:
    """RFC 5321 §4.2.5: only after the message is durable (ARCHITECTURE §6)."""
    return Reply(250, "2.0.0", f"queued as {queue_id}")


def chunk_received(size: int) -> Reply:
    return Reply(250, "2.0.0", f"{size} octets received")  # RFC 3030 §2


def syntax(usage: str) -> Reply:
    return Reply(501, "5.5.4", f"Syntax: {usage}")


def invalid_parameter(detail: str) -> Reply:
    return Reply(501, "5.5.4", printable(detail))


# ----------------------------------------------------------------------------- enhanced codes

# RFC 5248 §2.4: the enhanced code that fits a basic code when the text does not carry one.
_DEFAULT_ENHANCED = {
    211: "2.0.0", 214: "2.0.0", 221: "2.0.0", 235: "2.7.0", 250: "2.0.0", 251: "2.1.5", 252: "2.0.0",
    421: "4.3.0", 450: "4.2.0", 451: "4.3.0", 452: "4.3.1", 454: "4.7.0", 455: "4.5.4",
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4", 521: "5.3.2", 530: "5.7.0",
    534: "5.7.9", 535: "5.7.8", 538: "5.7.11", 550: "5.0.0", 551: "5.1.6", 552: "5.3.4", 553: "5.1.3",
    554: "5.0.0", 555: "5.5.4",
}
_REPLY_LINE = re.compile(r"^([245]\d\d)([ -])(.*)$", re.DOTALL)
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?: |$)")
_LIBRARY_PREFIX = re.compile(r"^(?:Error: ?)", re.IGNORECASE)


def with_enhanced_code(line: str) -> str:
    """Prefix an RFC 3463 code to a 2xx/4xx/5xx reply line that lacks one (RFC 2034 §3).

    220 (greeting, STARTTLS go-ahead) and 3xx continuations are left alone."""
    match = _REPLY_LINE.match(line)
    if not match:
        return line
    code, separator, text = int(match.group(1)), match.group(2), match.group(3)
    if code == 220 or _ENHANCED.match(text):
        return line
    status = _DEFAULT_ENHANCED.get(code, f"{code // 100}.0.0")
    return f"{code}{separator}{status} {_LIBRARY_PREFIX.sub('', text)}"


# ----------------------------------------------------------------------------- refusal reasons

# The reason label of `courriel_smtp_rejections` (courriel.metrics.SMTP_REJECT_REASONS) per refusal.
_REASONS = {
    BAD_ADDRESS: "bad_address", NON_ASCII_ADDRESS: "bad_address", UNKNOWN_RECIPIENT: "unknown_recipient",
    DISABLED_RECIPIENT: "disabled_recipient", UNVERIFIED_DOMAIN: "unverified_domain", ALIAS_LOOP: "alias_loop",
    MAILBOX_FULL: "mailbox_full", TOO_MANY_RECIPIENTS: "too_many_recipients", RELAY_DENIED: "relay_denied",
    SENDER_NOT_OWNED: "sender_not_owned", FROM_NOT_OWNED: "from_not_owned",
    LOCAL_SENDER_NEEDS_AUTH: "local_sender_needs_auth", MESSAGE_TOO_BIG: "message_too_big",
    DMARC_REJECT: "dmarc_reject", MALFORMED_MESSAGE: "malformed_message", LINE_TOO_LONG: "line_too_long",
    BARE_LINE_ENDING: "bare_line_ending", NO_VALID_RECIPIENTS: "no_valid_recipients",
    AUTH_REQUIRED: "auth_required", TOO_MANY_CONNECTIONS: "too_many_connections",
    INTERNAL_ERROR: "internal_error",
}
_REASONS_BY_TEXT = {str(reply): name for reply, name in _REASONS.items()}
_REASONS_BY_CODE = {500: "syntax", 501: "syntax", 555: "syntax", 503: "bad_sequence"}


def reason(reply: Reply | str) -> str:
    """A short name for why a command was refused (bounded set), for metrics and logs."""
    if isinstance(reply, Reply):
        return _REASONS.get(reply) or _REASONS_BY_CODE.get(reply.code, "other")
    text = str(reply)
    if text in _REASONS_BY_TEXT:
        return _REASONS_BY_TEXT[text]
    return _REASONS_BY_CODE.get(int(text[:3]), "other") if text[:3].isdigit() else "other"
