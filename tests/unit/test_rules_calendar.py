"""iCalendar parsing and composition (pure): the corpus invitations (Outlook and Google
shapes with VTIMEZONE and RRULE, an update and a cancellation, a broken one), the RSVP REPLY
(RFC 5546 §3.2.3) and the feed."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest
from icalendar import Calendar

from courriel.rules import calendar

CORPUS = Path(__file__).parent.parent / "corpus" / "calendar"
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_outlook_request():
    [invite] = calendar.invitations_of(load("outlook_request.eml"))
    assert invite.method == "REQUEST" and invite.sequence == 0 and invite.status == "CONFIRMED"
    assert invite.uid.startswith("040000008200E000")
    assert invite.organizer == "olivia@example.org"
    assert ("alice@example.org", "NEEDS-ACTION") in invite.attendees
    assert invite.starts_at == dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)  # 10:00 W. Europe (UTC+1)
    stored = Calendar.from_ical(invite.ics)
    assert [z["TZID"] for z in stored.walk("VTIMEZONE")] == ["W. Europe Standard Time"]
    assert "RRULE:FREQ=WEEKLY" in invite.ics


def test_google_request_update_cancel():
    [request] = calendar.invitations_of(load("google_request.eml"))  # inline part and .ics attachment: once
    [update] = calendar.invitations_of(load("google_update.eml"))
    [cancel] = calendar.invitations_of(load("google_cancel.eml"))
    assert request.uid == update.uid == cancel.uid == "7kukuqrfedlm2f9t0vjts9ekht@google.com"
    assert (request.sequence, update.sequence, cancel.sequence) == (0, 1, 2)
    assert request.starts_at == dt.datetime(2026, 12, 3, 13, 0, tzinfo=dt.UTC)
    assert update.starts_at == dt.datetime(2026, 12, 3, 15, 0, tzinfo=dt.UTC)
    assert cancel.method == "CANCEL" and cancel.status == "CANCELLED"
    assert "Europe/Paris" in request.ics and "RRULE:FREQ=MONTHLY" in request.ics


@pytest.mark.parametrize("data", [load("broken.eml"), b"", b"Content-Type: text/calendar\r\n\r\n\x00\xff",
                                  b"Content-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\n"
                                  b"BEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"])
def test_broken_or_other_calendars_give_nothing(data):
    assert calendar.invitations_of(data) == []


@pytest.mark.parametrize(("answer", "partstat", "word"), [("yes", "ACCEPTED", "Accepted"),
                                                          ("maybe", "TENTATIVE", "Tentative"),
                                                          ("no", "DECLINED", "Declined")])
def test_rsvp_reply(answer, partstat, word):
    [invite] = calendar.invitations_of(load("outlook_request.eml"))
    organizer, data = calendar.compose_rsvp(invite.ics, attendee="alice@example.org", attendee_name="Alice",
                                            answer=answer, now=NOW, hostname="mx.example.org")
    assert organizer == "olivia@example.org"
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["To"] == "olivia@example.org" and message["Subject"] == f"{word}: Weekly sync"
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == "REPLY"
    reply = Calendar.from_ical(part.get_content())
    assert str(reply["METHOD"]) == "REPLY"
    [event] = reply.walk("VEVENT")
    assert str(event["UID"]) == invite.uid and int(event["SEQUENCE"]) == 0
    attendee = event["ATTENDEE"]
    assert not isinstance(attendee, list)  # RFC 5546 §3.2.3: only the replying attendee
    assert str(attendee).lower() == "mailto:alice@example.org" and attendee.params["PARTSTAT"] == partstat
    assert [z["TZID"] for z in reply.walk("VTIMEZONE")] == ["W. Europe Standard Time"]


def test_rsvp_refusals():
    with pytest.raises(calendar.CalendarError):
        calendar.partstat_of("perhaps")
    with pytest.raises(calendar.CalendarError):
        calendar.compose_rsvp("garbage", attendee="a@b.example", attendee_name="", answer="yes", now=NOW,
                              hostname="h")


def test_feed_and_partstats():
    events = [i.ics for name in ("outlook_request.eml", "google_request.eml")
              for i in calendar.invitations_of(load(name))]
    parsed = Calendar.from_ical(calendar.feed(events, name="alice@example.org"))
    assert {str(e["SUMMARY"]) for e in parsed.walk("VEVENT")} == {"Weekly sync", "Monthly planning"}
    assert {str(z["TZID"]) for z in parsed.walk("VTIMEZONE")} == {"W. Europe Standard Time", "Europe/Paris"}
    updated = calendar.with_partstats(events[0], {"bob@example.org": "DECLINED"})
    assert "PARTSTAT=DECLINED" in updated and calendar.attendees_of(updated)[1] == "bob@example.org"
