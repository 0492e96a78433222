"""The grammar of every IMAP command (sans-IO): one framed command line → a typed command.

Owns `parse_command(text, literals)`, which `courriel.imap.protocol.parser.Parser` calls once
it has framed a complete command (literals replaced by a NUL mark, their data alongside), and
one `_parse_<command>` per command of `courriel.imap.protocol.commands` (METADATA's and
SEARCH's live in `metadata` and `search`). The lexical primitives (atoms, strings, sequence
sets, mailbox names) are `courriel.imap.protocol.grammar.Cursor`.

Standards: RFC 3501 §6 and RFC 9051 §6 (each command's syntax, cited at its parser), §9
(formal syntax), RFC 4315 (UID EXPUNGE), RFC 5256 (SORT, THREAD), RFC 5819 (LIST-STATUS),
RFC 6154 (LIST SPECIAL-USE), RFC 6851 (MOVE), RFC 7162 (CONDSTORE/QRESYNC parameters),
RFC 2971 (ID), RFC 4978 (COMPRESS), RFC 9208 (QUOTA), RFC 5161 (ENABLE), RFC 3502 (MULTIAPPEND),
RFC 3516 (BINARY), RFC 5258 (LIST-EXTENDED), RFC 4959 (SASL-IR).
Security: input is untrusted; every failure is a GrammarError (the parser answers it as BAD),
nesting and search keys are bounded by the Cursor.
"""

from __future__ import annotations

import base64
import binascii
import re

from courriel.imap.protocol import commands as c
from courriel.imap.protocol.dates import DateSyntaxError, parse_date_time
from courriel.imap.protocol.grammar import Cursor, GrammarError, Literal, is_astring_char
from courriel.imap.protocol.metadata import parse_getmetadata, parse_setmetadata
from courriel.imap.protocol.search import parse_charset, parse_criteria, parse_return_options

__all__ = ["parse_command"]


def parse_command(text: bytes, literals: list[Literal] | None = None, *, utf8: bool = False,
                  max_depth: int = 16) -> c.Command:
    """One framed command (literals replaced by NUL, their data in `literals`) → typed command.

    Raises GrammarError. `Parser` calls this; tests and tools may call it on a single line."""
    cursor = Cursor(text, literals or [], utf8=utf8, max_depth=max_depth)
    tag_bytes = cursor.take_while(lambda b: is_astring_char(b) and b != 0x2B)  # RFC 3501 §9: tag excludes "+"
    if not tag_bytes:
        raise GrammarError("missing tag")
    tag = tag_bytes.decode("ascii")
    try:
        cursor.sp()
        name = cursor.keyword()
    except GrammarError:
        raise GrammarError("missing command name") from None
    uid = False
    if name == "UID":
        cursor.sp()
        name = cursor.keyword()
        uid = True
        if name not in c.UID_COMMANDS:
            raise GrammarError(f"UID {name[:40]} is not a command")
    handler = _PARSERS.get(name)
    if handler is None:
        raise GrammarError(f"unknown command {name[:40]}")
    command = handler(cursor, tag, uid)
    cursor.end()
    if cursor.next_literal != len(cursor.literals):
        raise GrammarError("unexpected literal")
    return command


def _no_arguments(cls):
    def parse(cursor: Cursor, tag: str, uid: bool) -> c.Command:
        return cls(tag)
    return parse


def _parse_authenticate(cursor: Cursor, tag: str, uid: bool) -> c.Authenticate:
    """RFC 3501 §6.2.2; RFC 4959 §3: AUTHENTICATE mech [SP (base64 / "=")]."""
    cursor.sp()
    mechanism = cursor.keyword()
    initial = None
    if cursor.try_sp():
        raw = cursor.take_while(lambda b: b not in (0x20,))
        if raw == b"=":
            initial = b""
        else:
            try:
                initial = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise GrammarError("invalid base64 in initial response") from None
            if not raw:
                raise GrammarError("empty initial response")
    return c.Authenticate(tag, mechanism, initial)


