"""FETCH BODY[section]<partial> and BINARY[section] from the stored message bytes (ring 0, pure).

Owns: parsing a section specifier, resolving it against the cached part tree
(`mime_structure`) to a byte range of the stored message, and producing the exact bytes:
never re-serialised, so repeated, folded and 8-bit header fields come back as stored.
`locate` needs only the cached tree, so the IMAP server can read just that slice of a
large blob file; `section_bytes` does everything from the whole message in memory.
BINARY decodes base64 and quoted-printable content (`decode_binary`).

Standards: RFC 3501 §6.4.5 / RFC 9051 §6.4.5 (section specifiers, part numbering through
message/rfc822, `<origin.count>` partial fetch), RFC 3501 §7.4.2 (RFC822.HEADER =
BODY[HEADER], RFC822.TEXT = BODY[TEXT]), RFC 3516 §4.2-4.3 (BINARY, BINARY.SIZE,
UNKNOWN-CTE), RFC 2045 §6.7-6.8 (quoted-printable, base64).
Security: section numbers and header names come from the client; all lookups are bounded
by the tree, and a missing part yields empty content (as Dovecot answers), never an error.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

from courriel.mime_headers import filter_fields


class SectionSyntaxError(ValueError):
    """The section specifier is not valid RFC 3501 syntax (the server answers BAD)."""


class UnknownTransferEncoding(ValueError):
    """RFC 3516 §4.3: BINARY of a part whose encoding we cannot decode (NO [UNKNOWN-CTE])."""


@dataclass(frozen=True)
class Section:
    """A parsed section: part numbers, then an optional text specifier.

    text is None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT" or "MIME".
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = field(default=())


_SECTION = re.compile(
    r"(?P<part>[1-9][0-9]*(?:\.[1-9][0-9]*)*)?"
    r"(?:(?(part)\.)(?P<text>HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?"
    r"(?:\s*\((?P<fields>[^()]*)\))?",
    re.IGNORECASE,
)


