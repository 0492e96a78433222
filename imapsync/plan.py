"""Sync planning (ring 0, pure): folder mapping, the three-way flag merge, what to import, retry delays.

Nothing here does IO; the runner feeds it what both sides look like and applies the result.

Conflict rule (written down here, implemented by `merge_flags` and `plan_folder`):
- Per flag, the side that changed it since the last agreed state wins. Both sides changing the
  same flag since then can only mean both set it or both cleared it, so they agree; a flag is
  never flipped back. This is "last change wins per flag" with the last agreed state as the
  clock: a change always wins over no change.
- Deletion wins over a flag change: a message expunged on one side is expunged on the other,
  whatever flags the other side changed meanwhile.
- A message is never deleted because the map lost track of it: after a remote UIDVALIDITY
  change, messages are re-matched by Message-ID and size; local copies that match nothing
  stay local.

Standards: RFC 3501 §2.3.1.1 (UID, UIDVALIDITY), §2.3.2 (flags; \\Recent is session-only and
never synced); RFC 6154 §2 (special-use attributes \\Sent \\Drafts \\Junk \\Trash \\All);
RFC 7162 §3.1 (MODSEQ: only changed messages are fetched when CONDSTORE is offered).
Security: remote folder names and flags are untrusted: names are validated against local
rules by the runner (the store refuses bad ones), flags are filtered here.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# RFC 3501 §2.3.2: the system flags that are stored; \Recent is per session and never synced.
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
_SYSTEM_BY_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
_ATOM_SPECIALS = set('(){ %*"\\]')

# Local special-use attribute → the remote special-use attribute (RFC 6154 §2) it is fed from.
SPECIAL_USES = ("\\Sent", "\\Drafts", "\\Junk", "\\Trash")
# Remote names that mean a special use when the server does not announce RFC 6154 attributes.
_NAME_HINTS: dict[str, str] = {
    "sent": "\\Sent", "sent items": "\\Sent", "sent messages": "\\Sent", "sent mail": "\\Sent",
    "drafts": "\\Drafts", "draft": "\\Drafts",
    "junk": "\\Junk", "spam": "\\Junk", "junk e-mail": "\\Junk", "junk email": "\\Junk", "bulk mail": "\\Junk",
    "trash": "\\Trash", "deleted items": "\\Trash", "deleted messages": "\\Trash", "bin": "\\Trash",
}
# Remote folders never imported: \All duplicates every message (Gmail's All Mail), \Flagged
# and \Important are virtual views.
_SKIPPED_USES = {"\\all", "\\flagged", "\\important", "\\noselect", "\\nonexistent"}

LOCAL_DELIMITER = "/"
INBOX = "INBOX"


# ----------------------------------------------------------------------------- flags


def normalise_flags(flags: Iterable[str | bytes]) -> frozenset[str]:
    """The storable flags of a remote or local flag list: system flags in canonical case,
    keywords that are valid atoms; \\Recent and anything malformed dropped."""
    result = set()
    for flag in flags:
        if isinstance(flag, bytes):
            flag = flag.decode("ascii", "replace")
        if not flag:
            continue
        if flag.startswith("\\"):
            known = _SYSTEM_BY_LOWER.get(flag.lower())
            if known:
                result.add(known)
            continue
        if len(flag) <= 250 and not any(c in _ATOM_SPECIALS or ord(c) <= 32 or ord(c) >= 127 for c in flag):
            result.add(flag)
    return frozenset(result)


def flags_text(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


def flags_from_text(text: str) -> frozenset[str]:
    return frozenset(text.split()) if text else frozenset()


def merge_flags(base: frozenset[str], local: frozenset[str], remote: frozenset[str]) -> frozenset[str]:
    """Three-way merge: per flag, a change on either side since `base` wins (see the module rule)."""
    merged = set(base)
    for flag in (local | remote | base):
        in_base = flag in base
        changed_local = (flag in local) != in_base
        changed_remote = (flag in remote) != in_base
        if changed_local or changed_remote:
            if in_base:
                merged.discard(flag)
            else:
                merged.add(flag)
    return frozenset(merged)


# ----------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class RemoteFolder:
    name: str  # as the server spells it (decoded from modified UTF-7 by the client)
    delimiter: str | None
    attributes: frozenset[str]  # lower-cased, e.g. "\\sent", "\\noselect"


@dataclass(frozen=True)
class FolderTarget:
    remote: str
    local: str | None  # the local folder name, or None: the local folder of `special_use`
    special_use: str | None


def remote_special_use(folder: RemoteFolder) -> str | None:
    """RFC 6154 attribute of a remote folder, else a well-known name; INBOX is never special."""
    if folder.name.upper() == INBOX:
        return None
    for use in SPECIAL_USES:
        if use.lower() in folder.attributes:
            return use
    leaf = folder.name.split(folder.delimiter)[-1] if folder.delimiter else folder.name
    return _NAME_HINTS.get(leaf.strip().lower())


def local_name(remote: str, delimiter: str | None) -> str:
    """The local name of a user folder: the remote hierarchy with "/" as delimiter."""
    parts = remote.split(delimiter) if delimiter else [remote]
    parts = [p.replace(LOCAL_DELIMITER, "_") if delimiter != LOCAL_DELIMITER else p for p in parts]
    if parts and parts[0].upper() == INBOX:
        parts[0] = INBOX
    return LOCAL_DELIMITER.join(p for p in parts if p) or remote


def map_folders(folders: Iterable[RemoteFolder]) -> list[FolderTarget]:
    """Which remote folders to sync and where: INBOX to INBOX; one remote folder per special
    use (RFC 6154 attribute preferred over a name guess) to the local folder of that use;
    other selectable folders by name. Virtual views (\\All, \\Flagged) are skipped."""
    folders = [f for f in folders if not (f.attributes & _SKIPPED_USES)]
    targets: list[FolderTarget] = []
    taken: dict[str, str] = {}
    announced = {f.name: use for f in folders for use in SPECIAL_USES if use.lower() in f.attributes}
    for folder in sorted(folders, key=lambda f: (f.name not in announced, f.name)):
        if folder.name.upper() == INBOX:
            targets.append(FolderTarget(folder.name, INBOX, None))
            continue
        use = remote_special_use(folder)
        if use is not None and use not in taken:
            taken[use] = folder.name
            targets.append(FolderTarget(folder.name, None, use))
            continue
        targets.append(FolderTarget(folder.name, local_name(folder.name, folder.delimiter), None))
    return sorted(targets, key=lambda t: (t.local != INBOX, t.special_use is None, t.remote))


# ----------------------------------------------------------------------------- one folder


@dataclass(frozen=True)
class MappedMessage:
    """One row of the UID map as the runner read it."""

    remote_uid: int
    local_uid: int
    flags: frozenset[str]  # the last agreed flags


@dataclass
class FolderPlan:
    """What to do in one folder, both ways."""

    to_import: list[int] = field(default_factory=list)  # remote UIDs, ascending
    delete_local: list[int] = field(default_factory=list)  # local UIDs (gone on the remote)
    delete_remote: list[int] = field(default_factory=list)  # remote UIDs (expunged locally)
    set_local: dict[int, frozenset[str]] = field(default_factory=dict)  # local UID → flags
    set_remote: dict[int, frozenset[str]] = field(default_factory=dict)  # remote UID → flags
    agreed: dict[int, frozenset[str]] = field(default_factory=dict)  # remote UID → new base flags
    forget: list[int] = field(default_factory=list)  # remote UIDs whose map rows go

    @property
    def empty(self) -> bool:
        return not (self.to_import or self.delete_local or self.delete_remote or self.set_local
                    or self.set_remote or self.agreed or self.forget)


def plan_folder(mapped: Iterable[MappedMessage], remote_uids: Iterable[int],
                remote_flags: Mapping[int, frozenset[str]], local_flags: Mapping[int, frozenset[str]],
                local_present: Iterable[int]) -> FolderPlan:
    """Plan one folder from the UID map, the remote UID set and the flags that changed.

    `remote_flags`: remote UID → current flags, for the remote messages that (may have) changed
    (all of them without CONDSTORE). `local_flags`: the same for local UIDs. `local_present`:
    every local UID of the folder (a mapped local UID missing from it was expunged or moved)."""
    plan = FolderPlan()
    remote_set = set(remote_uids)
    present = set(local_present)
    known_remote = set()
    for row in mapped:
        known_remote.add(row.remote_uid)
        gone_remote = row.remote_uid not in remote_set
        gone_local = row.local_uid not in present
        if gone_remote and gone_local:
            plan.forget.append(row.remote_uid)
            continue
        if gone_remote:  # deletion wins over any local flag change
            plan.delete_local.append(row.local_uid)
            plan.forget.append(row.remote_uid)
            continue
        if gone_local:  # deletion wins over any remote flag change
            plan.delete_remote.append(row.remote_uid)
            plan.forget.append(row.remote_uid)
            continue
        remote = remote_flags.get(row.remote_uid, row.flags)
        local = local_flags.get(row.local_uid, row.flags)
        if remote == row.flags and local == row.flags:
            continue
        merged = merge_flags(row.flags, local, remote)
        if merged != local:
            plan.set_local[row.local_uid] = merged
        if merged != remote:
            plan.set_remote[row.remote_uid] = merged
        if merged != row.flags:
            plan.agreed[row.remote_uid] = merged
    plan.to_import = sorted(remote_set - known_remote)
    plan.delete_local.sort()
    plan.delete_remote.sort()
    return plan


@dataclass(frozen=True)
class Rematch:
    """After a UIDVALIDITY change: old map rows matched to new remote UIDs."""

    matched: dict[int, int]  # old map row id → new remote UID
    unmatched_rows: list[int]  # old map row ids whose message is no longer on the remote
    to_import: list[int]  # new remote UIDs that match no local copy


def rematch(old_rows: Iterable[tuple[int, str, int]], remote: Iterable[tuple[int, str, int]]) -> Rematch:
    """Match old map rows (row id, Message-ID, size) to remote messages (UID, Message-ID, size).

    A pair matches when both Message-ID and size are equal (messages without a Message-ID
    match on size never: they are re-imported rather than risk merging two messages)."""
    by_key: dict[tuple[str, int], list[int]] = {}
    for uid, message_id, size in sorted(remote):
        by_key.setdefault((message_id, size), []).append(uid)
    matched: dict[int, int] = {}
    unmatched: list[int] = []
    for row_id, message_id, size in old_rows:
        candidates = by_key.get((message_id, size)) if message_id else None
        if candidates:
            matched[row_id] = candidates.pop(0)
        else:
            unmatched.append(row_id)
    used = set(matched.values())
    leftovers = sorted(uid for uids in by_key.values() for uid in uids if uid not in used)
    return Rematch(matched=matched, unmatched_rows=unmatched, to_import=leftovers)


def size_batches(sized: Iterable[tuple[int, int]], count: int, limit: int) -> list[list[int]]:
    """(UID, size) pairs → UID batches of at most `count` messages and `limit` bytes (a larger
    message goes alone): the import's memory stays bounded whatever the message sizes."""
    result: list[list[int]] = []
    current: list[int] = []
    total = 0
    for uid, size in sized:
        if current and (len(current) >= count or total + size > limit):
            result.append(current)
            current, total = [], 0
        current.append(uid)
        total += size
    if current:
        result.append(current)
    return result


