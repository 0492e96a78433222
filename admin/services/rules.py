"""Server-side rules of a mailbox, the use cases: filters (CRUD, order, preview, apply to
existing mail, Sieve export), tags, auto-reply (vacation), contacts and signatures (calendar
invitations and the feed: `courriel.admin.services.calendar`).

Shared by the CLI (`courriel.cli.rules`), the JSON API and the web console. Every function
names the mailbox by address, validates its input and raises a `ServiceError` before writing.

Functions for other parts of the server:
- `learn_recipients(db, mailbox_id, addresses)` (submission: remember whom a mailbox writes to);
- `append_signature(text, signature)` / `signature_for(db, mailbox_id)` (submission).

Standards: RFC 5228 / RFC 5232 (Sieve export), RFC 3834 (auto-reply), RFC 3501 §2.3.2 (tags
are keywords), RFC 6154 (\\Trash).
Security: all input is untrusted.
Durability: one transaction per call; `apply_filter` changes messages through the store
(one store transaction per folder and kind of change).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from courriel.admin.services import lookups
from courriel.admin.services.errors import Duplicate, InvalidInput, NotFound
from courriel.db import Database
from courriel.models import (
    Contact,
    RuleFilter,
    RuleTag,
    Signature,
    SpecialUse,
    VacationSetting,
    utcnow,
)
from courriel.rules import contacts as contact_book
from courriel.rules import filters, records, sieve
from courriel.rules.contacts import learn_recipients
from courriel.rules.signature import append_signature, append_signature_html
from courriel.store import NoSuchFolder, Store, StoreError

MAX_SCAN_PER_FOLDER = 20_000
MAX_BODY = 100_000
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_KEYWORD_UNSAFE = re.compile(r'[^!#$&\'+\-.0-9:;<=>?@A-Z^_`a-z|~]')


def _bad(exc: Exception, code: str = "invalid_rule") -> InvalidInput:
    return InvalidInput(str(exc), code)


def _single_line(text: str, what: str, limit: int) -> str:
    text = text if isinstance(text, str) else ""
    if len(text) > limit or any(ord(c) < 32 for c in text):
        raise InvalidInput(f"{what} must be one line of at most {limit} characters", "invalid_input")
    return text.strip()


# ----------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class FilterInfo:
    id: int
    position: int
    name: str
    enabled: bool
    match: str
    conditions: list[dict]
    actions: list[dict]
    folders: list[str]
    stop: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _filter_info(row: RuleFilter) -> FilterInfo:
    rule = records.rule_of(row)
    return FilterInfo(id=row.id, position=row.position, name=row.name, enabled=row.enabled, match=row.match,
                      conditions=[c.as_dict() for c in rule.conditions], actions=[a.as_dict() for a in rule.actions],
                      folders=list(rule.applies_to), stop=row.stop)


def _conditions(items: Iterable[str | dict | filters.Condition]) -> tuple[filters.Condition, ...]:
    out = []
    for item in items:
        if isinstance(item, filters.Condition):
            out.append(filters.check_condition(item))
        elif isinstance(item, str):
            out.append(filters.parse_condition(item))
        else:
            out.append(filters.condition_from_dict(item))
    return tuple(out)


def _actions(session: Session, mailbox_id: int, items: Iterable[str | dict | filters.Action]) -> tuple:
    tags = {row.name.lower(): row.keyword for row in
            session.scalars(select(RuleTag).where(RuleTag.mailbox_id == mailbox_id))}
    out = []
    for item in items:
        if isinstance(item, str):
            kind, _, argument = item.strip().partition(" ")
            if kind.lower() == "tag" and argument.strip().lower() in tags:
                item = f"tag {tags[argument.strip().lower()]}"
            action = filters.parse_action(item)
        elif isinstance(item, filters.Action):
            action = item
        else:
            if isinstance(item, dict) and str(item.get("action", "")) == "tag" and \
                    str(item.get("tag", "")).lower() in tags:
                item = {"action": "tag", "tag": tags[str(item["tag"]).lower()]}
            action = filters.action_from_dict(item)
        out.append(filters.check_action(action))
    return tuple(out)


def _folders(folders: Iterable[str]) -> tuple[str, ...]:
    out = []
    for name in folders:
        scope = filters.applies_to_name(str(name))
        if scope is None:
            raise InvalidInput(f"a filter applies to INBOX, Sent or Spam, not {name!r}", "invalid_rule")
        out.append(scope)
    return tuple(dict.fromkeys(out))


def _renumber(session: Session, mailbox_id: int, order: list[int]) -> None:
    rows = {row.id: row for row in session.scalars(select(RuleFilter).where(RuleFilter.mailbox_id == mailbox_id))}
    for position, filter_id in enumerate(order):
        rows[filter_id].position = position
    session.flush()


def _ordered_ids(session: Session, mailbox_id: int) -> list[int]:
    return list(session.scalars(select(RuleFilter.id).where(RuleFilter.mailbox_id == mailbox_id)
                                .order_by(RuleFilter.position, RuleFilter.id)))


def _filter_row(session: Session, mailbox_id: int, filter_id: int) -> RuleFilter:
    if isinstance(filter_id, bool) or not isinstance(filter_id, int):
        raise InvalidInput("a filter id is a number", "invalid_input")
    row = session.scalar(select(RuleFilter).where(RuleFilter.id == filter_id, RuleFilter.mailbox_id == mailbox_id))
    if row is None:
        raise NotFound(f"filter {filter_id} does not exist for this mailbox")
    return row


def list_filters(db: Database, address: str) -> list[FilterInfo]:
    with db.read() as session:
        mailbox = lookups.mailbox_at(session, address)
        rows = session.scalars(select(RuleFilter).where(RuleFilter.mailbox_id == mailbox.id)
                               .order_by(RuleFilter.position, RuleFilter.id))
        return [_filter_info(row) for row in rows]


def add_filter(db: Database, address: str, *, conditions: Sequence, actions: Sequence, match: str = "all",
               stop: bool = False, folders: Iterable[str] = ("INBOX",), name: str = "", enabled: bool = True,
               position: int | None = None) -> FilterInfo:
    """Add a filter (last, or at `position`, 0 first)."""
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        try:
            rule = filters.check_rule(filters.Rule(
                conditions=_conditions(conditions), actions=_actions(session, mailbox.id, actions), match=match,
                stop=bool(stop), applies_to=_folders(folders), enabled=bool(enabled),
                name=_single_line(name, "a filter name", 200)))
        except filters.FilterError as exc:
            raise _bad(exc) from None
        order = _ordered_ids(session, mailbox.id)
        if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
            raise InvalidInput("position must be 0 or more", "invalid_input")
        row = RuleFilter(mailbox_id=mailbox.id, position=len(order), name=rule.name, enabled=rule.enabled,
                         match=rule.match, conditions=filters.conditions_to_json(rule.conditions),
                         actions=filters.actions_to_json(rule.actions), folders=" ".join(rule.applies_to),
                         stop=rule.stop)
        session.add(row)
        session.flush()
        order.insert(len(order) if position is None else min(position, len(order)), row.id)
        _renumber(session, mailbox.id, order)
        return _filter_info(row)


def update_filter(db: Database, address: str, filter_id: int, **changes) -> FilterInfo:
    """Change some of: conditions, actions, match, stop, folders, name, enabled."""
    allowed = {"conditions", "actions", "match", "stop", "folders", "name", "enabled"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"unknown filter field(s): {', '.join(sorted(unknown))}", "invalid_input")
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        row = _filter_row(session, mailbox.id, filter_id)
        current = records.rule_of(row)
        try:
            rule = filters.check_rule(filters.Rule(
                conditions=_conditions(changes["conditions"]) if "conditions" in changes else current.conditions,
                actions=_actions(session, mailbox.id, changes["actions"]) if "actions" in changes
                else current.actions,
                match=changes.get("match", current.match), stop=bool(changes.get("stop", current.stop)),
                applies_to=_folders(changes["folders"]) if "folders" in changes else current.applies_to,
                enabled=bool(changes.get("enabled", current.enabled)),
                name=_single_line(changes.get("name", current.name), "a filter name", 200)))
        except filters.FilterError as exc:
            raise _bad(exc) from None
        row.name, row.enabled, row.match, row.stop = rule.name, rule.enabled, rule.match, rule.stop
        row.conditions = filters.conditions_to_json(rule.conditions)
        row.actions = filters.actions_to_json(rule.actions)
        row.folders = " ".join(rule.applies_to)
        session.flush()
        return _filter_info(row)


def set_filter_enabled(db: Database, address: str, filter_id: int, enabled: bool) -> FilterInfo:
    return update_filter(db, address, filter_id, enabled=bool(enabled))


def remove_filter(db: Database, address: str, filter_id: int) -> None:
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        row = _filter_row(session, mailbox.id, filter_id)
        session.delete(row)
        session.flush()
        _renumber(session, mailbox.id, _ordered_ids(session, mailbox.id))


def move_filter(db: Database, address: str, filter_id: int, position: int) -> list[FilterInfo]:
    """Put a filter at `position` (0 first; past the end: last); returns the new order."""
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise InvalidInput("position must be 0 or more", "invalid_input")
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        _filter_row(session, mailbox.id, filter_id)
        order = [i for i in _ordered_ids(session, mailbox.id) if i != filter_id]
        order.insert(min(position, len(order)), filter_id)
        _renumber(session, mailbox.id, order)
    return list_filters(db, address)


def export_sieve(db: Database, address: str) -> str:
    """The mailbox's filters as one Sieve script (RFC 5228 + RFC 5232)."""
    with db.read() as session:
        mailbox = lookups.mailbox_at(session, address)
        rules = records.load_rules(session, mailbox.id, enabled_only=False)
        return sieve.export(rules, mailbox.address)


