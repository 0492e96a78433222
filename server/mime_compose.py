"""Header field values for the messages Courriel generates (ring 0, pure).

Owns the two checks that every generated message (auto-replies, calendar RSVPs, delivery
status notifications) applies to a value that came from outside before it becomes a header
field: `header_text` makes any text one safe unstructured value, and `plain_address` accepts
one plain addr-spec and nothing else.

Why more than the email package's own check: `EmailMessage` refuses a value with CR or LF,
but its header parser DECODES RFC 2047 encoded words found in the value it is given, and the
folder writes the decoded text back out. `msg["Subject"] = "=?utf-8?q?x=0D=0ABcc:_v@evil?="`
therefore produces two header lines, "Subject: x" and "Bcc: v@evil" (CPython 3.11-3.13,
measured here). The same happens in display names, even inside quoted strings. So a value
is reduced to one line of printable characters and every "=?" in it is broken up ("= ?")
before the email package sees it: the text can no longer contain an encoded word to decode.

Standards: RFC 5322 §2.2 (a field body is one logical line; CR and LF only as folding),
§2.1.1 (998-octet line limit; folding is left to the email package's SMTP policy), §3.4.1
(addr-spec); RFC 2047 §5 (encoded words, including where they are not allowed); RFC 6532
§3.2 (UTF-8 in addresses, with SMTPUTF8).
Security: every input is untrusted; nothing here raises but `plain_address` (ValueError),
which the callers turn into "no message" rather than a damaged one.
"""

from __future__ import annotations

import re
import unicodedata

MAX_HEADER_TEXT = 400  # characters of a generated unstructured value (Subject and the like)
MAX_DISPLAY_NAME = 200

# Line breaks of every kind (C0, DEL, NEL, C1, U+2028/2029) and other controls become spaces.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_BLANKS = re.compile(r"\s+")
# RFC 5321 §4.1.2 Dot-string local part (atext; UTF-8 allowed per RFC 6531) @ a host name.
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~"
                    r"\u0080-\U0010ffff-]+)*$")
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]{0,61}"
                     r"[A-Za-z0-9\u0080-\U0010ffff])?\.)*[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9"
                     r"\u0080-\U0010ffff-]{0,61}[A-Za-z0-9\u0080-\U0010ffff])?$")


def header_text(value: object, limit: int = MAX_HEADER_TEXT) -> str:
    """`value` as one unstructured header value: no controls or line breaks, blanks collapsed,
    no encoded-word look-alike, at most `limit` characters (cut on a character boundary)."""
    text = "" if value is None else str(value)
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")  # lone surrogates → "?"
    text = "".join(c for c in text if unicodedata.category(c) != "Cf" or c in "\u200d")  # bidi/format tricks
    text = _BLANKS.sub(" ", _CONTROLS.sub(" ", text)).strip()
    while "=?" in text:  # RFC 2047 §5: never hand the email package an encoded word to decode
        text = text.replace("=?", "= ?")
    return text[:limit].rstrip()


def display_name(value: object) -> str:
    """A display name for formataddr: `header_text` bounded to MAX_DISPLAY_NAME."""
    return header_text(value, MAX_DISPLAY_NAME)


_MSG_ID = re.compile(r"^[!-;=?-~]+$")  # printable ASCII but "<" and ">" (RFC 5322 §3.6.4 id-left@id-right)


def msg_id(value: object) -> str | None:
    """A message id (without angle brackets) fit to copy into In-Reply-To / References, or
    None: printable ASCII only, an "@", no encoded-word look-alike, at most 250 characters."""
    text = "" if value is None else str(value)
    if not _MSG_ID.match(text) or "@" not in text or "=?" in text or len(text) > 250:
        return None
    return text


def plain_address(value: object) -> str:
    """One plain addr-spec `local@domain` (dot-atom local part, UTF-8 allowed), stripped;
    ValueError for anything else: lists, display names, angle brackets, comments, quoted
    local parts, blanks or controls, source routes, empty parts, more than 254 octets."""
    text = "" if value is None else str(value).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, at, domain = text.rpartition("@")
    try:
        octets = len(text.encode("utf-8")), len(local.encode("utf-8"))  # lone surrogates: not text
    except UnicodeEncodeError:
        raise ValueError("not one plain address") from None
    if not at or not _LOCAL.match(local) or not _DOMAIN.match(domain.rstrip(".")) or octets[0] > 254 \
            or octets[1] > 64:
        raise ValueError("not one plain address")
    return f"{local}@{domain.rstrip('.')}"


__all__ = ["MAX_DISPLAY_NAME", "MAX_HEADER_TEXT", "display_name", "header_text", "msg_id", "plain_address"]