def _parse_login(cursor: Cursor, tag: str, uid: bool) -> c.Login:
    cursor.sp()
    user = cursor.astring_text()
    cursor.sp()
    password = cursor.astring_text()
    return c.Login(tag, user, password)


def _parse_select(cls):
    def parse(cursor: Cursor, tag: str, uid: bool) -> c.Select:
        """RFC 3501 §6.3.1; RFC 7162 §3.1.8 (CONDSTORE), §3.2.5 (QRESYNC) select parameters."""
        cursor.sp()
        mailbox = cursor.mailbox()
        condstore, qresync = False, None
        if cursor.try_sp():
            cursor.open_list()
            while True:
                word = cursor.keyword()
                if word == "CONDSTORE":
                    condstore = True
                elif word == "QRESYNC":
                    cursor.sp()
                    qresync = _qresync(cursor)
                else:
                    raise GrammarError(f"unknown select parameter {word[:40]}")
                if not cursor.try_sp():
                    break
            cursor.close_list()
        return cls(tag, mailbox, condstore, qresync)
    return parse


def _qresync(cursor: Cursor) -> c.QresyncParameters:
    cursor.open_list()
    uidvalidity = cursor.nz_number()
    cursor.sp()
    modseq = cursor.number64()
    known_uids = seqs = uids = None
    if cursor.try_sp():
        if cursor.peek() != 0x28:
            known_uids = cursor.sequence_set()
            if known_uids.saved or any(n is None for r in known_uids.ranges for n in r):
                raise GrammarError("known-uids must be explicit UIDs")
            cursor.try_sp()
        if cursor.peek() == 0x28:
            cursor.open_list()
            seqs = cursor.sequence_set()
            cursor.sp()
            uids = cursor.sequence_set()
            cursor.close_list()
    cursor.close_list()
    return c.QresyncParameters(uidvalidity, modseq, known_uids, seqs, uids)


def _parse_create(cursor: Cursor, tag: str, uid: bool) -> c.Create:
    """RFC 3501 §6.3.3; RFC 6154 §3: CREATE name (USE (\\Drafts ...))."""
    cursor.sp()
    mailbox = cursor.mailbox()
    special: tuple[str, ...] = ()
    if cursor.try_sp():
        cursor.open_list()
        while True:
            word = cursor.keyword()
            if word != "USE":
                raise GrammarError(f"unknown CREATE parameter {word[:40]}")
            cursor.sp()
            special += cursor.flag_list()
            if not cursor.try_sp():
                break
        cursor.close_list()
    return c.Create(tag, mailbox, special)


def _one_mailbox(cls):
    def parse(cursor: Cursor, tag: str, uid: bool) -> c.Command:
        cursor.sp()
        return cls(tag, cursor.mailbox())
    return parse


def _parse_rename(cursor: Cursor, tag: str, uid: bool) -> c.Rename:
    cursor.sp()
    old = cursor.mailbox()
    cursor.sp()
    return c.Rename(tag, old, cursor.mailbox())


_STATUS_ITEMS = frozenset({"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
                           "HIGHESTMODSEQ", "APPENDLIMIT"})


def _status_items(cursor: Cursor) -> tuple[str, ...]:
    items = cursor.keyword_list()
    if not items:
        raise GrammarError("empty STATUS item list")
    for item in items:
        if item not in _STATUS_ITEMS:
            raise GrammarError(f"unknown STATUS item {item[:40]}")
    return items


