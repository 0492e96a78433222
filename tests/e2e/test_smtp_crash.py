"""Crash recovery of the smtp role, run as a real process and killed with SIGKILL:
- after `250 queued as <id>`, the message is delivered once the roles run again;
- during DATA, the client never sees 250 and nothing is delivered;
- inside `spool.accept` (fault points): before the commit nothing is delivered; after the commit
  the client saw no 250 but the message is delivered (a duplicate is possible, a loss never).
Then SIGTERM stops the role cleanly (exit status 0)."""

from __future__ import annotations

import signal
import smtplib
import socket

import pytest
from smtp_harness import poll
from smtp_process import installation_fixture  # noqa: F401 - pytest fixture "installation"

from courriel.queue import spool

MESSAGE = b"From: Bob <bob@remote.test>\r\nTo: alice@example.org\r\nSubject: crash %d\r\n\r\nbody\r\n"


def send(installation, number: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", installation.port("mx"), timeout=15) as client:
        client.ehlo("client.example")
        assert client.mail("bob@remote.test")[0] == 250
        assert client.rcpt("alice@example.org")[0] == 250
        return client.data(MESSAGE % number)


def subjects(installation, mailbox_id: int) -> list[bytes]:
    try:
        messages = installation.inbox(mailbox_id)
    except Exception:  # the mailbox has no folders before its first delivery
        return []
    return sorted(line for m in messages for line in m.split(b"\r\n") if line.startswith(b"Subject:"))


def test_kill_after_250_then_delivered_after_restart(installation):
    mailbox_id = installation.add_mailbox("alice@example.org")
    smtp = installation.start("smtp")
    code, text = send(installation, 1)
    assert code == 250 and text.startswith(b"2.0.0 queued as ")
    assert smtp.kill() == -signal.SIGKILL
    smtp = installation.start("smtp")
    installation.start("queue")
    poll(lambda: subjects(installation, mailbox_id) == [b"Subject: crash 1"], "the acknowledged message delivered",
         timeout=30)
    assert send(installation, 2)[0] == 250  # the restarted role serves as before
    poll(lambda: len(subjects(installation, mailbox_id)) == 2, "the second message delivered", timeout=30)
    assert smtp.terminate() == 0  # SIGTERM: clean stop


def test_kill_during_data_delivers_nothing(installation):
    mailbox_id = installation.add_mailbox("alice@example.org")
    smtp = installation.start("smtp")
    with socket.create_connection(("127.0.0.1", installation.port("mx")), timeout=15) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        for _ in range(20):  # the EHLO reply lines, up to the last one
            if reader.readline().startswith(b"250 "):
                break
        sock.sendall(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert [reader.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        sock.sendall(b"From: bob@remote.test\r\nSubject: half\r\n\r\nfirst half of the body\r\n")
        assert smtp.kill() == -signal.SIGKILL
        try:
            rest = reader.read()  # the connection ends without any reply
        except ConnectionResetError:  # unread input makes the kernel answer with a reset
            rest = b""
        assert rest == b""
    # Nothing was spooled, so nothing can ever be delivered: no queue entry, no body file.
    assert spool.list_entries(installation.db) == []
    assert [p for p in installation.config.blob_dir.rglob("*") if p.is_file()] == []
    assert subjects(installation, mailbox_id) == []


def test_kill_inside_spool_accept(installation):
    mailbox_id = installation.add_mailbox("alice@example.org")
    # Killed before the commit: nothing was durable, nothing is delivered.
    # Killed after the commit: the client saw no 250, yet the message is delivered (never lost).
    for number, fault in ((4, "spool.accept.after_insert"), (5, "spool.accept.after_commit")):
        smtp = installation.start("smtp", fault=fault)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(installation, number)  # no 250: the process died inside spool.accept
        assert smtp.process.wait(timeout=10) == -signal.SIGKILL
    installation.start("smtp")
    installation.start("queue")
    assert send(installation, 6)[0] == 250
    expected = [b"Subject: crash 5", b"Subject: crash 6"]
    poll(lambda: subjects(installation, mailbox_id) == expected and not spool.list_entries(installation.db),
         f"exactly {expected} delivered and the queue empty", timeout=30)
    assert subjects(installation, mailbox_id) == expected
