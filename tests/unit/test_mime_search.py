"""RFC 5256 §2.1 base subject and RFC 2047 decoded search columns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from courriel.mime_subject import base_subject, decoded


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "Hello"),
        ("Re: Hello", "Hello"),
        ("RE: re: Fwd: Hello", "Hello"),
        ("Fw: Hello", "Hello"),
        ("Re[2]: Hello", "Hello"),  # subj-refwd allows a blob between "re" and ":"
        ("Re [2]: Hello", "Hello"),
        ("[list] Re: Hello", "Hello"),
        ("[list] [tag] Hello", "Hello"),
        ("[only-a-blob]", "[only-a-blob]"),
        ("Hello (fwd)", "Hello"),
        ("Hello (fwd) (FWD)  ", "Hello"),
        ("[Fwd: Re: Hello]", "Hello"),
        ("[fwd: [list] Hello (fwd)]", "Hello"),
        ("  Re:   Hello   world  ", "Hello world"),
        ("Re:\tfolded\r\n subject", "folded subject"),
        ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café"),
        ("Re: =?utf-8?q?caf=C3=A9?=", "café"),
        ("", ""),
        (None, ""),
        ("Re:", ""),
    ],
)
def test_base_subject(subject, expected):
    assert base_subject(subject) == expected


@given(st.text(max_size=80))
def test_base_subject_never_raises_and_is_idempotent(subject):
    once = base_subject(subject)
    assert base_subject(once) == once or once.startswith("[")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?UTF-8?B?UsOpc3Vtw6k=?= of the =?UTF-8?Q?caf=C3=A9?=\r\n meeting", "Résumé of the café meeting"),
        ("=?ISO-8859-1?B?RnJhbudvaXM=?= <f@x>", "François <f@x>"),
        ("=?x-unknown?q?abc?= tail", "abc tail"),
        ("=?utf-8?q?broken", "=?utf-8?q?broken"),
        ("plain", "plain"),
        ("", ""),
        (None, ""),
    ],
)
def test_decoded(value, expected):
    assert decoded(value) == expected
