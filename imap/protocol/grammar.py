"""Low-level IMAP argument grammar over one complete, framed command.

Owns the cursor the command parser reads with: atoms, quoted strings, literals, astrings,
nstrings, numbers, flags, parenthesised lists and mailbox names. The framer
(`courriel.imap.protocol.parser`) has already collected the whole command; in its text each
literal (`{n}`, `{n+}`, `~{n}`) is replaced by one NUL byte and its data is in `literals`, so
this grammar never has to wait for input.

Standards: RFC 3501 §4 (data formats: atom, number, string (quoted and literal), NIL,
parenthesised list), §9 (formal syntax: ATOM-CHAR, ASTRING-CHAR, list-char, flag), RFC 9051
§4 and §9, RFC 3516 §4.4 (literal8), RFC 6855 §3 (UTF-8 in quoted strings after UTF8=ACCEPT),
RFC 3501 §5.1 (INBOX is case-insensitive).
Security: parses client input. Every failure raises `GrammarError`; nesting depth is bounded.
"""

from __future__ import annotations

from courriel.imap.protocol.mutf7 import MUTF7Error, decode_name
from courriel.imap.protocol.sequence import SequenceSet, SequenceSyntaxError

LITERAL_MARK = 0  # NUL: never valid on a command line (RFC 3501 §9: CHAR8 excludes %x00)
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
_LIST_WILDCARDS = frozenset(b"%*")
NUMBER64_MAX = 2**63 - 1
SYSTEM_FLAGS = {f.upper(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent")}


class GrammarError(ValueError):
    """The command does not match the grammar. `status`/`code` name the response (default BAD)."""

    def __init__(self, text: str, status: str = "BAD", code: str | None = None):
        super().__init__(text)
        self.status = status
        self.code = code


def is_atom_char(byte: int) -> bool:
    return 0x20 < byte < 0x7F and byte not in _ATOM_SPECIALS


def is_astring_char(byte: int) -> bool:
    return is_atom_char(byte) or byte == 0x5D  # "]" (resp-specials)


def is_list_char(byte: int) -> bool:
    return is_astring_char(byte) or byte in _LIST_WILDCARDS


class Literal:
    """A literal's data and whether it was a literal8 (`~{n}`, RFC 3516)."""

    __slots__ = ("binary", "data")

    def __init__(self, data, binary: bool):  # bytes, or a parser's spool sink (large APPEND literals)
        self.data = data
        self.binary = binary


class Cursor:
    """Reads one framed command. Methods consume input or raise GrammarError."""

    def __init__(self, text: bytes, literals: list[Literal], *, utf8: bool = False, max_depth: int = 16):
        self.text = text
        self.pos = 0
        self.literals = literals
        self.next_literal = 0
        self.utf8 = utf8
        self.max_depth = max_depth
        self.depth = 0

    # --- primitives ---------------------------------------------------------------------
    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> int:
        return self.text[self.pos] if self.pos < len(self.text) else -1

    def expect(self, token: bytes) -> None:
        if self.text[self.pos:self.pos + len(token)] != token:
            raise GrammarError(f"expected {token.decode()!r} at offset {self.pos}")
        self.pos += len(token)

    def sp(self) -> None:
        self.expect(b" ")

    def try_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def end(self) -> None:
        if not self.at_end():
            raise GrammarError(f"unexpected data at offset {self.pos}")

    def keyword_ahead(self, word: bytes) -> bool:
        """True (and consumed) when the next atom is `word` (case-insensitive) followed by SP/")"/end."""
        end = self.pos + len(word)
        if self.text[self.pos:end].upper() == word and (end >= len(self.text) or not is_atom_char(self.text[end])):
            self.pos = end
            return True
        return False

    def open_list(self) -> None:
        self.expect(b"(")
        self.depth += 1
        if self.depth > self.max_depth:
            raise GrammarError("too many nested parentheses", "BAD", "LIMIT")

    def close_list(self) -> None:
        self.expect(b")")
        self.depth -= 1

    def take_while(self, predicate) -> bytes:
        start = self.pos
        text = self.text
        while self.pos < len(text) and predicate(text[self.pos]):
            self.pos += 1
        return text[start:self.pos]

    # --- data formats (RFC 3501 §4) -------------------------------------------------------
    def atom(self) -> str:
        value = self.take_while(is_atom_char)
        if not value:
            raise GrammarError(f"expected an atom at offset {self.pos}")
        return value.decode("ascii")

    def keyword(self) -> str:
        """An atom, upper-cased (command names, options, search keys: case-insensitive)."""
        return self.atom().upper()

    def number(self, limit: int = 4294967295) -> int:
        digits = self.take_while(lambda b: 0x30 <= b <= 0x39)
        if not digits or len(digits) > 20:
            raise GrammarError(f"expected a number at offset {self.pos}")
        value = int(digits)
        if value > limit:
            raise GrammarError("number out of range")
        return value

    def nz_number(self, limit: int = 4294967295) -> int:
        value = self.number(limit)
        if value == 0:
            raise GrammarError("expected a non-zero number")
        return value

    def number64(self) -> int:
        return self.number(NUMBER64_MAX)

    def quoted(self) -> bytes:
        self.expect(b'"')
        out = bytearray()
        text = self.text
        while True:
            if self.pos >= len(text):
                raise GrammarError("unterminated quoted string")
            byte = text[self.pos]
            self.pos += 1
            if byte == 0x22:
                return bytes(out)
            if byte == 0x5C:  # RFC 3501 §9: QUOTED-CHAR escapes only "\" and DQUOTE
                if self.pos >= len(text) or text[self.pos] not in (0x22, 0x5C):
                    raise GrammarError("bad escape in quoted string")
                byte = text[self.pos]
                self.pos += 1
            elif byte == LITERAL_MARK:
                raise GrammarError("literal inside a quoted string")
            out.append(byte)

    def literal(self) -> Literal:
        if self.peek() != LITERAL_MARK:
            raise GrammarError(f"expected a literal at offset {self.pos}")
        self.pos += 1
        if self.next_literal >= len(self.literals):
            raise GrammarError("literal missing")
        value = self.literals[self.next_literal]
        self.next_literal += 1
        return value

    def string(self) -> bytes:
        byte = self.peek()
        if byte == 0x22:
            return self.quoted()
        if byte == LITERAL_MARK:
            value = self.literal()
            if value.binary:
                raise GrammarError("literal8 not allowed here")
            if not isinstance(value.data, bytes):  # a spooled APPEND-sized literal where a string goes
                raise GrammarError("literal too large here")
            return value.data
        raise GrammarError(f"expected a string at offset {self.pos}")

    def astring(self) -> bytes:
        if self.peek() in (0x22, LITERAL_MARK):
            return self.string()
        value = self.take_while(is_astring_char)
        if not value:
            raise GrammarError(f"expected an astring at offset {self.pos}")
        return value

    def nstring(self) -> bytes | None:
        if self.keyword_ahead(b"NIL"):
            return None
        return self.string()

    def text_string(self, value: bytes) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise GrammarError("string is not valid UTF-8") from None

    def astring_text(self) -> str:
        return self.text_string(self.astring())

    def list_mailbox(self) -> bytes:
        """RFC 3501 §9 list-mailbox: 1*list-char / string (a LIST pattern, wildcards allowed)."""
        if self.peek() in (0x22, LITERAL_MARK):
            return self.string()
        value = self.take_while(is_list_char)
        if not value:
            raise GrammarError(f"expected a mailbox pattern at offset {self.pos}")
        return value

    def decode_mailbox(self, raw: bytes) -> str:
        try:
            name = decode_name(raw, self.utf8)
        except MUTF7Error as exc:
            raise GrammarError(f"bad mailbox name: {exc}") from None
        if name.upper() == "INBOX":
            return "INBOX"  # RFC 3501 §5.1: INBOX is case-insensitive
        return name

    def mailbox(self) -> str:
        return self.decode_mailbox(self.astring())

    def pattern(self) -> str:
        raw = self.list_mailbox()
        name = self.decode_mailbox(raw)
        return name

    def sequence_set(self) -> SequenceSet:
        raw = self.take_while(lambda b: (0x30 <= b <= 0x39) or b in b":,*$")
        try:
            return SequenceSet.parse(raw)
        except SequenceSyntaxError as exc:
            raise GrammarError(str(exc)) from None

    def flag(self, allow_wildcard: bool = False) -> str:
        """RFC 3501 §9 flag: "\\" atom (system or extension flag) or a keyword atom."""
        if self.peek() == 0x5C:
            self.pos += 1
            if allow_wildcard and self.peek() == 0x2A:
                self.pos += 1
                return "\\*"
            name = "\\" + self.atom()
            return SYSTEM_FLAGS.get(name.upper(), name)  # flags are case-insensitive: \SEEN is \Seen
        return self.atom()

    def flag_list(self) -> tuple[str, ...]:
        self.open_list()
        flags: list[str] = []
        if self.peek() != 0x29:
            flags.append(self.flag())
            while self.try_sp():
                flags.append(self.flag())
        self.close_list()
        return tuple(flags)

    def keyword_list(self) -> tuple[str, ...]:
        """A parenthesised list of atoms, upper-cased; empty allowed."""
        self.open_list()
        words: list[str] = []
        if self.peek() != 0x29:
            words.append(self.keyword())
            while self.try_sp():
                words.append(self.keyword())
        self.close_list()
        return tuple(words)
