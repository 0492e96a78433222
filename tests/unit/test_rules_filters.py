"""Filter evaluation as pure tables: every condition and operator, every action, all/any,
stop, order and folder scope; the text forms of the CLI; facts read from raw messages."""

from __future__ import annotations

import pytest

from courriel.rules import filters
from courriel.rules.filters import Action, Condition, FilterError, MessageFacts, Rule

FACTS = MessageFacts(
    from_=('"Bob Builder" <bob@example.net>', "bob@example.net", "Bob Builder <bob@example.net>"),
    to=("alice@example.org",), cc=("carol@example.com",), subject="Invoice 42 for November",
    headers={"list-id": ("<dev.lists.example.net>",), "x-priority": ("1",)},
    has_attachment=True, has_calendar=False, sender="bob@example.net")

CONDITION_TABLE = [
    # (condition, holds for FACTS)
    (Condition("from", "matches", "*@example.net"), True),
    (Condition("from", "matches", "*@EXAMPLE.NET"), True),
    (Condition("from", "matches", "bob@*.org"), False),
    (Condition("from", "not_matches", "*@example.org"), True),
    (Condition("from", "not_matches", "bob@*"), False),
    (Condition("from", "contains", "Builder"), True),
    (Condition("from", "not_contains", "builder"), False),
    (Condition("to", "matches", "alice@example.org"), True),
    (Condition("to", "contains", "carol"), False),
    (Condition("cc", "contains", "carol"), True),
    (Condition("cc", "not_contains", "alice"), True),
    (Condition("to_or_cc", "matches", "carol@*"), True),
    (Condition("to_or_cc", "matches", "alice@*"), True),
    (Condition("to_or_cc", "not_matches", "dave@*"), True),
    (Condition("subject", "contains", "invoice"), True),
    (Condition("subject", "matches", "Invoice ?? for *"), True),
    (Condition("subject", "matches", "Invoice"), False),
    (Condition("subject", "not_contains", "receipt"), True),
    (Condition("header", "contains", "dev.lists", header="List-Id"), True),
    (Condition("header", "matches", "1", header="X-Priority"), True),
    (Condition("header", "contains", "x", header="X-Missing"), False),
    (Condition("header", "not_contains", "x", header="X-Missing"), True),
    (Condition("attachment", "has"), True),
    (Condition("attachment", "has_none"), False),
    (Condition("calendar", "has"), False),
]


@pytest.mark.parametrize(("condition", "expected"), CONDITION_TABLE)
def test_condition(condition, expected):
    assert filters.condition_holds(filters.check_condition(condition), FACTS) is expected


FLAG = (Action("flag"),)


def rule(*conditions, actions=FLAG, match="all", stop=False, applies_to=("INBOX",), rule_id=1,
         enabled=True):
    return filters.check_rule(Rule(conditions=tuple(conditions), actions=tuple(actions), match=match, stop=stop,
                                   applies_to=applies_to, id=rule_id, enabled=enabled))


YES = Condition("subject", "contains", "invoice")
NO = Condition("subject", "contains", "receipt")


@pytest.mark.parametrize(("match", "conditions", "expected"), [
    ("all", (YES, YES), True), ("all", (YES, NO), False), ("all", (NO, NO), False),
    ("any", (YES, NO), True), ("any", (NO, YES), True), ("any", (NO, NO), False),
])
def test_all_and_any(match, conditions, expected):
    assert filters.rule_matches(rule(*conditions, match=match), FACTS) is expected


ACTION_TABLE = [
    (Action("move", "Archive/2026"), dict(folder="Archive/2026")),
    (Action("tag", "Work"), dict(keywords=("Work",))),
    (Action("flag"), dict(flags=("\\Flagged",))),
    (Action("read"), dict(flags=("\\Seen",))),
    (Action("delete"), dict(delete=True)),
]


@pytest.mark.parametrize(("action", "expected"), ACTION_TABLE)
def test_each_action(action, expected):
    outcome = filters.evaluate([rule(YES, actions=(action,))], FACTS)
    assert outcome.matched == (1,)
    for name, value in expected.items():
        assert getattr(outcome, name) == value


def test_actions_combine_and_later_move_wins():
    rules = [rule(YES, actions=(Action("tag", "Work"), Action("read"), Action("move", "A")), rule_id=1),
             rule(YES, actions=(Action("tag", "work"), Action("flag"), Action("move", "B")), rule_id=2)]
    outcome = filters.evaluate(rules, FACTS)
    assert outcome == filters.Outcome(folder="B", keywords=("Work",), flags=("\\Seen", "\\Flagged"), matched=(1, 2))


def test_stop_ends_evaluation_in_order():
    first = rule(YES, actions=(Action("move", "First"),), stop=True, rule_id=1)
    second = rule(YES, actions=(Action("move", "Second"),), rule_id=2)
    assert filters.evaluate([first, second], FACTS).folder == "First"
    assert filters.evaluate([second, first], FACTS).folder == "First"  # order decides: second then first, stop
    assert filters.evaluate([second, first], FACTS).matched == (2, 1)
    not_matching = rule(NO, actions=(Action("move", "X"),), stop=True, rule_id=3)
    assert filters.evaluate([not_matching, second], FACTS).folder == "Second"  # stop only when it matches


def test_delete_ends_everything():
    rules = [rule(YES, actions=(Action("delete"),), rule_id=1), rule(YES, actions=(Action("flag"),), rule_id=2)]
    assert filters.evaluate(rules, FACTS) == filters.Outcome(delete=True, matched=(1,))