def parse_section(spec: str) -> Section:
    """The text between the brackets of BODY[...], e.g. "1.2.HEADER.FIELDS (From To)"."""
    spec = spec.strip()
    match = _SECTION.fullmatch(spec)
    if match is None:
        raise SectionSyntaxError(f"bad section: {spec!r}")
    part = tuple(int(n) for n in match.group("part").split(".")) if match.group("part") else ()
    text = match.group("text").upper() if match.group("text") else None
    names = tuple(_header_names(match.group("fields"))) if match.group("fields") is not None else ()
    if (text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT")) != (match.group("fields") is not None):
        raise SectionSyntaxError(f"bad section: {spec!r}")
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT") and not names:
        raise SectionSyntaxError("HEADER.FIELDS needs at least one field name")
    if text == "MIME" and not part:
        raise SectionSyntaxError("MIME needs a part number")
    if any(n > 1_000_000 for n in part):
        raise SectionSyntaxError("part number too large")
    return Section(part=part, text=text, fields=names)


def _header_names(text: str) -> list[str]:
    names = []
    for item in re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', text):
        names.append(item[0] or item[1])
    return names


def _child(node: dict, number: int, top: bool) -> dict | None:
    """Part `number` below `node` (RFC 3501 §6.4.5 part numbering); `top` for the message itself."""
    if "message" in node and not top:
        node = node["message"]["body"]  # numbering continues inside the encapsulated message
    if "parts" in node:
        parts = node["parts"]
        return parts[number - 1] if number <= len(parts) else None
    # A non-multipart entity has only part 1: its body. Like Dovecot, this also holds for a
    # leaf inside a multipart ("1.1" of a text part is that part).
    return node if number == 1 else None


@dataclass(frozen=True)
class SectionLocation:
    """Where a section's content is in the stored message.

    The content is data[start:end]; when `fields` is set the range is a header block that
    must be filtered with `header_filter` (HEADER.FIELDS[.NOT]). `node` is the part the
    section designates (for BINARY: its encoding), None when the part does not exist.
    """

    start: int
    end: int
    fields: tuple[str, ...] = ()
    exclude: bool = False
    node: dict | None = None

    @property
    def filtered(self) -> bool:
        return bool(self.fields)

    def header_filter(self, header: bytes) -> bytes:
        return filter_fields(header, self.fields, self.exclude)


_EMPTY = SectionLocation(0, 0)


def locate(tree: dict, section: Section) -> SectionLocation:
    """Resolve a section against a cached part tree (`mime_structure.parse_structure`).

    A section that names a missing part, or HEADER/TEXT of a part that is not a message,
    resolves to empty content (Dovecot answers BODY[1.5] with "").
    """
    node = tree
    for index, number in enumerate(section.part):
        found = _child(node, number, top=index == 0)
        if found is None:
            return _EMPTY
        node = found
    start, body_start, end = node["offsets"]
    text = section.text
    if text is None:
        if not section.part:
            return SectionLocation(start, end, node=node)  # BODY[]: the whole message
        return SectionLocation(body_start, end, node=node)
    if text == "MIME":
        return SectionLocation(start, body_start, node=node)
    # HEADER, HEADER.FIELDS[.NOT], TEXT: of the top-level message or of a message/rfc822 part.
    if section.part:
        if "message" not in node:
            return _EMPTY
        node = node["message"]["body"]
        start, body_start, end = node["offsets"]
    if text == "TEXT":
        return SectionLocation(body_start, end, node=node)
    if text == "HEADER":
        return SectionLocation(start, body_start, node=node)
    return SectionLocation(start, body_start, fields=section.fields,
                           exclude=text == "HEADER.FIELDS.NOT", node=node)


def nul_free(content: bytes) -> bytes:
    """BODY[] content fit for an IMAP literal: RFC 3501 §4.3 forbids NUL in literals, so NUL
    becomes 0x80 (as Dovecot sends it); only BINARY's literal8 (RFC 3516 §4) may carry NUL.
    Sizes do not change, so partial ranges and BODYSTRUCTURE sizes stay valid."""
    return content.replace(b"\0", b"\x80")


def partial(content: bytes, origin: int | None, count: int | None) -> bytes:
    """RFC 3501 §6.4.5 `<origin.count>`: the octets from origin, at most count of them."""
    if origin is None:
        return content
    if count is None:
        return content[origin:]
    return content[origin:origin + count]


def section_bytes(data: bytes, tree: dict, section: Section | str) -> bytes:
    """The exact content of BODY[section] from the whole stored message."""
    if isinstance(section, str):
        section = parse_section(section)
    where = locate(tree, section)
    content = data[where.start:where.end]
    return where.header_filter(content) if where.filtered else content


def rfc822_header(data: bytes, tree: dict) -> bytes:
    """RFC822.HEADER (RFC 3501 §6.4.5): equivalent to BODY.PEEK[HEADER]."""
    return section_bytes(data, tree, Section(text="HEADER"))


def rfc822_text(data: bytes, tree: dict) -> bytes:
    """RFC822.TEXT (RFC 3501 §6.4.5): equivalent to BODY[TEXT]."""
    return section_bytes(data, tree, Section(text="TEXT"))


# --------------------------------------------------------------------------- BINARY (RFC 3516)


def binary_location(tree: dict, part: tuple[int, ...]) -> SectionLocation:
    """RFC 3516 §4.2 section-binary is only part numbers: where the encoded content is."""
    return locate(tree, Section(part=part))


def decode_binary(content: bytes, node: dict | None, whole_message: bool = False) -> bytes:
    """RFC 3516 §4.2: the content of a part with its Content-Transfer-Encoding removed.

    Multiparts, messages and the whole message are returned as stored (their encoding
    can only be an identity one). Raises UnknownTransferEncoding for encodings other than
    7bit/8bit/binary/base64/quoted-printable.
    """
    decoder = BinaryDecoder(node, whole_message)
    return decoder.feed(content) + decoder.finish()


_NOT_BASE64 = bytes(byte for byte in range(256)
                    if byte not in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _decode_base64(content: bytes) -> bytes:
    """RFC 2045 §6.8: characters outside the alphabet are ignored, the data ends at the
    first "=" (padding), and a dangling last character is dropped."""
    padding = content.find(b"=")
    if padding >= 0:
        content = content[:padding]
    payload = content.translate(None, _NOT_BASE64)
    if len(payload) % 4 == 1:
        payload = payload[:-1]
    return binascii.a2b_base64(payload + b"=" * (-len(payload) % 4))


class BinaryDecoder:
    """Incremental BINARY decoding of a part read in chunks (large attachments are streamed).

    `feed(chunk)` returns the decoded bytes available so far and `finish()` the rest;
    the concatenation equals `decode_binary` of the whole content.
    """

    def __init__(self, node: dict | None, whole_message: bool = False):
        encoding = "7bit" if node is None or whole_message or "parts" in node or "message" in node else (
            (node.get("encoding") or "7bit").strip().lower())
        if encoding in ("", "7bit", "8bit", "binary"):
            encoding = "identity"
        elif encoding not in ("base64", "quoted-printable"):
            raise UnknownTransferEncoding(encoding)
        self.encoding = encoding
        self._pending = b""
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.encoding == "identity":
            return chunk
        buffer = self._pending + chunk
        if self.encoding == "quoted-printable":
            cut = buffer.rfind(b"\n") + 1  # decode whole lines only: "=" may end a chunk
            self._pending = buffer[cut:]
            return binascii.a2b_qp(buffer[:cut])
        if self._done:
            return b""
        padding = buffer.find(b"=")
        if padding >= 0:  # the end of the data: what follows is ignored
            self._done, self._pending = True, b""
            return _decode_base64(buffer[:padding])
        payload = buffer.translate(None, _NOT_BASE64)
        cut = len(payload) - len(payload) % 4
        self._pending = payload[cut:]
        return binascii.a2b_base64(payload[:cut]) if cut else b""

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        if not rest or self.encoding == "identity":
            return rest
        return binascii.a2b_qp(rest) if self.encoding == "quoted-printable" else _decode_base64(rest)


def binary_bytes(data: bytes, tree: dict, part: tuple[int, ...]) -> bytes:
    """BINARY[part] from the whole stored message; len() of it is BINARY.SIZE[part]."""
    where = binary_location(tree, part)
    return decode_binary(data[where.start:where.end], where.node, whole_message=not part)
