"""IMAP ENVELOPE of a message: address lists with group syntax, and its wire form (ring 0, pure).

Owns: the RFC 5322 address-list parser that ENVELOPE needs (names kept in their wire form,
encoded words NOT decoded), the envelope as a JSON-able list, and the encoder that turns
that list (and any nested list of strings/None) into IMAP protocol bytes.

JSON form (None is NIL): [date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to,
message-id]; each address field is None or a list of [name, adl, mailbox, host].

Standards: RFC 3501 §7.4.2 / RFC 9051 §7.5.2 (ENVELOPE, group markers: a group starts with
[None, None, group-name, None] and ends with [None, None, None, None]); RFC 5322 §3.4
(address syntax), §4.4 (obsolete routes, kept in adl); RFC 3501 §4.3 (strings: quoted or
literal).
Security: parses untrusted input; never raises. An address field gives at most
MAX_ENVELOPE_ADDRESSES entries (group markers included; an open group is closed): a 1 MiB
To of 100,000 groups made a 7.7 MB ENVELOPE, stored per message and sent at every FETCH.
SEARCH reads its own decoded columns, SORT the first address, so only ENVELOPE is cut.
"""

from __future__ import annotations

import re

from courriel.mime_headers import HeaderField, last_values, wire_bytes

Address = list  # [name, adl, mailbox, host], each str | None

# Filled in where an address lacks a part, so a NIL host never looks like a group marker
# (RFC 3501 §7.4.2); the same placeholders Dovecot uses.
MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"