@dataclass(frozen=True)
class MatchInfo:
    folder: str
    uid: int
    from_addr: str
    subject: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ApplyReport:
    matched: int
    moved: int = 0
    deleted: int = 0
    trashed: int = 0
    flagged: int = 0  # messages whose flags or keywords were added to

    def as_dict(self) -> dict:
        return asdict(self)


def _scope_folders(store: Store, mailbox_id: int, scopes: Iterable[str]):
    by_name = {f.name: f for f in store.list_folders(mailbox_id)}
    by_use = {f.special_use: f for f in by_name.values() if f.special_use}
    for scope in scopes:
        folder = {"INBOX": by_name.get("INBOX"), "Sent": by_use.get(SpecialUse.SENT) or by_name.get("Sent"),
                  "Spam": by_use.get(SpecialUse.JUNK) or by_name.get("Spam")}.get(scope)
        if folder is not None:
            yield folder


def _matches(store: Store, mailbox_id: int, rule: filters.Rule) -> list[tuple[object, list[int]]]:
    found = []
    for folder in _scope_folders(store, mailbox_id, rule.applies_to):
        uids = []
        for info in store.list_messages(folder.id)[:MAX_SCAN_PER_FOLDER]:
            try:
                with store.open_message(folder.id, info.uid) as handle:
                    data = handle.read()
            except (StoreError, OSError):
                continue  # expunged meanwhile
            if filters.rule_matches(rule, filters.facts_of(data)):
                uids.append(info.uid)
        found.append((folder, uids))
    return found


