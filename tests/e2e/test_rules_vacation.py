"""Auto-reply end to end through the real queue runner, with a controllable clock: every case
where no reply may be sent (RFC 3834 §2), once a day per sender, contacts only (explicit and
learnt contacts), and two Courriel mailboxes with auto-reply on never answer each other."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest
from queue_harness import make_world
from rules_fixtures import add_mailbox, drain, folder_messages, message

from courriel.admin.services import rules as services
from courriel.models import GroupMember, MailGroup, VacationReply
from courriel.queue.spool import EnvelopeRecipient
from courriel.rules.hooks import RuleHooks

DAY_ONE = dt.datetime(2026, 12, 21, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def world(data_dir, db_url, monkeypatch):
    """A queue world on each backend (SQLite and PostgreSQL)."""
    with make_world(data_dir, db_url, monkeypatch) as built:
        yield built


def running(world, clock: Clock):
    hooks = RuleHooks(world.store, hostname="mx.example.org", run_dir=world.config.run_dir, clock=clock)
    return world.running(hooks=hooks.delivery_hooks())


def replies(world, mailbox_id: int) -> list[email.message.EmailMessage]:
    parsed = [email.message_from_bytes(data, policy=email.policy.default)
              for data, _ in folder_messages(world, mailbox_id, "INBOX")]
    return [m for m in parsed if m["Auto-Submitted"] == "auto-replied"]


def test_never_sent_cases_then_once_a_day(world):
    alice = add_mailbox(world, "alice@example.org")
    bob = add_mailbox(world, "bob@example.org")
    carol = add_mailbox(world, "carol@example.org")
    with world.db.write() as session:
        group = MailGroup(domain_id=world.domain_id("example.org"), address="team@example.org")
        session.add(group)
        session.flush()
        session.add(GroupMember(group_id=group.id, mailbox_id=alice))
    services.set_vacation(world.db, "alice@example.org", start=DAY_ONE.date(), end=DAY_ONE.date() + dt.timedelta(3),
                          body="I am away until Christmas.")
    services.set_signature(world.db, "alice@example.org", text="Alice\nExample Org")
    clock = Clock(DAY_ONE)
    never = [
        ("", "From: bob@example.org", ""),  # null envelope sender
        ("alice@example.org", "From: alice@example.org", ""),  # the mailbox itself
        ("team@example.org", "From: team@example.org", ""),  # a group it belongs to
        ("bob@example.org", "From: bob@example.org", "Auto-Submitted: auto-generated\r\n"),
        ("bob@example.org", "From: bob@example.org", "Precedence: bulk\r\n"),
        ("bob@example.org", "From: bob@example.org", "Precedence: list\r\n"),
        ("bob@example.org", "From: bob@example.org", "Precedence: junk\r\n"),
        ("bob@example.org", "From: bob@example.org", "List-Id: <dev.example.org>\r\n"),
        ("bob@example.org", "From: bob@example.org", "List-Unsubscribe: <mailto:off@example.org>\r\n"),
    ]
    for index, (sender, _, headers) in enumerate(never):
        world.submit(sender, ["alice@example.org"], message(sender or "bob@example.org", "alice@example.org",
                                                            f"case {index}", headers=headers))
    # Mail filed as spam at RCPT time (DMARC quarantine) is never answered.
    world.submit("bob@example.org", [EnvelopeRecipient(address="alice@example.org", folder="Spam")],
                 message("bob@example.org", "alice@example.org", "cheap pills"))
    with running(world, clock):
        drain(world)
        assert replies(world, bob) == [] and replies(world, alice) == []
        with world.db.read() as session:
            assert session.query(VacationReply).count() == 0

        world.submit("carol@example.org", ["alice@example.org"], message(
            "carol@example.org", "alice@example.org", "Lunch?", message_id="<lunch@example.org>"))
        drain(world)
        [reply] = replies(world, carol)
        assert reply["Subject"] == "Auto: Lunch?" and reply["In-Reply-To"] == "<lunch@example.org>"
        assert reply["To"] == "carol@example.org"
        assert reply.get_content().replace("\r\n", "\n") == "I am away until Christmas.\n-- \nAlice\nExample Org\n"

        world.submit("carol@example.org", ["alice@example.org"], message("carol@example.org", "alice@example.org",
                                                                         "Lunch again?"))
        drain(world)
        assert len(replies(world, carol)) == 1  # once a day per sender

        clock.now = DAY_ONE + dt.timedelta(days=1)
        world.submit("carol@example.org", ["alice@example.org"], message("carol@example.org", "alice@example.org",
                                                                         "Tomorrow?"))
        drain(world)
        assert len(replies(world, carol)) == 2  # a new day: a new reply

        clock.now = DAY_ONE + dt.timedelta(days=5)  # after the end date
        world.submit("carol@example.org", ["alice@example.org"], message("carol@example.org", "alice@example.org",
                                                                         "Back?"))
        drain(world)
        assert len(replies(world, carol)) == 2
    assert len(folder_messages(world, alice, "INBOX")) == len(never) + 4  # every message was delivered
    assert len(folder_messages(world, alice, "Spam")) == 1


def test_contacts_only(world):
    alice = add_mailbox(world, "alice@example.org")
    dave = add_mailbox(world, "dave@example.org")
    erin = add_mailbox(world, "erin@example.org")
    frank = add_mailbox(world, "frank@example.org")
    services.set_vacation(world.db, "alice@example.org", start=DAY_ONE.date(), subject="Away", body="Away.",
                          contacts_only=True)
    services.add_contact(world.db, "alice@example.org", "Erin@Example.org", "Erin")
    assert services.learn_recipients(world.db, alice, ["frank@example.org", "bogus", "alice@example.org"]) == 1
    assert {c.address: c.source for c in services.list_contacts(world.db, "alice@example.org")} == \
        {"erin@example.org": "explicit", "frank@example.org": "learnt"}
    for sender in ("dave@example.org", "erin@example.org", "frank@example.org"):
        world.submit(sender, ["alice@example.org"], message(sender, "alice@example.org", "Hello"))
    with running(world, Clock(DAY_ONE)):
        drain(world)
    assert replies(world, dave) == []
    assert [r["Subject"] for r in replies(world, erin)] == ["Away"]
    assert len(replies(world, frank)) == 1


def test_two_mailboxes_on_vacation_never_loop(world):
    alice = add_mailbox(world, "alice@example.org")
    bob = add_mailbox(world, "bob@example.org")
    for address in ("alice@example.org", "bob@example.org"):
        services.set_vacation(world.db, address, start=DAY_ONE.date(), body=f"{address} is away.")
    world.submit("alice@example.org", ["bob@example.org"], message("alice@example.org", "bob@example.org", "Ping"))
    with running(world, Clock(DAY_ONE)):
        drain(world)
        # Give a looping pair the chance to show itself: more messages would keep the queue busy.
        world.submit("bob@example.org", ["alice@example.org"], message("bob@example.org", "alice@example.org",
                                                                       "Pong"))
        drain(world)
    alice_inbox = folder_messages(world, alice, "INBOX")
    bob_inbox = folder_messages(world, bob, "INBOX")
    # bob: alice's Ping and alice's answer to Pong; alice: bob's answer to Ping and bob's Pong.
    assert len(alice_inbox) == 2 and len(bob_inbox) == 2
    assert len(replies(world, alice)) == 1 and len(replies(world, bob)) == 1
    with world.db.read() as session:
        assert session.query(VacationReply).count() == 2
