"""SMTP policy (ring 0, pure): parse MAIL and RCPT arguments, decide who may send and receive.

Owns every decision the SMTP role takes on an envelope, as functions of plain values (no IO,
no database, no clock), so they can be tested as tables:
- `parse_mail` / `parse_rcpt`: the reverse-path / forward-path and the ESMTP parameters
  (SIZE, BODY, SMTPUTF8, AUTH; RFC 3461 RET, ENVID, NOTIFY, ORCPT), or the reply that refuses them;
- `sender_reply`: who may use an envelope sender (no open relay, no forged local senders);
- `recipient_reply`: the RCPT verdict from what the registry said about the address;
- `may_relay`: authenticated clients, and clients in the operator's trusted networks only;
- `dmarc_action`: what a DMARC disposition does to an inbound message;
- `SessionLimits`: the bounds that get misbehaving clients disconnected.

Standards: RFC 5321 §4.1.1.2-3 (MAIL, RCPT), §4.1.2 (Path, source routes ignored per §C),
§4.5.3.1 (limits), §4.1.1.3 (Postmaster without domain); RFC 1870 (SIZE); RFC 6152 (BODY);
RFC 6531 §3.4 (SMTPUTF8); RFC 4954 §5 (AUTH= on MAIL); RFC 3461 §4.1-§4.4 and §4 (xtext);
RFC 6533 §3 (utf-8 addr-type in ORCPT); RFC 7489 §6.6.4 (DMARC dispositions);
RFC 6409 §6.1 (submission senders).
Security: parses untrusted client input: bounded lengths, no control characters, duplicate
and unknown parameters refused; nothing here trusts the client's IP address unless the
operator listed its network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import courriel.smtp.replies as replies
from courriel.smtp.replies import Reply

MAX_PATH_OCTETS = 256  # RFC 5321 §4.5.3.1.3, with the angle brackets
MAX_ENVID_CHARS = 100  # RFC 3461 §4.4
MAX_ORCPT_CHARS = 500  # RFC 3461 §4.2
NOTIFY_KEYWORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
BODY_TYPES = frozenset({"7BIT", "8BITMIME"})

MX = "mx"
SUBMISSION = "submission"
SUBMISSIONS = "submissions"
LISTENERS = (MX, SUBMISSION, SUBMISSIONS)


@dataclass(frozen=True)
class SessionLimits:
    """Bounds per connection; past them the client gets 421 and is disconnected."""

    idle_seconds: float = 300.0  # RFC 5321 §4.5.3.2.7: at least 5 minutes
    session_seconds: float = 1800.0
    max_commands: int = 2000
    max_errors: int = 20  # like Postfix's smtpd_hard_error_limit
    max_auth_failures: int = 3  # failed AUTH exchanges (RFC 4954 §4: 535) before 421
    max_recipients: int = 100  # RFC 5321 §4.5.3.1.8: at least 100
    max_connections_per_ip: int = 20  # concurrent sessions from one client address


# ----------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class MailCommand:
    sender: str  # "" for the null reverse-path (RFC 5321 §4.5.5)
    size: int | None = None
    body: str | None = None  # 7BIT | 8BITMIME
    smtputf8: bool = False
    ret: str | None = None  # FULL | HDRS
    envid: str | None = None  # decoded xtext
    auth: str | None = None  # RFC 4954 §5, kept for the log only


@dataclass(frozen=True)
class RcptCommand:
    address: str
    notify: str | None = None  # "NEVER" or a comma list of SUCCESS, FAILURE, DELAY
    orcpt: str | None = None  # "addr-type;address", the address decoded from xtext


def decode_xtext(text: str) -> str | None:
    """RFC 3461 §4: xtext ("+" HEXCHAR HEXCHAR escapes); None when malformed."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "+":
            pair = text[index + 1:index + 3]
            if len(pair) != 2 or not re.fullmatch(r"[0-9A-F]{2}", pair):
                return None
            out.append(chr(int(pair, 16)))
            index += 3
            continue
        if not ("!" <= char <= "~") or char == "=":
            return None
        out.append(char)
        index += 1
    decoded = "".join(out)
    if any(ord(c) < 32 or ord(c) == 127 for c in decoded):
        return None
    return decoded


