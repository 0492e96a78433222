"""SEARCH criteria: the search-key grammar and the resolution of sequence sets in a key tree.

Owns the parse of search keys into the neutral key tree that `courriel.imap.search`
evaluates, and `resolve` which replaces the SequenceSets in a tree by (low, high) ranges once
the session knows the mailbox size and the saved result.

Key tree (tuples): ("ALL",) ("ANSWERED",) ("DELETED",) ("DRAFT",) ("FLAGGED",) ("SEEN",)
("NEW",) ("OLD",) ("RECENT",) and their UN- forms; ("KEYWORD", kw) ("UNKEYWORD", kw);
("FROM"|"TO"|"CC"|"BCC"|"SUBJECT"|"BODY"|"TEXT", str) ("HEADER", field, str);
("LARGER"|"SMALLER", n); ("BEFORE"|"ON"|"SINCE"|"SENTBEFORE"|"SENTON"|"SENTSINCE", date);
("OLDER"|"YOUNGER", seconds); ("UID", SequenceSet) ("SEQ", SequenceSet); ("MODSEQ", n);
("NOT", key) ("OR", key, key) ("AND", (key, ...)).

Standards: RFC 3501 §6.4.4 (search keys, CHARSET, BADCHARSET), RFC 9051 §6.4.4, RFC 7162
§3.1.5 (MODSEQ search key with optional entry-name and entry-type), RFC 5032 (OLDER/YOUNGER),
RFC 5182 §2 ($ in UID and sequence-set keys), RFC 4731 §3 (RETURN options).
Security: parses client input; nesting (NOT, OR, parentheses) is bounded by `MAX_NESTING` and
the parentheses also by the cursor's depth, the number of keys by `MAX_KEYS`.
"""

from __future__ import annotations

import codecs

from courriel.imap.protocol.dates import DateSyntaxError, parse_date
from courriel.imap.protocol.grammar import Cursor, GrammarError
from courriel.imap.protocol.sequence import SequenceSet

__all__ = ["MAX_KEYS", "RETURN_OPTIONS", "parse_charset", "parse_criteria", "parse_return_options", "resolve"]

MAX_KEYS = 1000
MAX_NESTING = 100  # NOT, OR and parentheses inside each other (keeps recursion far below Python's limit)
RETURN_OPTIONS = frozenset({"MIN", "MAX", "COUNT", "ALL", "SAVE"})
_BARE = frozenset({"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
                   "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN"})
_STRING = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
_DATE = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
_SIZE = frozenset({"LARGER", "SMALLER"})
_INTERVAL = frozenset({"OLDER", "YOUNGER"})
SUPPORTED_CHARSETS = ("UTF-8", "US-ASCII")
_MIME_CODECS = frozenset({"utf-8", "ascii", "latin-1", "utf-16", "utf-7", "koi8-r", "koi8-u", "iso2022_jp", "shift_jis",
                          "euc_jp", "gb2312", "gbk", "gb18030", "big5", "euc_kr", "cp1252", "mac-roman"})


def parse_charset(cursor: Cursor) -> str:
    """The CHARSET argument, upper-cased; an unknown charset is NO [BADCHARSET] (RFC 3501 §6.4.4)."""
    name = cursor.text_string(cursor.astring()).upper()
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        codec = ""
    # Only text charsets of MIME: Python also knows codecs such as rot13, base64 or zlib.
    if codec not in _MIME_CODECS and not codec.startswith(("iso8859-", "cp125")):
        raise GrammarError(f"unsupported charset {name[:40]}", "NO",
                           "BADCHARSET (" + " ".join(SUPPORTED_CHARSETS) + ")")
    return name


def parse_return_options(cursor: Cursor) -> tuple[str, ...]:
    """RFC 4731 §3: RETURN (...) after the command name; `RETURN ()` means ALL."""
    options = cursor.keyword_list()
    for option in options:
        if option not in RETURN_OPTIONS:
            raise GrammarError(f"unknown SEARCH return option {option[:40]}")
    return options or ("ALL",)


