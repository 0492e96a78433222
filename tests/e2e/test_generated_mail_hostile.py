"""Hostile messages through the real queue runner with auto-reply on: the reply that reaches
the sender's mailbox has exactly the expected header fields (no injected Bcc/To), a sender
address that is not one plain address gets no reply, and a MIME bomb is still delivered."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest
from queue_harness import make_world
from rules_fixtures import add_mailbox, drain, folder_messages

from courriel.admin.services import rules as services
from courriel.models import VacationReply
from courriel.rules.hooks import RuleHooks

DAY_ONE = dt.datetime(2026, 12, 21, 9, 0, tzinfo=dt.UTC)
REPLY_FIELDS = ["from", "to", "subject", "date", "message-id", "in-reply-to", "references", "auto-submitted",
                "precedence", "content-type", "content-transfer-encoding", "mime-version"]


@pytest.fixture
def world(data_dir, db_url, monkeypatch):
    with make_world(data_dir, db_url, monkeypatch) as built:
        yield built


def test_hostile_subjects_and_senders(world):
    alice = add_mailbox(world, "alice@example.org")
    bob = add_mailbox(world, "bob@example.org")
    services.set_vacation(world.db, "alice@example.org", start=DAY_ONE.date(), body="Away.")
    hooks = RuleHooks(world.store, hostname="mx.example.org", run_dir=world.config.run_dir, clock=lambda: DAY_ONE)
    hostile = (b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n"
               b"Subject: =?utf-8?q?hi=0D=0ABcc:_victim@evil.example?= =?utf-8?q?=3D=3Futf-8=3Fq=3Fx=3D0D=3D0A"
               b"To:_victim2@evil.example=3F=3D?=\r\n"
               b"Message-ID: <m1@example.org>\r\nReferences: <=?utf-8?q?x=0D=0ABcc:_v@evil?=@x> <r0@example.org>\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
               + b"--b\r\n\r\n" * 300_000 + b"--b--\r\n")
    with world.running(hooks=hooks.delivery_hooks()):
        world.submit("bob@example.org", ["alice@example.org"], hostile)
        # A quoted local part with a comma: a valid envelope sender, but not one plain address to answer.
        world.submit('"x, victim@evil.example"@example.org', ["alice@example.org"],
                     b"From: x@example.org\r\nTo: alice@example.org\r\nSubject: q\r\n\r\nbody\r\n")
        drain(world)
    assert len(folder_messages(world, alice, "INBOX")) == 2  # both delivered, the bomb too
    with world.db.read() as session:  # one reply only: the quoted sender was not answered
        assert [r.sender for r in session.query(VacationReply)] == ["bob@example.org"]
    [(data, _)] = folder_messages(world, bob, "INBOX")
    reply = email.message_from_bytes(data, policy=email.policy.default)
    assert [name.lower() for name in reply] == REPLY_FIELDS
    assert reply["To"] == "bob@example.org" and reply["Auto-Submitted"] == "auto-replied"
    assert "\n" not in reply["Subject"] and "=?" not in reply["Subject"].replace("= ?", "")
    assert str(reply["References"]) == "<r0@example.org> <m1@example.org>"
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        assert not line.lower().startswith((b"bcc:", b"cc:")) and len(line) <= 998
