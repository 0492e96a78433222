"""Typed IMAP commands: what the parser produces and the session's `do_<command>` handlers take.

Every command is a frozen dataclass with the client's `tag` and a class attribute `name`
(the command name the state table and the session dispatch on: "FETCH", "UID FETCH" is
`Fetch(uid=True)` with name "FETCH"). Mailbox names are already decoded to Unicode (modified
UTF-7, or UTF-8 after ENABLE UTF8=ACCEPT) and "INBOX" in any case is normalised to "INBOX".

Search keys form a tree of tuples, the neutral form `courriel.imap.search` evaluates
(see `courriel.imap.protocol.search`): ("ALL",), ("SEEN",), ("FROM", "text"),
("HEADER", "field", "text"), ("LARGER", n), ("SINCE", date), ("UID", SequenceSet),
("SEQ", SequenceSet), ("MODSEQ", n), ("NOT", key), ("OR", key, key), ("AND", (keys...)).

Standards: RFC 3501 §6 (commands), RFC 9051 §6, RFC 4959 (SASL-IR), RFC 7162 (CONDSTORE,
QRESYNC), RFC 6154 (CREATE-SPECIAL-USE), RFC 5258 (LIST-EXTENDED), RFC 5819 (LIST-STATUS),
RFC 3502 (MULTIAPPEND), RFC 4731 (ESEARCH), RFC 5182 (SEARCHRES), RFC 3516 (BINARY),
RFC 6851 (MOVE), RFC 4315 (UIDPLUS), RFC 2177 (IDLE), RFC 2342 (NAMESPACE), RFC 2971 (ID),
RFC 5161 (ENABLE), RFC 5256 (SORT, THREAD), RFC 9208 (QUOTA), RFC 4978 (COMPRESS),
RFC 8437 (UNAUTHENTICATE), RFC 3691 (UNSELECT), RFC 5464 (METADATA).
Security: values here come from the client and have passed the grammar only; the session
still checks them against the store (existence, permissions, sizes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import ClassVar

from courriel.imap.protocol.sequence import SequenceSet

SearchKey = tuple  # see the module docstring


@dataclass(frozen=True)
class Command:
    tag: str
    name: ClassVar[str] = ""


# --- any state (RFC 3501 §6.1) -------------------------------------------------------------

@dataclass(frozen=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True)
class Id(Command):
    """RFC 2971: `parameters` is None for `ID NIL`, else the field/value pairs in order."""

    parameters: tuple[tuple[str, str | None], ...] | None = None
    name: ClassVar[str] = "ID"


# --- not authenticated (RFC 3501 §6.2) ----------------------------------------------------

@dataclass(frozen=True)
class StartTls(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True)
class Authenticate(Command):
    """`mechanism` upper-cased; `initial_response` is the decoded SASL-IR (RFC 4959): None when absent,
    b"" for "=". Further client responses arrive as `AuthenticateResponse` events."""

    mechanism: str = ""
    initial_response: bytes | None = field(default=None, repr=False)  # credentials: never in logs
    name: ClassVar[str] = "AUTHENTICATE"


@dataclass(frozen=True)
class Login(Command):
    username: str = ""
    password: str = field(default="", repr=False)
    name: ClassVar[str] = "LOGIN"


# --- authenticated (RFC 3501 §6.3) --------------------------------------------------------

@dataclass(frozen=True)
class QresyncParameters:
    """RFC 7162 §3.2.5: QRESYNC (uidvalidity modseq [known-uids [(seq-match-seqs seq-match-uids)]])."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence: SequenceSet | None = None
    known_sequence_uids: SequenceSet | None = None


@dataclass(frozen=True)
class Select(Command):
    mailbox: str = ""
    condstore: bool = False  # RFC 7162 §3.1.8: SELECT (CONDSTORE)
    qresync: QresyncParameters | None = None
    read_only: ClassVar[bool] = False
    name: ClassVar[str] = "SELECT"


@dataclass(frozen=True)
class Examine(Select):
    read_only: ClassVar[bool] = True
    name: ClassVar[str] = "EXAMINE"


@dataclass(frozen=True)
class Create(Command):
    mailbox: str = ""
    special_use: tuple[str, ...] = ()  # RFC 6154 §3: CREATE name (USE (\Drafts))
    name: ClassVar[str] = "CREATE"


@dataclass(frozen=True)
class Delete(Command):
    mailbox: str = ""
    name: ClassVar[str] = "DELETE"


@dataclass(frozen=True)
class Rename(Command):
    mailbox: str = ""
    new_name: str = ""
    name: ClassVar[str] = "RENAME"


@dataclass(frozen=True)
class Subscribe(Command):
    mailbox: str = ""
    name: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True)
class Unsubscribe(Command):
    mailbox: str = ""
    name: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True)
