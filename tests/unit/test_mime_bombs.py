"""MIME bombs: hostile structures are parsed in bounded time and memory, stay whole for BODY[],
and give a BODYSTRUCTURE that is a truncated but valid tree (mime_structure's Security note).

Every generated message is small (a few MB at most) and every check runs in well under a
second on a quiet machine; the time limits below are generous ceilings for a loaded one,
the node counts are the real bounds."""

from __future__ import annotations

import base64
import json
import time

import pytest

from courriel.mime import body_text, bodystructure_wire, envelope_wire, parse_structure, section_bytes, summarize
from courriel.mime_envelope import MAX_ENVELOPE_ADDRESSES
from courriel.mime_headers import MAX_HEADER_FIELDS
from courriel.mime_search import DECODE_CHUNK, MAX_DECODED_INPUT, _decoded_prefix, base_subject, decoded
from courriel.mime_structure import MAX_DEPTH, MAX_PARTS, iter_nodes
from courriel.rules import calendar, filters, vacation

CEILING = 10.0  # seconds; the unbounded parsers took 16 to 46 s on these inputs


def flat(parts: int) -> bytes:
    """One multipart with `parts` empty body parts (8 octets each)."""
    return (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            + b"--b\r\n\r\n" * parts + b"--b--\r\n")


def nested(levels: int) -> bytes:
    """`levels` multiparts, each the first part of the one before (distinct boundaries)."""
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(levels))
    tail = b"".join(b"\r\n--b%d--" % i for i in reversed(range(levels)))
    return b"MIME-Version: 1.0\r\n" + head + b"Content-Type: text/plain\r\n\r\ndeep text" + tail + b"\r\n"


def nested_messages(levels: int) -> bytes:
    return (b"MIME-Version: 1.0\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * levels
            + b"Subject: innermost\r\n\r\ninnermost text\r\n")


def wide_at_every_level(levels: int, width: int) -> bytes:
    """Each level: a multipart whose first part is the next level and which has `width` more
    empty parts. Counting parts only when parsed let this reach levels x width nodes."""
    inner = b"Content-Type: text/plain\r\n\r\nx"
    for i in reversed(range(levels)):
        inner = (b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) + inner
                 + b"\r\n--b%d\r\n" % i * width + b"\r\n--b%d--" % i)
    return b"MIME-Version: 1.0\r\n" + inner + b"\r\n"


def header_bomb(fields: int) -> bytes:
    return b"From: a@example.net\r\n" + b"X-H: v\r\n" * fields + b"\r\nbody\r\n"


