"""iCalendar invitations, pure (ring 0): read REQUEST/CANCEL/REPLY parts of a message, build
RSVP replies and the .ics feed.

`invitations_of(data)` finds text/calendar (and application/ics) parts, parses them with the
icalendar package and returns one `Invitation` per VEVENT (a recurring series and its
RECURRENCE-ID overrides are separate events). Broken calendars give no invitation: they never
block a delivery. Each invitation keeps its own VCALENDAR text: the sender's VTIMEZONEs plus
the VEVENT (LIBRARIES.md: copy the organizer's VTIMEZONE rather than generating one).

`compose_rsvp` builds the iTIP REPLY (RFC 5546 §3.2.3) for one attendee with PARTSTAT
ACCEPTED, TENTATIVE or DECLINED, wrapped in an iMIP message (RFC 6047 §2.4: text/calendar with
the method parameter). `feed` joins stored events into one VCALENDAR for calendar clients.

Standards: RFC 5545 (§3.6.1 VEVENT, §3.6.5 VTIMEZONE, §3.8.4.7 UID, §3.8.7.4 SEQUENCE,
§3.8.4.4 RECURRENCE-ID, §3.2.12 PARTSTAT), RFC 5546 (§1.4 methods, §3.2.2 REQUEST, §3.2.3
REPLY, §3.2.5 CANCEL), RFC 6047 (§2.4 Content-Type method parameter, §3 security).
Security: calendar data is untrusted: parse errors are swallowed (no invitation), text
values are reduced to single lines, sizes are bounded (MAX_PARTS, MAX_ICS_BYTES,
MAX_COMPONENTS counted before parsing, MAX_EVENTS, time zones looked up by TZID); the
message is read through the bounded part tree of mime_structure (the stdlib parser took 20 s
and 350 MB on a 7 MB message of a million parts). The RSVP takes the organizer address from
the event, which the sender wrote: it must be one plain address (`mime_compose.plain_address`)
or no reply is built, and every header value goes through `mime_compose` (single line, no
encoded-word look-alikes that the email package would decode into CR LF).
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING

from courriel.mime_compose import display_name as safe_display_name
from courriel.mime_compose import header_text, plain_address
from courriel.mime_sections import UnknownTransferEncoding, decode_binary
from courriel.mime_structure import iter_nodes, parse_structure

if TYPE_CHECKING:
    from icalendar import Calendar

METHODS = ("REQUEST", "CANCEL", "REPLY")
PARTSTATS = {"yes": "ACCEPTED", "maybe": "TENTATIVE", "no": "DECLINED"}
REPLY_WORDS = {"ACCEPTED": "Accepted", "TENTATIVE": "Tentative", "DECLINED": "Declined"}
PRODID = "-//Courriel//Courriel Calendar//EN"
# Bounds on what one message can make us parse and store (see Security): icalendar took 11 s
# on 2 MB of 20,000 VEVENTs, 5 s on 100,000 nested components, 57 s on 8,000 VTIMEZONEs.
MAX_PARTS = 5  # calendar parts read (an iMIP message has one or two)
MAX_ICS_BYTES = 1024 * 1024  # decoded size of one calendar part
MAX_COMPONENTS = 1000  # BEGIN: lines in one part, counted before it is parsed
MAX_EVENTS = 200  # invitations from one message (a series and its overrides)
HAS_CALENDAR_KEYWORD = "$HasCalendar"


def _icalendar():
    """The icalendar package, imported on first use: a role that never sees calendar data does
    not keep its ~4 MiB (README "Memory")."""
    import icalendar

    return icalendar


class CalendarError(ValueError):
    """An RSVP that cannot be built (no such attendee answer, broken stored event)."""


@dataclass(frozen=True)
class Invitation:
    method: str  # REQUEST | CANCEL | REPLY
    uid: str
    recurrence_id: str  # "" for the master event; else the RECURRENCE-ID as UTC/floating text
    sequence: int
    status: str  # CONFIRMED | TENTATIVE | CANCELLED
    summary: str
    organizer: str  # address, lower case ("" when absent)
    attendees: tuple[tuple[str, str], ...]  # (address, PARTSTAT)
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    ics: str  # VCALENDAR with the sender's VTIMEZONEs and this VEVENT (no METHOD)


def _line(value) -> str:
    return " ".join(str(value or "").split())[:1000]


def mailto(value) -> str:
    """The address of a CAL-ADDRESS value (`mailto:a@b` → `a@b`), lower case."""
    text = str(value or "").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.strip().lower()


def _utc(value) -> dt.datetime | None:
    """A DTSTART/DTEND value as an aware UTC datetime (dates at midnight UTC; floating as UTC)."""
    if value is None:
        return None
    value = getattr(value, "dt", value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return None


def recurrence_key(value) -> str:
    """RECURRENCE-ID as comparable text: UTC `YYYYMMDDTHHMMSSZ`, or a date `YYYYMMDD`."""
    if value is None:
        return ""
    value = getattr(value, "dt", value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.strftime("%Y%m%dT%H%M%SZ")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    return _line(value)[:64]


def _calendar_parts(data: bytes) -> list[tuple[bytes, str]]:
    """(payload, Content-Type method parameter) of each calendar part, read from the bounded
    part tree (mime_structure), never with the stdlib parser (see Security)."""
    found = []
    for count, node in enumerate(iter_nodes(parse_structure(data))):
        if count > 500 or len(found) >= MAX_PARTS:
            break
        if f"{node['type']}/{node['subtype']}".lower() not in ("text/calendar", "application/ics"):
            continue
        if "parts" in node or "message" in node:
            continue
        _start, body_start, end = node["offsets"]
        if end - body_start > 3 * MAX_ICS_BYTES:  # no transfer encoding shrinks more than 3 to 1
            continue
        try:
            payload = decode_binary(data[body_start:end], node)
        except UnknownTransferEncoding:
            payload = data[body_start:end]
        if len(payload) <= MAX_ICS_BYTES and payload.upper().count(b"BEGIN:") <= MAX_COMPONENTS:
            method = next((value for name, value in node["params"] if name.lower() == "method"), "")
            found.append((payload, method))
    return found


def _timezones(calendar: Calendar) -> dict[str, object]:
    """The calendar's VTIMEZONEs by TZID (the first of a repeated TZID)."""
    zones: dict[str, object] = {}
    for zone in calendar.walk("VTIMEZONE"):
        zones.setdefault(str(zone.get("TZID")), zone)
    return zones