def _split_path(argument: str, keyword: str) -> tuple[str, str] | Reply:
    """Split `FROM:<path> params` into (path without brackets, params text)."""
    text = argument.strip()
    if text[: len(keyword)].upper() != keyword:
        return replies.syntax(f"{keyword}<address> [parameters]")
    text = text[len(keyword):].lstrip()
    if text.startswith("<"):
        end = text.find(">")
        if end < 0:
            return replies.BAD_ADDRESS
        path, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(" "):
            return replies.BAD_ADDRESS
    else:
        # Not RFC 5321 syntax, but common: a bare address without angle brackets.
        path, _, rest = text.partition(" ")
    if len(path) + 2 > MAX_PATH_OCTETS:
        return replies.BAD_ADDRESS
    if path.startswith("@"):
        # RFC 5321 §4.1.2 A-d-l source route: accepted and ignored (Appendix C).
        colon = path.find(":")
        if colon < 0:
            return replies.BAD_ADDRESS
        path = path[colon + 1:]
    return path, rest.strip()


def _valid_mailbox(path: str) -> bool:
    # No controls or spaces; no lone surrogates (bytes that were not UTF-8, RFC 6531 §3.3).
    if path.count("@") < 1 or any(ord(c) < 33 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in path):
        return False
    local, _, domain = path.rpartition("@")
    return bool(local) and bool(domain) and "<" not in path and ">" not in path


def _parameters(text: str) -> dict[str, str | None] | Reply:
    found: dict[str, str | None] = {}
    for item in text.split():
        name, eq, value = item.partition("=")
        key = name.upper()
        if not re.fullmatch(r"[A-Z0-9][A-Z0-9-]*", key) or (eq and not value):
            return replies.invalid_parameter(f"Bad parameter syntax: {item}")
        if key in found:
            return replies.invalid_parameter(f"Duplicate parameter {key}")
        found[key] = value if eq else None
    return found


def parse_mail(argument: str | None, *, extended: bool, max_size: int) -> MailCommand | Reply:
    """`MAIL FROM:<reverse-path> [params]` (RFC 5321 §4.1.1.2) into a MailCommand, or the refusal."""
    split = _split_path(argument or "", "FROM:")
    if isinstance(split, Reply):
        return split
    path, rest = split
    if path and not _valid_mailbox(path):
        return replies.BAD_ADDRESS
    params = _parameters(rest)
    if isinstance(params, Reply):
        return params
    if params and not extended:
        return replies.syntax("MAIL FROM:<address> (parameters need EHLO)")
    size = body = ret = envid = auth = None
    smtputf8 = False
    for key, value in params.items():
        if key == "SIZE":  # RFC 1870 §6
            if value is None or not value.isdigit() or len(value) > 20:
                return replies.invalid_parameter("SIZE needs a number")
            size = int(value)
            if max_size and size > max_size:
                return replies.MESSAGE_TOO_BIG
        elif key == "BODY":  # RFC 6152 §2
            if value is None or value.upper() not in BODY_TYPES:
                return replies.invalid_parameter("BODY must be 7BIT or 8BITMIME")
            body = value.upper()
        elif key == "SMTPUTF8":  # RFC 6531 §3.4
            if value is not None:
                return replies.invalid_parameter("SMTPUTF8 takes no value")
            smtputf8 = True
        elif key == "RET":  # RFC 3461 §4.3
            if value is None or value.upper() not in ("FULL", "HDRS"):
                return replies.invalid_parameter("RET must be FULL or HDRS")
            ret = value.upper()
        elif key == "ENVID":  # RFC 3461 §4.4
            envid = decode_xtext(value or "")
            if not envid or len(envid) > MAX_ENVID_CHARS:
                return replies.invalid_parameter("ENVID must be xtext of at most 100 characters")
        elif key == "AUTH":  # RFC 4954 §5: accepted; we never trust a client's claim
            auth = decode_xtext(value or "")
            if auth is None:
                return replies.invalid_parameter("AUTH must be xtext")
        else:
            return replies.UNKNOWN_PARAMETER
    if not path.isascii() and not smtputf8:
        return replies.NON_ASCII_ADDRESS
    return MailCommand(sender=path, size=size, body=body, smtputf8=smtputf8, ret=ret, envid=envid, auth=auth)