class _Criteria:
    def __init__(self, cursor: Cursor, charset: str):
        self.cursor = cursor
        self.charset = charset
        self.count = 0
        self.nesting = 0

    def text(self) -> str:
        raw = self.cursor.astring()
        try:
            return raw.decode(self.charset)
        except UnicodeError:
            raise GrammarError(f"search string is not valid {self.charset}") from None

    def date(self):
        cursor = self.cursor
        raw = cursor.quoted() if cursor.peek() == 0x22 else cursor.take_while(lambda b: b not in (0x20, 0x29))
        try:
            return parse_date(raw.decode("ascii", "replace"))
        except DateSyntaxError as exc:
            raise GrammarError(str(exc)) from None

    def key(self) -> tuple:
        self.count += 1
        if self.count > MAX_KEYS:
            raise GrammarError("too many search keys", "NO", "LIMIT")
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise GrammarError("search keys nested too deeply", "BAD", "LIMIT")
        try:
            return self._key()
        finally:
            self.nesting -= 1

    def _key(self) -> tuple:
        cursor = self.cursor
        byte = cursor.peek()
        if byte == 0x28:  # "("
            cursor.open_list()
            keys = self.keys_until(b")")
            cursor.close_list()
            return keys[0] if len(keys) == 1 else ("AND", tuple(keys))
        if (0x30 <= byte <= 0x39) or byte in (0x2A, 0x24):  # sequence-set, "*" or "$"
            return ("SEQ", cursor.sequence_set())
        word = cursor.keyword()
        if word in _BARE:
            return (word,)
        if word == "NOT":
            cursor.sp()
            return ("NOT", self.key())
        if word == "OR":
            cursor.sp()
            first = self.key()
            cursor.sp()
            return ("OR", first, self.key())
        cursor.sp()
        if word in _STRING:
            return (word, self.text())
        if word in _DATE:
            return (word, self.date())
        if word in _SIZE:
            return (word, cursor.number())
        if word in _INTERVAL:
            return (word, cursor.nz_number())
        if word in ("KEYWORD", "UNKEYWORD"):
            return (word, cursor.flag())
        if word == "HEADER":
            field = cursor.text_string(cursor.astring())
            cursor.sp()
            return ("HEADER", field, self.text())
        if word == "UID":
            return ("UID", cursor.sequence_set())
        if word == "MODSEQ":  # RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer
            if cursor.peek() == 0x22:
                cursor.quoted()
                cursor.sp()
                entry_type = cursor.keyword()
                if entry_type not in ("PRIV", "SHARED", "ALL"):
                    raise GrammarError("bad MODSEQ entry type")
                cursor.sp()
            return ("MODSEQ", cursor.number64())
        raise GrammarError(f"unknown search key {word[:40]}")

    def keys_until(self, closing: bytes | None) -> list[tuple]:
        keys = [self.key()]
        while self.cursor.try_sp():
            keys.append(self.key())
        if closing is None:
            self.cursor.end()
        return keys


def parse_criteria(cursor: Cursor, charset: str | None) -> tuple:
    """The search keys up to the end of the command, as one key (an AND when there are several)."""
    criteria = _Criteria(cursor, _python_charset(charset))
    keys = criteria.keys_until(None)
    return keys[0] if len(keys) == 1 else ("AND", tuple(keys))


def _python_charset(charset: str | None) -> str:
    if charset is None or charset == "US-ASCII":
        return "utf-8"  # US-ASCII is a subset; accept UTF-8 as most servers do
    return charset


def resolve(key: tuple, last_msn: int, last_uid: int, saved_msns=(), saved_uids=()) -> tuple:
    """The key tree with every SequenceSet turned into a list of (low, high) ranges.

    `*` becomes `last_msn` (SEQ) or `last_uid` (UID); `$` (RFC 5182) becomes the saved result,
    given by the session both as sequence numbers and as UIDs."""
    kind = key[0]
    if kind in ("SEQ", "UID"):
        value: SequenceSet = key[1]
        if value.saved:
            numbers = saved_msns if kind == "SEQ" else saved_uids
            return (kind, [(n, n) for n in sorted(numbers)])
        return (kind, value.resolve(last_msn if kind == "SEQ" else last_uid))
    if kind == "NOT":
        return ("NOT", resolve(key[1], last_msn, last_uid, saved_msns, saved_uids))
    if kind == "OR":
        return ("OR", resolve(key[1], last_msn, last_uid, saved_msns, saved_uids),
                resolve(key[2], last_msn, last_uid, saved_msns, saved_uids))
    if kind == "AND":
        return ("AND", [resolve(k, last_msn, last_uid, saved_msns, saved_uids) for k in key[1]])
    return key