def test_disabled_and_folder_scope():
    assert not filters.evaluate([rule(YES, enabled=False)], FACTS).matched
    spam_only = rule(YES, applies_to=("Spam",))
    assert not filters.evaluate([spam_only], FACTS, "INBOX").matched
    assert filters.evaluate([spam_only], FACTS, "Spam").matched == (1,)
    assert filters.evaluate([rule(YES, applies_to=("Sent",))], FACTS, "Sent").flags == ("\\Flagged",)
    assert not filters.evaluate([rule(YES)], FACTS, "Archive").matched


@pytest.mark.parametrize(("bad", "message"), [
    (Rule(conditions=(), actions=(Action("flag"),)), "at least one condition"),
    (Rule(conditions=(YES,), actions=()), "at least one action"),
    (Rule(conditions=(YES,), actions=(Action("delete"), Action("flag"))), "cannot be combined"),
    (Rule(conditions=(YES,), actions=(Action("move", "A"), Action("move", "B"))), "one folder"),
    (Rule(conditions=(YES,), actions=(Action("flag"),), match="some"), "all or any"),
    (Rule(conditions=(YES,), actions=(Action("flag"),), applies_to=("Drafts",)), "applies to"),
    (Rule(conditions=(Condition("subject", "like", "x"),), actions=(Action("flag"),)), "unknown operator"),
    (Rule(conditions=(Condition("subject", "contains", ""),), actions=(Action("flag"),)), "needs a value"),
    (Rule(conditions=(Condition("header", "contains", "x", "Bad Name"),), actions=(Action("flag"),)), "header"),
    (Rule(conditions=(Condition("calendar", "has_none"),), actions=(Action("flag"),)), "takes has"),
    (Rule(conditions=(YES,), actions=(Action("tag", "has space"),)), "keyword"),
    (Rule(conditions=(YES,), actions=(Action("tag", "\\Seen"),)), "keyword"),
    (Rule(conditions=(YES,), actions=(Action("move", "a*b"),)), "folder"),
    (Rule(conditions=(YES,), actions=(Action("explode"),)), "unknown action"),
])
def test_invalid_rules_are_refused(bad, message):
    with pytest.raises(FilterError, match=message):
        filters.check_rule(bad)


@pytest.mark.parametrize(("text", "expected"), [
    ("from matches *@example.org", Condition("from", "matches", "*@example.org")),
    ("to-or-cc contains team", Condition("to_or_cc", "contains", "team")),
    ("subject does-not-contain 'hello world'", Condition("subject", "not_contains", "hello world")),
    ("header:List-Id matches *dev*", Condition("header", "matches", "*dev*", "List-Id")),
    ("cc does-not-match *@spam.test", Condition("cc", "not_matches", "*@spam.test")),
    ("has-attachment", Condition("attachment", "has")),
    ("no-attachment", Condition("attachment", "has_none")),
    ("has-calendar", Condition("calendar", "has")),
])
def test_condition_text(text, expected):
    assert filters.parse_condition(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("delete", Action("delete")), ("move Archive/2026", Action("move", "Archive/2026")),
    ("tag Work", Action("tag", "Work")), ("flag", Action("flag")), ("read", Action("read")),
    ("move inbox", Action("move", "INBOX")),
])
def test_action_text(text, expected):
    assert filters.parse_action(text) == expected


@pytest.mark.parametrize("text", ["from resembles x", "subject contains", "", "frm matches x"])
def test_bad_condition_text(text):
    with pytest.raises(FilterError):
        filters.parse_condition(text)


def test_json_round_trip():
    conditions = (Condition("header", "contains", "x", "X-A"), Condition("attachment", "has_none"))
    actions = (Action("move", "A"), Action("tag", "T"), Action("read"))
    assert filters.conditions_from_json(filters.conditions_to_json(conditions)) == conditions
    assert filters.actions_from_json(filters.actions_to_json(actions)) == actions


MESSAGE = (b"From: =?utf-8?q?Ren=C3=A9?= <rene@example.net>\r\nTo: a@example.org, b@example.org\r\n"
           b"Cc: c@example.org\r\nSubject: =?utf-8?q?R=C3=A9union?=\r\nList-Id: <x.example.net>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
           b"Content-Type: text/plain\r\n\r\nhi\r\n--B\r\nContent-Type: application/pdf\r\n"
           b"Content-Disposition: attachment; filename=a.pdf\r\n\r\nJVBERi0=\r\n--B--\r\n")


def test_facts_of_a_message():
    facts = filters.facts_of(MESSAGE)
    assert facts.sender == "rene@example.net"
    assert "René <rene@example.net>" in facts.from_
    assert facts.subject == "Réunion"
    assert set(facts.to) >= {"a@example.org", "b@example.org"} and "c@example.org" in facts.cc
    assert facts.headers["list-id"] == ("<x.example.net>",)
    assert facts.has_attachment and not facts.has_calendar
    plain = filters.facts_of(b"From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n")
    assert not plain.has_attachment


@pytest.mark.parametrize("data", [b"", b"\x00\xff\xfe", b"From: <<<\r\nContent-Type: multipart/mixed\r\n\r\n--",
                                  b"Subject: " + b"a" * 100_000])
def test_facts_never_raise(data):
    facts = filters.facts_of(data)
    assert isinstance(facts, MessageFacts)
    assert not filters.evaluate([rule(Condition("from", "matches", "*@example.org"))], facts).matched


def test_tag_senders():
    assert filters.tag_senders_match(["boss@example.org"], "boss@example.org")
    assert filters.tag_senders_match(["*@example.net"], "bob@example.net")
    assert not filters.tag_senders_match(["*@example.net"], "")
    assert not filters.tag_senders_match(["boss@example.org"], "bob@example.org")
