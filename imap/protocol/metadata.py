"""IMAP METADATA (RFC 5464), the pure part: the GETMETADATA/SETMETADATA grammar, entry names, and
which stored entries a GETMETADATA returns.

Owns `parse_getmetadata` and `parse_setmetadata` (registered in the parser's command table),
`normalise_entry` (entry-name rules: a /private or /shared prefix, no wildcards, no control or 8-bit
characters, no empty component, no trailing slash; case-insensitive, kept lower-cased) and
`select_entries` (DEPTH and MAXSIZE applied to the entries of one mailbox or of the server).

Standards: RFC 5464 §3.2 (entry names; /private and /shared), §4.2.1 (MAXSIZE: longer values are
left out and the OK carries [METADATA LONGENTRIES n], n the size of the longest left out), §4.2.2
(DEPTH 0, 1, infinity: the entry, its children, or every descendant), §4.3 (SETMETADATA: NIL
removes an entry), §5 (formal syntax: `GETMETADATA [SP options] SP mailbox SP entries` with
`entries = entry / "(" entry *(SP entry) ")"`; `SETMETADATA SP mailbox SP "(" entry SP value ...")"`,
`value = nstring / literal8`); RFC 5464 errata 3868 (several entries come as a list).
Security: parses client input; every failure raises `GrammarError`; at most `MAX_ENTRIES_PER_COMMAND`
entries per command and `MAX_ENTRY_NAME` characters per name.
"""

from __future__ import annotations

import re

from courriel.imap.protocol import commands as c
from courriel.imap.protocol.grammar import Cursor, GrammarError

__all__ = ["DEPTH_INFINITY", "MAX_ENTRIES_PER_COMMAND", "MAX_ENTRY_NAME", "normalise_entry",
           "parse_getmetadata", "parse_setmetadata", "select_entries"]

DEPTH_INFINITY = -1
MAX_ENTRY_NAME = 255  # characters of an entry name (the column width)
MAX_ENTRIES_PER_COMMAND = 100
# RFC 5464 §3.2 / §5 entry: "/" then components of ASTRING-CHAR without "*", "%" or "/"; 7-bit only.
_ENTRY = re.compile(r"/(private|shared)(/[\x21-\x7e]+)*")


def normalise_entry(raw: bytes) -> str:
    """A valid entry name, lower-cased (RFC 5464 §3.2: entry names are case-insensitive)."""
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise GrammarError("entry names are 7-bit") from None
    if len(name) > MAX_ENTRY_NAME:
        raise GrammarError("entry name too long")
    lowered = name.lower()
    if ("*" in name or "%" in name or "//" in name or name.endswith("/")
            or not _ENTRY.fullmatch(lowered)):
        raise GrammarError(f"bad entry name {name[:60]!r}")
    return lowered


def _entry(cursor: Cursor) -> str:
    return normalise_entry(cursor.astring())


def parse_getmetadata(cursor: Cursor, tag: str, uid: bool) -> c.GetMetadata:
    """RFC 5464 §5: GETMETADATA [SP "(" option *(SP option) ")"] SP mailbox SP entries."""
    cursor.sp()
    maxsize, depth = None, 0
    if cursor.peek() == 0x28:
        cursor.open_list()
        while True:
            option = cursor.keyword()
            cursor.sp()
            if option == "MAXSIZE" and maxsize is None:
                maxsize = cursor.number()
            elif option == "DEPTH":
                if cursor.keyword_ahead(b"INFINITY"):
                    depth = DEPTH_INFINITY
                else:
                    depth = cursor.number()
                    if depth not in (0, 1):
                        raise GrammarError("DEPTH is 0, 1 or infinity")
            else:
                raise GrammarError(f"unknown GETMETADATA option {option[:40]}")
            if not cursor.try_sp():
                break
        cursor.close_list()
        cursor.sp()
    mailbox = cursor.mailbox()  # "" names the server (RFC 5464 §4.2)
    cursor.sp()
    entries: list[str] = []
    if cursor.peek() == 0x28:
        cursor.open_list()
        entries.append(_entry(cursor))
        while cursor.try_sp():
            entries.append(_entry(cursor))
            if len(entries) > MAX_ENTRIES_PER_COMMAND:
                raise GrammarError("too many entries", "BAD", "LIMIT")
        cursor.close_list()
    else:
        entries.append(_entry(cursor))
    return c.GetMetadata(tag, mailbox, tuple(entries), depth, maxsize)


def _value(cursor: Cursor) -> bytes | None:
    """RFC 5464 §5: value = nstring / literal8 (a literal8 may hold NUL)."""
    if cursor.peek() == 0 and cursor.next_literal < len(cursor.literals) \
            and cursor.literals[cursor.next_literal].binary:
        data = cursor.literal().data
        if not isinstance(data, bytes):
            raise GrammarError("value too large")
        return data
    return cursor.nstring()


def parse_setmetadata(cursor: Cursor, tag: str, uid: bool) -> c.SetMetadata:
    """RFC 5464 §5: SETMETADATA SP mailbox SP "(" entry SP value *(SP entry SP value) ")"."""
    cursor.sp()
    mailbox = cursor.mailbox()
    cursor.sp()
    cursor.open_list()
    changes: list[tuple[str, bytes | None]] = []
    while True:
        name = _entry(cursor)
        cursor.sp()
        changes.append((name, _value(cursor)))
        if len(changes) > MAX_ENTRIES_PER_COMMAND:
            raise GrammarError("too many entries", "BAD", "LIMIT")
        if not cursor.try_sp():
            break
    cursor.close_list()
    return c.SetMetadata(tag, mailbox, tuple(changes))


def _selected(name: str, requested: str, depth: int) -> bool:
    if name == requested:
        return True
    if not name.startswith(requested + "/"):
        return False
    return depth == DEPTH_INFINITY or (depth == 1 and "/" not in name[len(requested) + 1:])


def select_entries(stored: dict[str, bytes], requested: tuple[str, ...], depth: int = 0,
                   maxsize: int | None = None) -> tuple[list[tuple[str, bytes | None]], int | None]:
    """The (name, value) pairs a GETMETADATA answers, in request order then name order, and the size
    of the longest value left out by MAXSIZE (None: nothing left out).

    With DEPTH 0 a requested entry that does not exist answers NIL (as Dovecot does); with DEPTH 1
    or infinity only entries that exist are listed, the requested one and its descendants (RFC 5464
    §4.2.2 and its example, which lists the children of an entry that has no value itself)."""
    out: list[tuple[str, bytes | None]] = []
    seen: set[str] = set()
    longest: int | None = None
    for entry in requested:
        names = sorted(n for n in stored if _selected(n, entry, depth))
        if depth == 0 and entry not in stored and entry not in seen:
            out.append((entry, None))
            seen.add(entry)
        for name in names:
            if name in seen:
                continue
            seen.add(name)
            value = stored[name]
            if maxsize is not None and len(value) > maxsize:
                longest = max(longest or 0, len(value))
                continue
            out.append((name, value))
    return out, longest
