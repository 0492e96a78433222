"""IMAP response encoder: typed values → wire bytes, with large literals streamed.

Owns the serialisation of server responses: status responses (tagged, untagged, with
response codes), continuation requests, strings (atom / quoted / literal / NIL chosen by the
quoting rules), nested parenthesised lists, mailbox names (modified UTF-7 or UTF-8), FETCH
responses as an iterator of byte chunks (a body literal is never joined into one string),
ESEARCH, SEARCH, LIST/LSUB, STATUS, CAPABILITY, ENABLED, ID, NAMESPACE, VANISHED, METADATA lines.

Value mapping in `value()`: None → NIL; int → number; `Atom` → as is (flags, keywords);
`Raw` → pre-encoded bytes (ENVELOPE/BODYSTRUCTURE from the store); str/bytes → string
(quoted when safe, else literal); list/tuple → parenthesised list; SequenceSet → set text;
datetime → quoted date-time. A literal to stream is any object with `size`, `binary` and
`chunks()` (`StreamedLiteral`, or `courriel.imap.fetch.Literal`).

Standards: RFC 3501 §4.3 (quoted strings may not hold CR, LF or 8-bit; literals otherwise),
§7 (responses), §7.1 (response codes), §7.4.2 (FETCH response), §7.2.2 (LIST), §7.2.4
(STATUS), §7.5 (continuation request), §5.1.3 (mailbox names), RFC 9051 §7, RFC 3516 §4.3
(literal8 `~{n}` for BINARY data that may contain NUL), RFC 4731 §3.1 (ESEARCH), RFC 5258
§3.5 (LIST extended data, CHILDINFO), RFC 7162 §3.2.10 (VANISHED), RFC 6855 §3 (UTF-8 quoted
strings and names after UTF8=ACCEPT), RFC 2971 (ID), RFC 2342 (NAMESPACE), RFC 5161 (ENABLED),
RFC 5464 §4.4.1 (METADATA).
Security: response text is stripped of CR and LF so a value can never inject a response line.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from courriel.imap.protocol.dates import format_date_time
from courriel.imap.protocol.grammar import is_astring_char
from courriel.imap.protocol.mutf7 import encode_name
from courriel.imap.protocol.sequence import SequenceSet

CRLF = b"\r\n"
MAX_QUOTED = 1024  # longer strings go as literals (readability of logs, client buffers)


class Atom(str):
    """Text written as is: flags, keywords, capability names, response code words."""


class Raw(bytes):
    """Bytes already in wire form (e.g. an ENVELOPE or BODYSTRUCTURE list)."""


class LiteralSource(Protocol):
    size: int
    binary: bool

    def chunks(self) -> Iterable[bytes]: ...


@dataclass
class StreamedLiteral:
    """A literal whose `size` is known up front and whose content comes from `source` in chunks."""

    size: int
    source: Iterable[bytes]
    binary: bool = False

    def chunks(self) -> Iterable[bytes]:
        return self.source


def _is_literal(value) -> bool:
    return hasattr(value, "chunks") and hasattr(value, "size")


# --- strings (RFC 3501 §4.3) -----------------------------------------------------------------

def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _quotable(data: bytes, utf8: bool) -> bool:
    if len(data) > MAX_QUOTED or b"\r" in data or b"\n" in data or b"\0" in data:
        return False
    if max(data, default=0) < 0x80:
        return True
    if not utf8:
        return False  # RFC 3501 §4.3: 8-bit data is never quoted
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True  # RFC 6855 §3: UTF-8 in quoted strings after ENABLE UTF8=ACCEPT


def quoted(value: bytes | str) -> bytes:
    data = _as_bytes(value)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(value: bytes | str, binary: bool = False) -> bytes:
    """A literal `{n}` CRLF data, or literal8 `~{n}` (RFC 3516 §4.3), as one bytes value."""
    data = _as_bytes(value)
    return (b"~" if binary else b"") + b"{%d}\r\n" % len(data) + data


def string(value: bytes | str | None, *, utf8: bool = False) -> bytes:
    """nstring: NIL for None, a quoted string when allowed, else a literal."""
    if value is None:
        return b"NIL"
    data = _as_bytes(value)
    return quoted(data) if _quotable(data, utf8) else literal(data, binary=b"\0" in data)


def astring(value: bytes | str, *, utf8: bool = False) -> bytes:
    """An atom when every byte is an ASTRING-CHAR and it is not NIL, else a string."""
    data = _as_bytes(value)
    if data and data.upper() != b"NIL" and all(is_astring_char(b) for b in data):
        return data
    return string(data, utf8=utf8)


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name: modified UTF-7 (RFC 3501 §5.1.3), or UTF-8 after UTF8=ACCEPT (RFC 6855 §3)."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(encode_name(name, utf8), utf8=utf8)


def value(item, *, utf8: bool = False) -> bytes:
    """Any response value as bytes (see the module docstring for the mapping)."""
    if item is None:
        return b"NIL"
    if isinstance(item, bool):
        raise TypeError("booleans have no IMAP form")
    if isinstance(item, int):
        return b"%d" % item
    if isinstance(item, Raw):
        return bytes(item)
    if isinstance(item, Atom):
        return _clean(item).encode("utf-8")
    if isinstance(item, str | bytes | bytearray):
        return string(item, utf8=utf8)
    if isinstance(item, SequenceSet):
        return bytes(item)
    if isinstance(item, dt.datetime):
        return quoted(format_date_time(item))
    if isinstance(item, list | tuple):
        return b"(" + b" ".join(value(i, utf8=utf8) for i in item) + b")"
    if _is_literal(item):
        raise TypeError("streamed literals go through stream()/fetch_response()")
    raise TypeError(f"no IMAP form for {type(item).__name__}")


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(_clean(f) for f in flags).encode("utf-8") + b")"


# --- status responses (RFC 3501 §7.1) --------------------------------------------------------

def _clean(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def response_code(code) -> bytes:
    """"TOOBIG" → b"[TOOBIG]"; ("UIDNEXT", 5) → b"[UIDNEXT 5]"; ("APPENDUID", 9, SequenceSet) →
    b"[APPENDUID 9 1:3]"; ("PERMANENTFLAGS", [Atom("\\\\Seen"), Atom("\\\\*")]) → list form."""
    if isinstance(code, str):
        return b"[" + _clean(code).encode("utf-8") + b"]"
    name, *args = code
    parts = [_clean(name).encode("ascii")]
    for arg in args:
        parts.append(_clean(arg).encode("utf-8") if isinstance(arg, str) else value(arg))
    return b"[" + b" ".join(parts) + b"]"


def _status(tag: str, status: str, text: str, code) -> bytes:
    line = tag.encode("ascii") + b" " + status.encode("ascii")
    if code is not None:
        line += b" " + response_code(code)
    return line + b" " + (_clean(text) or status.lower()).encode("utf-8") + CRLF


def tagged(tag: str, status: str, text: str, code=None) -> bytes:
    """`tag OK|NO|BAD [code] text` CRLF. Tag "*" gives an untagged status (for unparseable tags)."""
    if status not in ("OK", "NO", "BAD"):
        raise ValueError(f"bad status {status}")
    return _status(tag, status, text, code)


def untagged_status(status: str, text: str, code=None) -> bytes:
    """`* OK|NO|BAD|PREAUTH|BYE [code] text` CRLF."""
    if status not in ("OK", "NO", "BAD", "PREAUTH", "BYE"):
        raise ValueError(f"bad status {status}")
    return _status("*", status, text, code)


def untagged(*parts, utf8: bool = False) -> bytes:
    """`* part part ...` CRLF, each part through `value()` except str, which is written as is
    (so `untagged(5, "EXISTS")` gives `* 5 EXISTS`)."""
    encoded = [_clean(p).encode("utf-8") if isinstance(p, str) and not isinstance(p, Atom)
               else value(p, utf8=utf8) for p in parts]
    return b"* " + b" ".join(encoded) + CRLF


def continuation(text: str = "") -> bytes:
    """`+ text` CRLF (RFC 3501 §7.5); `+ ` with no text is valid too."""
    return b"+ " + _clean(text).encode("utf-8") + CRLF


def sasl_challenge(data: bytes) -> bytes:
    """A SASL challenge: `+ base64` CRLF (RFC 3501 §6.2.2); empty data gives `+ ` CRLF."""
    return b"+ " + base64.b64encode(data) + CRLF


# --- untagged data responses -----------------------------------------------------------------

def capability_line(capabilities: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(capabilities).encode("ascii") + CRLF


def enabled_line(capabilities: Iterable[str]) -> bytes:
    """RFC 5161 §3.2: `* ENABLED cap...` (sent even when empty)."""
    names = " ".join(capabilities)
    return b"* ENABLED" + (b" " + names.encode("ascii") if names else b"") + CRLF


def exists(count: int) -> bytes:
    return b"* %d EXISTS\r\n" % count


def recent(count: int) -> bytes:
    return b"* %d RECENT\r\n" % count


def expunge(msn: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % msn


def vanished(uids: SequenceSet, earlier: bool = False) -> bytes:
    """RFC 7162 §3.2.10: `* VANISHED [(EARLIER)] uid-set`."""
    return b"* VANISHED " + (b"(EARLIER) " if earlier else b"") + bytes(uids) + CRLF


def flags_line(flags: Iterable[str]) -> bytes:
    return b"* FLAGS " + flag_list(flags) + CRLF


def search_line(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """RFC 3501 §7.2.5 `* SEARCH n...`; RFC 7162 §3.1.5 `(MODSEQ n)` when the key used MODSEQ."""
    line = b"* SEARCH"
    for number in numbers:
        line += b" %d" % number
    if modseq is not None:
        line += b" (MODSEQ %d)" % modseq
    return line + CRLF


def sort_line(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """RFC 5256 §4 `* SORT n...` in sort order; RFC 7162 §3.1.5 `(MODSEQ n)` when the key used MODSEQ."""
    return b"* SORT" + search_line(numbers, modseq)[len(b"* SEARCH"):]


def thread_line(threads: str) -> bytes:
    """RFC 5256 §4 `* THREAD (1 2)(3 (4)(5))`; `* THREAD` alone when nothing matched."""
    return b"* THREAD" + (b" " + threads.encode("ascii") if threads else b"") + CRLF


def ordered_set(numbers: Iterable[int]) -> SequenceSet:
    """RFC 5267 §3.2 ESORT ALL: the numbers in the order given (sort order), ascending runs as ranges."""
    ranges: list[tuple[int, int]] = []
    for n in numbers:
        if ranges and ranges[-1][1] == n - 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    return SequenceSet(tuple(ranges))


def esearch(tag: str | None, uid: bool, *, minimum: int | None = None, maximum: int | None = None,
            count: int | None = None, all_numbers: Iterable[int] | SequenceSet | None = None,
            modseq: int | None = None) -> bytes:
    """RFC 4731 §3.1: `* ESEARCH (TAG "t") [UID] [MIN n] [MAX n] [COUNT n] [ALL set]` (+ MODSEQ, RFC 7162).

    MIN, MAX and ALL are omitted when nothing matched (RFC 4731 §3.1); pass only what was asked."""
    line = b"* ESEARCH"
    if tag is not None:
        line += b" (TAG " + quoted(tag) + b")"
    if uid:
        line += b" UID"
    if minimum is not None:
        line += b" MIN %d" % minimum
    if maximum is not None:
        line += b" MAX %d" % maximum
    if count is not None:
        line += b" COUNT %d" % count
    if all_numbers is not None:
        numbers = all_numbers if isinstance(all_numbers, SequenceSet) else SequenceSet.from_numbers(all_numbers)
        if numbers.ranges:
            line += b" ALL " + bytes(numbers)
    if modseq is not None:
        line += b" MODSEQ %d" % modseq
    return line + CRLF


def list_line(attributes: Iterable[str], delimiter: str | None, name: str, *, utf8: bool = False,
              extended: dict | None = None, command: str = "LIST") -> bytes:
    """RFC 3501 §7.2.2 `* LIST (attrs) "/" name`; RFC 5258 §3.5 extended items such as
    {"CHILDINFO": ["SUBSCRIBED"]} or {"OLDNAME": [old]} (RFC 9051 §7.3.1)."""
    line = (b"* " + command.encode("ascii") + b" " + flag_list(attributes) + b" "
            + (b"NIL" if delimiter is None else quoted(delimiter)) + b" " + mailbox(name, utf8=utf8))
    if extended:
        items = []
        for tag, data in extended.items():
            if tag == "OLDNAME":
                encoded = b"(" + b" ".join(mailbox(n, utf8=utf8) for n in data) + b")"
            else:
                encoded = b"(" + b" ".join(quoted(str(v)) for v in data) + b")"
            items.append(quoted(tag) + b" " + encoded)
        line += b" (" + b" ".join(items) + b")"
    return line + CRLF


def status_line(name: str, items: dict[str, int], *, utf8: bool = False) -> bytes:
    """RFC 3501 §7.2.4 `* STATUS name (MESSAGES n UIDNEXT n ...)`."""
    body = " ".join(f"{key} {number}" for key, number in items.items()).encode("ascii")
    return b"* STATUS " + mailbox(name, utf8=utf8) + b" (" + body + b")" + CRLF


def id_line(parameters: dict[str, str | None] | None) -> bytes:
    """RFC 2971 §3.2 `* ID (...)` or `* ID NIL`."""
    if not parameters:
        return b"* ID NIL\r\n"
    pairs = []
    for key, item in parameters.items():
        pairs.append(quoted(key) + b" " + (b"NIL" if item is None else string(item)))
    return b"* ID (" + b" ".join(pairs) + b")" + CRLF


def namespace_line(personal: list[tuple[str, str | None]] | None, other=None, shared=None,
                   *, utf8: bool = False) -> bytes:
    """RFC 2342 §5 `* NAMESPACE (("" "/")) NIL NIL`: each group a list of (prefix, delimiter)."""
    def group(entries) -> bytes:
        if not entries:
            return b"NIL"
        return b"(" + b"".join(b"(" + string(encode_name(prefix, utf8), utf8=utf8) + b" "
                               + (b"NIL" if delim is None else quoted(delim)) + b")"
                               for prefix, delim in entries) + b")"
    return b"* NAMESPACE " + group(personal) + b" " + group(other) + b" " + group(shared) + CRLF


def metadata_line(name: str, entries: Iterable[tuple[str, bytes | None]], *, utf8: bool = False) -> bytes:
    """RFC 5464 §4.4.1 `* METADATA mailbox (entry value ...)`: a value is NIL, a quoted string, a
    literal, or a literal8 when it holds NUL (§5 value = nstring / literal8); "" names the server."""
    body = b" ".join(astring(entry) + b" " + string(item, utf8=utf8) for entry, item in entries)
    target = quoted("") if name == "" else mailbox(name, utf8=utf8)
    return b"* METADATA " + target + b" (" + body + b")" + CRLF


# --- FETCH (RFC 3501 §7.4.2) -----------------------------------------------------------------

def stream(parts: Iterable) -> Iterator[bytes]:
    """Flatten bytes and streamed literals into byte chunks: a literal becomes its `{n}` CRLF
    header (`~{n}` when binary) followed by its chunks, read only when the iterator gets there."""
    for part in parts:
        if _is_literal(part):
            yield (b"~" if getattr(part, "binary", False) else b"") + b"{%d}\r\n" % part.size
            yield from part.chunks()
        else:
            yield bytes(part)


def fetch_name(name: str, section: str = "", partial: tuple[int, int | None] | None = None) -> str:
    """The item name in a FETCH response for a requested `FetchAttribute` (its name, section, partial):
    BODY.PEEK[...] answers as BODY[...] and only the origin of a partial is echoed, "BODY[TEXT]<0>"
    (RFC 3501 §7.4.2); BINARY[...] likewise (RFC 3516 §4.3); BINARY.SIZE[...] has no partial."""
    if not name.endswith("[]"):
        return name
    text = f"{name[:-1]}{section}]"
    if partial is not None and name != "BINARY.SIZE[]":
        text += f"<{partial[0]}>"
    return text


def fetch_response(msn: int, items: Iterable[tuple[str, object]], *, utf8: bool = False) -> Iterator[bytes]:
    """`* msn FETCH (name value ...)` CRLF as byte chunks.

    `items` are (name, value) pairs: ("UID", 7), ("FLAGS", [Atom("\\\\Seen")]), ("INTERNALDATE",
    datetime), ("ENVELOPE", Raw(...)), ("BODY[1]", StreamedLiteral(...)), ("BINARY[]", literal
    with binary=True). A streamed literal is yielded chunk by chunk, never joined."""
    head = b"* %d FETCH (" % msn
    pending = head
    first = True
    for name, item in items:
        pending += (b"" if first else b" ") + name.encode("ascii") + b" "
        first = False
        if _is_literal(item):
            yield pending
            pending = b""
            yield from stream([item])
        else:
            pending += value(item, utf8=utf8)
    yield pending + b")" + CRLF
