"""Delivery filters, pure (ring 0): conditions, actions, evaluation over a message's facts.

A filter has conditions on From, To-or-Cc, To, Cc, Subject or a named header (glob match,
no match, contains, does not contain), on attachments and on calendar invitations; it matches
when all (or any) of them hold. Its actions: delete permanently, move to a folder, add a tag
(an IMAP keyword), mark important (\\Flagged), mark read (\\Seen); `stop` ends the evaluation.
Each filter applies to some folders only (INBOX, Sent, Spam). Filters run in order.

`facts_of(data)` reads what conditions need from raw message bytes; it never raises.
`parse_condition` / `parse_action` turn the CLI's short text forms into rules.

Standards: RFC 5322 §3.6 (originator and destination fields), RFC 2047 (encoded words in
Subject and display names), RFC 2183 (Content-Disposition: attachment), RFC 3501 §2.3.2
(keywords and system flags), RFC 5545 / RFC 6047 (text/calendar parts).
Security: message bytes are untrusted; they are read with the bounded MIME modules (at most
MAX_HEADER_FIELDS fields of the first MAX_HEADER_SCAN octets of the header, the part tree
bounded by mime_structure's MAX_PARTS and MAX_DEPTH), never with the stdlib parser, whose
time and memory grow with the number of parts (a 7 MB message of a million empty parts cost
16 s and 340 MB there); header values are compared as text only.
"""

from __future__ import annotations

import email.utils
import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from courriel.mime_headers import HeaderField, header_end, split_fields
from courriel.mime_search import decoded
from courriel.mime_structure import filename_of, iter_nodes, parse_structure

FIELDS = ("from", "to_or_cc", "to", "cc", "subject", "header", "attachment", "calendar")
TEXT_FIELDS = ("from", "to_or_cc", "to", "cc", "subject", "header")
TEXT_OPERATORS = ("matches", "not_matches", "contains", "not_contains")
ATTACHMENT_OPERATORS = ("has", "has_none")
ACTIONS = ("delete", "move", "tag", "flag", "read")
MATCH_MODES = ("all", "any")
APPLIES_TO = ("INBOX", "Sent", "Spam")
MAX_VALUE = 500
MAX_CONDITIONS = 50
MAX_ACTIONS = 20
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 §2.2 field-name: printable ASCII but ':'
# RFC 3501 §9: a keyword is an atom (no atom-specials, no controls, no space); `\` is a system flag.
_KEYWORD = re.compile(r'^[!#$&\'+-\[^-z|}~]{1,100}$')


class FilterError(ValueError):
    """A condition, action or filter that cannot be used; nothing was changed."""


@dataclass(frozen=True)
class Condition:
    field: str  # one of FIELDS
    op: str  # TEXT_OPERATORS for text fields, ATTACHMENT_OPERATORS for attachment/calendar
    value: str = ""  # glob or substring (text fields)
    header: str = ""  # the header name when field == "header"

    def as_dict(self) -> dict:
        out = {"field": self.field, "op": self.op}
        if self.field in TEXT_FIELDS:
            out["value"] = self.value
        if self.field == "header":
            out["header"] = self.header
        return out


@dataclass(frozen=True)
class Action:
    kind: str  # one of ACTIONS
    argument: str = ""  # folder (move) or tag keyword (tag)

    def as_dict(self) -> dict:
        out = {"action": self.kind}
        if self.kind == "move":
            out["folder"] = self.argument
        elif self.kind == "tag":
            out["tag"] = self.argument
        return out


@dataclass(frozen=True)
class Rule:
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    match: str = "all"
    stop: bool = False
    applies_to: tuple[str, ...] = ("INBOX",)
    enabled: bool = True
    id: int = 0
    name: str = ""


@dataclass(frozen=True)
class MessageFacts:
    """What filter conditions look at, decoded to text."""

    from_: tuple[str, ...] = ()  # "Display Name <addr>" and the bare addresses
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # lower-case name → values
    has_attachment: bool = False
    has_calendar: bool = False
    sender: str = ""  # the first From address, lower case