_SPECIALS = "<>@,;:."
MAX_ENVELOPE_ADDRESSES = 1000


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens: 'a' atom, 'q' quoted string (unquoted), 'd' domain literal,
    or a special character as its own kind. Comments and blanks are dropped."""
    out: list[tuple[str, str]] = []
    pos, size = 0, len(text)
    while pos < size:
        char = text[pos]
        if char in " \t\r\n":
            pos += 1
        elif char == "(":
            depth = 0
            while pos < size:
                char = text[pos]
                if char == "\\":
                    pos += 1
                elif char == "(":
                    depth += 1
                elif char == ")":
                    depth -= 1
                    if depth == 0:
                        pos += 1
                        break
                pos += 1
        elif char == '"':
            pos += 1
            chars = []
            while pos < size and text[pos] != '"':
                if text[pos] == "\\" and pos + 1 < size:
                    pos += 1
                if text[pos] not in "\r\n":
                    chars.append(text[pos])
                pos += 1
            pos += 1
            out.append(("q", "".join(chars)))
        elif char == "[":
            end = text.find("]", pos)
            end = size if end < 0 else end + 1
            out.append(("d", text[pos:end]))
            pos = end
        elif char in _SPECIALS:
            out.append((char, char))
            pos += 1
        else:
            start = pos
            while pos < size and text[pos] not in _SPECIALS and text[pos] not in ' \t\r\n()"[':
                pos += 1
            if pos == start:  # a stray ')' or ']': skip it
                pos += 1
                continue
            out.append(("a", text[start:pos]))
    return out


def _phrase(words: list[tuple[str, str]]) -> str | None:
    """Display-name words joined by single spaces; '.' (obs-phrase) sticks to the word before."""
    out = ""
    for kind, text in words:
        if kind == ".":
            out += "."
        else:
            out += (" " if out else "") + text
    return out or None


def _joined(words: list[tuple[str, str]]) -> str:
    """A local part or domain: tokens concatenated as written, without blanks."""
    return "".join(text for _kind, text in words)


def parse_addresses(value: str | None) -> list[Address] | None:
    """RFC 5322 §3.4 address-list -> ENVELOPE address structures; None when there are none."""
    if value is None:
        return None
    toks = _tokens(value)
    out: list[Address] = []
    in_group = False
    i, count = 0, len(toks)
    while i < count and len(out) < MAX_ENVELOPE_ADDRESSES:
        kind = toks[i][0]
        if kind == ",":
            i += 1
            continue
        if kind == ";":
            if in_group:
                out.append([None, None, None, None])
                in_group = False
            i += 1
            continue
        j = i
        while j < count and toks[j][0] not in "<:@,;":
            j += 1
        words = toks[i:j]
        stop = toks[j][0] if j < count else ""
        if stop == ":" and not in_group:
            # RFC 5322 §3.4 group: display-name ":" [group-list] ";"
            out.append([None, None, _phrase(words) or "", None])
            in_group = True
            i = j + 1
            continue
        if stop == "<":
            address, i = _angle_address(toks, j + 1, _phrase(words))
            out.append(address)
        elif stop == "@":
            k = j + 1
            while k < count and toks[k][0] not in ",;<>":
                k += 1
            domain = _joined(toks[j + 1:k])
            out.append([None, None, _joined(words) or MISSING_MAILBOX, domain or MISSING_DOMAIN])
            i = k
        else:
            if words:
                out.append([None, None, _joined(words), MISSING_DOMAIN])
            i = j if j > i else j + 1
        # Skip junk up to the next separator.
        while i < count and toks[i][0] not in ",;":
            i += 1
    if in_group:
        out.append([None, None, None, None])
    return out or None


def _angle_address(toks: list[tuple[str, str]], i: int, name: str | None) -> tuple[Address, int]:
    """`[route ":"] local-part "@" domain ">"` starting after '<'; returns (address, next index)."""
    count = len(toks)
    end = i
    while end < count and toks[end][0] != ">":
        end += 1
    inner = toks[i:end]
    adl = None
    colon = next((n for n, tok in enumerate(inner) if tok[0] == ":"), -1)
    if inner and inner[0][0] == "@" and colon > 0:  # RFC 5322 §4.4 obs-route
        adl = _joined(inner[:colon])
        inner = inner[colon + 1:]
    at = max((n for n, tok in enumerate(inner) if tok[0] == "@"), default=-1)
    if at >= 0:
        mailbox, host = _joined(inner[:at]), _joined(inner[at + 1:])
    else:
        mailbox, host = _joined(inner), ""
    return [name, adl, mailbox or MISSING_MAILBOX, host or MISSING_DOMAIN], min(end + 1, count)


def build_envelope(fields: list[HeaderField]) -> list:
    """The ENVELOPE of a header block (RFC 3501 §7.4.2), as a JSON-able list.

    When a field is repeated the last one is used (as Dovecot does; RFC 5322 allows one).
    RFC 3501 §7.4.2: Sender and Reply-To default to From when absent or empty.
    """
    values = last_values(fields, {"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
                                  "message-id"})  # one pass: a header block may hold very many fields
    text = values.get

    def addresses(name: str) -> list[Address] | None:
        return parse_addresses(text(name))

    sender_from = addresses("from")
    sender = addresses("sender") or sender_from
    reply_to = addresses("reply-to") or sender_from
    return [
        text("date"),
        text("subject"),
        sender_from,
        sender,
        reply_to,
        addresses("to"),
        addresses("cc"),
        addresses("bcc"),
        text("in-reply-to"),
        text("message-id"),
    ]


# --------------------------------------------------------------------------- wire encoding


_LITERAL_ONLY = re.compile(rb"[\x00\x0a\x0d\x7f-\xff]")  # bytes a quoted string cannot carry


def imap_string(value: str | None) -> bytes:
    """RFC 3501 §4.3 nstring: NIL, a quoted string, or a literal for 8-bit or CR/LF content."""
    if value is None:
        return b"NIL"
    raw = wire_bytes(value)
    if len(raw) > 1024 or _LITERAL_ONLY.search(raw):
        return b"{%d}\r\n%s" % (len(raw), raw)
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def envelope_bytes(envelope: list) -> bytes:
    """The wire form of an ENVELOPE list built by `build_envelope`."""
    items = []
    for index, value in enumerate(envelope):
        if index in (2, 3, 4, 5, 6, 7):
            items.append(address_list_bytes(value))
        else:
            items.append(imap_string(value))
    return b"(" + b" ".join(items) + b")"


def address_list_bytes(addresses: list[Address] | None) -> bytes:
    if not addresses:
        return b"NIL"
    # RFC 3501 §9: env-from = "(" 1*address ")" / nil — addresses are not separated.
    return b"(" + b"".join(b"(" + b" ".join(imap_string(part) for part in address) + b")"
                           for address in addresses) + b")"
