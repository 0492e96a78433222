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