class List(Command):
    """LIST with the RFC 5258 extended syntax.

    `selection`: upper-cased selection options (SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE);
    `return_options`: upper-cased return options (SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS);
    `status_items`: the items of RETURN (STATUS (...)) (RFC 5819); `extended` is True when the
    client used any extended syntax (the response then carries extended data such as CHILDINFO).
    `patterns` are decoded mailbox patterns (several with the RFC 5258 list form)."""

    reference: str = ""
    patterns: tuple[str, ...] = ("",)
    selection: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()
    extended: bool = False
    name: ClassVar[str] = "LIST"


@dataclass(frozen=True)
class Lsub(Command):
    reference: str = ""
    pattern: str = ""
    name: ClassVar[str] = "LSUB"


@dataclass(frozen=True)
class Status(Command):
    """`items` upper-cased: MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED HIGHESTMODSEQ APPENDLIMIT."""

    mailbox: str = ""
    items: tuple[str, ...] = ()
    name: ClassVar[str] = "STATUS"


@dataclass(frozen=True)
class AppendMessage:
    """One message of APPEND / MULTIAPPEND (RFC 3502): `binary` when sent as literal8 (RFC 3516 §4.4)."""

    message: bytes = field(repr=False)
    flags: tuple[str, ...] = ()
    internaldate: dt.datetime | None = None
    binary: bool = False


@dataclass(frozen=True)
class Append(Command):
    mailbox: str = ""
    messages: tuple[AppendMessage, ...] = ()
    name: ClassVar[str] = "APPEND"


@dataclass(frozen=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True)
class Enable(Command):
    capabilities: tuple[str, ...] = ()  # upper-cased
    name: ClassVar[str] = "ENABLE"


@dataclass(frozen=True)
class Idle(Command):
    name: ClassVar[str] = "IDLE"


@dataclass(frozen=True)
class Compress(Command):
    mechanism: str = "DEFLATE"
    name: ClassVar[str] = "COMPRESS"


@dataclass(frozen=True)
class Unauthenticate(Command):
    name: ClassVar[str] = "UNAUTHENTICATE"


@dataclass(frozen=True)
class GetQuota(Command):
    root: str = ""
    name: ClassVar[str] = "GETQUOTA"


@dataclass(frozen=True)
class GetQuotaRoot(Command):
    mailbox: str = ""
    name: ClassVar[str] = "GETQUOTAROOT"


@dataclass(frozen=True)
class SetQuota(Command):
    root: str = ""
    limits: tuple[tuple[str, int], ...] = ()  # (resource upper-cased, limit)
    name: ClassVar[str] = "SETQUOTA"


@dataclass(frozen=True)
class GetMetadata(Command):
    """RFC 5464 §4.2: `mailbox` "" is the server; `entries` lower-cased; `depth` 0, 1 or -1 (infinity)."""

    mailbox: str = ""
    entries: tuple[str, ...] = ()
    depth: int = 0
    maxsize: int | None = None
    name: ClassVar[str] = "GETMETADATA"


@dataclass(frozen=True)
class SetMetadata(Command):
    """RFC 5464 §4.3: (entry, value) pairs; a None value removes the entry."""

    mailbox: str = ""
    changes: tuple[tuple[str, bytes | None], ...] = ()
    name: ClassVar[str] = "SETMETADATA"


# --- selected (RFC 3501 §6.4) -------------------------------------------------------------

@dataclass(frozen=True)
class Check(Command):
    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True)