@dataclass(frozen=True)
class Outcome:
    """What the filters decided for one message."""

    delete: bool = False
    folder: str | None = None  # None: stays where it was delivered
    keywords: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()  # system flags: \Flagged, \Seen
    matched: tuple[int, ...] = ()  # ids of the filters that matched, in order

    @property
    def all_flags(self) -> tuple[str, ...]:
        return self.flags + self.keywords

    @property
    def changes_anything(self) -> bool:
        return self.delete or self.folder is not None or bool(self.keywords or self.flags)


# ----------------------------------------------------------------------------- validation


def applies_to_name(folder: str) -> str | None:
    """The filter scope a folder belongs to: INBOX, Sent or Spam (Junk), else None."""
    lowered = folder.lower()
    if lowered == "inbox":
        return "INBOX"
    if lowered in ("sent", "sent items", "sent messages"):
        return "Sent"
    if lowered in ("spam", "junk"):
        return "Spam"
    return None


def check_condition(condition: Condition) -> Condition:
    if condition.field not in FIELDS:
        raise FilterError(f"unknown condition field {condition.field!r} (use one of {', '.join(FIELDS)})")
    if condition.field in TEXT_FIELDS:
        if condition.op not in TEXT_OPERATORS:
            raise FilterError(f"unknown operator {condition.op!r} (use one of {', '.join(TEXT_OPERATORS)})")
        if not isinstance(condition.value, str) or not condition.value or len(condition.value) > MAX_VALUE:
            raise FilterError(f"a {condition.field} condition needs a value of 1 to {MAX_VALUE} characters")
        if any(ord(c) < 32 for c in condition.value):
            raise FilterError("control characters are not allowed in a condition value")
        if condition.field == "header" and not _HEADER_NAME.match(condition.header or ""):
            raise FilterError(f"invalid header name {condition.header!r}")
    elif condition.op not in ATTACHMENT_OPERATORS or (condition.field == "calendar" and condition.op != "has"):
        allowed = "has" if condition.field == "calendar" else "has or has_none"
        raise FilterError(f"a {condition.field} condition takes {allowed}")
    return condition


