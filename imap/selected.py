"""The selected-mailbox view of one IMAP session (ring 0, pure: fed with store results).

Owns the session's picture of its selected folder: message sequence numbers (MSN) ↔ UIDs,
the flags the client was last told, \\Recent, and the changes made by others (deliveries,
other sessions) that are still to be announced. The session feeds it `store.Changes`
(`changes_since(view.modseq)`) and asks `updates(...)` for the untagged responses it may
send now.

MSN bookkeeping: an expunge done elsewhere is kept as a "ghost" slot in the MSN list until
the client is told with `* n EXPUNGE`, so the numbers the client knows stay valid until then
(RFC 3501 §7.4.1, §5.5). New messages are appended after every slot, ghosts included, so
`* n EXISTS` always counts the slots the client can address.

\\Recent (RFC 3501 §2.3.2) needs one owner per message. Within one process a `RecentClaims`
registry gives each new UID to the first session that sees it; across IMAP worker processes
a message may be \\Recent in several sessions (the RFC leaves it undefined which session sees
it; IMAP4rev2, RFC 9051, drops \\Recent).

Standards: RFC 3501 §2.3.1.2 (message sequence numbers), §2.3.2 (\\Recent), §5.2 (mailbox
size and state updates), §5.5 (no EXPUNGE that would make pipelined MSNs ambiguous),
§7.3.1 (EXISTS), §7.3.2 (RECENT), §7.4.1 (EXPUNGE never during FETCH, STORE, SEARCH or
when no command is in progress), §7.4.2 (unsolicited FETCH FLAGS); RFC 4315 (UID
commands may see EXPUNGE); RFC 7162 §3.1 (MODSEQ of the view).
Security: none (no input parsing).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExpungeUpdate:
    msn: int
    uid: int = field(default=0, compare=False)  # for RFC 7162 §3.2.10 VANISHED after ENABLE QRESYNC


@dataclass(frozen=True)
class ExistsUpdate:
    count: int


@dataclass(frozen=True)
class RecentUpdate:
    count: int


@dataclass(frozen=True)
class FlagsUpdate:
    msn: int
    uid: int
    flags: tuple[str, ...]  # \\Recent included when it applies
    modseq: int


Update = ExpungeUpdate | ExistsUpdate | RecentUpdate | FlagsUpdate


class RecentClaims:
    """Which session of this process owns \\Recent for new UIDs, per folder: the first to look."""

    def __init__(self) -> None:
        self._claimed: dict[tuple[int, int], int] = {}  # (folder id, uidvalidity) -> highest UID claimed

    def claim(self, folder_id: int, uidvalidity: int, uids: Iterable[int]) -> set[int]:
        key = (folder_id, uidvalidity)
        high = self._claimed.get(key, 0)
        mine = {uid for uid in uids if uid > high}
        if mine:
            self._claimed[key] = max(mine)
        return mine

    def first_claim(self, folder_id: int, uidvalidity: int, uidnext: int) -> None:
        """At the first SELECT in this process, messages already there are not \\Recent."""
        self._claimed.setdefault((folder_id, uidvalidity), uidnext - 1)


class SequenceError(ValueError):
    """A message number outside the mailbox (RFC 3501 answers BAD/NO)."""


@dataclass
class SelectedMailbox:
    """MSN ↔ UID map, flags and pending updates of one selected folder."""

    folder_id: int
    name: str
    uidvalidity: int
    readonly: bool
    uidnext: int = 1
    modseq: int = 0
    uids: list[int] = field(default_factory=list)  # index + 1 = MSN; ghosts stay until announced
    flags: dict[int, tuple[str, ...]] = field(default_factory=dict)  # live messages only
    modseqs: dict[int, int] = field(default_factory=dict)
    recent: set[int] = field(default_factory=set)
    _ghosts: set[int] = field(default_factory=set)  # expunged elsewhere, not yet announced
    _announced_exists: int = 0
    _announced_recent: int = 0
    _flag_changes: set[int] = field(default_factory=set)

    # ------------------------------------------------------------------ loading

    def load(self, messages, uidnext: int, highestmodseq: int, recent: Iterable[int] = ()) -> None:
        """Initial state at SELECT/EXAMINE from `store.list_messages` (MessageInfo rows)."""
        rows = sorted(messages, key=lambda m: m.uid)
        self.uids = [m.uid for m in rows]
        self.flags = {m.uid: tuple(m.all_flags) for m in rows}
        self.modseqs = {m.uid: m.modseq for m in rows}
        self.recent = set(recent) & set(self.uids)
        self.uidnext = uidnext
        self.modseq = highestmodseq
        self._announced_exists = len(self.uids)
        self._announced_recent = len(self.recent)

    # ------------------------------------------------------------------ reading

    @property
    def exists(self) -> int:
        """The number of messages the client knows (ghosts included)."""
        return self._announced_exists

    def live(self, uid: int) -> bool:
        return uid in self.flags

    def uid_of(self, msn: int) -> int:
        if not 1 <= msn <= self._announced_exists:
            raise SequenceError(f"no message {msn}")
        return self.uids[msn - 1]

    def msn_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid, 0, self._announced_exists)
        if index < self._announced_exists and self.uids[index] == uid:
            return index + 1
        return None

    def known_uids(self) -> list[int]:
        return self.uids[:self._announced_exists]

    def first_unseen(self) -> int | None:
        """RFC 3501 §6.3.1 [UNSEEN n]: the MSN of the first message without \\Seen."""
        for index, uid in enumerate(self.known_uids()):
            if uid in self.flags and "\\Seen" not in self.flags[uid]:
                return index + 1
        return None

    def flags_of(self, uid: int) -> tuple[str, ...]:
        flags = self.flags.get(uid, ())
        return (*flags, "\\Recent") if uid in self.recent else flags

    def resolve_msns(self, ranges: Iterable[tuple[int, int]], strict: bool = True) -> list[int]:
        """UIDs for MSN ranges (inclusive, `*` already replaced by `exists`); ascending MSN order.

        RFC 3501 §6.4.8: a number beyond the mailbox is an error (the session answers BAD);
        with `strict=False` (a SEARCH key) such numbers simply match nothing."""
        picked: set[int] = set()
        for low, high in ranges:
            low, high = min(low, high), max(low, high)
            if strict and (low < 1 or high > self._announced_exists):
                raise SequenceError(f"message {high if high > self._announced_exists else low} does not exist")
            picked.update(range(max(low, 1), min(high, self._announced_exists) + 1))
        return [self.uids[msn - 1] for msn in sorted(picked)]

    def resolve_uids(self, ranges: Iterable[tuple[int, int]]) -> list[int]:
        """Known UIDs inside UID ranges (RFC 3501 §6.4.8: missing UIDs are ignored; a range
        "n:*" always includes the highest UID)."""
        known = self.known_uids()
        picked: set[int] = set()
        for low, high in ranges:
            low, high = min(low, high), max(low, high)
            start = bisect.bisect_left(known, low)
            stop = bisect.bisect_right(known, high)
            picked.update(known[start:stop])
        return sorted(picked)

    # ------------------------------------------------------------------ changes

    def apply(self, changes) -> None:
        """Take in `store.changes_since(self.modseq)`: new messages, flag changes, expunges."""
        position = {uid: i for i, uid in enumerate(self.uids)}
        for uid in changes.vanished:
            if uid in self.flags:
                del self.flags[uid]
                self.modseqs.pop(uid, None)
                self.recent.discard(uid)
                self._flag_changes.discard(uid)
                if uid in position:
                    self._ghosts.add(uid)
        new: list[int] = []
        for message in changes.messages:
            uid = message.uid
            if uid in self._ghosts:
                continue
            flags = tuple(message.all_flags)
            if uid in self.flags:
                if self.flags[uid] != flags:
                    self.flags[uid] = flags
                    self._flag_changes.add(uid)
                self.modseqs[uid] = message.modseq
            elif uid not in position and uid >= self.uidnext:
                new.append(uid)
                self.flags[uid] = flags
                self.modseqs[uid] = message.modseq
        new.sort()
        self.uids.extend(new)
        self.uidnext = max(self.uidnext, changes.uidnext)
        self.modseq = max(self.modseq, changes.highestmodseq)

    def mark_recent(self, uids: Iterable[int]) -> None:
        self.recent.update(uid for uid in uids if uid in self.flags)

    def new_uids(self) -> list[int]:
        """UIDs appended since the last EXISTS announcement (for \\Recent claims)."""
        return self.uids[self._announced_exists:]

    def note_flags(self, uid: int, flags: Iterable[str], modseq: int | None = None) -> None:
        """This session changed flags (STORE, FETCH that set \\Seen) and told the client itself."""
        if uid in self.flags:
            self.flags[uid] = tuple(flags)
            self._flag_changes.discard(uid)
            if modseq is not None:
                self.modseqs[uid] = modseq

    def note_expunged(self, uids: Iterable[int]) -> list[int]:
        """This session expunged `uids` (EXPUNGE, CLOSE-less MOVE): returns the MSNs to announce,
        in the order to send them (each `* n EXPUNGE` renumbers what follows)."""
        return [u.msn for u in self.take_expunged(uids)]

    def take_expunged(self, uids: Iterable[int]) -> list[ExpungeUpdate]:
        """As `note_expunged`, with the UID of each announced slot (RFC 7162 §3.2.10 VANISHED)."""
        for uid in uids:
            if uid in self.flags:
                del self.flags[uid]
                self.modseqs.pop(uid, None)
                self.recent.discard(uid)
                self._flag_changes.discard(uid)
                self._ghosts.add(uid)
        return self._take_expunges()

    def _take_expunges(self) -> list[ExpungeUpdate]:
        out = []
        # Highest first would keep numbers stable, but clients apply each EXPUNGE in order;
        # sending ascending MSNs means each later number is already renumbered: walk from the end.
        for index in range(self._announced_exists - 1, -1, -1):
            uid = self.uids[index]
            if uid in self._ghosts:
                out.append(ExpungeUpdate(index + 1, uid))
                del self.uids[index]
                self._ghosts.discard(uid)
                self._announced_exists -= 1
        # Ghosts beyond the announced range (new then expunged before any EXISTS) just vanish.
        for uid in [u for u in self._ghosts if u in self.uids]:
            self.uids.remove(uid)
        self._ghosts.clear()
        return out

    def updates(self, expunge_allowed: bool, flags_allowed: bool = True) -> list[Update]:
        """The untagged updates to send now, in order: EXPUNGE (when allowed), EXISTS, RECENT,
        FETCH FLAGS. RFC 3501 §7.4.1: when EXPUNGE is not allowed, expunged messages stay
        addressable ghosts (FETCH of them returns nothing) and EXISTS still counts them."""
        out: list[Update] = []
        if expunge_allowed and self._ghosts:
            out.extend(self._take_expunges())
        if len(self.uids) != self._announced_exists:
            self._announced_exists = len(self.uids)
            out.append(ExistsUpdate(self._announced_exists))
            if len(self.recent) != self._announced_recent:
                self._announced_recent = len(self.recent)
                out.append(RecentUpdate(self._announced_recent))
        elif len(self.recent) != self._announced_recent:
            self._announced_recent = len(self.recent)
            out.append(RecentUpdate(self._announced_recent))
        if flags_allowed and self._flag_changes:
            for uid in sorted(self._flag_changes):
                msn = self.msn_of(uid)
                if msn is not None and uid in self.flags:
                    out.append(FlagsUpdate(msn, uid, self.flags_of(uid), self.modseqs.get(uid, 0)))
            self._flag_changes.clear()
        return out
