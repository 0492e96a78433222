"""DSN rules and composition: the result parses back with the stdlib email package."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from courriel.queue import dsn
from courriel.queue.dsn import Action, RecipientReport, Report

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
ORIGINAL = (b"From: Alice <alice@example.org>\r\nTo: bob@remote.test\r\nSubject: hello\r\n"
            b"Message-ID: <m1@example.org>\r\n\r\nBody line\r\n.leading dot\r\n")


@pytest.mark.parametrize(("sender", "notify", "action", "wanted"), [
    ("a@x.test", None, Action.FAILED, True),
    ("a@x.test", None, Action.DELAYED, True),
    ("a@x.test", None, Action.DELIVERED, False),  # success only when asked
    ("a@x.test", "SUCCESS", Action.DELIVERED, True),
    ("a@x.test", "SUCCESS", Action.RELAYED, True),
    ("a@x.test", "SUCCESS", Action.FAILED, False),
    ("a@x.test", "FAILURE,DELAY", Action.DELAYED, True),
    ("a@x.test", "failure", Action.FAILED, True),
    ("a@x.test", "NEVER", Action.FAILED, False),
    ("a@x.test", "NEVER", Action.DELAYED, False),
    ("", None, Action.FAILED, False),  # never a DSN for a DSN
    ("", "SUCCESS,FAILURE", Action.FAILED, False),
])
def test_notify_rules(sender, notify, action, wanted):
    assert dsn.wanted(sender, notify, action) is wanted


def _report(**changes) -> Report:
    values = dict(
        reporting_mta="mx.example.org", original_sender="alice@example.org", queue_id="ABC123",
        arrival_date=NOW - dt.timedelta(hours=1), original=ORIGINAL, envid="env-42",
        recipients=(
            RecipientReport("bob@remote.test", Action.FAILED, "5.1.1", original_recipient="rfc822;Bob@remote.test",
                            diagnostic="550 5.1.1 <bob@remote.test>: user\r\n unknown", remote_mta="mx.remote.test",
                            last_attempt=NOW),
            RecipientReport("carol@slow.test", Action.DELAYED, "4.4.1", diagnostic="no answer",
                            diagnostic_type="x-courriel", will_retry_until=NOW + dt.timedelta(days=4)),
        ),
    )
    values.update(changes)
    return Report(**values)


def _parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_failure_report_parses_as_multipart_report():
    message = _parse(dsn.compose(_report(), NOW))
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["To"].addresses[0].addr_spec == "alice@example.org"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    text, status, returned = message.get_payload()
    assert text.get_content_type() == "text/plain"
    assert "bob@remote.test" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, bob, carol = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.example.org"
    assert per_message["Original-Envelope-Id"] == "env-42"
    assert per_message["Arrival-Date"]
    assert bob["Final-Recipient"] == "rfc822; bob@remote.test"
    assert bob["Original-Recipient"] == "rfc822; Bob@remote.test"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.remote.test"
    # the remote reply is inside, on one line (no header injection through CR/LF)
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@remote.test>: user unknown"
    assert carol["Action"] == "delayed"
    assert carol["Will-Retry-Until"]
    # RET absent and a failure: the whole original comes back
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_payload()[0]
    assert inner["Subject"] == "hello"
    assert ".leading dot" in inner.get_content()


@pytest.mark.parametrize(("ret", "action", "kind"), [
    ("HDRS", Action.FAILED, "text/rfc822-headers"),
    ("FULL", Action.FAILED, "message/rfc822"),
    (None, Action.DELAYED, "text/rfc822-headers"),
    ("FULL", Action.DELIVERED, "message/rfc822"),
])
def test_returned_part_follows_ret(ret, action, kind):
    report = _report(ret=ret, recipients=(RecipientReport("bob@remote.test", action, "2.0.0"
                                                          if action is Action.DELIVERED else "4.4.1"),))
    parts = _parse(dsn.compose(report, NOW)).get_payload()
    assert parts[2].get_content_type() == kind
    raw = dsn.compose(report, NOW)
    assert (b"Body line" in raw) is (kind == "message/rfc822")


def test_success_report_subject_and_action():
    report = _report(recipients=(RecipientReport("bob@remote.test", Action.RELAYED, "2.0.0"),))
    message = _parse(dsn.compose(report, NOW))
    assert message["Subject"] == "Successful Mail Delivery Report"
    assert message.get_payload()[1].get_payload()[1]["Action"] == "relayed"


def test_internationalised_report_uses_rfc6533_types():
    original = "From: José <josé@example.org>\r\nSubject: ça va\r\n\r\nété\r\n".encode()
    report = _report(original=original, smtputf8=True, original_sender="josé@example.org",
                     recipients=(RecipientReport("ünï@remote.test", Action.FAILED, "5.6.7"),))
    raw = dsn.compose(report, NOW)
    message = _parse(raw)
    assert message.get_payload()[1].get_content_type() == "message/global-delivery-status"
    assert message.get_payload()[2].get_content_type() == "message/global"
    assert "utf-8; ünï@remote.test".encode() in raw


def test_report_needs_a_recipient():
    with pytest.raises(ValueError):
        dsn.compose(_report(recipients=()), NOW)