def _rule_for(store: Store, address: str, filter_id: int) -> tuple[int, filters.Rule]:
    with store.db.read() as session:
        mailbox = lookups.mailbox_at(session, address)
        row = _filter_row(session, mailbox.id, filter_id)
        try:
            return mailbox.id, filters.check_rule(records.rule_of(row))
        except (filters.FilterError, ValueError, KeyError) as exc:
            raise _bad(exc) from None


def preview_filter(store: Store, address: str, filter_id: int) -> list[MatchInfo]:
    """The existing messages (in the folders the filter applies to) that it matches."""
    mailbox_id, rule = _rule_for(store, address, filter_id)
    out = []
    for folder, uids in _matches(store, mailbox_id, rule):
        for summary in store.summaries(folder.id, uids):
            out.append(MatchInfo(folder.name, summary.uid, summary.from_addr, summary.subject))
    return out


def apply_filter(store: Store, address: str, filter_id: int, *, trash_instead_of_delete: bool = False) -> ApplyReport:
    """Run one filter's actions on the existing messages it matches (its `stop` flag does not
    matter here). A delete action removes them, or moves them to Trash on request."""
    mailbox_id, rule = _rule_for(store, address, filter_id)
    flags = []
    for action in rule.actions:
        if action.kind == "tag":
            flags.append(action.argument)
        elif action.kind == "flag":
            flags.append("\\Flagged")
        elif action.kind == "read":
            flags.append("\\Seen")
    move_to = next((a.argument for a in rule.actions if a.kind == "move"), None)
    delete_action = any(a.kind == "delete" for a in rule.actions)
    matched = moved = deleted = trashed = flagged = 0
    for folder, uids in _matches(store, mailbox_id, rule):
        if not uids:
            continue
        matched += len(uids)
        if flags:
            flagged += len(store.set_flags(folder.id, uids, "add", flags).changed)
        if delete_action:
            if trash_instead_of_delete:
                trash = next((f for f in store.list_folders(mailbox_id) if f.special_use == SpecialUse.TRASH), None)
                if trash is None:
                    trash = store.create_folder(mailbox_id, "Trash", SpecialUse.TRASH)
                if trash.id != folder.id:
                    trashed += len(store.move(folder.id, uids, trash.id).pairs)
                continue
            store.set_flags(folder.id, uids, "add", ["\\Deleted"])
            deleted += len(store.expunge(folder.id, uids))
        elif move_to is not None:
            try:
                dest = store.get_folder(mailbox_id, move_to)
            except NoSuchFolder:
                dest = store.create_folder(mailbox_id, move_to)
            if dest.id != folder.id:
                moved += len(store.move(folder.id, uids, dest.id).pairs)
    return ApplyReport(matched=matched, moved=moved, deleted=deleted, trashed=trashed, flagged=flagged)


