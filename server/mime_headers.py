"""Raw header blocks of RFC 5322 messages and MIME parts, read from bytes with offsets (ring 0, pure).

Owns: finding where a header block ends, splitting it into fields without re-serialising
them (repeated, 8-bit and malformed fields are kept byte for byte), unfolding a value for
IMAP ENVELOPE, Content-Type / Content-Disposition parameter lists with RFC 2231
continuations, the HEADER.FIELDS filter, and RFC 2047 decoding for the SEARCH/SORT columns.

Standards: RFC 5322 §2.2 (header fields), §2.2.3 (folding); RFC 2045 §5.1 (Content-Type
syntax); RFC 2231 §3-4 (parameter continuations and charsets); RFC 2047 (encoded words);
RFC 3501 §6.4.5 (HEADER.FIELDS returns the selected lines and the blank line).
Security: parses untrusted input; never raises on malformed bytes.
"""

from __future__ import annotations

import contextlib
import email.header
import re
from dataclasses import dataclass

# Header values are kept as text with the original bytes recoverable: UTF-8 with
# surrogateescape round-trips any 8-bit header byte for byte (see `wire_bytes`).
TEXT_ERRORS = "surrogateescape"


def as_text(raw: bytes) -> str:
    return raw.decode("utf-8", TEXT_ERRORS)


def wire_bytes(text: str) -> bytes:
    return text.encode("utf-8", TEXT_ERRORS)


@dataclass(frozen=True)
class HeaderField:
    name: str  # as written, without the colon ("" for a line that has no colon)
    start: int  # offset of the first byte of the field in the message
    end: int  # offset just after the field's last line ending
    raw: bytes  # the field exactly as stored, including folding and the final line ending

    @property
    def value(self) -> str:
        """The value unfolded the way IMAP ENVELOPE presents it (see `unfold`)."""
        colon = self.raw.find(b":")
        return unfold(self.raw[colon + 1:]) if colon >= 0 else ""


def header_end(data: bytes, start: int, end: int) -> int:
    """Offset where the body starts: just after the blank line ending the header.

    RFC 5322 §2.1: the header is separated from the body by an empty line. A block
    without an empty line is all header (the body is empty). CRLF and bare LF are both
    accepted as line endings.
    """
    if start >= end:
        return end
    if data.startswith(b"\r\n", start, end):
        return start + 2
    if data.startswith(b"\n", start, end):
        return start + 1
    ends = []
    for marker in (b"\n\r\n", b"\n\n"):
        found = data.find(marker, start, end)
        if found >= 0:
            ends.append(found + len(marker))
    return min(ends) if ends else end


# Header fields are read for ENVELOPE/BODYSTRUCTURE from the first 1 MiB and 5000 fields
# of a header block only: real headers are far smaller, and a hostile one must not cost
# seconds. Offsets, BODY[HEADER] and HEADER.FIELDS are unaffected (they read everything).
MAX_HEADER_SCAN = 1024 * 1024
MAX_HEADER_FIELDS = 5000


def split_fields(data: bytes, start: int, end: int, limit: int | None = MAX_HEADER_SCAN) -> list[HeaderField]:
    """The header fields in data[start:end] (a header block, blank line included or not),
    reading at most `limit` bytes of it (None: all)."""
    if limit is not None:
        end = min(end, start + limit)
    fields: list[HeaderField] = []
    pos = start
    current_start = -1
    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        line = data[pos:line_end]
        if line in (b"\r\n", b"\n"):  # the blank line that ends the header
            break
        if line[:1] in (b" ", b"\t") and current_start >= 0:
            pass  # RFC 5322 §2.2.3: a continuation line of the current field
        else:
            if current_start >= 0:
                fields.append(_field(data, current_start, pos))
                if limit is not None and len(fields) >= MAX_HEADER_FIELDS:
                    return fields
            current_start = pos
        pos = line_end
    if current_start >= 0:
        fields.append(_field(data, current_start, pos))
    return fields


def _field(data: bytes, start: int, end: int) -> HeaderField:
    raw = data[start:end]
    colon = raw.find(b":")
    first_line_end = raw.find(b"\n")
    name = "" if colon < 0 or 0 <= first_line_end < colon else as_text(raw[:colon]).strip()
    return HeaderField(name=name, start=start, end=end, raw=raw)


