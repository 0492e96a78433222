"""SORT keys and order (RFC 5256 §3, RFC 5957 §3): pure tables over `courriel.imap.sort`."""

from __future__ import annotations

import datetime as dt

import pytest

from courriel.imap.sort import SortFacts, casemap, sort_messages
from courriel.mime_search import base_subject

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def address(text: str | None):
    """'Name <box@host>' or 'box@host' as an ENVELOPE address list."""
    if text is None:
        return None
    name = None
    if "<" in text:
        name, _, text = text.partition("<")
        name = name.strip() or None
        text = text.rstrip(">")
    box, _, host = text.partition("@")
    return [[name, None, box, host]]


def facts(msn, subject=None, sent=None, arrival=0, size=0, from_=None, to=None, cc=None, message_id="",
          references=()):
    envelope = [None, subject, address(from_), address(from_), address(from_), address(to), address(cc), None,
                None, message_id or None]
    return SortFacts(msn=msn, uid=msn * 10, internaldate=T0 + dt.timedelta(hours=arrival), size=size,
                     sent=sent, envelope_list=envelope, message_id=message_id, reference_ids=tuple(references))


def order(messages, *criteria):
    parsed = []
    reverse = False
    for word in criteria:
        if word == "REVERSE":
            reverse = True
            continue
        parsed.append((reverse, word))
        reverse = False
    return [m.msn for m in sort_messages(messages, parsed)]


@pytest.mark.parametrize(("subject", "base"), [
    ("Hello", "Hello"),
    ("Re: Hello", "Hello"),
    ("RE: re: Re:Hello", "Hello"),
    ("Fwd: Hello", "Hello"),
    ("Fw: Hello", "Hello"),
    ("[list] Hello", "Hello"),
    ("Re: [list] Fwd: Hello", "Hello"),
    ("[list] Re: [other] Re: Hello", "Hello"),
    ("Re[2]: Hello", "Hello"),
    ("Hello (fwd)", "Hello"),
    ("Hello (fwd) (FWD)  ", "Hello"),
    ("[Fwd: Re: Hello]", "Hello"),
    ("Re: [fwd: [list] Hello (fwd)]", "Hello"),
    ("[list]", "[list]"),  # a blob that would leave nothing is kept (§2.1 step 4)
    ("  spaced\tout   text ", "spaced out text"),
    ("=?utf-8?q?Re=3A_Caf=C3=A9?=", "Café"),
    ("Re: =?utf-8?b?W2xpc3RdIEFpZGU=?=", "Aide"),
    ("", ""),
    (None, ""),
    ("Re:", ""),
])
def test_base_subject(subject, base):
    assert base_subject(subject) == base


def test_casemap_folds_ascii_only():
    assert casemap("abcXYZ éÉ") == "ABCXYZ éÉ"


MESSAGES = [
    facts(1, "Re: beta", sent=T0 + dt.timedelta(days=3), arrival=5, size=300, from_="Zed <zed@x.org>",
          to="amy@y.org", cc="b@c.d"),
    facts(2, "alpha", sent=None, arrival=1, size=100, from_="amy@x.org", to="Bob <bob@y.org>"),
    facts(3, "[list] Beta", sent=T0 + dt.timedelta(days=1), arrival=3, size=300, from_="Bob <Bob@x.org>",
          to="carl@y.org", cc="a@c.d"),
    facts(4, "Gamma (fwd)", sent=T0 + dt.timedelta(days=1), arrival=2, size=50, from_=None, to=None),
    facts(5, "ALPHA", sent=T0 - dt.timedelta(days=1), arrival=4, size=100, from_="=?utf-8?q?=C3=89mile?= <e@x.org>",
          to="amy@y.org"),
]


@pytest.mark.parametrize(("criteria", "expected"), [
    (("ARRIVAL",), [2, 4, 3, 5, 1]),
    (("REVERSE", "ARRIVAL"), [1, 5, 3, 4, 2]),
    # No Date: -> internal date (1 hour after T0) for message 2.
    (("DATE",), [5, 2, 3, 4, 1]),
    (("SIZE",), [4, 2, 5, 1, 3]),
    (("REVERSE", "SIZE"), [1, 3, 2, 5, 4]),  # equal sizes stay in mailbox order under REVERSE
    (("SIZE", "REVERSE", "DATE"), [4, 2, 5, 1, 3]),
    (("SUBJECT",), [2, 5, 1, 3, 4]),  # alpha = ALPHA (mailbox order), beta = [list] Beta, Gamma (fwd)
    (("SUBJECT", "DATE"), [5, 2, 3, 1, 4]),
    (("REVERSE", "SUBJECT", "DATE"), [4, 3, 1, 5, 2]),
    (("FROM",), [4, 2, 3, 5, 1]),  # addr-mailbox: "", amy, Bob, e, zed (case-insensitive)
    (("DISPLAYFROM",), [4, 2, 3, 1, 5]),  # "", amy@x.org, Bob, Zed, Émile (É above ASCII)
    (("TO",), [4, 1, 5, 2, 3]),
    (("DISPLAYTO",), [4, 1, 5, 2, 3]),
    (("CC",), [2, 4, 5, 3, 1]),
    (("REVERSE", "CC", "REVERSE", "ARRIVAL"), [1, 3, 5, 4, 2]),
])
def test_sort_order(criteria, expected):
    assert order(MESSAGES, *criteria) == expected


def test_missing_date_and_timezones_compare_in_utc():
    east = dt.timezone(dt.timedelta(hours=5))
    messages = [facts(1, sent=dt.datetime(2025, 1, 1, 12, tzinfo=east)),  # 07:00 UTC
                facts(2, sent=dt.datetime(2025, 1, 1, 8, tzinfo=dt.UTC)),
                facts(3, sent=None, arrival=7)]  # 07:00 UTC from the internal date: ties with 1, after it
    assert order(messages, "DATE") == [1, 3, 2]
    assert order(messages, "REVERSE", "DATE") == [2, 1, 3]


def test_malformed_envelope_sorts_as_empty():
    broken = SortFacts(msn=1, uid=1, internaldate=T0, envelope_list=[None] * 10)
    odd = SortFacts(msn=2, uid=2, internaldate=T0, envelope_list=[None, None, [["x"]]] + [None] * 7)
    named = facts(3, from_="a@b.c")
    unreadable = SortFacts(msn=4, uid=4, internaldate=T0, envelope_json="[not json")
    envelope = '[null, "Re: A", [[null, null, "0", "x"]], null, null, null, null, null, null, null]'
    cached = SortFacts(msn=5, uid=5, internaldate=T0, envelope_json=envelope)
    assert order([named, odd, broken, unreadable, cached], "FROM") == [1, 2, 4, 5, 3]
    assert order([named, odd, broken, unreadable, cached], "DISPLAYFROM", "SUBJECT") == [1, 2, 4, 5, 3]
    assert cached.base_subject == "A" and cached.reply_or_forward and unreadable.subject is None


def test_unknown_key_is_refused():
    with pytest.raises(ValueError):
        sort_messages(MESSAGES, [(False, "COLOUR")])
