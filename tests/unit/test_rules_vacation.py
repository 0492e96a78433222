"""Auto-reply decision and composition as pure tables: every case where no reply is sent
(RFC 3834 §2), the dates, and the reply's fields (RFC 3834 §3, §5); signatures (RFC 3676)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from courriel.rules import signature, vacation
from courriel.rules.vacation import Skip, VacationSettings

TODAY = dt.date(2026, 12, 21)
ON = VacationSettings(enabled=True, start=dt.date(2026, 12, 20), end=dt.date(2026, 12, 31), subject="",
                      body="Back in January.")
OWN = {"alice@example.org", "team@example.org"}
PLAIN = (b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: Lunch?\r\n"
         b"Message-ID: <m1@example.net>\r\n\r\nhi\r\n")


def headers(extra: bytes = b"", base: bytes = PLAIN) -> email.message.Message:
    return vacation.headers_of(extra + base)


def decide(settings=ON, sender="bob@example.net", extra=b"", today=TODAY, already=False, known=False, base=PLAIN):
    return vacation.reason_not_to_reply(settings, envelope_sender=sender, headers=headers(extra, base),
                                        own_addresses=OWN, today=today, already_replied=already,
                                        sender_in_contacts=known)


def test_a_plain_message_is_answered():
    assert decide() is None


@pytest.mark.parametrize(("kwargs", "reason"), [
    (dict(settings=VacationSettings(enabled=False, start=TODAY)), Skip.DISABLED),
    (dict(today=dt.date(2026, 12, 19)), Skip.NOT_ACTIVE),
    (dict(today=dt.date(2027, 1, 1)), Skip.NOT_ACTIVE),
    (dict(sender=""), Skip.NULL_SENDER),
    (dict(sender="<>"), Skip.NULL_SENDER),
    (dict(sender="alice@example.org"), Skip.OWN_ADDRESS),
    (dict(sender="team@example.org"), Skip.OWN_ADDRESS),
    (dict(base=PLAIN.replace(b"Bob <bob@example.net>", b"alice@example.org")), Skip.OWN_ADDRESS),
    (dict(extra=b"Auto-Submitted: auto-replied\r\n"), Skip.AUTO_SUBMITTED),
    (dict(extra=b"Auto-Submitted: auto-generated\r\n"), Skip.AUTO_SUBMITTED),
    (dict(extra=b"Auto-Submitted: auto-notified; owner-email=x@y\r\n"), Skip.AUTO_SUBMITTED),
    (dict(extra=b"Precedence: bulk\r\n"), Skip.BULK),
    (dict(extra=b"Precedence: list\r\n"), Skip.BULK),
    (dict(extra=b"Precedence: JUNK\r\n"), Skip.BULK),
    (dict(extra=b"List-Id: <dev.example.net>\r\n"), Skip.LIST),
    (dict(extra=b"List-Unsubscribe: <mailto:leave@example.net>\r\n"), Skip.LIST),
    (dict(sender="owner-dev@example.net"), Skip.SYSTEM_SENDER),
    (dict(sender="dev-request@example.net"), Skip.SYSTEM_SENDER),
    (dict(sender="MAILER-DAEMON@example.net"), Skip.SYSTEM_SENDER),
    (dict(already=True), Skip.ALREADY_REPLIED),
    (dict(settings=VacationSettings(enabled=True, start=TODAY, contacts_only=True)), Skip.NOT_IN_CONTACTS),
])
def test_never_sent(kwargs, reason):
    assert decide(**kwargs) is reason


def test_answered_cases():
    assert decide(extra=b"Auto-Submitted: no\r\n") is None  # RFC 3834 §5: "no" is a person
    assert decide(extra=b"Precedence: first-class\r\n") is None
    assert decide(settings=VacationSettings(enabled=True, start=TODAY, contacts_only=True), known=True) is None
    assert decide(settings=VacationSettings(enabled=True, start=TODAY), today=dt.date(2030, 1, 1)) is None  # open end
    assert decide(today=dt.date(2026, 12, 31)) is None and decide(today=dt.date(2026, 12, 20)) is None


def test_reply_fields():
    now = dt.datetime(2026, 12, 21, 9, 30, tzinfo=dt.UTC)
    original = headers(b"References: <r0@example.net>\r\n")
    data = vacation.compose_reply(ON, mailbox_address="alice@example.org", display_name="Alice Été",
                                  recipient="bob@example.net", original=original, now=now, hostname="mx.example.org",
                                  signature="Alice\nExample Org")
    reply = email.message_from_bytes(data, policy=email.policy.default)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["To"] == "bob@example.net"
    assert reply["From"].addresses[0].addr_spec == "alice@example.org"
    assert reply["From"].addresses[0].display_name == "Alice Été"
    assert reply["Subject"] == "Auto: Lunch?"
    assert reply["In-Reply-To"] == "<m1@example.net>"
    assert reply["References"] == "<r0@example.net> <m1@example.net>"
    assert reply["Message-ID"].endswith("@mx.example.org>")
    assert reply.get_content().replace("\r\n", "\n") == "Back in January.\n-- \nAlice\nExample Org\n"


def test_reply_subject_setting_and_header_injection():
    custom = VacationSettings(enabled=True, start=TODAY, subject="Out of office")
    assert vacation.reply_subject(custom, "x") == "Out of office"
    hostile = headers(base=b"From: b@example.net\r\nSubject: hi\r\n =?utf-8?q?there=0D=0ABcc:_x@evil.test?=\r\n\r\n")
    data = vacation.compose_reply(ON, mailbox_address="alice@example.org", display_name="", recipient="b@example.net",
                                  original=hostile, now=dt.datetime(2026, 12, 21, tzinfo=dt.UTC), hostname="h.test")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Bcc"] is None and "In-Reply-To" not in parsed


@pytest.mark.parametrize(("text", "sig", "expected"), [
    ("Hello", "Alice", "Hello\n-- \nAlice\n"),
    ("Hello\n", "Alice\n", "Hello\n-- \nAlice\n"),
    ("Hello\n-- \nAlice\n", "Alice", "Hello\n-- \nAlice\n"),
    ("Hello", "", "Hello"),
    ("Hello", "  \n", "Hello"),
])
def test_append_signature(text, sig, expected):
    assert signature.append_signature(text, sig) == expected


def test_append_signature_html():
    assert signature.append_signature_html("<html><body><p>Hi</p></body></html>", "<b>A</b>") == \
        '<html><body><p>Hi</p><div class="signature">-- <br><b>A</b></div></body></html>'
    assert signature.append_signature_html("<p>Hi</p>", "", "a<b") == \
        '<p>Hi</p><pre class="signature">-- \na&lt;b</pre>'
    assert signature.append_signature_html("<p>Hi</p>", "", "") == "<p>Hi</p>"