def _parse_list(cursor: Cursor, tag: str, uid: bool) -> c.List:
    """RFC 3501 §6.3.8; RFC 5258 §3 (selection options, patterns, RETURN); RFC 5819 (STATUS); RFC 6154 §5."""
    cursor.sp()
    selection: tuple[str, ...] = ()
    extended = False
    if cursor.peek() == 0x28:
        selection = cursor.keyword_list()
        extended = True
        for option in selection:
            if option not in ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"):
                raise GrammarError(f"unknown LIST selection option {option[:40]}")
        if "RECURSIVEMATCH" in selection and len(set(selection) - {"RECURSIVEMATCH", "REMOTE"}) == 0:
            raise GrammarError("RECURSIVEMATCH needs another selection option")  # RFC 5258 §3
        cursor.sp()
    reference = cursor.mailbox()
    cursor.sp()
    if cursor.peek() == 0x28:
        extended = True
        cursor.open_list()
        patterns = [cursor.pattern()]
        while cursor.try_sp():
            patterns.append(cursor.pattern())
        cursor.close_list()
    else:
        patterns = [cursor.pattern()]
    returns: list[str] = []
    status_items: tuple[str, ...] = ()
    if cursor.try_sp():
        extended = True
        if cursor.keyword() != "RETURN":
            raise GrammarError("expected RETURN")
        cursor.sp()
        cursor.open_list()
        if cursor.peek() != 0x29:
            while True:
                option = cursor.keyword()
                if option == "STATUS":
                    cursor.sp()
                    status_items = _status_items(cursor)
                elif option not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE"):
                    raise GrammarError(f"unknown LIST return option {option[:40]}")
                returns.append(option)
                if not cursor.try_sp():
                    break
        cursor.close_list()
    return c.List(tag, reference, tuple(patterns), selection, tuple(returns), status_items, extended)


def _parse_lsub(cursor: Cursor, tag: str, uid: bool) -> c.Lsub:
    cursor.sp()
    reference = cursor.mailbox()
    cursor.sp()
    return c.Lsub(tag, reference, cursor.pattern())


def _parse_status(cursor: Cursor, tag: str, uid: bool) -> c.Status:
    cursor.sp()
    mailbox = cursor.mailbox()
    cursor.sp()
    return c.Status(tag, mailbox, _status_items(cursor))


def _parse_append(cursor: Cursor, tag: str, uid: bool) -> c.Append:
    """RFC 3501 §6.3.11; RFC 3502 §6 (several messages); RFC 3516 §4.4 (literal8); RFC 6855 §4 (UTF8)."""
    cursor.sp()
    mailbox = cursor.mailbox()
    messages = []
    while cursor.try_sp():
        flags: tuple[str, ...] = ()
        date = None
        if cursor.peek() == 0x28:
            flags = cursor.flag_list()
            cursor.sp()
        if cursor.peek() == 0x22:
            try:
                date = parse_date_time(cursor.quoted().decode("ascii", "replace"))
            except DateSyntaxError as exc:
                raise GrammarError(str(exc)) from None
            cursor.sp()
        if cursor.keyword_ahead(b"UTF8"):
            cursor.sp()
            cursor.open_list()
            literal = cursor.literal()
            cursor.close_list()
        else:
            literal = cursor.literal()
        if not literal.data:
            raise GrammarError("empty message")
        messages.append(c.AppendMessage(literal.data, flags, date, literal.binary))
    if not messages:
        raise GrammarError("APPEND needs a message")
    return c.Append(tag, mailbox, tuple(messages))


def _parse_enable(cursor: Cursor, tag: str, uid: bool) -> c.Enable:
    names = []
    while cursor.try_sp():
        names.append(cursor.keyword())
    if not names:
        raise GrammarError("ENABLE needs a capability")
    return c.Enable(tag, tuple(names))


def _parse_id(cursor: Cursor, tag: str, uid: bool) -> c.Id:
    """RFC 2971 §3.1: ID ("(" string SP nstring *(SP string SP nstring) ")" / NIL)."""
    cursor.sp()
    if cursor.keyword_ahead(b"NIL"):
        return c.Id(tag, None)
    cursor.open_list()
    pairs = []
    if cursor.peek() != 0x29:
        while True:
            key = cursor.text_string(cursor.string())
            cursor.sp()
            value = cursor.nstring()
            pairs.append((key, None if value is None else cursor.text_string(value)))
            if len(pairs) > 30:  # RFC 2971 §3.3: at most 30 field-value pairs
                raise GrammarError("too many ID fields")
            if not cursor.try_sp():
                break
    cursor.close_list()
    return c.Id(tag, tuple(pairs))