def evaluate_message(db: Database | Session, mailbox_id: int, data: bytes, folder: str = "Sent") -> filters.Outcome:
    """What the mailbox's filters decide for a message filed in `folder` (for the submission
    path: the copy saved to Sent gets `outcome.folder` and `outcome.all_flags`; a delete outcome
    means no copy is kept)."""
    if isinstance(db, Session):
        rules = records.load_rules(db, mailbox_id)
    else:
        with db.read() as session:
            rules = records.load_rules(session, mailbox_id)
    return filters.evaluate(rules, filters.facts_of(data), folder)


# ----------------------------------------------------------------------------- tags


@dataclass(frozen=True)
class TagInfo:
    id: int
    name: str
    keyword: str
    colour: str
    senders: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _tag_info(row: RuleTag) -> TagInfo:
    return TagInfo(row.id, row.name, row.keyword, row.colour, row.senders.split())


def keyword_for(name: str) -> str:
    """The IMAP keyword of a tag name: atom characters kept, others replaced by `_`."""
    keyword = _KEYWORD_UNSAFE.sub("_", name.strip())[:100]
    return keyword.lstrip("\\") or "_"


def _senders(senders: Iterable[str]) -> list[str]:
    out = []
    for sender in senders:
        sender = str(sender).strip().lower()
        if not sender:
            continue
        if len(sender) > 320 or any(ord(c) <= 32 for c in sender) or ("@" not in sender and "*" not in sender):
            raise InvalidInput(f"invalid sender {sender!r}: an address or a glob like *@example.org",
                               "invalid_address")
        out.append(sender)
    return list(dict.fromkeys(out))


def add_tag(db: Database, address: str, name: str, *, colour: str = "#808080",
            senders: Iterable[str] = ()) -> TagInfo:
    name = _single_line(name, "a tag name", 100)
    if not name:
        raise InvalidInput("a tag needs a name", "invalid_name")
    if not _COLOUR.match(colour or ""):
        raise InvalidInput("a colour is #RRGGBB", "invalid_input")
    wanted = _senders(senders)
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        keyword = keyword_for(name)
        clash = session.scalar(select(RuleTag).where(RuleTag.mailbox_id == mailbox.id,
                                                     (func.lower(RuleTag.name) == name.lower())
                                                     | (func.lower(RuleTag.keyword) == keyword.lower())))
        if clash is not None:
            raise Duplicate(f"tag {clash.name} already exists")
        row = RuleTag(mailbox_id=mailbox.id, name=name, keyword=keyword, colour=colour.lower(),
                      senders=" ".join(wanted))
        session.add(row)
        session.flush()
        return _tag_info(row)


