"""Sieve export: every condition and action becomes RFC 5228 / RFC 5232 text that sievelib
parses, in filter order, with user strings escaped."""

from __future__ import annotations

import pytest
from sievelib.parser import Parser

from courriel.rules import filters, sieve
from courriel.rules.filters import Action, Condition, Rule


def parses(script: str) -> bool:
    parser = Parser()
    ok = parser.parse(script)
    assert ok, f"{parser.error}\n{script}"
    return ok


ALL_CONDITIONS = (
    Condition("from", "matches", "*@example.org"), Condition("from", "not_contains", "x"),
    Condition("to", "matches", "a@b.example"), Condition("cc", "contains", "c"),
    Condition("to_or_cc", "not_matches", "*@spam.test"), Condition("subject", "contains", 'say "hi" \\ bye'),
    Condition("header", "matches", "*dev*", "List-Id"), Condition("attachment", "has"),
    Condition("attachment", "has_none"), Condition("calendar", "has"),
)


def test_every_condition_and_action_parses():
    rules = [
        filters.check_rule(Rule(conditions=ALL_CONDITIONS, actions=(Action("tag", "Work"), Action("flag"),
                                Action("read"), Action("move", "Archive/Été")), match="any", stop=True, id=1,
                                name="everything")),
        filters.check_rule(Rule(conditions=(Condition("subject", "contains", "spam"),), actions=(Action("delete"),),
                                id=2)),
        filters.check_rule(Rule(conditions=(Condition("subject", "contains", "x"),), actions=(Action("flag"),),
                                id=3, enabled=False)),
        filters.check_rule(Rule(conditions=(Condition("subject", "contains", "y"),), actions=(Action("flag"),),
                                id=4, applies_to=("Spam",))),
    ]
    script = sieve.export(rules, "alice@example.org")
    assert parses(script)
    assert script.startswith("# Courriel filters of alice@example.org\nrequire [\"fileinto\", \"imap4flags\"];")
    assert 'fileinto "Archive/Été";' in script and "discard;" in script
    assert 'addflag "\\\\Seen";' in script and 'addflag "\\\\Flagged";' in script and 'addflag "Work";' in script
    assert 'address :all :comparator "i;ascii-casemap" :matches "from" "*@example.org"' in script
    assert 'not address :all :comparator "i;ascii-casemap" :matches ["to", "cc"] "*@spam.test"' in script
    assert '"say \\"hi\\" \\\\ bye"' in script
    assert script.index("filter 1") < script.index("filter 2")
    assert "# filter 3 (disabled, not exported)" in script and "applies to Spam only" in script
    assert script.index('addflag "Work";') < script.index("fileinto \"")  # RFC 5232 §5: flags before filing


@pytest.mark.parametrize("rules", [[], [filters.check_rule(Rule(conditions=(Condition("from", "contains", "a"),),
                                                                actions=(Action("read"),)))]])
def test_small_scripts_parse(rules):
    script = sieve.export(rules)
    assert parses(script)
    assert "fileinto" not in script.splitlines()[0]