def _parse_compress(cursor: Cursor, tag: str, uid: bool) -> c.Compress:
    cursor.sp()
    return c.Compress(tag, cursor.keyword())


def _parse_getquota(cursor: Cursor, tag: str, uid: bool) -> c.GetQuota:
    cursor.sp()
    return c.GetQuota(tag, cursor.astring_text())


def _parse_setquota(cursor: Cursor, tag: str, uid: bool) -> c.SetQuota:
    """RFC 9208 §4.2: SETQUOTA root (resource limit ...)."""
    cursor.sp()
    root = cursor.astring_text()
    cursor.sp()
    cursor.open_list()
    limits = []
    if cursor.peek() != 0x29:
        while True:
            resource = cursor.keyword()
            cursor.sp()
            limits.append((resource, cursor.number64()))
            if not cursor.try_sp():
                break
    cursor.close_list()
    return c.SetQuota(tag, root, tuple(limits))


def _parse_expunge(cursor: Cursor, tag: str, uid: bool) -> c.Expunge:
    """RFC 3501 §6.4.3; RFC 4315 §2.1: UID EXPUNGE sequence-set."""
    if not uid:
        return c.Expunge(tag)
    cursor.sp()
    return c.Expunge(tag, cursor.sequence_set())


def _optional_return(cursor: Cursor):
    """RFC 4731 §3 / RFC 5267 §3.2: `RETURN (options) SP` before the rest of SEARCH or SORT."""
    if not cursor.keyword_ahead(b"RETURN"):
        return None
    cursor.sp()
    options = parse_return_options(cursor)
    cursor.sp()
    return options


def _parse_search(cursor: Cursor, tag: str, uid: bool) -> c.Search:
    """RFC 3501 §6.4.4: SEARCH [RETURN (...)] [CHARSET charset] key+; RFC 4731 §3 RETURN."""
    cursor.sp()
    return_options = _optional_return(cursor)
    charset = None
    if cursor.keyword_ahead(b"CHARSET"):
        cursor.sp()
        charset = parse_charset(cursor)
        cursor.sp()
    key = parse_criteria(cursor, charset)
    return c.Search(tag, key, charset, return_options, uid)


_SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})


def _parse_sort(cursor: Cursor, tag: str, uid: bool) -> c.Sort:
    """RFC 5256 §3: SORT (criteria) charset key+; RFC 5267 §3.2 (ESORT): SORT RETURN (...) (criteria) ..."""
    cursor.sp()
    return_options = _optional_return(cursor)
    words = cursor.keyword_list()
    criteria = []
    reverse = False
    for word in words:
        if word == "REVERSE" and not reverse:
            reverse = True
            continue
        if word not in _SORT_KEYS:
            raise GrammarError(f"unknown sort key {word[:40]}")
        criteria.append((reverse, word))
        reverse = False
    if reverse or not criteria:
        raise GrammarError("bad sort criteria")
    cursor.sp()
    charset = parse_charset(cursor)
    cursor.sp()
    return c.Sort(tag, tuple(criteria), charset, parse_criteria(cursor, charset), uid, return_options)


def _parse_thread(cursor: Cursor, tag: str, uid: bool) -> c.Thread:
    """RFC 5256 §3: THREAD algorithm charset key+."""
    cursor.sp()
    algorithm = cursor.keyword()
    cursor.sp()
    charset = parse_charset(cursor)
    cursor.sp()
    return c.Thread(tag, algorithm, charset, parse_criteria(cursor, charset), uid)


_SIMPLE_FETCH = frozenset({"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
                           "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ"})
