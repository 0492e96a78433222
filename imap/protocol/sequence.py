"""IMAP sequence sets: message sequence numbers or UIDs, with `*` and the saved result `$`.

Owns the parsed form of `sequence-set` and its resolution against a mailbox's largest number.

Standards: RFC 3501 §9 (sequence-set, seq-range, seq-number, `*` = the largest number in use;
a range may be given in either order: "2:4" and "4:2" are the same set), RFC 9051 §9,
RFC 5182 §2 (`$` stands for the result saved by SEARCH RETURN (SAVE)).
Security: parses client input; numbers are bounded to nz-number (1..4294967295).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_NUMBER", "SequenceSet", "SequenceSyntaxError"]

MAX_NUMBER = 4294967295  # RFC 3501 §9: nz-number is a 32-bit unsigned integer
_NUMBER = r"(?:[1-9][0-9]{0,9}|\*)"
_SET = re.compile(rf"{_NUMBER}(?::{_NUMBER})?(?:,{_NUMBER}(?::{_NUMBER})?)*")


class SequenceSyntaxError(ValueError):
    """The text is not a valid sequence-set."""


@dataclass(frozen=True)
class SequenceSet:
    """`ranges` are (low, high) pairs as sent, None standing for `*`; `saved` is True for `$`.

    Ranges are kept unresolved: `*` means the largest number at the time the command runs,
    which only the session knows (`resolve`)."""

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    @classmethod
    def parse(cls, text: str | bytes) -> SequenceSet:
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if text == "$":
            return cls(saved=True)
        if not _SET.fullmatch(text):
            raise SequenceSyntaxError(f"bad sequence set {text[:40]!r}")
        ranges = []
        for part in text.split(","):
            low, _, high = part.partition(":")
            first = cls._number(low)
            ranges.append((first, cls._number(high) if high else first))
        return cls(tuple(ranges))

    @staticmethod
    def _number(text: str) -> int | None:
        if text == "*":
            return None
        value = int(text)
        if value > MAX_NUMBER:
            raise SequenceSyntaxError(f"number {text} out of range")
        return value

    @classmethod
    def of(cls, *numbers: int | tuple[int, int]) -> SequenceSet:
        """A set from numbers and (low, high) pairs (for building responses and tests)."""
        return cls(tuple((n, n) if isinstance(n, int) else tuple(n) for n in numbers))

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Ranges with `*` replaced by `largest` and each range ordered low..high (RFC 3501 §9).

        With an empty mailbox (`largest` = 0) `*` resolves to 0, so ranges like "1:*" become (0, 1)
        and a lookup finds nothing. `$` cannot be resolved here: the session holds the saved result."""
        if self.saved:
            raise ValueError("the saved result `$` is resolved by the session")
        out = []
        for low, high in self.ranges:
            a = largest if low is None else low
            b = largest if high is None else high
            out.append((min(a, b), max(a, b)))
        return out

    def contains(self, number: int, largest: int) -> bool:
        return any(low <= number <= high for low, high in self.resolve(largest))

    def __str__(self) -> str:
        if self.saved:
            return "$"
        parts = []
        for low, high in self.ranges:
            a = "*" if low is None else str(low)
            if low == high:
                parts.append(a)
            else:
                parts.append(f"{a}:{'*' if high is None else high}")
        return ",".join(parts)

    def __bytes__(self) -> bytes:
        return str(self).encode("ascii")

    @classmethod
    def from_numbers(cls, numbers) -> SequenceSet:
        """The compact set covering exactly `numbers` (e.g. for ESEARCH ALL, COPYUID)."""
        ranges: list[tuple[int, int]] = []
        for n in sorted(set(numbers)):
            if ranges and ranges[-1][1] == n - 1:
                ranges[-1] = (ranges[-1][0], n)
            else:
                ranges.append((n, n))
        return cls(tuple(ranges))