def depth_of(node: dict) -> int:
    deepest, stack = 0, [(node, 0)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if "parts" in current:
            stack.extend((part, level + 1) for part in current["parts"])
        elif "message" in current:
            stack.append((current["message"]["body"], level + 1))
    return deepest


def timed(function, *args):
    start = time.monotonic()
    result = function(*args)
    return result, time.monotonic() - start


def balanced(wire: bytes) -> bool:
    """The BODYSTRUCTURE's parentheses balance outside quoted strings (a well-formed list)."""
    level, quoted, escaped = 0, False, False
    for byte in wire:
        if quoted:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                quoted = False
        elif byte == 0x22:
            quoted = True
        elif byte == 0x28:
            level += 1
        elif byte == 0x29:
            level -= 1
            if level < 0:
                return False
    return level == 0 and not quoted


BOMBS = {
    "a million empty parts": lambda: flat(1_000_000),
    "10,000 nested multiparts": lambda: nested(10_000),
    "10,000 nested message/rfc822": lambda: nested_messages(10_000),
    "64 levels of 10,000 parts": lambda: wide_at_every_level(64, 10_000),
    "a million header fields": lambda: header_bomb(1_000_000),
}


@pytest.fixture(scope="module", params=sorted(BOMBS))
def bomb(request) -> bytes:
    return BOMBS[request.param]()


def test_summary_is_bounded_and_valid(bomb):
    summary, seconds = timed(summarize, bomb)
    assert seconds < CEILING
    tree = json.loads(summary.bodystructure)
    nodes = sum(1 for _ in iter_nodes(tree))
    # Each counted node may add one stand-in empty part (a multipart or message cut short).
    assert nodes <= 2 * MAX_PARTS
    assert depth_of(tree) <= MAX_DEPTH + 1
    assert len(summary.bodystructure) < 8_000_000
    wire = bodystructure_wire(summary.bodystructure)
    assert wire.startswith(b"(") and balanced(wire)
    assert balanced(bodystructure_wire(summary.bodystructure, extensible=False))
    # BODY[] and BODY[TEXT] are never truncated: the whole message is still fetchable.
    assert section_bytes(bomb, tree, "") == bomb
    assert bomb.endswith(section_bytes(bomb, tree, "TEXT"))


def test_the_wide_tree_counts_parts_before_parsing_them():
    data = wide_at_every_level(64, 10_000)
    tree = parse_structure(data)
    nodes = list(iter_nodes(tree))
    assert len(nodes) <= MAX_PARTS + 1  # was 640,000 nodes, 1.7 GB and 46 s (+1: one stand-in part)
    assert len(tree["parts"]) == MAX_PARTS - 1
    assert tree["parts"][0]["parts"][0]["size"] == 0  # the second level is cut short: a stand-in part


def test_a_million_parts_keep_the_first_ones():
    data = flat(1_000_000)
    tree = parse_structure(data)
    assert len(tree["parts"]) == MAX_PARTS - 1  # the message itself is the first node
    assert all(part["size"] == 0 for part in tree["parts"])
    # The parts past the limit are still in the multipart's own text.
    assert section_bytes(data, tree, "TEXT").count(b"--b\r\n") == 1_000_000


def test_nesting_past_the_limit_is_reported_as_a_leaf():
    tree = parse_structure(nested(10_000))
    assert depth_of(tree) == MAX_DEPTH + 1
    node = tree
    for _ in range(MAX_DEPTH):
        node = node["parts"][0]
    assert node["subtype"].lower() == "mixed" and node["parts"][0]["size"] == 0  # the stand-in empty part
    messages = parse_structure(nested_messages(10_000))
    assert depth_of(messages) == MAX_DEPTH + 1


def test_body_text_is_bounded(bomb):
    tree = parse_structure(bomb)
    text, seconds = timed(body_text, bomb, tree)
    assert seconds < CEILING and len(text) <= 10_000_000 + MAX_PARTS * 2


def test_body_text_decodes_only_what_it_keeps():
    payload = base64.encodebytes(b"a" * (8 << 20))  # 8 MiB of text, 10.8 MB encoded
    data = (b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + payload)
    tree = parse_structure(data)
    assert body_text(data, tree, limit=1000) == "a" * 1000
    _start, body_start, end = tree["offsets"]
    prefix = _decoded_prefix(data, body_start, end, tree, 4000)
    assert 4000 <= len(prefix) <= DECODE_CHUNK  # one chunk decoded, not 8 MiB
    assert len(body_text(data, tree)) == 8 << 20  # under the default limit: everything


@pytest.mark.parametrize("reader", [filters.facts_of, calendar.invitations_of, vacation.headers_of],
                         ids=["filters", "calendar", "vacation"])
def test_delivery_rules_read_bombs_in_bounded_time(bomb, reader):
    """The rules run at every local delivery: they read the bounded tree, not the stdlib parser
    (which took 16-35 s and 350 MB per message on these)."""
    _result, seconds = timed(reader, bomb)
    assert seconds < CEILING


def test_rules_still_read_a_normal_message_inside_a_bomb():
    calendar_part = (b"--b\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
                     b"METHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:u1\r\nSUMMARY:Plan\r\nDTSTART:20261201T100000Z\r\n"
                     b"ORGANIZER:mailto:bob@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    data = (b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: plan\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + calendar_part
            + b"--b\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\n%PDF\r\n" + b"--b\r\n\r\n" * 200_000
            + b"--b--\r\n")
    facts = filters.facts_of(data)
    assert facts.sender == "bob@example.net" and facts.has_calendar and facts.has_attachment
    [invitation] = calendar.invitations_of(data)
    assert invitation.uid == "u1" and invitation.organizer == "bob@example.net"


def test_header_bomb_reads_the_first_fields_only():
    headers = vacation.headers_of(header_bomb(1_000_000))
    assert len(headers) == MAX_HEADER_FIELDS and headers["From"] == "a@example.net"
    facts = filters.facts_of(header_bomb(1_000_000) + b"")
    assert facts.sender == "a@example.net" and len(facts.headers["x-h"]) == MAX_HEADER_FIELDS - 1


@pytest.mark.parametrize("subject", [
    "=?utf-8?q?a?= " * 100_000,  # the stdlib decoder is quadratic in encoded words (20 s)
    "Re: " * 100_000, "[a]" * 100_000 + "x", "x" + "(fwd)" * 100_000, "[fwd: " * 50_000 + "x" + "]" * 50_000,
])
def test_long_subjects_cost_bounded_time(subject):
    """SORT/THREAD base subjects and the decoded SEARCH columns (the loops took 11-14 s on 50 KB)."""
    _result, seconds = timed(base_subject, subject)
    assert seconds < CEILING / 5
    text, seconds = timed(decoded, subject)
    assert seconds < CEILING / 5 and len(text) <= MAX_DECODED_INPUT
    data = b"Subject: " + subject.encode() + b"\r\nTo: " + b"=?utf-8?q?a?= " * 70_000 + b"\r\n\r\nbody\r\n"
    _result, seconds = timed(filters.facts_of, data)
    assert seconds < CEILING / 2
    assert timed(summarize, data)[1] < CEILING / 2


def calendar_message(body: bytes) -> bytes:
    return (b"From: o@example.net\r\nMIME-Version: 1.0\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\n"
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\n" + body + b"END:VCALENDAR\r\n")


def events(count: int, tzid: bytes = b"") -> bytes:
    start = b"DTSTART;TZID=" + tzid + b":20261201T100000" if tzid else b"DTSTART:20261201T100000Z"
    return b"".join(b"BEGIN:VEVENT\r\nUID:u%d\r\nSUMMARY:s\r\n%s\r\nORGANIZER:mailto:o@example.net\r\nEND:VEVENT\r\n"
                    % (i, start) for i in range(count))


def zones(count: int) -> bytes:
    return b"".join(b"BEGIN:VTIMEZONE\r\nTZID:z%d\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
                    b"TZOFFSETFROM:+0000\r\nTZOFFSETTO:+0000\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n" % i
                    for i in range(count))


@pytest.mark.parametrize(("body", "expected"), [
    (events(20_000), 0),  # 2 MB: over MAX_ICS_BYTES (was 11 s and 20,000 stored events)
    (events(calendar.MAX_COMPONENTS + 1), 0),  # under 1 MiB but too many components: not parsed
    (b"BEGIN:X\r\n" * 50_000 + b"END:X\r\n" * 50_000, 0),  # nesting (was 5 s)
    (events(calendar.MAX_COMPONENTS - 10), calendar.MAX_EVENTS),  # parsed, at most MAX_EVENTS kept
    (zones(300) + events(390, b"z7"), calendar.MAX_EVENTS),  # zones looked up by TZID (was quadratic: 57 s)
])
def test_calendar_bombs(body, expected):
    found, seconds = timed(calendar.invitations_of, calendar_message(body))
    assert seconds < CEILING / 2 and len(found) == expected
    if found:
        assert all(i.ics.count("BEGIN:VTIMEZONE") <= 1 for i in found)


def test_calendar_parts_are_bounded():
    part = (b"--b\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\n"
            + events(1) + b"END:VCALENDAR\r\n")
    data = (b"From: o@example.net\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            + part * 1000 + b"--b--\r\n")
    _found, seconds = timed(calendar.invitations_of, data)
    assert seconds < CEILING / 2
    assert len(calendar._calendar_parts(data)) == calendar.MAX_PARTS


@pytest.mark.parametrize("to", [b"a@b.example, " * 100_000, b"g:a@b.example;, " * 60_000,
                                b"g: " + b"a@b.example, " * 80_000])
def test_envelope_address_lists_are_bounded(to):
    data = b"From: x@example.net\r\nTo: " + to + b"\r\nSubject: many\r\n\r\nbody\r\n"
    summary, seconds = timed(summarize, data)
    assert seconds < CEILING / 2
    envelope = json.loads(summary.envelope)
    addresses = envelope[5]
    assert len(addresses) <= MAX_ENVELOPE_ADDRESSES + 1  # +1: the end marker of a group left open
    starts = sum(1 for a in addresses if a[3] is None and a[2] is not None)
    ends = sum(1 for a in addresses if a == [None, None, None, None])
    assert starts == ends  # RFC 3501 §7.4.2: every group marker pair is complete
    assert len(summary.envelope) < 200_000 and balanced(envelope_wire(summary.envelope))
