"""Incremental IMAP command parser (sans-IO): bytes in, typed commands and events out.

Owns the framing of the client's byte stream into complete commands (lines, synchronising and
non-synchronising literals, literal8), the limits on what a client may send, resynchronisation
after an error and the special input modes of AUTHENTICATE and IDLE; each complete command is
typed by `courriel.imap.protocol.command_parsers.parse_command`.

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
RFC 2177 (IDLE/DONE), RFC 3501 §6.2.2 (AUTHENTICATE continuation lines, "*" cancels);
the grammar of each command is `courriel.imap.protocol.command_parsers`.
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
from courriel.imap.protocol.command_parsers import parse_command
from courriel.imap.protocol.grammar import LITERAL_MARK, GrammarError, Literal

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