def _event_calendar(timezones: dict[str, object], event, method: str | None = None) -> Calendar:
    calendar = _icalendar().Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    if method:
        calendar.add("method", method)
    for tzid in sorted(_used_tzids(event)):  # looked up, never a scan of every zone per event
        if tzid in timezones:
            calendar.add_component(timezones[tzid])
    calendar.add_component(event)
    return calendar


def _used_tzids(event) -> set[str]:
    used = set()
    for name in ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE", "DUE"):
        values = event.get(name)
        for value in values if isinstance(values, list) else [values]:
            tzid = getattr(value, "params", {}).get("TZID") if value is not None else None
            if tzid:
                used.add(str(tzid))
    return used


def _ics_text(calendar: Calendar) -> str:
    return calendar.to_ical().decode("utf-8")


def invitations_of(data: bytes) -> list[Invitation]:
    """Every VEVENT of REQUEST, CANCEL or REPLY calendar parts; [] when there are none or they
    cannot be read (never raises)."""
    try:
        parts = _calendar_parts(data)
    except Exception:
        return []
    out: list[Invitation] = []
    seen: set[tuple[str, str, str, int]] = set()  # iMIP often repeats the calendar as an .ics attachment
    for payload, method_param in parts:
        if len(out) >= MAX_EVENTS:
            break
        try:
            calendar = _icalendar().Calendar.from_ical(payload)
            method = _line(calendar.get("METHOD") or method_param).upper()
            if method not in METHODS:
                continue
            zones = _timezones(calendar)
            for event in calendar.walk("VEVENT"):
                if len(out) >= MAX_EVENTS:
                    break
                uid = _line(event.get("UID"))[:500]
                sequence = int(str(event.get("SEQUENCE") or 0).strip() or 0)
                key = (method, uid, recurrence_key(event.get("RECURRENCE-ID")), sequence)
                if not uid or key in seen:
                    continue
                seen.add(key)
                attendees = event.get("ATTENDEE") or []
                if not isinstance(attendees, list):
                    attendees = [attendees]
                status = _line(event.get("STATUS")).upper() or ("CANCELLED" if method == "CANCEL" else "CONFIRMED")
                out.append(Invitation(
                    method=method, uid=uid, recurrence_id=recurrence_key(event.get("RECURRENCE-ID")),
                    sequence=sequence, status=status[:16],
                    summary=_line(event.get("SUMMARY")), organizer=mailto(event.get("ORGANIZER"))[:320],
                    attendees=tuple((mailto(a)[:320], str(getattr(a, "params", {}).get("PARTSTAT", "NEEDS-ACTION"))
                                     .upper()) for a in attendees),
                    starts_at=_utc(event.get("DTSTART")), ends_at=_utc(event.get("DTEND")),
                    ics=_ics_text(_event_calendar(zones, event))))
        except Exception:  # noqa: S112 - RFC 6047 §3: broken or hostile calendar data is ignored
            continue
    return out


def partstat_of(answer: str) -> str:
    """yes/maybe/no (or the PARTSTAT itself) → ACCEPTED/TENTATIVE/DECLINED."""
    key = (answer or "").strip().lower()
    if key in PARTSTATS:
        return PARTSTATS[key]
    if key.upper() in REPLY_WORDS:
        return key.upper()
    raise CalendarError(f"unknown answer {answer!r}: use yes, maybe or no")