_FOLD = re.compile(rb"\r?\n[ \t]*")


def unfold(raw: bytes) -> str:
    """A field value as IMAP ENVELOPE carries it: leading blanks removed, each line break
    with the blanks after it replaced by one space, trailing blanks kept (as Dovecot does),
    the trailing line ending dropped. Encoded words are NOT decoded (RFC 3501 §7.4.2)."""
    value = raw.rstrip(b"\r\n")
    value = _FOLD.sub(b" ", value).lstrip(b" \t")
    # NUL cannot travel in an IMAP string: U+FFFD replaces it (as Dovecot does).
    return as_text(value.replace(b"\0", "\ufffd".encode()))


def last_value(fields: list[HeaderField], name: str) -> str | None:
    """The value of the last field called `name` (case-insensitive), or None."""
    wanted = name.lower()
    found = None
    for field in fields:
        if field.name.lower() == wanted:
            found = field
    return None if found is None else found.value


def last_values(fields: list[HeaderField], names: set[str]) -> dict[str, str]:
    """{lower-case name: value of its last field} for the wanted names, in one pass."""
    last: dict[str, HeaderField] = {}
    for field in fields:
        name = field.name.lower()
        if name in names:
            last[name] = field
    return {name: field.value for name, field in last.items()}


def first_value(fields: list[HeaderField], name: str) -> str | None:
    wanted = name.lower()
    for field in fields:
        if field.name.lower() == wanted:
            return field.value
    return None


def filter_fields(header: bytes, names: list[str] | tuple[str, ...], exclude: bool) -> bytes:
    """RFC 3501 §6.4.5 HEADER.FIELDS / HEADER.FIELDS.NOT on a header block, byte-exact.

    Selected fields are returned exactly as stored (folding, repeats and 8-bit bytes
    kept), in their original order, followed by the blank line when the block had one.
    A selected last field without a line ending gets CRLF.
    """
    wanted = {name.lower() for name in names}
    out = []
    fields = split_fields(header, 0, len(header), limit=None)
    for field in fields:
        keep = field.name.lower() in wanted if field.name else False
        if exclude:
            keep = not keep if field.name else True
        if keep:
            raw = field.raw
            out.append(raw if raw.endswith(b"\n") else raw + b"\r\n")
    tail = header[fields[-1].end:] if fields else header
    if tail in (b"\r\n", b"\n"):
        out.append(tail)
    return b"".join(out)


# --------------------------------------------------------------------------- RFC 2045 parameters

_TSPECIALS = set('()<>@,;:\\"/[]?=')


