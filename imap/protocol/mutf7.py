"""Modified UTF-7 mailbox names (IMAP4rev1 mailbox international naming).

Owns the conversion between Unicode mailbox names and their modified UTF-7 wire form, and
the choice between that form and raw UTF-8 once a client has enabled UTF8=ACCEPT.

Standards: RFC 3501 §5.1.3 (modified UTF-7: printable US-ASCII except "&" stands for
itself, "&-" is "&", other characters are modified BASE64 of UTF-16BE between "&" and "-"
with "," instead of "/"; no padding; a shift sequence never encodes printable US-ASCII and
two shift sequences are never adjacent), RFC 2152 (UTF-7), RFC 6855 §3 (after ENABLE
UTF8=ACCEPT mailbox names are sent and received as UTF-8, not modified UTF-7), RFC 9051 §5.1
(IMAP4rev2 uses UTF-8 names).
Security: `decode` parses client input; anything that is not canonical modified UTF-7 raises
`MUTF7Error` (the session answers BAD or NO), so two different wire names never map to one
Unicode name.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["MUTF7Error", "decode", "decode_name", "encode", "encode_name"]


class MUTF7Error(ValueError):
    """The bytes are not canonical modified UTF-7."""


def _printable(code: int) -> bool:
    return 0x20 <= code <= 0x7E


def encode(name: str) -> bytes:
    """Unicode → modified UTF-7 (RFC 3501 §5.1.3)."""
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            out.extend(b"&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for char in name:
        code = ord(char)
        if _printable(code):
            flush()
            out.extend(b"&-" if char == "&" else char.encode("ascii"))
        else:
            pending.append(char)
    flush()
    return bytes(out)


def decode(data: bytes | str) -> str:
    """Modified UTF-7 → Unicode; non-canonical or malformed input raises MUTF7Error."""
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise MUTF7Error("8-bit character in a modified UTF-7 name") from None
    out: list[str] = []
    index, length = 0, len(data)
    previous_shift_end = -1
    while index < length:
        code = data[index]
        if not _printable(code):
            raise MUTF7Error(f"character 0x{code:02x} not allowed in a mailbox name")
        if code != 0x26:  # "&"
            out.append(chr(code))
            index += 1
            continue
        end = data.find(b"-", index + 1)
        if end < 0:
            raise MUTF7Error("unterminated shift sequence")
        if end == index + 1:  # "&-" is "&"
            out.append("&")
            index = end + 1
            continue
        if previous_shift_end == index:
            raise MUTF7Error("adjacent shift sequences")  # RFC 3501 §5.1.3: must be merged
        out.append(_decode_shift(data[index + 1:end]))
        index = end + 1
        previous_shift_end = index
    return "".join(out)


def _decode_shift(chunk: bytes) -> str:
    if any(c not in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+," for c in chunk):
        raise MUTF7Error("bad character in modified BASE64")
    if len(chunk) % 4 == 1:
        raise MUTF7Error("truncated modified BASE64")
    padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise MUTF7Error("bad modified BASE64") from None
    if len(raw) % 2:
        raise MUTF7Error("odd number of UTF-16 bytes")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise MUTF7Error("bad UTF-16 in shift sequence") from None
    if any(_printable(ord(c)) for c in text):
        raise MUTF7Error("printable US-ASCII encoded in a shift sequence")
    # Canonical form only: unused trailing bits must be zero, so re-encoding gives the same bytes.
    if base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") != chunk:
        raise MUTF7Error("non-canonical modified BASE64")
    return text


def encode_name(name: str, utf8: bool = False) -> bytes:
    """A mailbox name for the wire: raw UTF-8 after ENABLE UTF8=ACCEPT (RFC 6855 §3), else modified UTF-7."""
    return name.encode("utf-8") if utf8 else encode(name)


def decode_name(data: bytes, utf8: bool = False) -> str:
    """A mailbox name from the wire. With UTF8=ACCEPT the name is UTF-8 and left as is (RFC 6855 §3);
    otherwise it must be modified UTF-7. Raises MUTF7Error on bad input."""
    if utf8:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise MUTF7Error("mailbox name is not valid UTF-8") from None
    return decode(data)
