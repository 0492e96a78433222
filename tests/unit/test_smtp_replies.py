"""Pure SMTP replies and trace fields: enhanced codes, Received, Date/Message-ID, From extraction."""

from __future__ import annotations

import datetime as dt

import pytest

from courriel.smtp import received, replies

NOW = dt.datetime(2026, 11, 26, 12, 30, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(("line", "expected"), [
    ("250 OK", "250 2.0.0 OK"),
    ("500 Error: bad syntax", "500 5.5.2 bad syntax"),
    ('500 Error: command "FOO" not recognized', '500 5.5.2 command "FOO" not recognized'),
    ("503 Error: send HELO first", "503 5.5.1 send HELO first"),
    ("250 2.1.0 Sender OK", "250 2.1.0 Sender OK"),
    ("421 4.7.0 MAIL sent too many times", "421 4.7.0 MAIL sent too many times"),
    ("221 Bye", "221 2.0.0 Bye"),
    ("220 Ready to start TLS", "220 Ready to start TLS"),  # RFC 2034 §3: not the greeting / 220
    ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ("334 VXNlcm5hbWU6", "334 VXNlcm5hbWU6"),
    ("599 odd", "599 5.0.0 odd"),
])
def test_with_enhanced_code(line, expected):
    assert replies.with_enhanced_code(line) == expected


def test_every_fixed_reply_has_a_matching_class():
    for value in vars(replies).values():
        if isinstance(value, replies.Reply):
            assert value.status[0] == str(value.code)[0], value
    assert str(replies.queued("ABC123")) == "250 2.0.0 queued as ABC123"


def test_printable_strips_controls():
    assert replies.printable("a\r\nb\x00c") == "a??b?c"


def test_received_field_shape():
    field = received.received_field(
        helo="client.example", client_ip="192.0.2.7", client_name=None, by_host="mx.example.org",
        protocol="ESMTPS", tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384",
        recipient="alice@example.org", queue_id=None, now=NOW)
    assert field == (
        b"Received: from client.example ([192.0.2.7])\r\n"
        b"\tby mx.example.org (TLSv1.3 cipher TLS_AES_256_GCM_SHA384)\r\n"
        b"\twith ESMTPS\r\n"
        b"\tfor <alice@example.org>;\r\n"
        b"\tThu, 26 Nov 2026 12:30:05 +0000\r\n")


def test_received_field_escapes_hostile_helo_and_ipv6():
    field = received.received_field(
        helo="evil\r\nX-Injected: yes (x)", client_ip="2001:db8::1", client_name=None, by_host="mx.example.org",
        protocol="ESMTP", tls_version=None, tls_cipher=None, recipient=None, queue_id="Q1", now=NOW)
    lines = field.split(b"\r\n")
    assert not any(line.startswith(b"X-Injected") for line in lines)
    assert b"[IPv6:2001:db8::1]" in field and b"with ESMTP id Q1;" in field
    assert all(line.startswith((b"Received:", b"\t")) for line in lines if line)


def test_received_field_survives_bytes_that_were_not_utf8():
    field = received.received_field(
        helo="bad\udcffname", client_ip="192.0.2.7", client_name=None, by_host="mx.example.org", protocol="ESMTP",
        tls_version=None, tls_cipher=None, recipient="jøran@example.org", queue_id=None, now=NOW)
    assert field.startswith(b"Received: from bad?name ([192.0.2.7])") and "jøran".encode() in field


@pytest.mark.parametrize(("extended", "tls", "auth", "utf8", "name"), [
    (False, False, False, False, "SMTP"), (True, False, False, False, "ESMTP"), (True, True, False, False, "ESMTPS"),
    (True, False, True, False, "ESMTPA"), (True, True, True, False, "ESMTPSA"), (True, True, True, True, "UTF8SMTPSA"),
])
def test_protocol_names(extended, tls, auth, utf8, name):
    assert received.protocol_name(extended=extended, tls=tls, authenticated=auth, smtputf8=utf8) == name


def test_submission_fields_added_only_when_missing():
    bare = b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\nDate: not a header\r\n"
    added = received.submission_fields(bare, hostname="mx.example.org", now=NOW, unique="u1")
    assert added == b"Date: Thu, 26 Nov 2026 12:30:05 +0000\r\nMessage-ID: <u1@mx.example.org>\r\n"
    complete = b"from: a@example.org\r\nDATE: x\r\nMessage-Id: <m@x>\r\n\r\nbody\r\n"
    assert received.submission_fields(complete, hostname="h", now=NOW, unique="u") == b""


def test_from_addresses_unfolds_and_finds_all():
    message = (b"Subject: hi\r\nFrom: Alice <alice@example.org>,\r\n \"B, Bob\" <bob@example.org>\r\n"
               b"To: c@example.org\r\n\r\nFrom: body@example.org\r\n")
    assert received.from_addresses(message) == ["alice@example.org", "bob@example.org"]
    assert received.from_addresses(b"Subject: none\r\n\r\n") == []
    assert received.from_addresses("From: Jøran <jøran@exämple.org>\n\nx".encode()) == ["jøran@exämple.org"]
