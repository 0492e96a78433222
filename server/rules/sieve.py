"""Sieve export of a mailbox's filters, pure (ring 0).

Writes one RFC 5228 script for the filters that apply to INBOX (Sieve runs at delivery), in
order, with `fileinto` (RFC 5228 §4.1) and `addflag` from imap4flags (RFC 5232 §3.2). Flags
are added before `fileinto` so that the filed copy carries them (RFC 5232 §5). Disabled
filters and filters for other folders are listed as comments only.

Conditions: From/To/Cc glob matches use the `address` test (RFC 5228 §5.1) so that
`*@example.org` matches `Name <a@example.org>`; everything else uses `header` (§5.7) with
the i;ascii-casemap comparator (case-insensitive, as Courriel evaluates). Attachment and
calendar tests need RFC 5703 (`mime`), which few servers implement: they are exported as
top-level Content-Type approximations and marked with a comment.

Standards: RFC 5228 (§2.4.2 strings, §3.2 require, §3.3 stop, §4.1 fileinto, §4.4 discard),
RFC 5232 (imap4flags).
Security: every user string is quoted and escaped (RFC 5228 §2.4.2: `\\` and `"`).
"""

from __future__ import annotations

from collections.abc import Iterable

from courriel.rules.filters import Condition, Rule


def quote(value: str) -> str:
    """RFC 5228 §2.4.2 quoted-string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _string_list(values: list[str]) -> str:
    return quote(values[0]) if len(values) == 1 else "[" + ", ".join(quote(v) for v in values) + "]"


def _header_names(condition: Condition) -> list[str]:
    if condition.field == "to_or_cc":
        return ["to", "cc"]
    if condition.field == "header":
        return [condition.header]
    return [condition.field]


def test_of(condition: Condition) -> str:
    """One Sieve test for a condition."""
    if condition.field == "attachment":
        test = 'header :comparator "i;ascii-casemap" :contains "Content-Type" "multipart/mixed"'
        return test if condition.op == "has" else f"not {test}"
    if condition.field == "calendar":
        return 'header :comparator "i;ascii-casemap" :contains "Content-Type" "text/calendar"'
    negate = condition.op.startswith("not_")
    kind = ":matches" if condition.op.endswith("matches") else ":contains"
    names = _string_list(_header_names(condition))
    if kind == ":matches" and condition.field in ("from", "to", "cc", "to_or_cc"):
        test = f'address :all :comparator "i;ascii-casemap" :matches {names} {quote(condition.value)}'
    else:
        test = f'header :comparator "i;ascii-casemap" {kind} {names} {quote(condition.value)}'
    return f"not {test}" if negate else test


def _comment(text: str) -> str:
    return "# " + " ".join(text.split())


def export(rules: Iterable[Rule], mailbox: str = "") -> str:
    """The Sieve script for `rules` (in their order)."""
    rules = list(rules)
    uses_fileinto = any(a.kind == "move" for r in rules for a in r.actions)
    lines = []
    if mailbox:
        lines.append(_comment(f"Courriel filters of {mailbox}"))
    extensions = (["fileinto"] if uses_fileinto else []) + ["imap4flags"]
    lines.append(f"require [{', '.join(quote(e) for e in extensions)}];")
    for rule in rules:
        lines.append("")
        title = f"filter {rule.id}" + (f": {rule.name}" if rule.name else "")
        if not rule.enabled:
            lines.append(_comment(f"{title} (disabled, not exported)"))
            continue
        if "INBOX" not in rule.applies_to:
            lines.append(_comment(f"{title} applies to {', '.join(rule.applies_to)} only (not exported)"))
            continue
        lines.append(_comment(title))
        if any(c.field in ("attachment", "calendar") for c in rule.conditions):
            lines.append(_comment("attachment/calendar tests approximated by the top-level Content-Type"))
        tests = [test_of(c) for c in rule.conditions]
        if len(tests) == 1:
            head = f"if {tests[0]} {{"
        else:
            joiner = ",\n        "
            head = f"if {'allof' if rule.match == 'all' else 'anyof'} ({joiner.join(tests)}) {{"
        lines.append(head)
        body = []
        for action in rule.actions:
            if action.kind == "tag":
                body.append(f"addflag {quote(action.argument)};")
            elif action.kind == "flag":
                body.append('addflag "\\\\Flagged";')
            elif action.kind == "read":
                body.append('addflag "\\\\Seen";')
        for action in rule.actions:
            if action.kind == "move":
                body.append(f"fileinto {quote(action.argument)};")
            elif action.kind == "delete":
                body.append("discard;")
        if rule.stop or any(a.kind == "delete" for a in rule.actions):
            body.append("stop;")
        lines.extend("    " + line for line in body)
        lines.append("}")
    return "\n".join(lines) + "\n"