def list_tags(db: Database, address: str) -> list[TagInfo]:
    with db.read() as session:
        mailbox = lookups.mailbox_at(session, address)
        return [_tag_info(r) for r in session.scalars(select(RuleTag).where(RuleTag.mailbox_id == mailbox.id)
                                                      .order_by(RuleTag.name))]


def _tag_row(session: Session, mailbox_id: int, name: str) -> RuleTag:
    row = session.scalar(select(RuleTag).where(RuleTag.mailbox_id == mailbox_id,
                                               func.lower(RuleTag.name) == str(name).strip().lower()))
    if row is None:
        raise NotFound(f"tag {name} does not exist")
    return row


def update_tag(db: Database, address: str, name: str, *, colour: str | None = None,
               senders: Iterable[str] | None = None) -> TagInfo:
    if colour is not None and not _COLOUR.match(colour):
        raise InvalidInput("a colour is #RRGGBB", "invalid_input")
    wanted = _senders(senders) if senders is not None else None
    with lookups.writing(db) as session:
        row = _tag_row(session, lookups.mailbox_at(session, address).id, name)
        if colour is not None:
            row.colour = colour.lower()
        if wanted is not None:
            row.senders = " ".join(wanted)
        session.flush()
        return _tag_info(row)


def remove_tag(db: Database, address: str, name: str) -> None:
    """Remove a tag (messages keep the keyword; filters that add it keep working)."""
    with lookups.writing(db) as session:
        session.delete(_tag_row(session, lookups.mailbox_at(session, address).id, name))


# ----------------------------------------------------------------------------- vacation


