"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §3) and the thread-list encoding (§4):
pure tables over `courriel.imap.thread`, and a property test over random references (loops,
duplicates, missing ids): every message appears exactly once in well-formed thread lists."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from courriel.imap.sort import SortFacts
from courriel.imap.thread import Node, encode, thread

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def msg(msn, subject="s", day=None, mid=None, refs=(), arrival=0):
    """A message sent on `day` (None: no Date:, the internal date T0 + `arrival` hours counts)."""
    mid_value = f"<{mid}>" if mid and not mid.startswith("<") else (mid or "")
    envelope = [None, subject, None, None, None, None, None, None, None, mid_value or None]
    sent = None if day is None else T0 + dt.timedelta(days=day)
    return SortFacts(msn=msn, uid=100 + msn, internaldate=T0 + dt.timedelta(hours=arrival), sent=sent,
                     envelope_list=envelope, message_id=mid_value, reference_ids=tuple(refs))


def threads(algorithm, messages, uid=False):
    return encode(thread(algorithm, messages), uid=uid)


# ------------------------------------------------------------------ encoding


def test_encoding_of_chains_branches_and_dummies():
    def node(number, *children):
        n = Node(msg(number) if number else None)
        for child in children:
            n.add(child)
        return n

    # RFC 5256 §4 example: (3 6 (4 23)(44 7 96))
    tree = node(3, node(6, node(4, node(23)), node(44, node(7, node(96)))))
    assert encode([tree]) == "(3 6 (4 23)(44 7 96))"
    assert encode([node(1), node(2, node(3), node(4))]) == "(1)(2 (3)(4))"
    assert encode([node(0, node(1), node(2, node(5)))]) == "((1)(2 5))"
    assert encode([node(2, node(3))], uid=True) == "(102 103)"
    assert encode([]) == ""


def test_a_very_long_chain_is_encoded_without_recursion():
    messages = [msg(1, mid="m1", day=0)]
    messages += [msg(n, mid=f"m{n}", refs=[f"m{n - 1}"], day=n) for n in range(2, 5001)]
    text = threads("REFERENCES", messages)
    assert text == "(" + " ".join(str(n) for n in range(1, 5001)) + ")"


# ------------------------------------------------------------------ ORDEREDSUBJECT


def test_ordered_subject_groups_by_base_subject_and_sorts_by_date():
    messages = [
        msg(1, "Hello", day=5),
        msg(2, "Re: hello", day=6),
        msg(3, "Other", day=1),
        msg(4, "[list] Fwd: HELLO (fwd)", day=2),
        msg(5, "Re: Hello", day=6),  # same date as 2: mailbox order
        msg(6, "other", day=3),
        msg(7, "", day=4),
        msg(8, None, arrival=1),  # no Date: the internal date (T0 + 1h) is the sent date
    ]
    # Threads by the date of their first message: 8 (+7, empty subjects), Other (3, 6), Hello (4, 1, 2, 5).
    assert threads("ORDEREDSUBJECT", messages) == "(8 7)(3 6)(4 (1)(2)(5))"


def test_ordered_subject_single_messages():
    assert threads("ORDEREDSUBJECT", [msg(2, "b", day=1), msg(1, "a", day=2)]) == "(2)(1)"
    assert threads("ORDEREDSUBJECT", []) == ""


# ------------------------------------------------------------------ REFERENCES


def test_references_chain_and_branches_sorted_by_date():
    messages = [
        msg(1, "topic", day=0, mid="a"),
        msg(2, "Re: topic", day=2, mid="b", refs=["a"]),
        msg(3, "Re: topic", day=1, mid="c", refs=["a"]),
        msg(4, "Re: topic", day=3, mid="d", refs=["a", "c"]),
        msg(5, "elsewhere", day=-1, mid="e"),
    ]
    assert threads("REFERENCES", messages) == "(5)(1 (3 4)(2))"


def test_in_reply_to_is_used_through_reference_ids():
    # The store caches the first In-Reply-To id when there is no References (mime.summarize).
    messages = [msg(1, "q", day=0, mid="x"), msg(2, "answer", day=1, mid="y", refs=["x"])]
    assert threads("REFERENCES", messages) == "(1 2)"


def test_missing_parent_becomes_a_dummy_that_is_pruned():
    # One child of a missing message: promoted to the top level.
    assert threads("REFERENCES", [msg(1, "a", day=0, mid="m1", refs=["gone"])]) == "(1)"
    # Two children of the same missing message: a dummy root keeps them together.
    messages = [msg(1, "x", day=1, mid="m1", refs=["gone"]), msg(2, "y", day=0, mid="m2", refs=["gone"]),
                msg(3, "z", day=2, mid="m3")]
    assert threads("REFERENCES", messages) == "((2)(1))(3)"
    # A missing message in the middle of a chain: its child hangs from the grandparent.
    messages = [msg(1, "p", day=0, mid="top"), msg(2, "q", day=1, mid="low", refs=["top", "middle"])]
    assert threads("REFERENCES", messages) == "(1 2)"


