"""Header fields the SMTP role adds to a message (ring 0, pure).

Owns the `Received:` trace field of every accepted message, the `Message-ID:` and `Date:`
fields a submission server adds when the client left them out, and the extraction of the
`From:` addresses that a submission must own. The clock and random parts are parameters.

Standards: RFC 5321 §4.4 (trace information: from, by, via, with, id, for; the time stamp),
RFC 3848 and RFC 6531 §3.7.3 (WITH protocol types ESMTP, ESMTPS, ESMTPA, ESMTPSA and their
UTF8SMTP forms), RFC 8314 §7.4 (the TLS version and cipher as a comment), RFC 6409 §8.2-§8.3
(Date and Message-ID added by a submission server), RFC 5322 §3.3 (date-time), §3.6.4
(msg-id), §2.2.3 (folding), RFC 6532 §3.2 (UTF-8 header fields).
Security: the HELO name and envelope addresses are client input; they are written into the
trace field only after control characters and structure characters are replaced.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD = re.compile(rb"(?m)^([!-9;-~]+)[ \t]*:")
_UNSAFE = re.compile(r"[^\x21-\x7e\u00a0-\ud7ff\ue000-\U0010ffff]")  # also lone surrogates (non-UTF-8 input)


def _clean(text: str, limit: int = 255) -> str:
    """Client text made safe inside a trace field: no controls, no parentheses, no brackets."""
    cleaned = _UNSAFE.sub("?", text)[:limit]
    return cleaned.translate(str.maketrans("()<>;\\", "??????"))


def protocol_name(*, extended: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """RFC 3848 / RFC 6531 §3.7.3 WITH keyword."""
    if not extended:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def received_field(*, helo: str, client_ip: str, client_name: str | None, by_host: str, protocol: str,
                   tls_version: str | None, tls_cipher: str | None, recipient: str | None,
                   queue_id: str | None, now: dt.datetime) -> bytes:
    """One `Received:` field (RFC 5321 §4.4), folded, CRLF-terminated, ready to prepend.

    `recipient` is given only when the transaction has exactly one (RFC 5321 §7.2: a `for`
    clause naming several recipients would disclose Bcc recipients)."""
    address = f"[{client_ip}]" if ":" not in client_ip else f"[IPv6:{client_ip}]"
    origin = f"from {_clean(helo) or 'unknown'} ({_clean(client_name) + ' ' if client_name else ''}{address})"
    lines = [f"Received: {origin}", f"\tby {_clean(by_host)}"]
    if tls_version:
        lines[-1] += f" ({_clean(tls_version)} cipher {_clean(tls_cipher or 'unknown')})"
    lines.append(f"\twith {protocol}" + (f" id {_clean(queue_id)}" if queue_id else ""))
    if recipient:
        lines.append(f"\tfor <{_clean(recipient, 320)}>")
    lines[-1] += ";"
    lines.append(f"\t{email.utils.format_datetime(now.astimezone(dt.UTC))}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def header_block(message: bytes) -> bytes:
    """The header section of `message` (without the empty line)."""
    end = _HEADER_END.search(message)
    return message[: end.start()] if end else message


def field_names(message: bytes) -> set[str]:
    """Lower-case names of the header fields present."""
    return {m.group(1).decode("ascii").lower() for m in _FIELD.finditer(header_block(message))}


def field_values(message: bytes, name: str) -> list[str]:
    """Unfolded values of every field called `name` (RFC 5322 §2.2.3), UTF-8 decoded (RFC 6532)."""
    values = []
    wanted = name.lower().encode("ascii")
    head = header_block(message)
    for match in re.finditer(rb"(?ms)^([!-9;-~]+)[ \t]*:(.*?)(?=\r?\n(?![ \t])|\Z)", head):
        if match.group(1).lower() == wanted:
            unfolded = re.sub(rb"\r?\n([ \t])", rb"\1", match.group(2))
            values.append(unfolded.decode("utf-8", "replace").strip())
    return values


def from_addresses(message: bytes) -> list[str]:
    """The addresses of every `From:` field (RFC 5322 §3.6.2); an empty list if there is none."""
    addresses = []
    for value in field_values(message, "From"):
        for _name, address in email.utils.getaddresses([value]):
            if address:
                addresses.append(address)
    return addresses


def submission_fields(message: bytes, *, hostname: str, now: dt.datetime, unique: str) -> bytes:
    """The `Date:` and `Message-ID:` fields to prepend when a submitted message lacks them
    (RFC 6409 §8.2, §8.3); b"" when it has both."""
    present = field_names(message)
    added = b""
    if "date" not in present:
        added += f"Date: {email.utils.format_datetime(now.astimezone(dt.UTC))}\r\n".encode("ascii")
    if "message-id" not in present:
        added += f"Message-ID: <{_clean(unique)}@{_clean(hostname)}>\r\n".encode()
    return added