def parse_rcpt(argument: str | None, *, extended: bool, smtputf8: bool, postmaster_domain: str) -> RcptCommand | Reply:
    """`RCPT TO:<forward-path> [params]` (RFC 5321 §4.1.1.3) into an RcptCommand, or the refusal."""
    split = _split_path(argument or "", "TO:")
    if isinstance(split, Reply):
        return split
    path, rest = split
    if path.lower() == "postmaster":
        path = f"postmaster@{postmaster_domain}"  # RFC 5321 §4.1.1.3: <Postmaster> with no domain
    if not path or not _valid_mailbox(path):
        return replies.BAD_ADDRESS
    params = _parameters(rest)
    if isinstance(params, Reply):
        return params
    if params and not extended:
        return replies.syntax("RCPT TO:<address> (parameters need EHLO)")
    notify = orcpt = None
    for key, value in params.items():
        if key == "NOTIFY":  # RFC 3461 §4.1
            keywords = [k.strip().upper() for k in (value or "").split(",")]
            if keywords != ["NEVER"] and not (keywords and set(keywords) <= NOTIFY_KEYWORDS):
                return replies.invalid_parameter("NOTIFY must be NEVER or SUCCESS, FAILURE, DELAY")
            notify = ",".join(dict.fromkeys(keywords))
        elif key == "ORCPT":  # RFC 3461 §4.2: addr-type ";" xtext
            addr_type, semicolon, encoded = (value or "").partition(";")
            decoded = decode_xtext(encoded)
            if (not semicolon or not re.fullmatch(r"[A-Za-z0-9-]+", addr_type) or not decoded
                    or len(decoded) > MAX_ORCPT_CHARS):
                return replies.invalid_parameter("ORCPT must be addr-type;xtext")
            orcpt = f"{addr_type.lower()};{decoded}"
        else:
            return replies.UNKNOWN_PARAMETER
    if not path.isascii() and not smtputf8:
        return replies.NON_ASCII_ADDRESS
    return RcptCommand(address=path, notify=notify, orcpt=orcpt)


# ----------------------------------------------------------------------------- decisions


def is_trusted(client_ip: str | None, trusted_networks: list[str] | tuple[str, ...]) -> bool:
    """True when the client address lies in one of the operator's trusted networks.

    Nothing is trusted by default: not loopback, not private ranges, not IPv6 link-local."""
    if not client_ip or not trusted_networks:
        return False
    try:
        ip = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network in trusted_networks:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue  # a bad entry trusts nobody
    return False


def may_relay(*, authenticated: bool, trusted: bool) -> bool:
    """ARCHITECTURE §6: relaying needs authentication (or an operator-trusted network)."""
    return authenticated or trusted


def sender_reply(*, listener: str, authenticated: bool, trusted: bool, sender: str,
                 sender_domain_is_local: bool, sender_owned: bool) -> Reply:
    """Whether the client may use `sender` as reverse-path.

    - submission listeners require AUTH (RFC 6409 §4.3, RFC 4954 §6);
    - an authenticated client may only use addresses it owns, or the null reverse-path (§6);
    - an unauthenticated client on MX may not claim one of our own domains (forged local sender)."""
    if listener != MX and not authenticated:
        return replies.AUTH_REQUIRED
    if authenticated:
        return replies.SENDER_OK if (not sender or sender_owned) else replies.SENDER_NOT_OWNED
    if sender and sender_domain_is_local and not trusted:
        return replies.LOCAL_SENDER_NEEDS_AUTH
    return replies.SENDER_OK


@dataclass(frozen=True)
class RecipientFacts:
    """What the registry and the store said about one recipient address."""

    outcome: str  # "deliver" | "remote" | "reject" (courriel.registry.Outcome values)
    reason: str | None = None  # courriel.registry.RejectReason value when rejected
    over_quota: bool = False  # every local target mailbox is full and nothing is forwarded


_REJECTIONS = {
    "invalid_address": replies.BAD_ADDRESS,
    "unknown_recipient": replies.UNKNOWN_RECIPIENT,
    "mailbox_disabled": replies.DISABLED_RECIPIENT,
    "alias_loop": replies.ALIAS_LOOP,
    "domain_unverified": replies.UNVERIFIED_DOMAIN,
}


def recipient_reply(facts: RecipientFacts, *, accepted_so_far: int, max_recipients: int, relay_allowed: bool) -> Reply:
    """The RCPT verdict (ARCHITECTURE §3 step 1: unknown local recipients are refused now)."""
    if accepted_so_far >= max_recipients:
        return replies.TOO_MANY_RECIPIENTS  # RFC 5321 §4.5.3.1.10: 452, the client sends the rest later
    if facts.outcome == "remote":
        return replies.RECIPIENT_OK if relay_allowed else replies.RELAY_DENIED
    if facts.outcome == "reject":
        return _REJECTIONS.get(facts.reason or "", replies.UNKNOWN_RECIPIENT)
    if facts.over_quota:
        return replies.MAILBOX_FULL
    return replies.RECIPIENT_OK


def dmarc_action(disposition: str, *, authenticated: bool) -> str:
    """RFC 7489 §6.6.4 / §10.3: "reject" refuses the message, "quarantine" files it as spam.

    Mail from authenticated clients is ours to judge, not DMARC's: always "accept"."""
    if authenticated:
        return "accept"
    if disposition == "reject":
        return "reject"
    if disposition == "quarantine":
        return "quarantine"
    return "accept"
