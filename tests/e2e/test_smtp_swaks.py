"""swaks, a real third-party SMTP client, drives one transaction on each listener: MX with
pipelining, submission with STARTTLS and AUTH PLAIN, submissions (implicit TLS) with AUTH LOGIN,
and a refused relay."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from smtp_harness import smtp_world_fixture  # noqa: F401 - pytest fixture "smtp_world"

PASSWORD = "Correct horse 42"

pytestmark = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed (make system-packages)")


def swaks(world, listener: str, *args: str) -> subprocess.CompletedProcess:
    command = ["swaks", "--server", "127.0.0.1", "--port", str(world.ports[listener]), "--ehlo", "client.example",
               "--timeout", "10", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_swaks_mx_pipelined(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    result = swaks(smtp_world, "mx", "--pipeline", "--from", "bob@remote.test", "--to", "alice@example.org",
                   "--header", "Subject: swaks on MX", "--body", "Hello from swaks.")
    assert result.returncode == 0, result.stdout + result.stderr
    (entry,) = smtp_world.queued()
    assert f"<-  250 2.0.0 queued as {entry.id}" in result.stdout
    # RFC 2920: swaks sent the envelope in one batch, before reading the replies.
    batch = r" -> MAIL FROM:<bob@remote.test>\n -> RCPT TO:<alice@example.org>\n"
    assert re.search(batch, result.stdout), result.stdout
    assert b"Subject: swaks on MX" in smtp_world.content(entry)


def test_swaks_submission_starttls_auth_plain(smtp_world):
    smtp_world.add_mailbox("alice@example.org", password=PASSWORD)
    result = swaks(smtp_world, "submission", "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.org",
                   "--auth-password", PASSWORD, "--from", "alice@example.org", "--to", "friend@remote.test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  235 2.7.0 Authentication successful" in result.stdout
    (entry,) = smtp_world.queued()
    assert (entry.auth_user, [r.address for r in entry.recipients]) == ("alice@example.org", ["friend@remote.test"])


def test_swaks_submissions_implicit_tls_auth_login(smtp_world):
    smtp_world.add_mailbox("alice@example.org", password=PASSWORD)
    result = swaks(smtp_world, "submissions", "--tls-on-connect", "--auth", "LOGIN", "--auth-user",
                   "alice@example.org", "--auth-password", PASSWORD, "--from", "alice@example.org",
                   "--to", "friend@remote.test")
    assert result.returncode == 0, result.stdout + result.stderr
    (entry,) = smtp_world.queued()
    assert b"with ESMTPSA" in smtp_world.content(entry)


def test_swaks_relay_attempt_is_refused(smtp_world):
    result = swaks(smtp_world, "mx", "--from", "spammer@remote.test", "--to", "victim@elsewhere.test")
    assert result.returncode != 0
    assert "<** 554 5.7.1 Relay access denied" in result.stdout
    assert smtp_world.queued() == []