def check_folder_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 1000 or name.startswith("/") or name.endswith("/"):
        raise FilterError(f"invalid folder name {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 or c in "*%" for c in name) or "//" in name:
        raise FilterError(f"invalid folder name {name!r}")
    return "INBOX" if name.upper() == "INBOX" else name


def check_keyword(keyword: str) -> str:
    if not isinstance(keyword, str) or not _KEYWORD.match(keyword):
        raise FilterError(f"invalid tag keyword {keyword!r}")
    return keyword


def check_action(action: Action) -> Action:
    if action.kind not in ACTIONS:
        raise FilterError(f"unknown action {action.kind!r} (use one of {', '.join(ACTIONS)})")
    if action.kind == "move":
        return Action("move", check_folder_name(action.argument))
    if action.kind == "tag":
        return Action("tag", check_keyword(action.argument))
    if action.argument:
        raise FilterError(f"the {action.kind} action takes no argument")
    return action


def check_rule(rule: Rule) -> Rule:
    if rule.match not in MATCH_MODES:
        raise FilterError("match must be all or any")
    if not rule.conditions:
        raise FilterError("a filter needs at least one condition")
    if not rule.actions:
        raise FilterError("a filter needs at least one action")
    if len(rule.conditions) > MAX_CONDITIONS or len(rule.actions) > MAX_ACTIONS:
        raise FilterError(f"at most {MAX_CONDITIONS} conditions and {MAX_ACTIONS} actions")
    if not rule.applies_to or any(name not in APPLIES_TO for name in rule.applies_to):
        raise FilterError(f"a filter applies to one or more of {', '.join(APPLIES_TO)}")
    kinds = [a.kind for a in rule.actions]
    if "delete" in kinds and len(kinds) > 1:
        raise FilterError("delete permanently cannot be combined with other actions")
    if kinds.count("move") > 1:
        raise FilterError("a filter moves to one folder only")
    if not isinstance(rule.name, str) or len(rule.name) > 200:
        raise FilterError("a filter name has at most 200 characters")
    return Rule(conditions=tuple(check_condition(c) for c in rule.conditions),
                actions=tuple(check_action(a) for a in rule.actions), match=rule.match, stop=bool(rule.stop),
                applies_to=tuple(dict.fromkeys(rule.applies_to)), enabled=bool(rule.enabled), id=rule.id,
                name=rule.name)


# ----------------------------------------------------------------------------- text forms


_CONDITION_TEXT = re.compile(
    r"^\s*(?P<field>from|to-or-cc|to_or_cc|to|cc|subject|header:(?P<header>[^\s]+))\s+"
    r"(?P<op>matches|does-not-match|not-matches|not_matches|contains|does-not-contain|not-contains|not_contains)"
    r"\s+(?P<value>.+?)\s*$", re.IGNORECASE)
_OPERATOR_ALIASES = {"does-not-match": "not_matches", "not-matches": "not_matches",
                     "does-not-contain": "not_contains", "not-contains": "not_contains"}


def parse_condition(text: str) -> Condition:
    """`from matches *@example.org`, `header:List-Id contains dev`, `subject does-not-contain x`,
    `has-attachment`, `no-attachment`, `has-calendar`."""
    compact = (text or "").strip().lower()
    if compact in ("has-attachment", "has_attachment"):
        return Condition("attachment", "has")
    if compact in ("no-attachment", "has-no-attachment", "has_none"):
        return Condition("attachment", "has_none")
    if compact in ("has-calendar", "has_calendar"):
        return Condition("calendar", "has")
    found = _CONDITION_TEXT.match(text or "")
    if found is None:
        raise FilterError(f"cannot read condition {text!r} (e.g. 'from matches *@example.org')")
    name = found["field"].lower().replace("-", "_")
    op = found["op"].lower()
    op = _OPERATOR_ALIASES.get(op, op)
    value = found["value"]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if name.startswith("header:"):
        return check_condition(Condition("header", op, value, found["header"]))
    return check_condition(Condition(name, op, value))


def parse_action(text: str) -> Action:
    """`delete`, `move Archive/2026`, `tag Work`, `flag`, `read`."""
    kind, _, argument = (text or "").strip().partition(" ")
    kind = {"fileinto": "move", "mark-read": "read", "important": "flag"}.get(kind.lower(), kind.lower())
    return check_action(Action(kind, argument.strip()))


def conditions_to_json(conditions: Iterable[Condition]) -> str:
    return json.dumps([c.as_dict() for c in conditions], ensure_ascii=False)


def actions_to_json(actions: Iterable[Action]) -> str:
    return json.dumps([a.as_dict() for a in actions], ensure_ascii=False)


def conditions_from_json(text: str) -> tuple[Condition, ...]:
    return tuple(Condition(d["field"], d["op"], d.get("value", ""), d.get("header", "")) for d in json.loads(text))


def actions_from_json(text: str) -> tuple[Action, ...]:
    return tuple(Action(d["action"], d.get("folder") or d.get("tag") or "") for d in json.loads(text))


def condition_from_dict(data: dict) -> Condition:
    if not isinstance(data, dict):
        raise FilterError("a condition is an object with field, op and value")
    return check_condition(Condition(str(data.get("field", "")), str(data.get("op", "")),
                                     str(data.get("value", "")), str(data.get("header", ""))))


def action_from_dict(data: dict) -> Action:
    if not isinstance(data, dict):
        raise FilterError("an action is an object with action and its argument")
    return check_action(Action(str(data.get("action", "")), str(data.get("folder") or data.get("tag") or "")))


# ----------------------------------------------------------------------------- message facts


def _address_values(values: Sequence[str]) -> tuple[str, ...]:
    texts = [decoded(v) for v in values]
    out = list(texts)
    for name, address in email.utils.getaddresses(texts):
        if address:
            out.append(address)
            if name:
                out.append(f"{name} <{address}>")
    return tuple(dict.fromkeys(out))


def parts_facts(tree: dict) -> tuple[bool, bool]:
    """(has an attachment, has a calendar part) of a bounded part tree (mime_structure)."""
    attachment = calendar = False
    for node in iter_nodes(tree):
        content_type = f"{node['type']}/{node['subtype']}".lower()
        if content_type in ("text/calendar", "application/ics"):
            calendar = True
        if "parts" in node or "message" in node:
            continue
        disposition = (node["disposition"][0] if node.get("disposition") else "").lower()
        # RFC 2183 §2.2: an attachment; a named non-text part counts too (many clients omit the field).
        if disposition == "attachment" or (filename_of(node) and not content_type.startswith("text/")):
            attachment = True
    return attachment, calendar


def _values_of(fields: list[HeaderField], name: str) -> list[str]:
    return [field.value for field in fields if field.name.lower() == name]


def facts_of(data: bytes) -> MessageFacts:
    """The facts filter conditions read, from raw message bytes; never raises."""
    try:
        fields = split_fields(data, 0, header_end(data, 0, len(data)))  # bounded (see Security)
        headers: dict[str, list[str]] = {}
        for field_ in fields:
            if field_.name:
                headers.setdefault(field_.name.lower(), []).append(decoded(field_.value))
        raw_from = _values_of(fields, "from")
        senders = [a for _, a in email.utils.getaddresses([decoded(v) for v in raw_from]) if a]
        subjects = _values_of(fields, "subject")
        attachment, calendar = parts_facts(parse_structure(data))
        return MessageFacts(
            from_=_address_values(raw_from), to=_address_values(_values_of(fields, "to")),
            cc=_address_values(_values_of(fields, "cc")), subject=decoded(subjects[0]) if subjects else "",
            headers={k: tuple(v) for k, v in headers.items()}, has_attachment=attachment, has_calendar=calendar,
            sender=senders[0].lower() if senders else "")
    except Exception:  # malformed beyond the parser's tolerance: nothing matches text conditions
        return MessageFacts()


# ----------------------------------------------------------------------------- evaluation


def _values(condition: Condition, facts: MessageFacts) -> tuple[str, ...]:
    if condition.field == "from":
        return facts.from_
    if condition.field == "to":
        return facts.to
    if condition.field == "cc":
        return facts.cc
    if condition.field == "to_or_cc":
        return facts.to + facts.cc
    if condition.field == "subject":
        return (facts.subject,)
    return facts.headers.get(condition.header.lower(), ())


def glob_matches(pattern: str, value: str) -> bool:
    """Case-insensitive glob (`*`, `?`, `[...]`), as Sieve's :matches with i;ascii-casemap."""
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def condition_holds(condition: Condition, facts: MessageFacts) -> bool:
    if condition.field == "attachment":
        return facts.has_attachment if condition.op == "has" else not facts.has_attachment
    if condition.field == "calendar":
        return facts.has_calendar
    values = _values(condition, facts)
    if condition.op in ("matches", "not_matches"):
        hit = any(glob_matches(condition.value, v) for v in values)
    else:
        needle = condition.value.lower()
        hit = any(needle in v.lower() for v in values)
    return hit if condition.op in ("matches", "contains") else not hit


def rule_matches(rule: Rule, facts: MessageFacts) -> bool:
    results = (condition_holds(c, facts) for c in rule.conditions)
    return all(results) if rule.match == "all" else any(results)


def evaluate(rules: Iterable[Rule], facts: MessageFacts, folder: str = "INBOX") -> Outcome:
    """Run enabled rules that apply to `folder` in order; later moves win, tags and flags add up,
    delete ends everything; `stop` ends the evaluation after its rule."""
    scope = applies_to_name(folder)
    target: str | None = None
    keywords: dict[str, str] = {}
    flags: list[str] = []
    matched: list[int] = []
    for rule in rules:
        if not rule.enabled or scope not in rule.applies_to or not rule_matches(rule, facts):
            continue
        matched.append(rule.id)
        for action in rule.actions:
            if action.kind == "delete":
                return Outcome(delete=True, matched=tuple(matched))
            if action.kind == "move":
                target = action.argument
            elif action.kind == "tag":
                keywords.setdefault(action.argument.lower(), action.argument)
            elif action.kind == "flag" and "\\Flagged" not in flags:
                flags.append("\\Flagged")
            elif action.kind == "read" and "\\Seen" not in flags:
                flags.append("\\Seen")
        if rule.stop:
            break
    return Outcome(folder=target, keywords=tuple(keywords.values()), flags=tuple(flags), matched=tuple(matched))


def tag_senders_match(patterns: Iterable[str], sender: str) -> bool:
    """True when the sender's address equals or glob-matches one of the tag's sender entries."""
    return bool(sender) and any(glob_matches(p, sender) for p in patterns if p)