class Unselect(Command):
    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE with `uids` (RFC 4315 §2.1)."""

    uids: SequenceSet | None = None
    name: ClassVar[str] = "EXPUNGE"


@dataclass(frozen=True)
class Search(Command):
    """SEARCH / UID SEARCH.

    `key` is the AND of the criteria as a key tree (module docstring). `return_options` is None
    for a plain SEARCH (the `* SEARCH` response) and a tuple of upper-cased options for the
    RFC 4731 ESEARCH form: () means RETURN () i.e. ALL; options are MIN MAX COUNT ALL SAVE."""

    key: SearchKey = ("ALL",)
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    uid: bool = False
    name: ClassVar[str] = "SEARCH"


@dataclass(frozen=True)
class FetchAttribute:
    """One FETCH data item, the shape `courriel.imap.fetch.FetchItem` takes.

    `name`: FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY, BODYSTRUCTURE, MODSEQ,
    RFC822, RFC822.HEADER, RFC822.TEXT, "BODY[]", "BINARY[]", "BINARY.SIZE[]".
    `section`: the canonical text between the brackets ("1.2.HEADER.FIELDS (DATE FROM)"),
    also given parsed as `part`, `text` (None/HEADER/HEADER.FIELDS/HEADER.FIELDS.NOT/TEXT/MIME)
    and `fields` (upper-cased header field names). `partial`: (origin, count) from <origin.count>.
    `peek`: BODY.PEEK / BINARY.PEEK (RFC 3501 §6.4.5: does not set \\Seen)."""

    name: str
    section: str = ""
    partial: tuple[int, int | None] | None = None
    peek: bool = False
    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fetch(Command):
    """FETCH / UID FETCH. Macros ALL, FAST and FULL are expanded (RFC 3501 §6.4.5).

    `changedsince`: RFC 7162 §3.1.4.1 CHANGEDSINCE modifier; `vanished`: RFC 7162 §3.2.6 VANISHED
    modifier (UID FETCH only)."""

    sequence: SequenceSet = field(default_factory=SequenceSet)
    items: tuple[FetchAttribute, ...] = ()
    uid: bool = False
    changedsince: int | None = None
    vanished: bool = False
    name: ClassVar[str] = "FETCH"


@dataclass(frozen=True)
class Store(Command):
    """STORE / UID STORE. `mode` is "+" (add), "-" (remove) or "" (replace); `silent` for .SILENT;
    `unchangedsince`: RFC 7162 §3.1.3 UNCHANGEDSINCE modifier."""

    sequence: SequenceSet = field(default_factory=SequenceSet)
    mode: str = ""
    silent: bool = False
    flags: tuple[str, ...] = ()
    uid: bool = False
    unchangedsince: int | None = None
    name: ClassVar[str] = "STORE"


@dataclass(frozen=True)
class Copy(Command):
    sequence: SequenceSet = field(default_factory=SequenceSet)
    mailbox: str = ""
    uid: bool = False
    name: ClassVar[str] = "COPY"


@dataclass(frozen=True)
class Move(Command):
    sequence: SequenceSet = field(default_factory=SequenceSet)
    mailbox: str = ""
    uid: bool = False
    name: ClassVar[str] = "MOVE"


@dataclass(frozen=True)
class Sort(Command):
    """RFC 5256 §3: `criteria` are (reverse, key) pairs, key one of ARRIVAL CC DATE FROM SIZE SUBJECT TO
    (and DISPLAYFROM DISPLAYTO of RFC 5957). `return_options`: None for the `* SORT` response, or the
    RFC 5267 §3.2 (ESORT) RETURN options (MIN MAX COUNT ALL SAVE; RETURN () means ALL)."""

    criteria: tuple[tuple[bool, str], ...] = ()
    charset: str = "UTF-8"
    key: SearchKey = ("ALL",)
    uid: bool = False
    return_options: tuple[str, ...] | None = None
    name: ClassVar[str] = "SORT"


@dataclass(frozen=True)
class Thread(Command):
    algorithm: str = "ORDEREDSUBJECT"
    charset: str = "UTF-8"
    key: SearchKey = ("ALL",)
    uid: bool = False
    name: ClassVar[str] = "THREAD"


COMMANDS: dict[str, type[Command]] = {
    cls.name: cls
    for cls in (Capability, Noop, Logout, Id, StartTls, Authenticate, Login, Select, Examine, Create, Delete,
                Rename, Subscribe, Unsubscribe, List, Lsub, Status, Append, Namespace, Enable, Idle, Compress,
                Unauthenticate, GetQuota, GetQuotaRoot, SetQuota, GetMetadata, SetMetadata, Check, Close, Unselect,
                Expunge, Search, Fetch, Store, Copy, Move, Sort, Thread)
}
"""Command name → class, for every command the parser knows."""

UID_COMMANDS = frozenset({"FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD"})
"""Commands that may follow UID (RFC 3501 §6.4.8, RFC 4315 §2.1, RFC 6851 §3.3, RFC 5256)."""


# --- events the parser yields besides commands --------------------------------------------

@dataclass(frozen=True)
class ContinuationRequest:
    """The client waits for `+ ` before sending a synchronising literal (RFC 3501 §7.5): send
    `encoder.continuation(text)` now. `tag` is the command's tag, `command` its name (e.g. "APPEND",
    None when unknown yet), `size` the announced literal size. To refuse instead (wrong state,
    over quota), answer the tag yourself and call `Parser.abandon_command()`: the client, which
    never got "+", does not send the literal."""

    tag: str
    size: int
    text: str = "Ready for literal data"
    command: str | None = None


@dataclass(frozen=True)
class CommandError:
    """A command that cannot be parsed or is over a limit. The parser has already resynchronised.

    Answer with `encoder.tagged(tag, status, text, code)` ("*" tag: untagged). `status` is "BAD" or
    "NO"; `code` a response code (TOOBIG, LIMIT, BADCHARSET, CANNOT...) or None. `close` means the
    connection cannot be resynchronised and should be closed after the answer."""

    tag: str
    status: str
    text: str
    code: str | None = None
    command: str | None = None
    close: bool = False


@dataclass(frozen=True)
class AuthenticateResponse:
    """One client line during AUTHENTICATE (RFC 3501 §6.2.2): decoded `data`, or `cancelled` for "*"."""

    data: bytes = field(repr=False)
    cancelled: bool = False


@dataclass(frozen=True)
class IdleDone:
    """The DONE line that ends IDLE (RFC 2177 §3)."""


Event = Command | ContinuationRequest | CommandError | AuthenticateResponse | IdleDone
