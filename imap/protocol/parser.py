"""Incremental IMAP command parser (sans-IO): bytes in, typed commands and events out.

Owns the framing of the client's byte stream into complete commands (lines, synchronising and
non-synchronising literals, literal8), the limits on what a client may send, resynchronisation
after an error, the special input modes of AUTHENTICATE and IDLE, and the grammar of every
command (`courriel.imap.protocol.commands`).

Use (the session/transport):

    parser = Parser(Limits(max_message_size=...))
    parser.receive(data)                      # whatever arrived, any split, even one byte
    while (event := parser.next_event()) is not None:
        ...  # Command -> do_<command>; ContinuationRequest -> send "+ Ready"; CommandError -> answer it

`next_event` returns one event at a time so the session can switch modes between commands:
- it creates the parser with `authenticated=False` and sets `parser.authenticated = True` after
  a successful login (False again after UNAUTHENTICATE): before, every literal, APPEND's too, is
  held to `max_unauthenticated_literal` (a few KiB: enough for LOGIN, RFC 7888 §4 LITERAL- has
  the same 4096), and a refused non-synchronising literal over `max_unauthenticated_discard`
  closes the connection instead of being read; left at None, the parser does not track login
  and APPEND literals may reach `max_message_size`;
- with `spool=factory`, an APPEND literal larger than `spool_threshold` is written as it
  arrives into `factory(size)` (any object with `write`, e.g. a temporary file; the session's
  has `__len__`), and that object, not bytes, is the `Literal`'s data: a large message is
  never held in memory while a slow client sends it;
- after an `Authenticate` it sends a challenge and calls `expect_authenticate_response(tag)`
  (lines then arrive as `AuthenticateResponse`) and `expect_command()` when the exchange ends;
- after `Idle` it sends "+ idling" and calls `expect_idle_done(tag)` (the DONE line arrives as
  `IdleDone` and the parser is back in command mode);
- after STARTTLS it calls `discard_buffered()` before starting TLS: bytes pipelined in
  plaintext after STARTTLS must not be executed inside TLS (RFC 3501 §6.2.1, the STARTTLS
  command-injection attack);
- after ENABLE UTF8=ACCEPT it sets `parser.utf8 = True` (names are UTF-8, RFC 6855 §3).
`feed(data)` = receive + every event at once, for callers that never switch modes (tests).

Limits and resynchronisation: a line longer than `max_line` (or a command whose lines together
are, literal data not counted) → BAD [TOOBIG], the rest of the line (and of the command) is
skipped; a literal larger than allowed → NO [TOOBIG] for APPEND (RFC 7889 APPENDLIMIT),
BAD [TOOBIG] otherwise; the literals of one command together are held to `max_command_size`,
by default `max_message_size` (a MULTIAPPEND larger than one message's limit is refused with
NO [TOOBIG]; the client can append the messages one by one). The server never sends "+" for a
refused synchronising literal, so the client abandons the command (RFC 3501 §7.5); a refused
non-synchronising literal is read and discarded (RFC 7888 §4) and the rest of the command
skipped (one over `max_discard` gives `close=True`: the session answers, then closes the
connection). Too many literals or too
much nesting → BAD [LIMIT]. Each error is a `CommandError` naming the tag, status and response
code; parsing then continues with the next command.

Standards: RFC 3501 §2.2 (commands are lines ending in CRLF, literals), §4.3 (literal
`{n}` CRLF data), §7.5 (command continuation request), RFC 9051 §2.2, §4.3, §7.5, RFC 7888
(LITERAL+ `{n+}`, §4 handling of oversized non-synchronising literals), RFC 3516 §4.4
(literal8 `~{n}`), RFC 7162 §4 (long command lines: BAD [TOOBIG]), RFC 4959 (SASL-IR),
RFC 2177 (IDLE/DONE), RFC 3501 §6.2.2 (AUTHENTICATE continuation lines, "*" cancels),
and the per-command sections cited at each `_parse_<command>`.
Security: this is the first code to see untrusted client bytes. It buffers at most one line
(`max_line`) plus the literals of one command (bounded by the literal limits and
`max_literals`), never raises on bad input (every failure is a `CommandError` event), and
bounds nesting depth and the count of search keys.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from courriel.imap.protocol import commands as c
from courriel.imap.protocol.dates import DateSyntaxError, parse_date_time
from courriel.imap.protocol.grammar import LITERAL_MARK, Cursor, GrammarError, Literal, is_astring_char
from courriel.imap.protocol.metadata import parse_getmetadata, parse_setmetadata
from courriel.imap.protocol.search import parse_charset, parse_criteria, parse_return_options

__all__ = ["Limits", "Parser", "parse_command"]


@dataclass(frozen=True)
class Limits:
    """What one command may contain. `max_message_size` is the APPENDLIMIT (RFC 7889)."""

    max_line: int = 65536  # RFC 7162 §4 recommends accepting at least 8192 octets
    max_literal: int = 65536  # any literal outside APPEND (login, search strings, names)
    max_message_size: int = 50 * 1024 * 1024
    max_literals: int = 1000  # literals in one command (MULTIAPPEND, long search programs)
    max_command_size: int | None = None  # all literal data of one command together; None: max_message_size
    max_depth: int = 16
    max_discard: int = 64 * 1024 * 1024  # a refused LITERAL+ larger than this closes the connection
    max_unauthenticated_literal: int = 4096  # any literal before login (RFC 7888 §4, RFC 9051 §2.2.2)
    max_unauthenticated_discard: int = 65536  # before login a larger refused LITERAL+ closes the connection
    spool_threshold: int = 256 * 1024  # APPEND literals larger than this go to `Parser.spool` when set

    @property
    def command_size(self) -> int:
        return self.max_message_size if self.max_command_size is None else self.max_command_size


_LITERAL_HEADER = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")
_PREFIX = re.compile(rb"([^\x00-\x20\x7f-\xff(){%*\"\\+]+)(?: (?:(UID) )?([A-Za-z0-9.-]+))?")

COMMAND, AUTHENTICATE, IDLE = "command", "authenticate", "idle"


class Parser:
    """See the module docstring. Not thread-safe: one per connection."""

    def __init__(self, limits: Limits | None = None, *, utf8: bool = False, authenticated: bool | None = None,
                 spool=None):
        self.limits = limits or Limits()
        self.utf8 = utf8
        self.spool = spool  # factory(size) -> writable sink for large APPEND literals (module docstring)
        self._sink = None
        # False: before login every literal, APPEND's too, is held to `max_literal`, so an
        # unauthenticated client cannot make the server buffer a message; the session sets True
        # after LOGIN/AUTHENTICATE. None: not tracked (APPEND literals up to max_message_size always).
        self.authenticated = authenticated
        self.mode = COMMAND
        self._mode_tag = "*"
        self._buffer = bytearray()
        self._scan = 0  # bytes of _buffer already known to hold no LF
        self._reset_command()
        self._discarding = False  # skipping the rest of a refused command
        self._discard_line = False  # skipping up to the end of an overlong line
        self._discard_tail = b""
        self._skip_literal = 0  # bytes of a refused non-synchronising literal still to skip
        self._literal_remaining = 0
        self._literal_data = bytearray()
        self._literal_binary = False

    # --- public API ---------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Buffer bytes from the client."""
        self._buffer += data

    def feed(self, data: bytes) -> list[c.Event]:
        """receive(data), then every event that is complete."""
        self.receive(data)
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def next_event(self) -> c.Event | None:
        """The next complete command or event, or None when more bytes are needed."""
        while True:
            if self._skip_literal:
                cut = min(self._skip_literal, len(self._buffer))
                del self._buffer[:cut]
                self._skip_literal -= cut
                if self._skip_literal:
                    return None
                continue
            if self._literal_remaining:
                cut = min(self._literal_remaining, len(self._buffer))
                if self._sink is not None:
                    self._sink.write(bytes(self._buffer[:cut]))
                else:
                    self._literal_data += self._buffer[:cut]
                del self._buffer[:cut]
                self._literal_remaining -= cut
                if self._literal_remaining:
                    return None
                if self._sink is not None:
                    self._literals.append(Literal(self._sink, self._literal_binary))
                    self._sink = None
                else:
                    self._literals.append(Literal(bytes(self._literal_data), self._literal_binary))
                    self._literal_data = bytearray()
                continue
            line = self._take_line()
            if line is None:
                if self._discard_line or len(self._buffer) <= self._line_budget():
                    return None
                return self._overlong_line()
            event = self._line(line)
            if event is not None:
                return event

    def expect_authenticate_response(self, tag: str) -> None:
        """The next line is a SASL response (RFC 3501 §6.2.2), after the server sent `+ challenge`."""
        self.mode, self._mode_tag = AUTHENTICATE, tag

    def expect_idle_done(self, tag: str) -> None:
        """The next line must be DONE (RFC 2177 §3), after the server sent `+ idling`."""
        self.mode, self._mode_tag = IDLE, tag

    def expect_command(self) -> None:
        self.mode, self._mode_tag = COMMAND, "*"

    def abandon_command(self) -> None:
        """Drop the command whose synchronising literal was just announced, instead of sending "+".

        Only valid right after a ContinuationRequest: the client waits for "+" and sends nothing
        more of this command once it has the tagged answer (RFC 3501 §7.5)."""
        if self._literal_remaining and not self._literal_data:
            self._literal_remaining = 0
            self._literal_binary = False
            self._drop_sink()
            self._reset_command()

    def discard_buffered(self) -> int:
        """Drop every byte received but not parsed (STARTTLS, RFC 3501 §6.2.1); returns how many."""
        count = len(self._buffer)
        self._buffer.clear()
        self._scan = 0
        self._reset_command()
        self._discarding = self._discard_line = False
        self._discard_tail = b""
        self._skip_literal = self._literal_remaining = 0
        self._literal_data = bytearray()
        self._drop_sink()
        return count

    def _drop_sink(self) -> None:
        sink, self._sink = self._sink, None
        close = getattr(sink, "close", None)
        if close is not None:
            close()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def mid_command(self) -> bool:
        """True when part of a command has arrived and the rest is awaited (a line without its
        end, a literal still arriving): what a server stop lets the client finish."""
        return bool(self._buffer or self._text or self._literals or self._literal_remaining or self._skip_literal)

    # --- framing -------------------------------------------------------------------------
    def _reset_command(self) -> None:
        self._text = bytearray()
        self._literals: list[Literal] = []
        self._literal_total = 0
        self._tag = "*"
        self._command_name: str | None = None

    def _line_budget(self) -> int:
        return self.limits.max_line + 2  # the CRLF

    def _take_line(self) -> bytes | None:
        index = self._buffer.find(b"\n", self._scan)
        if index < 0:
            self._scan = len(self._buffer)
            if self._discard_line:  # keep only the tail, to spot a literal header at the end
                self._discard_tail = (self._discard_tail + bytes(self._buffer[-32:]))[-32:]
                self._buffer.clear()
                self._scan = 0
            return None
        if self._discard_line:  # only the tail matters (a literal header may end the line)
            line = (self._discard_tail + bytes(self._buffer[max(0, index - 32):index]))[-33:]
            self._discard_line, self._discard_tail, self._discarding = False, b"", True
        else:
            line = bytes(self._buffer[:index])
        del self._buffer[:index + 1]
        self._scan = 0
        return line[:-1] if line.endswith(b"\r") else line

    def _overlong_line(self) -> c.CommandError:
        """RFC 7162 §4: a line over the limit is answered BAD [TOOBIG]; skip to its end."""
        head = bytes(self._buffer[:64])
        self._buffer.clear()
        self._scan = 0
        self._discard_line = True
        self._discard_tail = b""
        if self.mode != COMMAND:
            tag = self._mode_tag
            self.expect_command()
            return c.CommandError(tag, "BAD", "line too long", "TOOBIG")
        if not self._text:
            self._identify(head)
        return self._abort("BAD", "command line too long", "TOOBIG")

    def _abort(self, status: str, text: str, code: str | None = None) -> c.CommandError:
        error = c.CommandError(self._tag, status, text, code, self._command_name)
        self._reset_command()
        return error

    def _identify(self, first_line: bytes) -> None:
        match = _PREFIX.match(first_line)
        if match:
            self._tag = match.group(1).decode("ascii")
            if match.group(3):
                self._command_name = match.group(3).decode("ascii").upper()

    def _line(self, line: bytes) -> c.Event | None:
        if self._discarding:
            return self._discarded_line(line)
        if self.mode == AUTHENTICATE:
            return self._authenticate_line(line)
        if self.mode == IDLE:
            return self._idle_line(line)
        if len(line) > self.limits.max_line:
            if not self._text:
                self._identify(line)
            self._discarding = True
            return self._discarded_line(line, self._abort("BAD", "command line too long", "TOOBIG"))
        if LITERAL_MARK in line:
            if not self._text:
                self._identify(line)
            self._discarding = True
            return self._discarded_line(line, self._abort("BAD", "NUL in command line"))
        first = not self._text and not self._literals
        if first:
            if not line.strip():
                return None  # RFC leniency: an empty line between commands is ignored
            self._identify(line)
        if len(self._text) + len(line) > self.limits.max_line:  # the command without its literal data
            self._discarding = True
            return self._discarded_line(line, self._abort("BAD", "command line too long", "TOOBIG"))
        header = _LITERAL_HEADER.search(line)
        if header is None:
            self._text += line
            return self._complete()
        binary, size, plus = header.group(1) == b"~", int(header.group(2)), header.group(3) == b"+"
        self._text += line[:header.start()] + bytes([LITERAL_MARK])
        refusal = self._refuse_literal(size, first)
        if refusal is not None:
            if plus:  # RFC 7888 §4: read and discard the data, then the rest of the command
                if size > self._discard_limit():  # RFC 7888 §4: or close the connection
                    return c.CommandError(refusal.tag, refusal.status, refusal.text, refusal.code,
                                          refusal.command, close=True)
                self._skip_literal = size
                self._discarding = True
            return refusal
        self._literal_remaining = size
        self._literal_binary = binary
        self._literal_total += size
        if self.spool is not None and self._command_name == "APPEND" and size > self.limits.spool_threshold:
            self._sink = self.spool(size)
        if size == 0:
            self._literals.append(Literal(b"", binary))
        if plus:
            return None
        return c.ContinuationRequest(self._tag, size, command=self._command_name)  # RFC 3501 §7.5

    def _refuse_literal(self, size: int, first: bool) -> c.CommandError | None:
        name = self._command_name
        if first and (name is None or name not in c.COMMANDS):
            # Refuse before "+": never invite data for a command we cannot parse.
            return self._abort("BAD", f"unknown command {(name or '')[:40]}".strip())
        if len(self._literals) >= self.limits.max_literals:
            return self._abort("BAD", "too many literals in one command", "LIMIT")
        if self.authenticated is False:
            # Before login: only small literals (LOGIN, AUTHENTICATE); RFC 9051 §2.2.2 and RFC 7888 §4
            # let the server refuse any literal it will not take.
            if size > min(self.limits.max_literal, self.limits.max_unauthenticated_literal):
                return self._abort("BAD", "literal too large before login", "TOOBIG")
        elif name == "APPEND":
            if size > self.limits.max_message_size:
                return self._abort("NO", "message too large", "TOOBIG")  # RFC 7889 §4
        elif size > self.limits.max_literal:
            return self._abort("BAD", "literal too large", "TOOBIG")
        if self._literal_total + size > self.limits.command_size:
            return self._abort("NO", "command too large", "TOOBIG")
        return None

    def _discarded_line(self, line: bytes, event: c.Event | None = None) -> c.Event | None:
        header = _LITERAL_HEADER.search(line)
        if header is not None and header.group(3) == b"+":
            size = int(header.group(2))
            if size > self._discard_limit():
                self._discarding = False
                return c.CommandError(self._tag if event is None else event.tag, "BAD", "literal too large",
                                      "TOOBIG", close=True)
            self._skip_literal = size  # the command goes on after this literal
        else:
            self._discarding = False  # end of the command (or a sync literal the client will not send)
        return event

    def _discard_limit(self) -> int:
        if self.authenticated is False:
            return min(self.limits.max_discard, self.limits.max_unauthenticated_discard)
        return self.limits.max_discard

    def _complete(self) -> c.Event:
        text, literals = bytes(self._text), self._literals
        tag, name = self._tag, self._command_name
        self._reset_command()
        try:
            return parse_command(text, literals, utf8=self.utf8, max_depth=self.limits.max_depth)
        except GrammarError as exc:
            return c.CommandError(tag, exc.status, str(exc), exc.code, name)

    def _authenticate_line(self, line: bytes) -> c.Event:
        tag = self._mode_tag
        if line == b"*":  # RFC 3501 §6.2.2: the client cancels; the server answers BAD
            self.expect_command()
            return c.AuthenticateResponse(b"", cancelled=True)
        try:
            data = b"" if line in (b"", b"=") else base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            self.expect_command()
            return c.CommandError(tag, "BAD", "invalid base64 in SASL response", None, "AUTHENTICATE")
        return c.AuthenticateResponse(data)

    def _idle_line(self, line: bytes) -> c.Event:
        tag = self._mode_tag
        self.expect_command()
        if line.strip().upper() == b"DONE":
            return c.IdleDone()
        return c.CommandError(tag, "BAD", "expected DONE", None, "IDLE")


# --- command grammar ---------------------------------------------------------------------

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


def _parse_search(cursor: Cursor, tag: str, uid: bool) -> c.Search:
    """RFC 3501 §6.4.4: SEARCH [RETURN (...)] [CHARSET charset] key+; RFC 4731 §3 RETURN."""
    cursor.sp()
    return_options = None
    if cursor.keyword_ahead(b"RETURN"):
        cursor.sp()
        return_options = parse_return_options(cursor)
        cursor.sp()
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
    return_options = None
    if cursor.keyword_ahead(b"RETURN"):
        cursor.sp()
        return_options = parse_return_options(cursor)
        cursor.sp()
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
