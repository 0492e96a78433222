"""SEARCH: search keys compiled to SQL over the message rows of one folder (ring 1, read only).

Owns the evaluation of RFC 3501 §6.4.4 search keys. The session hands over a key tree in a
neutral form, built from the parsed command:

    ("ALL",) ("SEEN",) ("UNSEEN",) ... ("KEYWORD", kw) ("UNKEYWORD", kw)
    ("FROM"|"TO"|"CC"|"BCC"|"SUBJECT"|"BODY"|"TEXT", string) ("HEADER", field, string)
    ("LARGER"|"SMALLER", n) ("BEFORE"|"ON"|"SINCE"|"SENTBEFORE"|"SENTON"|"SENTSINCE", date)
    ("UID", [(low, high), ...]) ("SEQ", [(low, high), ...])   # `*` already resolved
    ("NEW",) ("OLD",) ("RECENT",) ("MODSEQ", n) ("OLDER"|"YOUNGER", seconds)
    ("NOT", key) ("OR", key, key) ("AND", [keys])

Flags, sizes, dates, UID and sequence sets and the cached header columns (Subject, From,
To, Cc, Message-ID, the sent date) are matched in SQL. BCC, other header fields, BODY and
TEXT need the message bytes: a first query with those keys relaxed (see `_relaxed`) gives
the candidates, whose files are located in one query and read once each, only up to the
bytes the keys need (the header, the text parts); the matches enter the final query as sets
of UIDs. The result is limited to the UIDs the client knows (the
selected view), so a message delivered since the last EXISTS is never returned.

Standards: RFC 3501 §6.4.4 (search keys; substring matches are case-insensitive; dates
disregard time and timezone), RFC 3501 §2.3.2 (\\Recent), RFC 9051 §6.4.4, RFC 7162
§3.1.5 (MODSEQ search key), RFC 5032 §3 (OLDER, YOUNGER).
Security: strings come from the client; they reach SQL only as bound parameters with LIKE
wildcards escaped, and blob scans are bounded per message by `courriel.mime.body_text`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

from sqlalchemy import and_, false, func, not_, or_, select, true

from courriel import mime
from courriel.mime_headers import header_end, split_fields
from courriel.models import Message
from courriel.store import SYSTEM_FLAGS, Store, StoreError


class SearchError(ValueError):
    """A key the server cannot evaluate (the session answers BAD)."""


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
}
_COLUMNS = {"FROM": Message.from_addr, "TO": Message.to_addr, "CC": Message.cc_addr, "SUBJECT": Message.subject}
_HEADER_COLUMNS = {"from": Message.from_addr, "to": Message.to_addr, "cc": Message.cc_addr,
                   "subject": Message.subject, "message-id": Message.message_id}
_BLOB_KEYS = {"BCC", "BODY", "TEXT", "HEADER"}
_BATCH = 500


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _contains(column, value: str):
    # RFC 3501 §6.4.4: "case-insensitive substring"; LIKE is case-sensitive on PostgreSQL.
    return func.lower(column).contains(value.lower(), autoescape=True)


def _in_uids(uids: Iterable[int]):
    wanted = sorted(set(uids))
    if not wanted:
        return false()
    return or_(*(Message.uid.in_(wanted[i:i + _BATCH]) for i in range(0, len(wanted), _BATCH)))


def _in_ranges(ranges):
    clauses = [Message.uid.between(min(low, high), max(low, high)) for low, high in ranges]
    return or_(*clauses) if clauses else false()


class _Compiler:
    def __init__(self, recent: set[int], msn_uids: dict, blob_matches: dict):
        self.recent = recent
        self.msn_uids = msn_uids  # id(key) -> UIDs of a SEQ key
        self.blob_matches = blob_matches  # id(key) -> UIDs matching a blob key

    def compile(self, key):
        name = key[0].upper()
        if name == "ALL":
            return true()
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            test = Message.flags.op("&")(SYSTEM_FLAGS[flag]) != 0
            return test if present else not_(test)
        if name in ("KEYWORD", "UNKEYWORD"):
            padded = func.lower(" " + Message.keywords + " ")
            test = padded.contains(f" {key[1].lower()} ", autoescape=True)
            return test if name == "KEYWORD" else not_(test)
        if name in ("RECENT", "OLD"):
            test = _in_uids(self.recent)
            return test if name == "RECENT" else not_(test)
        if name == "NEW":
            return and_(_in_uids(self.recent), Message.flags.op("&")(SYSTEM_FLAGS["\\Seen"]) == 0)
        if name in _COLUMNS:
            return _contains(_COLUMNS[name], key[1])
        if name == "HEADER" and key[1].lower() in _HEADER_COLUMNS and key[2]:
            return _contains(_HEADER_COLUMNS[key[1].lower()], key[2])
        if name in _BLOB_KEYS:
            return _in_uids(self.blob_matches[id(key)])
        if name == "LARGER":
            return Message.size > int(key[1])
        if name == "SMALLER":
            return Message.size < int(key[1])
        if name in ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"):
            column = Message.sent_date if name.startswith("SENT") else Message.internaldate
            start = _day_start(key[1])
            end = start + dt.timedelta(days=1)
            kind = name.removeprefix("SENT")
            if kind == "BEFORE":
                if name == "SENTBEFORE":
                    # A message without a readable Date: counts as sent at the epoch (as Dovecot does).
                    return or_(column.is_(None), column < start)
                return column < start
            if kind == "ON":
                return and_(column >= start, column < end)
            return column >= start
        if name == "UID":
            return _in_ranges(key[1])
        if name == "SEQ":
            return _in_uids(self.msn_uids[id(key)])
        if name == "MODSEQ":
            return Message.modseq >= int(key[1])
        if name in ("OLDER", "YOUNGER"):  # RFC 5032: interval in seconds before now
            since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(key[1]))
            return Message.internaldate <= since if name == "OLDER" else Message.internaldate >= since
        if name == "NOT":
            return not_(self.compile(key[1]))
        if name == "OR":
            return or_(self.compile(key[1]), self.compile(key[2]))
        if name == "AND":
            return and_(true(), *(self.compile(k) for k in key[1]))
        raise SearchError(f"unsupported search key {name}")


def _walk(key):
    yield key
    name = key[0].upper()
    if name == "NOT":
        yield from _walk(key[1])
    elif name == "OR":
        yield from _walk(key[1])
        yield from _walk(key[2])
    elif name == "AND":
        for sub in key[1]:
            yield from _walk(sub)


def _header_matches(data: bytes, field: str, value: str) -> bool:
    """RFC 3501 §6.4.4 HEADER / BCC: a field of that name whose value contains the string
    (an empty string matches every message that has the field)."""
    fields = split_fields(data, 0, header_end(data, 0, len(data)))
    wanted = field.lower()
    needle = value.lower()
    for item in fields:
        if item.name.lower() == wanted and (
                not needle or needle in mime.decoded(item.value).lower() or needle in item.value.lower()):
            return True
    return False


def _blob_match(key, data: bytes, tree: dict | None) -> bool:
    name = key[0].upper()
    if name == "BCC":
        return _header_matches(data, "bcc", key[1])
    if name == "HEADER":
        return _header_matches(data, key[1], key[2])
    needle = key[1].lower()
    if tree is None:
        tree = mime.parse_structure(data)
    body = mime.body_text(data, tree).lower()
    if needle in body:
        return True
    if name == "TEXT":
        header = data[:header_end(data, 0, len(data))]
        if needle in mime.decoded(header.decode("utf-8", "replace")).lower():
            return True
    return False


def _relaxed(key, positive: bool = True):
    """`key` with every body key replaced by what cannot wrongly exclude a message: TRUE where
    it counts positively, FALSE under an odd number of NOTs. The relaxed key matches a
    superset of the real matches, so it narrows the candidates whose files must be read."""
    name = key[0].upper()
    if name in _BLOB_KEYS and not _cached_header(key):
        return ("ALL",) if positive else ("NOT", ("ALL",))
    if name == "NOT":
        return ("NOT", _relaxed(key[1], not positive))
    if name == "OR":
        return ("OR", _relaxed(key[1], positive), _relaxed(key[2], positive))
    if name == "AND":
        return ("AND", [_relaxed(k, positive) for k in key[1]])
    return key


def _cached_header(key) -> bool:
    """HEADER of a field cached in a column (with a non-empty string) is matched in SQL."""
    return key[0].upper() == "HEADER" and key[1].lower() in _HEADER_COLUMNS and bool(key[2])


def _bytes_needed(blob_keys, tree: dict | None) -> int | None:
    """How much of the file the body keys read: the header for BCC/HEADER, up to the end of the
    last text part for BODY/TEXT (a PDF attachment after the text is never read). None: all."""
    if tree is None or "offsets" not in tree:
        return None
    needed = tree["offsets"][1]  # the end of the top-level header
    if any(item[0].upper() in ("BODY", "TEXT") for item in blob_keys):
        stack = [tree]
        while stack:
            node = stack.pop()
            if "parts" in node:
                stack.extend(node["parts"])
            elif "message" in node:
                stack.append(node["message"]["body"])
            elif str(node.get("type", "")).lower() == "text":
                needed = max(needed, node["offsets"][2])
    return needed


def search(store: Store, folder_id: int, key, known_uids: list[int], recent: Iterable[int] = (),
           uid_of_msn=None) -> list[int]:
    """UIDs (ascending) of the known messages matching `key`. Runs in a thread (store IO).

    `uid_of_msn(ranges) -> [uid]` resolves SEQ keys against the selected view. Keys that need
    the message files are evaluated last, only for the messages that the cheap keys (UID and
    sequence sets, flags, dates, sizes, cached header fields) leave as candidates, whose
    files are located in one query (`Store.open_messages`)."""
    known = set(known_uids)
    keys = list(_walk(key))
    msn_uids = {}
    for item in keys:
        if item[0].upper() == "SEQ":
            if uid_of_msn is None:
                raise SearchError("message numbers need a selected view")
            msn_uids[id(item)] = set(uid_of_msn(item[1]))
    blob_keys = [item for item in keys if item[0].upper() in _BLOB_KEYS and not _cached_header(item)]
    blob_matches: dict[int, set[int]] = {id(item): set() for item in blob_keys}
    recent = set(recent)
    if blob_keys:
        relaxed = _relaxed(key)  # shares its SEQ keys (and their ids) with `key`
        condition = _Compiler(recent, msn_uids, {}).compile(relaxed)
        with store.db.read() as session:
            candidates = [uid for uid in session.scalars(
                select(Message.uid).where(Message.folder_id == folder_id, condition).order_by(Message.uid))
                if uid in known]
        _match_files(store, folder_id, candidates, blob_keys, blob_matches)  # no transaction held meanwhile
        known &= set(candidates)  # a concurrent flag change cannot add a message whose body was not read
    condition = _Compiler(recent, msn_uids, blob_matches).compile(key)
    with store.db.read() as session:
        found = session.scalars(select(Message.uid).where(Message.folder_id == folder_id, condition)
                                .order_by(Message.uid))
        return [uid for uid in found if uid in known]


def _match_files(store: Store, folder_id: int, candidates: list[int], blob_keys, blob_matches) -> None:
    """Read the candidates' files (only the bytes the keys need) and record which match."""
    for start in range(0, len(candidates), _BATCH):
        batch = candidates[start:start + _BATCH]
        with store.db.read() as session:  # the cached part trees only, not the whole summaries
            structures = dict(session.execute(select(Message.uid, Message.bodystructure).where(
                Message.folder_id == folder_id, Message.uid.in_(batch))).all())
        files = store.open_messages(folder_id, batch)
        for uid in batch:
            message_file = files.get(uid)
            structure = structures.get(uid)
            if message_file is None or structure is None:
                continue  # expunged meanwhile
            tree = json.loads(structure) if structure else None
            limit = _bytes_needed(blob_keys, tree)
            try:
                with message_file.open() as handle:
                    data = handle.read() if limit is None else handle.read(limit)
            except (OSError, StoreError):  # a message without a file matches no body key
                continue
            for item in blob_keys:
                if _blob_match(item, data, tree):
                    blob_matches[id(item)].add(uid)
