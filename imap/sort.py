"""SORT: the order of messages under RFC 5256 sort criteria (ring 0, pure).

Owns the sort keys of RFC 5256 §3 and RFC 5957 §3 computed from the facts the store caches
per message (`SortFacts`: internal date, size, the ENVELOPE list, the sent date, Message-ID
and the References parents), the i;ascii-casemap comparison, REVERSE, and the final tie-break
by sequence number. The session builds `SortFacts` from `Store.summaries`; THREAD
(`courriel.imap.thread`) reads the same facts.

Keys (RFC 5256 §3):
    ARRIVAL   the internal date and time
    CC        addr-mailbox of the first Cc address
    DATE      the sent date (§2.2: the Date: header in UTC, or else the internal date)
    FROM      addr-mailbox of the first From address
    SIZE      RFC822.SIZE
    SUBJECT   the base subject (§2.1)
    TO        addr-mailbox of the first To address
    DISPLAYFROM, DISPLAYTO   RFC 5957 §3: the decoded display name of the first From / To
              address, or its addr-spec when it has none

Standards: RFC 5256 §2.1 (base subject), §2.2 (sent date), §3 (SORT keys, REVERSE; messages
equal under every key stay in mailbox order), RFC 4790 §9.2 (i;ascii-casemap: a-z upper-cased,
then octet order; for UTF-8 text octet order is code point order), RFC 5957 §3.
Security: works on cached, already bounded values; never raises on a malformed envelope.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from courriel.mime_search import (
    CC,
    FROM,
    TO,
    base_subject,
    decoded,
    is_reply_or_forward,
    sort_display,
    sort_mailbox,
)

__all__ = ["SORT_KEYS", "SortFacts", "casemap", "envelope_of", "sent_date", "sort_messages"]

SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def casemap(text: str) -> str:
    """RFC 4790 §9.2 i;ascii-casemap: only the ASCII letters are folded (upper case)."""
    return text.translate(_ASCII_UPPER)


def envelope_of(envelope_json: str) -> list | None:
    """The cached ENVELOPE list (see `courriel.mime_envelope`), or None when it cannot be read."""
    if not envelope_json:
        return None
    try:
        envelope = json.loads(envelope_json)
    except ValueError:
        return None
    return envelope if isinstance(envelope, list) and len(envelope) >= 10 else None


@dataclass(frozen=True)
class SortFacts:
    """What SORT and THREAD know of one message of the searched set.

    `envelope` is the ENVELOPE list (date, subject, from, sender, reply-to, to, cc, bcc,
    in-reply-to, message-id; raw header text, None for NIL), given as `envelope_list` or as the
    store's JSON in `envelope_json`. `reference_ids` are the parent
    msg-ids of RFC 5256 §2.2 (References, else the first of In-Reply-To), oldest first."""

    msn: int
    uid: int
    internaldate: dt.datetime
    size: int = 0
    sent: dt.datetime | None = None
    envelope_list: list | None = None
    message_id: str = ""
    reference_ids: tuple[str, ...] = ()
    envelope_json: str = ""  # the cached ENVELOPE, parsed only when a key needs it
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def envelope(self) -> list | None:
        """The ENVELOPE list: as given, or parsed from `envelope_json` once (ARRIVAL, DATE and SIZE
        never need it)."""
        if self.envelope_list is not None:
            return self.envelope_list
        if "envelope" not in self._cache:
            self._cache["envelope"] = envelope_of(self.envelope_json)
        return self._cache["envelope"]

    @property
    def subject(self) -> str | None:
        envelope = self.envelope
        return envelope[1] if envelope else None

    @property
    def base_subject(self) -> str:
        """RFC 5256 §2.1, computed once."""
        if "base" not in self._cache:
            self._cache["base"] = base_subject(self.subject)
        return self._cache["base"]

    @property
    def reply_or_forward(self) -> bool:
        """RFC 5256 §2.1: extracting the base subject removed a reply or forward marker (computed once)."""
        if "reply" not in self._cache:
            self._cache["reply"] = is_reply_or_forward(self.subject)
        return self._cache["reply"]


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def sent_date(facts: SortFacts) -> dt.datetime:
    """RFC 5256 §2.2: the Date: header normalised to UTC, or the internal date when it is
    missing or cannot be parsed."""
    return _utc(facts.sent if facts.sent is not None else facts.internaldate)


_KEY_FUNCTIONS: dict[str, Callable[[SortFacts], object]] = {
    "ARRIVAL": lambda m: _utc(m.internaldate),
    "DATE": sent_date,
    "SIZE": lambda m: m.size,
    "SUBJECT": lambda m: casemap(m.base_subject),
    # RFC 5256 §3: the addr-mailbox (local part); the header may carry encoded words there.
    "FROM": lambda m: casemap(decoded(sort_mailbox(m.envelope, FROM))),
    "TO": lambda m: casemap(decoded(sort_mailbox(m.envelope, TO))),
    "CC": lambda m: casemap(decoded(sort_mailbox(m.envelope, CC))),
    # RFC 5957 §3: the display name, else the addr-spec; empty when there is no address.
    "DISPLAYFROM": lambda m: casemap(sort_display(m.envelope, FROM)),
    "DISPLAYTO": lambda m: casemap(sort_display(m.envelope, TO)),
}


def sort_key(facts: SortFacts, key: str):
    """The comparable value of one RFC 5256 / RFC 5957 sort key."""
    try:
        return _KEY_FUNCTIONS[key](facts)
    except (IndexError, TypeError, AttributeError):  # a malformed cached envelope sorts as empty
        return ""


def sort_messages(messages: Iterable[SortFacts], criteria: Sequence[tuple[bool, str]]) -> list[SortFacts]:
    """The messages in the order of `criteria` ((reverse, key) pairs, most significant first).

    RFC 5256 §3: REVERSE reverses only the key it precedes; messages equal under every key
    are in mailbox (sequence number) order."""
    ordered = sorted(messages, key=lambda m: m.msn)
    for reverse, key in reversed(criteria):
        if key not in _KEY_FUNCTIONS:
            raise ValueError(f"unknown sort key {key}")
        values = {id(m): sort_key(m, key) for m in ordered}
        # list.sort is stable, also with reverse=True: ties keep the order of the less significant keys.
        ordered.sort(key=lambda m, values=values: values[id(m)], reverse=reverse)
    return ordered