_MACROS = {  # RFC 3501 §6.4.5
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8 ftext


def _section(cursor: Cursor) -> tuple[str, tuple[int, ...], str | None, tuple[str, ...]]:
    """RFC 3501 §9 section: "[" [section-spec] "]" → (canonical text, part, text, fields)."""
    cursor.expect(b"[")
    spec = cursor.take_while(lambda b: b not in (0x20, 0x5D, 0x28)).decode("ascii", "replace").upper()
    part: list[int] = []
    words = spec.split(".") if spec else []
    while words and words[0].isdigit():
        number = int(words.pop(0))
        if number == 0 or number > 1_000_000:
            raise GrammarError("bad section part number")
        part.append(number)
    text = ".".join(words) or None
    allowed = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT") + (("MIME",) if part else ())
    if text is not None and text not in allowed:
        raise GrammarError(f"bad section {spec[:40]}")
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        cursor.sp()
        cursor.open_list()
        names = [cursor.astring()]
        while cursor.try_sp():
            names.append(cursor.astring())
        cursor.close_list()
        decoded = []
        for name in names:
            value = name.decode("ascii", "replace")
            if not _FIELD_NAME.fullmatch(value):
                raise GrammarError("bad header field name")
            decoded.append(value.upper())
        fields = tuple(decoded)
    cursor.expect(b"]")
    canonical = ".".join(str(n) for n in part)
    if text:
        canonical += ("." if part else "") + text
    if fields:
        canonical += " (" + " ".join(fields) + ")"
    return canonical, tuple(part), text, fields


def _partial(cursor: Cursor) -> tuple[int, int] | None:
    """RFC 3501 §9: "<" number "." nz-number ">"."""
    if cursor.peek() != 0x3C:
        return None
    cursor.pos += 1
    origin = cursor.number()
    cursor.expect(b".")
    count = cursor.nz_number()
    cursor.expect(b">")
    return (origin, count)


def _fetch_attribute(cursor: Cursor) -> list[c.FetchAttribute]:
    word = cursor.take_while(lambda b: (0x41 <= b <= 0x5A) or (0x61 <= b <= 0x7A) or b in b".0123456789")
    word_text = word.decode("ascii").upper()
    if cursor.peek() == 0x5B:  # "["
        if word_text in ("BODY", "BODY.PEEK"):
            section, part, text, fields = _section(cursor)
            return [c.FetchAttribute("BODY[]", section, _partial(cursor), word_text == "BODY.PEEK", part, text,
                                     fields)]
        if word_text in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):  # RFC 3516 §4.2: section-binary
            cursor.expect(b"[")
            raw = cursor.take_while(lambda b: b != 0x5D).decode("ascii", "replace")
            cursor.expect(b"]")
            part = ()
            if raw:
                if not re.fullmatch(r"[1-9][0-9]{0,6}(\.[1-9][0-9]{0,6})*", raw):
                    raise GrammarError("bad BINARY section")
                part = tuple(int(n) for n in raw.split("."))
            if word_text == "BINARY.SIZE":
                return [c.FetchAttribute("BINARY.SIZE[]", raw, None, False, part)]
            return [c.FetchAttribute("BINARY[]", raw, _partial(cursor), word_text == "BINARY.PEEK", part)]
        raise GrammarError(f"unknown FETCH item {word_text[:40]}")
    if word_text in _SIMPLE_FETCH:
        return [c.FetchAttribute(word_text)]
    raise GrammarError(f"unknown FETCH item {word_text[:40]}")


def _parse_fetch(cursor: Cursor, tag: str, uid: bool) -> c.Fetch:
    """RFC 3501 §6.4.5, RFC 3516 §4.2, RFC 7162 §3.1.4.1 (CHANGEDSINCE), §3.2.6 (VANISHED)."""
    cursor.sp()
    sequence = cursor.sequence_set()
    cursor.sp()
    items: list[c.FetchAttribute] = []
    if cursor.peek() == 0x28:
        cursor.open_list()
        items += _fetch_attribute(cursor)
        while cursor.try_sp():
            items += _fetch_attribute(cursor)
        cursor.close_list()
    else:
        start = cursor.pos
        word = cursor.take_while(lambda b: (0x41 <= b <= 0x5A) or (0x61 <= b <= 0x7A)).decode("ascii").upper()
        if word in _MACROS and cursor.peek() in (-1, 0x20):
            items = [c.FetchAttribute(name) for name in _MACROS[word]]
        else:
            cursor.pos = start
            items = _fetch_attribute(cursor)
    changedsince, vanished = None, False
    if cursor.try_sp():
        cursor.open_list()
        while True:
            word = cursor.keyword()
            if word == "CHANGEDSINCE":
                cursor.sp()
                changedsince = cursor.number64()
            elif word == "VANISHED":
                vanished = True
            else:
                raise GrammarError(f"unknown FETCH modifier {word[:40]}")
            if not cursor.try_sp():
                break
        cursor.close_list()
    if vanished and (not uid or changedsince is None):  # RFC 7162 §3.2.6
        raise GrammarError("VANISHED needs UID FETCH with CHANGEDSINCE")
    return c.Fetch(tag, sequence, tuple(items), uid, changedsince, vanished)


