"""Calendar invitations end to end through the real queue runner: Outlook-style and
Google-style REQUESTs (VTIMEZONE, RRULE) are stored with `$HasCalendar` on the message, an
update (SEQUENCE 1) replaces the event, a CANCEL cancels it, a broken calendar never blocks
delivery; an RSVP reaches the organizer's local mailbox with the right PARTSTAT (and a change
of mind sends a new one); the .ics feed behind its secret token parses and has the event."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest
from icalendar import Calendar
from queue_harness import make_world
from rules_fixtures import add_mailbox, drain, folder_messages

from courriel.admin.services import calendar as calendar_services
from courriel.admin.services import rules as services
from courriel.admin.services.errors import Conflict, InvalidInput, NotFound

CORPUS = Path(__file__).parent.parent / "corpus" / "calendar"


@pytest.fixture
def world(data_dir, db_url, monkeypatch):
    """A queue world on each backend (SQLite and PostgreSQL)."""
    with make_world(data_dir, db_url, monkeypatch) as built:
        yield built


def deliver(world, name: str, sender: str, recipient: str = "alice@example.org") -> None:
    world.submit(sender, [recipient], (CORPUS / name).read_bytes())


def reply_partstats(world, mailbox_id: int) -> list[str]:
    """PARTSTATs of the iTIP REPLYs in a mailbox's INBOX, in arrival order."""
    found = []
    for data, _ in folder_messages(world, mailbox_id, "INBOX"):
        message = email.message_from_bytes(data, policy=email.policy.default)
        for part in message.walk():
            if part.get_content_type() == "text/calendar" and part.get_param("method") == "REPLY":
                calendar = Calendar.from_ical(part.get_content())
                assert str(calendar["METHOD"]) == "REPLY"
                [event] = calendar.walk("VEVENT")
                found.append(str(event["ATTENDEE"].params["PARTSTAT"]))
    return found


def test_outlook_invitation_rsvp_and_feed(world):
    alice = add_mailbox(world, "alice@example.org")
    olivia = add_mailbox(world, "olivia@example.org")
    deliver(world, "outlook_request.eml", "olivia@example.org")
    with world.running():
        drain(world)
        [(_, flags)] = folder_messages(world, alice, "INBOX")
        assert "$HasCalendar" in flags
        [event] = calendar_services.list_events(world.db, "alice@example.org")
        assert (event.summary, event.organizer, event.status, event.sequence) == \
            ("Weekly sync", "olivia@example.org", "CONFIRMED", 0)
        assert event.starts_at == "2026-12-01T09:00:00+00:00"

        answered = calendar_services.rsvp(world.db, world.blobs, "alice@example.org", event.id, "yes",
                                 hostname="mx.example.org", run_dir=world.config.run_dir)
        assert answered.answer == "ACCEPTED"
        drain(world)
        assert reply_partstats(world, olivia) == ["ACCEPTED"]

        calendar_services.rsvp(world.db, world.blobs, "alice@example.org", event.id, "no", hostname="mx.example.org",
                      run_dir=world.config.run_dir)  # a change of mind sends a new reply
        drain(world)
        assert reply_partstats(world, olivia) == ["ACCEPTED", "DECLINED"]
        calendar_services.rsvp(world.db, world.blobs, "alice@example.org", event.id, "maybe", hostname="mx.example.org",
                      run_dir=world.config.run_dir)
        drain(world)
        assert reply_partstats(world, olivia) == ["ACCEPTED", "DECLINED", "TENTATIVE"]
    assert calendar_services.list_events(world.db, "alice@example.org")[0].answer == "TENTATIVE"

    with pytest.raises(InvalidInput):
        calendar_services.rsvp(world.db, world.blobs, "alice@example.org", event.id, "perhaps", hostname="h")
    with pytest.raises(NotFound):
        calendar_services.rsvp(world.db, world.blobs, "alice@example.org", event.id + 100, "yes", hostname="h")

    token = calendar_services.issue_feed_token(world.db, "alice@example.org")
    with pytest.raises(Conflict):
        calendar_services.issue_feed_token(world.db, "alice@example.org")
    feed = calendar_services.calendar_feed(world.db, token)
    parsed = Calendar.from_ical(feed)
    assert [str(e["SUMMARY"]) for e in parsed.walk("VEVENT")] == ["Weekly sync"]
    assert [str(z["TZID"]) for z in parsed.walk("VTIMEZONE")] == ["W. Europe Standard Time"]
    assert calendar_services.calendar_feed(world.db, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    rotated = calendar_services.issue_feed_token(world.db, "alice@example.org", rotate=True)
    assert calendar_services.calendar_feed(world.db, token) is None
    assert calendar_services.calendar_feed(world.db, rotated)


def test_google_request_update_and_cancellation(world):
    alice = add_mailbox(world, "alice@example.org")
    add_mailbox(world, "gabriel@example.org")
    with world.running():
        deliver(world, "google_request.eml", "gabriel@example.org")
        drain(world)
        [event] = calendar_services.list_events(world.db, "alice@example.org")
        assert (event.summary, event.sequence, event.starts_at) == ("Monthly planning", 0, "2026-12-03T13:00:00+00:00")

        deliver(world, "google_update.eml", "gabriel@example.org")
        drain(world)
        [event] = calendar_services.list_events(world.db, "alice@example.org")
        assert (event.sequence, event.starts_at, event.status) == (1, "2026-12-03T15:00:00+00:00", "CONFIRMED")

        deliver(world, "google_request.eml", "gabriel@example.org")  # a late, older copy changes nothing
        drain(world)
        assert calendar_services.list_events(world.db, "alice@example.org")[0].sequence == 1

        # RFC 6047 §3: a cancellation that does not come from the organizer is refused.
        forged = (CORPUS / "google_cancel.eml").read_bytes().replace(
            b"From: Gabriel Organizer <gabriel@example.org>", b"From: mallory@example.net")
        world.submit("mallory@example.net", ["alice@example.org"], forged)
        drain(world)
        assert calendar_services.list_events(world.db, "alice@example.org")[0].status == "CONFIRMED"

        deliver(world, "google_cancel.eml", "gabriel@example.org")
        drain(world)
        [event] = calendar_services.list_events(world.db, "alice@example.org")
        assert (event.sequence, event.status) == (2, "CANCELLED")
    assert all("$HasCalendar" in flags for _, flags in folder_messages(world, alice, "INBOX"))
    assert len(folder_messages(world, alice, "INBOX")) == 5
    with pytest.raises(Conflict):
        calendar_services.rsvp(world.db, world.blobs, "alice@example.org", event.id, "yes", hostname="h")


def test_broken_invitation_is_delivered_without_an_event(world):
    alice = add_mailbox(world, "alice@example.org")
    deliver(world, "broken.eml", "mallory@example.net")
    with world.running():
        drain(world)
    [(_, flags)] = folder_messages(world, alice, "INBOX")
    assert "$HasCalendar" not in flags
    assert calendar_services.list_events(world.db, "alice@example.org") == []


def test_calendar_filter_condition(world):
    alice = add_mailbox(world, "alice@example.org")
    services.add_filter(world.db, "alice@example.org", conditions=["has-calendar"], actions=["move Invitations"])
    deliver(world, "outlook_request.eml", "olivia@example.org")
    with world.running():
        drain(world)
    [(_, flags)] = folder_messages(world, alice, "Invitations")
    assert "$HasCalendar" in flags
    assert len(calendar_services.list_events(world.db, "alice@example.org")) == 1
    assert dt.datetime.fromisoformat(calendar_services.list_events(world.db, "alice@example.org")[0].starts_at).tzinfo