@dataclass(frozen=True)
class VacationInfo:
    mailbox: str
    enabled: bool
    start: str | None
    end: str | None
    subject: str
    body: str
    contacts_only: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _date(value: str | dt.date | None, what: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidInput(f"invalid {what} date {value!r}: use YYYY-MM-DD", "invalid_date") from None


def get_vacation(db: Database, address: str) -> VacationInfo:
    with db.read() as session:
        mailbox = lookups.mailbox_at(session, address)
        row = session.get(VacationSetting, mailbox.id)
        if row is None:
            return VacationInfo(mailbox.address, False, None, None, "", "", False)
        return VacationInfo(mailbox.address, row.enabled, row.start_date, row.end_date, row.subject, row.body,
                            row.contacts_only)


def set_vacation(db: Database, address: str, *, enabled: bool = True, start: str | dt.date | None = None,
                 end: str | dt.date | None = None, subject: str = "", body: str = "",
                 contacts_only: bool = False, today: dt.date | None = None) -> VacationInfo:
    """Turn the auto-reply on (or store it off) with its dates (start defaults to today, UTC)."""
    start_date = _date(start, "start") or today or dt.datetime.now(dt.UTC).date()
    end_date = _date(end, "end")
    if end_date is not None and end_date < start_date:
        raise InvalidInput("the end date is before the start date", "invalid_date")
    subject = _single_line(subject, "the subject", 400)
    if not isinstance(body, str) or len(body) > MAX_BODY or "\x00" in body:
        raise InvalidInput(f"the body has at most {MAX_BODY} characters", "invalid_input")
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        row = session.get(VacationSetting, mailbox.id)
        if row is None:
            row = VacationSetting(mailbox_id=mailbox.id)
            session.add(row)
        row.enabled, row.start_date = bool(enabled), start_date.isoformat()
        row.end_date = end_date.isoformat() if end_date else None
        row.subject, row.body, row.contacts_only = subject, body, bool(contacts_only)
        row.updated_at = utcnow()
        session.flush()
    return get_vacation(db, address)


def vacation_off(db: Database, address: str) -> VacationInfo:
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        row = session.get(VacationSetting, mailbox.id)
        if row is not None:
            row.enabled = False
            row.updated_at = utcnow()
    return get_vacation(db, address)


# ----------------------------------------------------------------------------- contacts


@dataclass(frozen=True)
class ContactInfo:
    address: str
    name: str
    source: str  # explicit | learnt

    def as_dict(self) -> dict:
        return asdict(self)


def _contact_address(text: str) -> str:
    found = contact_book.clean_address(text) if isinstance(text, str) else None
    if found is None:
        raise InvalidInput(f"invalid contact address {text!r}", "invalid_address")
    return found


def add_contact(db: Database, address: str, contact: str, name: str = "") -> ContactInfo:
    """Add (or make explicit, with a new name) a contact in the mailbox owner's address book."""
    wanted = _contact_address(contact)
    name = _single_line(name, "a contact name", 200)
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        row = session.scalar(select(Contact).where(
            Contact.mailbox_id.in_(contact_book.book_mailbox_ids(session, mailbox.id)), Contact.address == wanted))
        if row is None:
            row = Contact(mailbox_id=mailbox.id, address=wanted, name=name, source="explicit")
            session.add(row)
        else:
            row.source = "explicit"
            row.name = name or row.name
        session.flush()
        return ContactInfo(row.address, row.name, row.source)


def list_contacts(db: Database, address: str) -> list[ContactInfo]:
    with db.read() as session:
        mailbox = lookups.mailbox_at(session, address)
        rows = session.scalars(select(Contact).where(
            Contact.mailbox_id.in_(contact_book.book_mailbox_ids(session, mailbox.id))).order_by(Contact.address))
        return [ContactInfo(r.address, r.name, r.source) for r in rows]


def remove_contact(db: Database, address: str, contact: str) -> None:
    wanted = _contact_address(contact)
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        removed = session.execute(delete(Contact).where(
            Contact.mailbox_id.in_(contact_book.book_mailbox_ids(session, mailbox.id)), Contact.address == wanted))
        if not removed.rowcount:
            raise NotFound(f"{wanted} is not a contact")


# ----------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class SignatureInfo:
    text: str
    html: str

    def as_dict(self) -> dict:
        return asdict(self)


def get_signature(db: Database, address: str) -> SignatureInfo:
    with db.read() as session:
        row = session.get(Signature, lookups.mailbox_at(session, address).id)
        return SignatureInfo(row.text, row.html) if row else SignatureInfo("", "")


def set_signature(db: Database, address: str, *, text: str = "", html: str = "") -> SignatureInfo:
    for value, what in ((text, "text"), (html, "HTML")):
        if not isinstance(value, str) or len(value) > 10_000 or "\x00" in value:
            raise InvalidInput(f"the {what} signature has at most 10000 characters", "invalid_input")
    with lookups.writing(db) as session:
        mailbox = lookups.mailbox_at(session, address)
        row = session.get(Signature, mailbox.id) or Signature(mailbox_id=mailbox.id)
        row.text, row.html, row.updated_at = text, html, utcnow()
        session.add(row)
    return SignatureInfo(text, html)


def signature_for(db: Database | Session, mailbox_id: int) -> SignatureInfo:
    """The signature of a mailbox by id (for the submission path)."""
    if isinstance(db, Session):
        row = db.get(Signature, mailbox_id)
    else:
        with db.read() as session:
            row = session.get(Signature, mailbox_id)
    return SignatureInfo(row.text, row.html) if row else SignatureInfo("", "")


__all__ = [
    "ApplyReport",
    "ContactInfo",
    "FilterInfo",
    "MatchInfo",
    "SignatureInfo",
    "TagInfo",
    "VacationInfo",
    "add_contact",
    "add_filter",
    "add_tag",
    "append_signature",
    "append_signature_html",
    "apply_filter",
    "evaluate_message",
    "export_sieve",
    "get_signature",
    "get_vacation",
    "keyword_for",
    "learn_recipients",
    "list_contacts",
    "list_filters",
    "list_tags",
    "move_filter",
    "preview_filter",
    "remove_contact",
    "remove_filter",
    "remove_tag",
    "set_filter_enabled",
    "set_signature",
    "set_vacation",
    "signature_for",
    "update_filter",
    "update_tag",
    "vacation_off",
]