def _parse_store(cursor: Cursor, tag: str, uid: bool) -> c.Store:
    """RFC 3501 §6.4.6; RFC 7162 §3.1.3: STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] flags."""
    cursor.sp()
    sequence = cursor.sequence_set()
    cursor.sp()
    unchangedsince = None
    if cursor.peek() == 0x28:
        cursor.open_list()
        if cursor.keyword() != "UNCHANGEDSINCE":
            raise GrammarError("unknown STORE modifier")
        cursor.sp()
        unchangedsince = cursor.number64()
        cursor.close_list()
        cursor.sp()
    mode = ""
    if cursor.peek() in (0x2B, 0x2D):
        mode = chr(cursor.peek())
        cursor.pos += 1
    word = cursor.keyword()
    if word not in ("FLAGS", "FLAGS.SILENT"):
        raise GrammarError("expected FLAGS or FLAGS.SILENT")
    cursor.sp()
    if cursor.peek() == 0x28:
        flags = cursor.flag_list()
    else:
        flag_items = [cursor.flag()]
        while cursor.try_sp():
            flag_items.append(cursor.flag())
        flags = tuple(flag_items)
    return c.Store(tag, sequence, mode, word.endswith(".SILENT"), flags, uid, unchangedsince)


def _sequence_and_mailbox(cls):
    def parse(cursor: Cursor, tag: str, uid: bool) -> c.Command:
        cursor.sp()
        sequence = cursor.sequence_set()
        cursor.sp()
        return cls(tag, sequence, cursor.mailbox(), uid)
    return parse


_PARSERS = {
    "CAPABILITY": _no_arguments(c.Capability),
    "NOOP": _no_arguments(c.Noop),
    "LOGOUT": _no_arguments(c.Logout),
    "STARTTLS": _no_arguments(c.StartTls),
    "AUTHENTICATE": _parse_authenticate,
    "LOGIN": _parse_login,
    "SELECT": _parse_select(c.Select),
    "EXAMINE": _parse_select(c.Examine),
    "CREATE": _parse_create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _parse_rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _parse_list,
    "LSUB": _parse_lsub,
    "STATUS": _parse_status,
    "APPEND": _parse_append,
    "NAMESPACE": _no_arguments(c.Namespace),
    "ENABLE": _parse_enable,
    "IDLE": _no_arguments(c.Idle),
    "ID": _parse_id,
    "COMPRESS": _parse_compress,
    "UNAUTHENTICATE": _no_arguments(c.Unauthenticate),
    "GETQUOTA": _parse_getquota,
    "GETQUOTAROOT": _one_mailbox(c.GetQuotaRoot),
    "SETQUOTA": _parse_setquota,
    "GETMETADATA": parse_getmetadata,
    "SETMETADATA": parse_setmetadata,
    "CHECK": _no_arguments(c.Check),
    "CLOSE": _no_arguments(c.Close),
    "UNSELECT": _no_arguments(c.Unselect),
    "EXPUNGE": _parse_expunge,
    "SEARCH": _parse_search,
    "FETCH": _parse_fetch,
    "STORE": _parse_store,
    "COPY": _sequence_and_mailbox(c.Copy),
    "MOVE": _sequence_and_mailbox(c.Move),
    "SORT": _parse_sort,
    "THREAD": _parse_thread,
}
assert set(_PARSERS) == set(c.COMMANDS)
