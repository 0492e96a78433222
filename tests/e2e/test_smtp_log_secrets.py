"""Nothing secret in logs: a submission transaction with AUTH PLAIN and AUTH LOGIN (right and wrong
passwords) over real loopback sockets, with every logger at DEBUG, leaves no password and no AUTH
data (plain or base64) in any log record."""

from __future__ import annotations

import base64
import logging
import smtplib

import pytest
from smtp_harness import insecure_context, smtp_world_fixture  # noqa: F401 - pytest fixture "smtp_world"

PASSWORD = "Sekrit horse 42 zq"
WRONG = "Wrong horse 43 zq"


def _secrets() -> list[str]:
    found = [PASSWORD, WRONG]
    for password in (PASSWORD, WRONG):
        found.append(base64.b64encode(f"\0alice@example.org\0{password}".encode()).decode())
        found.append(base64.b64encode(password.encode()).decode())
    return found


def test_auth_transaction_logs_no_secret(smtp_world, caplog):
    smtp_world.add_mailbox("alice@example.org", password=PASSWORD)
    caplog.set_level(logging.DEBUG)
    for name in ("mail.log", "courriel", "courriel.smtp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    with smtp_world.client("submission") as client:
        client.ehlo("client.example")
        client.starttls(context=insecure_context())
        client.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice@example.org", WRONG)
    for mechanism in ("PLAIN", "LOGIN"):
        with smtp_world.client("submission") as client:
            client.ehlo("client.example")
            client.starttls(context=insecure_context())
            client.ehlo("client.example")
            client.user, client.password = "alice@example.org", PASSWORD
            code, _ = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
            assert code == 235
            client.sendmail("alice@example.org", ["alice@example.org"],
                            b"From: alice@example.org\r\nSubject: x\r\n\r\nbody\r\n")
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert any(r.name == "mail.log" and r.levelno == logging.DEBUG for r in caplog.records), "no aiosmtpd debug"
    leaked = [secret for secret in _secrets() if secret in text]
    assert leaked == [], leaked


BODY_MARKER = "confidential-body-text-7f3a"


def test_one_log_line_per_transaction_with_the_queue_id_and_no_body(smtp_world, caplog):
    """Like Postfix's: every transaction ends in one INFO line of `courriel.smtp` carrying the queue id
    (or NOQUEUE), grep-able; message text never reaches a log record, whatever the level."""
    smtp_world.add_mailbox("alice@example.org")
    caplog.set_level(logging.DEBUG)
    for name in ("mail.log", "courriel", "courriel.smtp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    body = f"From: bob@remote.test\r\nSubject: {BODY_MARKER}\r\n\r\n{BODY_MARKER}\r\n".encode()
    queue_ids = []
    with smtp_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        for verb in ("DATA", "BDAT"):
            assert client.command("MAIL FROM:<bob@remote.test>")[0] == 250
            assert client.command("RCPT TO:<alice@example.org>")[0] == 250
            if verb == "DATA":
                assert client.command("DATA")[0] == 354
                client.send(body + b".\r\n")
            else:
                client.send(f"BDAT {len(body)} LAST\r\n".encode() + body)
            code, text = client.reply()
            assert code == 250, text
            queue_ids.append(text.rpartition(" ")[2])
        # A refused one (bare CR): one line too, without a queue id.
        assert client.command("MAIL FROM:<bob@remote.test>")[0] == 250
        assert client.command("RCPT TO:<alice@example.org>")[0] == 250
        assert client.command("DATA")[0] == 354
        client.send(body.replace(b"\r\n\r\n", b"\r\n\rx\r\n") + b".\r\n")
        assert client.reply()[0] == 550
    ends = [r for r in caplog.records if r.name == "courriel.smtp"
            and r.getMessage() in ("message queued", "message refused", "message deferred")]
    assert [(r.getMessage(), r.queue_id, r.levelno) for r in ends] == [
        ("message queued", queue_ids[0], logging.INFO), ("message queued", queue_ids[1], logging.INFO),
        ("message refused", "NOQUEUE", logging.INFO)]
    assert all((r.sender, r.to, r.client) == ("bob@remote.test", "alice@example.org", "127.0.0.1") for r in ends)
    assert ends[2].status.startswith("550 5.6.0")
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert BODY_MARKER not in text