class _Scanner:
    """A small RFC 2045 tokenizer over header text (comments skipped)."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def skip_blanks(self) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r\n":
                self.pos += 1
            elif char == "(":
                depth = 0
                while self.pos < len(text):
                    char = text[self.pos]
                    if char == "\\":
                        self.pos += 1
                    elif char == "(":
                        depth += 1
                    elif char == ")":
                        depth -= 1
                        if depth == 0:
                            self.pos += 1
                            break
                    self.pos += 1
            else:
                break

    def peek(self) -> str:
        self.skip_blanks()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str:
        self.skip_blanks()
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] not in _TSPECIALS and text[self.pos] not in " \t\r\n":
            self.pos += 1
        return text[start:self.pos]

    def quoted(self) -> str:
        """A quoted-string starting at the current position, unquoted."""
        self.pos += 1
        out = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < len(text):
                out.append(text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == '"':
                break
            if char not in "\r\n":
                out.append(char)
        return "".join(out)

    def value(self) -> str | None:
        char = self.peek()
        if char == '"':
            return self.quoted()
        # Lenient: an unquoted value runs to the next ';' (RFC 2045 would stop at tspecials).
        start = self.pos
        end = self.text.find(";", start)
        end = len(self.text) if end < 0 else end
        self.pos = end
        raw = self.text[start:end].strip()
        return raw or None


def parse_parameters(scanner: _Scanner) -> list[tuple[str, str]]:
    """`*(";" attribute "=" value)` with RFC 2231 continuations merged.

    Plain parameters keep their order; RFC 2231 ones (`name*0`, `name*`, `name*1*`) follow,
    merged per name and sorted by name. An extended (charset'language'percent-encoded)
    value keeps its encoded form under the name `name*`, as IMAP servers send it.
    Invalid parameters (no `=`, no value) are dropped.
    """
    plain: list[tuple[str, str]] = []
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    seen_plain: set[str] = set()
    while True:
        char = scanner.peek()
        if char == "":
            break
        if char != ";":
            # Garbage between parameters: skip to the next ';'.
            nxt = scanner.text.find(";", scanner.pos)
            if nxt < 0:
                break
            scanner.pos = nxt
        scanner.pos += 1
        name = scanner.token()
        if not name:
            continue
        if scanner.peek() != "=":
            continue
        scanner.pos += 1
        value = scanner.value()
        if value is None:
            continue
        match = re.fullmatch(r"(.+?)\*(?:(\d{1,3})(\*)?|)", name)
        if match is None or ("*" not in name):
            if name.lower() not in seen_plain:
                seen_plain.add(name.lower())
                plain.append((name, value))
            continue
        base, index, star = match.group(1), match.group(2), match.group(3)
        if index is None:  # `name*=charset'lang'value`
            sections.setdefault(base, []).append((0, True, value))
        else:
            sections.setdefault(base, []).append((int(index), bool(star), value))
    merged: list[tuple[str, str]] = []
    for base in sorted(sections, key=str.lower):
        parts = sorted(sections[base], key=lambda item: item[0])
        extended = parts[0][1] if parts and parts[0][0] == 0 else any(p[1] for p in parts)
        value = "".join(p[2] for p in parts)
        merged.append((base + "*" if extended else base, value))
    return plain + merged


@dataclass(frozen=True)
class ContentType:
    maintype: str
    subtype: str
    params: list[tuple[str, str]]
    valid: bool


def parse_content_type(value: str | None) -> ContentType | None:
    """RFC 2045 §5.1 `type "/" subtype *(";" parameter)`; None when absent or unusable."""
    if value is None:
        return None
    scanner = _Scanner(value)
    maintype = scanner.token()
    if not maintype or scanner.peek() != "/":
        return None
    scanner.pos += 1
    subtype = scanner.token()
    if not subtype:
        return None
    return ContentType(maintype, subtype, parse_parameters(scanner), True)


def parse_disposition(value: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    """RFC 2183 `disposition-type *(";" parameter)`."""
    if value is None:
        return None
    scanner = _Scanner(value)
    kind = scanner.token()
    if not kind:
        return None
    return kind, parse_parameters(scanner)


def parse_language(value: str | None) -> list[str] | None:
    """RFC 3282 Content-Language: a comma-separated list of tags."""
    if value is None:
        return None
    tags = []
    scanner = _Scanner(value)
    while scanner.peek():
        tag = scanner.token()
        if tag:
            tags.append(tag)
        if scanner.peek() in (",", ";", "/", "=", "@", ":", "<", ">", "[", "]", "?", "\\"):
            scanner.pos += 1
        elif scanner.peek() == '"':
            tags.append(scanner.quoted())
        elif not tag:
            scanner.pos += 1
    return tags or None


# --------------------------------------------------------------------------- RFC 2047 decoding


def decode_words(value: str) -> str:
    """RFC 2047 decoded text of a header value, for SEARCH/SORT columns. Never raises.

    Undecodable bytes become U+FFFD; unknown charsets fall back to UTF-8 then Latin-1.
    """
    with contextlib.suppress(Exception):  # unknown charset or broken word: decode piece by piece below
        text = str(email.header.make_header(email.header.decode_header(value)))
        return readable_text(text) if _SURROGATES.search(text) else text
    try:
        chunks = email.header.decode_header(value)
    except Exception:
        return readable_text(value)
    out = []
    for chunk, charset in chunks:
        out.append(readable_text(chunk) if isinstance(chunk, str) else _decode_charset(chunk, charset))
    return "".join(out)


_SURROGATES = re.compile("[\udc80-\udcff]")


def _decode_charset(raw: bytes, charset: str | None) -> str:
    if charset in (None, "unknown-8bit"):
        return readable_text(raw.decode("ascii", TEXT_ERRORS))
    try:
        return raw.decode(charset, "replace")
    except (LookupError, ValueError):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def readable_text(text: str) -> str:
    """Text whose 8-bit bytes are escaped surrogates: UTF-8 if valid, else Latin-1."""
    raw = text.encode("utf-8", TEXT_ERRORS)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