def batches(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# RFC 3501 §2.3.1.1: a UID is a non-zero unsigned 32-bit number.
UID_MAX = 2**32 - 1
UID_SET_PARTS = 100_000  # ranges accepted in one uid-set from a server (the text is bounded by the line anyway)


class UidSetError(ValueError):
    """A uid-set from the server that is not RFC 3501 §9 syntax or names UIDs out of range."""


def parse_uid_ranges(text: bytes | str) -> list[tuple[int, int]]:
    """RFC 3501 §9 uid-set ("1:3,7") → [(1, 3), (7, 7)], in the order given, NEVER expanded.

    Security: the set comes from the server (VANISHED, COPYUID): `1:4294967295` is one range, not
    four billion integers. Each range is (low, high) whatever order the server wrote it in
    (RFC 3501 §9: "n:m" and "m:n" are the same). `*` is refused (it has no meaning in a
    response)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    parts = text.strip().split(",")
    if len(parts) > UID_SET_PARTS:
        raise UidSetError("uid-set has too many ranges")
    result: list[tuple[int, int]] = []
    for part in parts:
        low, colon, high = part.partition(":")
        if not low.isdigit() or (colon and not high.isdigit()) or not low.isascii() or not high.isascii():
            raise UidSetError(f"bad uid-set part {part[:40]!r}")
        a, b = int(low), int(high) if colon else int(low)
        if not (0 < a <= UID_MAX and 0 < b <= UID_MAX):
            raise UidSetError(f"UID out of range in {part[:40]!r}")
        result.append((min(a, b), max(a, b)))
    return result


def uid_count(ranges: Iterable[tuple[int, int]]) -> int:
    """How many UIDs the ranges name (counting overlaps twice: a set with overlaps is malformed)."""
    return sum(high - low + 1 for low, high in ranges)


def uids_within(ranges: Iterable[tuple[int, int]], candidates: Iterable[int]) -> set[int]:
    """The `candidates` (UIDs we know) that fall in `ranges`: the expansion is bounded by what we
    know, never by what the server claims (RFC 7162 §3.2.10: VANISHED (EARLIER) may name UIDs
    that never existed)."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    lows = [low for low, _ in merged]
    result = set()
    for uid in candidates:
        index = bisect.bisect_right(lows, uid) - 1
        if index >= 0 and uid <= merged[index][1]:
            result.add(uid)
    return result


def copyuid_pairs(source_text: bytes | str, dest_text: bytes | str, sent: Iterable[int]) -> dict[int, int] | None:
    """RFC 4315 §3 COPYUID: source UID → destination UID, or None when the answer cannot be
    trusted: bad syntax, source and destination sets of different sizes (§3: "the source UID
    set and the destination UID set ... MUST have the same number of UIDs"), more UIDs than we
    copied, or source UIDs we did not copy. Pairing is in the order the server listed them
    (§3: the n-th source UID was copied to the n-th destination UID)."""
    sent = set(sent)
    try:
        source, dest = parse_uid_ranges(source_text), parse_uid_ranges(dest_text)
    except UidSetError:
        return None
    count = uid_count(source)
    if count != uid_count(dest) or count > len(sent):
        return None  # bounded: only now is expanding safe (at most len(sent) UIDs)
    source_uids = [uid for low, high in source for uid in range(low, high + 1)]
    dest_uids = [uid for low, high in dest for uid in range(low, high + 1)]
    if not set(source_uids) <= sent or len(set(source_uids)) != count or len(set(dest_uids)) != count:
        return None
    return dict(zip(source_uids, dest_uids, strict=True))


def printable(text: str, limit: int = 300) -> str:
    """Server text made safe for a log line or an account record: control characters (CR, LF,
    ESC, NUL, DEL, C1, bidi overrides...) replaced by a space, runs of space collapsed, at most
    `limit` characters. Security: the text comes from a remote server."""
    cleaned = []
    for char in text[:limit * 4]:
        code = ord(char)
        if code < 32 or 127 <= code < 160 or 0x200B <= code <= 0x200F or 0x202A <= code <= 0x202E \
                or 0x2066 <= code <= 0x2069 or 0xD800 <= code <= 0xDFFF:
            char = " "
        cleaned.append(char)
    text = " ".join("".join(cleaned).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def uid_ranges(uids: Iterable[int]) -> str:
    """A compact IMAP sequence set (RFC 3501 §9 sequence-set) of UIDs: "1:5,9,12:14"."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = None
    for uid in ordered:
        if start is None:
            start = prev = uid
        elif uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = uid
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


# ----------------------------------------------------------------------------- failures and progress

BACKOFF_BASE = 30.0
BACKOFF_MAX = 3600.0
PAUSE_AFTER_FAILURES = 8


def retry_delay(failures: int) -> float:
    """Seconds before the next attempt after `failures` consecutive failures (doubling, bounded)."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failures - 1))


def should_pause(failures: int) -> bool:
    return failures >= PAUSE_AFTER_FAILURES


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    rate: float | None  # messages per second since the import started
    eta_seconds: float | None


def progress(done: int, total: int, imported: int, elapsed: float | None) -> Progress:
    rate = imported / elapsed if elapsed and elapsed > 0 and imported else None
    remaining = max(0, total - done)
    eta = (remaining / rate) if rate else (0.0 if remaining == 0 else None)
    return Progress(done=done, total=total, rate=rate, eta_seconds=eta)
