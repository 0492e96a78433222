"""IMAP sequence sets (RFC 3501 §9, RFC 5182), dates (RFC 3501 §9) and search-key resolution."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from courriel.imap.protocol.dates import DateSyntaxError, format_date_time, parse_date, parse_date_time
from courriel.imap.protocol.search import resolve
from courriel.imap.protocol.sequence import SequenceSet, SequenceSyntaxError


@pytest.mark.parametrize(("text", "largest", "ranges"), [
    ("1", 10, [(1, 1)]),
    ("1:*", 10, [(1, 10)]),
    ("*", 10, [(10, 10)]),
    ("*:4", 10, [(4, 10)]),
    ("7:3", 10, [(3, 7)]),  # RFC 3501 §9: either order
    ("2,4:5,9:*", 7, [(2, 2), (4, 5), (7, 9)]),
    ("1:*", 0, [(0, 1)]),
    ("4294967295", 1, [(4294967295, 4294967295)]),
])
def test_resolve(text, largest, ranges):
    assert SequenceSet.parse(text).resolve(largest) == ranges


@pytest.mark.parametrize("text", ["", "0", "1:", ":1", "1,,2", "a", "4294967296", "1:0", "$,1", "1 2", "01", "**"])
def test_bad_sequence_sets(text):
    with pytest.raises(SequenceSyntaxError):
        SequenceSet.parse(text)


def test_saved_result():
    saved = SequenceSet.parse("$")
    assert saved.saved and str(saved) == "$"
    with pytest.raises(ValueError):
        saved.resolve(5)


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(1, 500), max_size=60))
def test_from_numbers_is_compact_and_exact(numbers):
    seq = SequenceSet.from_numbers(numbers)
    covered = {n for low, high in seq.resolve(500) for n in range(low, high + 1)}
    assert covered == numbers
    assert SequenceSet.parse(str(seq)) == seq if numbers else str(seq) == ""
    assert all(b[0] > a[1] + 1 for a, b in zip(seq.ranges, seq.ranges[1:], strict=False))


def test_contains_and_text():
    seq = SequenceSet.parse("1:3,7:*")
    assert seq.contains(2, 9) and seq.contains(9, 9) and not seq.contains(5, 9)
    assert str(seq) == "1:3,7:*" and bytes(seq) == b"1:3,7:*"
    assert SequenceSet.of(1, (3, 5)) == SequenceSet(((1, 1), (3, 5)))


def test_dates():
    assert parse_date("1-Feb-1994") == dt.date(1994, 2, 1)
    assert parse_date("01-feb-1994") == dt.date(1994, 2, 1)
    for bad in ["1-Foo-1994", "32-Jan-2000", "29-Feb-2001", "1-Feb-94", "1 Feb 1994", ""]:
        with pytest.raises(DateSyntaxError):
            parse_date(bad)
    value = parse_date_time("17-Jul-1996 02:44:25 -0700")
    assert value == dt.datetime(1996, 7, 17, 9, 44, 25, tzinfo=dt.UTC)
    assert value.utcoffset() == dt.timedelta(hours=-7)
    assert parse_date_time(" 7-Jul-1996 02:44:25 +0000").day == 7
    assert format_date_time(value) == "17-Jul-1996 02:44:25 -0700"
    assert format_date_time(dt.datetime(2024, 1, 2, 3, 4, 5)) == "02-Jan-2024 03:04:05 +0000"
    for bad in ["17-Jul-1996 02:44:25", "17-Jul-1996 25:00:00 +0000", "17-Jul-1996 02:44:25 +0060",
                "17-Jul-1996 02:44:25 +9900", "17-Jul-1996 02:44:61 +0000"]:
        with pytest.raises(DateSyntaxError):
            parse_date_time(bad)


@settings(max_examples=100, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
       st.integers(-23 * 60 - 59, 23 * 60 + 59))
def test_date_time_round_trip(moment, offset_minutes):
    value = moment.replace(microsecond=0, tzinfo=dt.timezone(dt.timedelta(minutes=offset_minutes)))
    assert parse_date_time(format_date_time(value)) == value


def test_resolve_search_key_tree():
    key = ("AND", (("SEQ", SequenceSet.parse("2:*")), ("NOT", ("UID", SequenceSet.parse("$"))),
                   ("OR", ("SEQ", SequenceSet.parse("$")), ("SEEN",))))
    assert resolve(key, 5, 50, saved_msns=[3, 1], saved_uids=[40]) == (
        "AND", [("SEQ", [(2, 5)]), ("NOT", ("UID", [(40, 40)])), ("OR", ("SEQ", [(1, 1), (3, 3)]), ("SEEN",))])