def test_dummy_children_promoted_below_the_top_level():
    messages = [msg(1, "p", day=0, mid="top"),
                msg(2, "q", day=2, mid="c1", refs=["top", "gone"]),
                msg(3, "r", day=1, mid="c2", refs=["top", "gone"])]
    assert threads("REFERENCES", messages) == "(1 (3)(2))"


def test_reference_cycles_are_broken():
    # A says its parent is B, B says its parent is A.
    messages = [msg(1, "a", day=0, mid="A", refs=["B"]), msg(2, "b", day=1, mid="B", refs=["A"])]
    assert threads("REFERENCES", messages) == "(2 1)"
    # A message that references itself, and a References line that loops.
    messages = [msg(1, "self", day=0, mid="S", refs=["S"]),
                msg(2, "loop", day=1, mid="L", refs=["X", "Y", "X", "L"])]
    assert threads("REFERENCES", messages) == "(1)(2)"


def test_duplicate_and_missing_message_ids():
    messages = [
        msg(1, "first", day=0, mid="dup"),
        msg(2, "second", day=1, mid="dup"),  # a duplicate: gets an id of its own
        msg(3, "child", day=2, mid="k", refs=["dup"]),  # is the child of the first
        msg(4, "none", day=3),  # no Message-ID
        msg(5, "bad", day=4, mid="not an id"),
    ]
    assert threads("REFERENCES", messages) == "(1 3)(2)(4)(5)"


def test_truncated_references_move_a_message_to_its_real_parent():
    messages = [
        msg(1, "one", day=0, mid="p1"),
        msg(2, "two", day=1, mid="p2"),
        # 3's References put m3 below p1 (step 1A makes that link while m3 is still a dummy) ...
        msg(3, "Re: two", day=3, mid="x", refs=["p1", "m3"]),
        # ... but m3's own line says p2: step 1B moves it there, and 3 comes along as its child.
        msg(4, "Re: two", day=2, mid="m3", refs=["p2"]),
    ]
    assert threads("REFERENCES", messages) == "(1)(2 4 3)"


def test_subject_merging_of_top_level_threads():
    messages = [
        msg(1, "Plans", day=0, mid="a"),
        msg(2, "Re: Plans", day=1, mid="b"),  # a reply without references: under 1
        msg(3, "plans", day=2, mid="c"),  # not a reply, same subject: both under a new dummy
        msg(4, "Other", day=3, mid="d"),
        msg(5, "", day=4, mid="e"),  # empty subjects are never merged
        msg(6, "", day=5, mid="f"),
    ]
    assert threads("REFERENCES", messages) == "((1 2)(3))(4)(5)(6)"


def test_subject_merging_prefers_dummies_and_non_replies():
    messages = [
        msg(1, "Re: news", day=0, mid="r1"),  # a reply first in date order
        msg(2, "news", day=1, mid="n"),  # the original comes later: the reply goes under it
        msg(3, "x", day=2, mid="c1", refs=["gone"]),
        msg(4, "Re: x", day=3, mid="c2", refs=["gone"]),  # dummy root with subject "x" (first child 3)
        msg(5, "x", day=4, mid="solo"),  # merges into the dummy as another child
    ]
    assert threads("REFERENCES", messages) == "(2 1)((3)(4)(5))"


def test_two_dummy_threads_with_one_subject_merge():
    messages = [
        msg(1, "s", day=0, mid="a1", refs=["ga"]),
        msg(2, "s", day=1, mid="a2", refs=["ga"]),
        msg(3, "Re: s", day=2, mid="b1", refs=["gb"]),
        msg(4, "s", day=3, mid="b2", refs=["gb"]),
    ]
    assert threads("REFERENCES", messages) == "((1)(2)(3)(4))"


def test_uid_thread_uses_uids():
    messages = [msg(1, "a", day=0, mid="a"), msg(2, "b", day=1, mid="b", refs=["a"])]
    assert threads("REFERENCES", messages, uid=True) == "(101 102)"


def test_unknown_algorithm():
    with pytest.raises(ValueError):
        thread("XREFS", [])


# ------------------------------------------------------------------ properties

IDS = [f"id{n}" for n in range(8)]
SUBJECTS = ["a", "Re: a", "b", "Fwd: b", "", "[x] a"]


@st.composite
def mailboxes(draw):
    count = draw(st.integers(0, 12))
    return [msg(n, draw(st.sampled_from(SUBJECTS)), day=draw(st.one_of(st.none(), st.integers(0, 3))),
                mid=draw(st.one_of(st.none(), st.sampled_from(IDS))),
                refs=draw(st.lists(st.sampled_from(IDS), max_size=5)), arrival=draw(st.integers(0, 3)))
            for n in range(1, count + 1)]


def numbers_in(text: str) -> list[int]:
    return [int(n) for n in text.replace("(", " ").replace(")", " ").split()]


@settings(max_examples=300, deadline=None)
@given(mailboxes(), st.sampled_from(["REFERENCES", "ORDEREDSUBJECT"]))
def test_every_message_appears_once_in_balanced_threads(messages, algorithm):
    text = threads(algorithm, messages)
    assert sorted(numbers_in(text)) == [m.msn for m in messages]
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
    assert "()" not in text
