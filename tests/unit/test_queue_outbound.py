"""Pure parts of the outbound SMTP client: xtext encoding and reply classification."""

from __future__ import annotations

import pytest

from courriel.smtp.outbound import Reply, xtext


@pytest.mark.parametrize(("value", "encoded"), [
    ("plain-id.123", "plain-id.123"),
    ("a+b=c", "a+2Bb+3Dc"),  # RFC 3461 §4: "+" and "=" are always encoded
    ("with space", "with+20space"),
    ("é", "+C3+A9"),
])
def test_xtext(value, encoded):
    assert xtext(value) == encoded


@pytest.mark.parametrize(("code", "text", "status", "ok", "permanent"), [
    (250, "2.0.0 Ok: queued as ABC", "2.0.0", True, False),
    (550, "5.1.1 <x@y>: Recipient address rejected", "5.1.1", False, True),
    (451, "4.7.1 greylisted", "4.7.1", False, False),
    (550, "no enhanced code here", "5.0.0", False, True),
    (450, "5.1.1 class mismatch is ignored", "4.0.0", False, False),
])
def test_reply_classification(code, text, status, ok, permanent):
    reply = Reply(code, text)
    assert reply.enhanced_status == status
    assert reply.ok is ok and reply.permanent is permanent


def test_multi_line_reply_is_one_line():
    assert Reply(550, "5.7.1 first line\nsecond line").line() == "550 5.7.1 first line second line"