def compose_rsvp(ics: str, *, attendee: str, attendee_name: str, answer: str, now: dt.datetime,
                 hostname: str) -> tuple[str, bytes]:
    """The iMIP REPLY for a stored event: (organizer address, message bytes).

    RFC 5546 §3.2.3: the REPLY carries UID, SEQUENCE, RECURRENCE-ID, DTSTAMP, ORGANIZER and the
    replying ATTENDEE only, with its PARTSTAT."""
    partstat = partstat_of(answer)
    try:
        stored = _icalendar().Calendar.from_ical(ics)
        original = next(iter(stored.walk("VEVENT")))
    except Exception as exc:
        raise CalendarError("the stored event cannot be read") from exc
    try:
        # RFC 6047 §3: the organizer address was written by the sender; it becomes the envelope
        # recipient and the To field, so it must be exactly one plain address.
        organizer = plain_address(mailto(original.get("ORGANIZER")))
    except ValueError:
        raise CalendarError("the event has no organizer address that can be answered") from None
    event = _icalendar().Event()
    # The original property objects keep their parameters (TZID, CN, VALUE=DATE).
    for name in ("UID", "RECURRENCE-ID", "DTSTART", "DTEND", "DURATION", "SUMMARY", "ORGANIZER"):
        if original.get(name) is not None:
            event[name] = original[name]
    event.add("SEQUENCE", int(str(original.get("SEQUENCE") or 0).strip() or 0))
    event.add("DTSTAMP", now.astimezone(dt.UTC))
    address = _icalendar().vCalAddress(f"mailto:{attendee}")
    address.params["PARTSTAT"] = partstat
    name = safe_display_name(attendee_name).replace('"', "'")  # RFC 5545 §3.1: no DQUOTE in a param-value
    if name:
        address.params["CN"] = name
    event.add("ATTENDEE", address)
    reply_calendar = _event_calendar(_timezones(stored), event, method="REPLY")
    summary = _line(original.get("SUMMARY"))
    word = REPLY_WORDS[partstat]
    # RFC 2047 words in headers; raw UTF-8 (RFC 6532) only when an address needs it.
    ascii_only = organizer.isascii() and attendee.isascii()
    message = EmailMessage(policy=email.policy.SMTP if ascii_only else email.policy.SMTPUTF8)
    message["From"] = Address(name, *attendee.rpartition("@")[::2]) if name else attendee
    message["To"] = organizer
    # The SUMMARY is the sender's text: one safe line, no encoded word (see mime_compose).
    message["Subject"] = header_text(f"{word}: {summary}" if summary else word)
    message["Date"] = email.utils.format_datetime(now.astimezone(dt.UTC))
    # RFC 5322 §3.6.4: unique from the given time and 64 random bits (no hidden clock here).
    message["Message-ID"] = f"<{now.astimezone(dt.UTC):%Y%m%d%H%M%S}.rsvp.{secrets.token_hex(8)}@{hostname}>"
    message.set_content(f"{attendee} has {word.lower()} the invitation: {summary}\n", charset="utf-8")
    # RFC 6047 §2.4: the method parameter matches the calendar's METHOD.
    message.add_alternative(_ics_text(reply_calendar), subtype="calendar", charset="utf-8",
                            params={"method": "REPLY"})
    return organizer, message.as_bytes()


def feed(events: Iterable[str], name: str = "") -> bytes:
    """One VCALENDAR with every stored event (and each VTIMEZONE once) for calendar clients."""
    calendar = _icalendar().Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    if name:
        calendar.add("X-WR-CALNAME", name)
    zones: dict[str, object] = {}
    vevents = []
    for ics in events:
        try:
            stored = _icalendar().Calendar.from_ical(ics)
        except Exception:  # noqa: S112 - a stored event that no longer parses is left out of the feed
            continue
        for zone in stored.walk("VTIMEZONE"):
            zones.setdefault(str(zone.get("TZID")), zone)
        vevents.extend(stored.walk("VEVENT"))
    for zone in zones.values():
        calendar.add_component(zone)
    for event in vevents:
        calendar.add_component(event)
    return calendar.to_ical()


def with_partstats(ics: str, answers: dict[str, str]) -> str:
    """A stored event's text with the attendees' PARTSTATs set from a REPLY (address → PARTSTAT)."""
    try:
        calendar = _icalendar().Calendar.from_ical(ics)
    except Exception:
        return ics
    for event in calendar.walk("VEVENT"):
        attendees = event.get("ATTENDEE") or []
        for attendee in attendees if isinstance(attendees, list) else [attendees]:
            answer = answers.get(mailto(attendee))
            if answer and answer in ("ACCEPTED", "TENTATIVE", "DECLINED", "NEEDS-ACTION", "DELEGATED"):
                attendee.params["PARTSTAT"] = answer
    return _ics_text(calendar)


def attendees_of(ics: str) -> list[str]:
    """The attendee addresses of a stored event (lower case), [] when it cannot be read."""
    try:
        event = next(iter(_icalendar().Calendar.from_ical(ics).walk("VEVENT")))
    except Exception:
        return []
    attendees = event.get("ATTENDEE") or []
    return [mailto(a) for a in (attendees if isinstance(attendees, list) else [attendees])]
