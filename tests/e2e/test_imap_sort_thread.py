"""SORT, ESORT and THREAD over a real socket to the IMAP role process, with imaplib (RFC 5256,
RFC 5957, RFC 5267): answers on a small hand-checked mailbox, UID forms, charsets, errors,
SEARCHRES with SORT, and messages expunged or added between commands.
"""

from __future__ import annotations

import imaplib

import pytest
from imap_server import imap_server  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def message(subject: str | None, date: str | None, message_id: str, extra: str = "", sender: str = "a@x.org") -> bytes:
    lines = [f"From: {sender}", "To: b@y.org", f"Message-ID: <{message_id}@x.org>"]
    if subject is not None:
        lines.append(f"Subject: {subject}")
    if date is not None:
        lines.append(f"Date: {date}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


MAILBOX = [
    # (message, internal date)
    (message("b", "Wed, 03 Jan 2024 00:00:00 +0000", "1", sender="Zed <zed@x.org>"), "01-Feb-2024 00:00:00 +0000"),
    (message("Re: a", "Tue, 02 Jan 2024 00:00:00 +0000", "2", "References: <3@x.org>"), "02-Feb-2024 00:00:00 +0000"),
    (message("a", "Mon, 01 Jan 2024 00:00:00 +0000", "3", sender="Amy <zz@x.org>"), "03-Feb-2024 00:00:00 +0000"),
    (message("Re: b", None, "4", "In-Reply-To: <1@x.org>"), "04-Jan-2024 00:00:00 +0000"),  # no Date: internal
    (message("c", "Fri, 05 Jan 2024 00:00:00 +0000", "5", "References: <gone@x.org>"), "05-Feb-2024 00:00:00 +0000"),
    (message("c", "Sat, 06 Jan 2024 00:00:00 +0000", "6", "References: <gone@x.org>"), "06-Feb-2024 00:00:00 +0000"),
]


@pytest.fixture
def client(imap_server):  # noqa: F811
    imap_server.clear()
    imap = imap_server.login()
    for data, date in MAILBOX:
        typ, answer = imap.append("INBOX", None, f'"{date}"', data)
        assert typ == "OK", answer
    typ, _ = imap.select("INBOX")
    assert typ == "OK"
    yield imap
    imap.logout()


def untagged(imap: imaplib.IMAP4, name: str, *arguments: str) -> tuple[str, str]:
    typ, data = imap._simple_command(*arguments)
    typ, data = imap._untagged_response(typ, data, name)
    return typ, b" ".join(d for d in data if d).decode()


def test_capabilities_announce_sort_and_thread(client):
    capabilities = set(client.capabilities)
    assert {"SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"} <= capabilities


def test_sort_keys_reverse_and_criteria(client):
    assert client.sort("(SUBJECT)", "UTF-8", "ALL") == ("OK", [b"2 3 1 4 5 6"])
    assert client.sort("(DATE)", "UTF-8", "ALL") == ("OK", [b"3 2 1 4 5 6"])
    assert client.sort("(REVERSE DATE)", "UTF-8", "ALL") == ("OK", [b"6 5 4 1 2 3"])
    assert client.sort("(ARRIVAL)", "UTF-8", "ALL") == ("OK", [b"4 1 2 3 5 6"])
    # FROM is the addr-mailbox: a, a, zz, a, a, zed -> a (mailbox order), zed, zz.
    assert client.sort("(FROM)", "UTF-8", "ALL") == ("OK", [b"2 4 5 6 1 3"])
    # DISPLAYFROM is the display name: a@x.org (x4), Amy, Zed.
    assert client.sort("(DISPLAYFROM)", "US-ASCII", "ALL") == ("OK", [b"2 4 5 6 3 1"])
    assert client.sort("(SUBJECT REVERSE DATE)", "UTF-8", "NOT SUBJECT c") == ("OK", [b"2 3 4 1"])
    assert client.sort("(SIZE)", "UTF-8", "SUBJECT zzz") == ("OK", [b""])


def test_uid_sort_and_uid_thread(client):
    typ, data = client.uid("SEARCH", "ALL")
    uids = [int(n) for n in data[0].split()]
    by_msn = dict(enumerate(uids, start=1))
    typ, data = client.uid("SORT", "(DATE)", "UTF-8", "ALL")
    assert typ == "OK" and [int(n) for n in data[0].split()] == [by_msn[n] for n in (3, 2, 1, 4, 5, 6)]
    typ, data = client.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
    expected = "({2} {1})({0} {3})(({4})({5}))".format(*uids)
    assert typ == "OK" and data[0].decode() == expected


def test_thread_algorithms(client):
    assert client.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(3 2)(1 4)((5)(6))"])
    assert client.thread("ORDEREDSUBJECT", "UTF-8", "ALL") == ("OK", [b"(3 2)(1 4)(5 6)"])
    # Without message 3 its reply stands alone; 5 and 6 keep their dummy parent.
    assert client.thread("REFERENCES", "UTF-8", "NOT 3") == ("OK", [b"(2)(1 4)((5)(6))"])
    assert client.thread("REFERENCES", "UTF-8", "SUBJECT zzz") == ("OK", [b""])


def test_esort_return_options_and_searchres(client):
    assert untagged(client, "ESEARCH", "SORT", "RETURN", "(MIN MAX COUNT)", "(DATE)", "UTF-8", "ALL")[1] \
        .endswith("MIN 3 MAX 6 COUNT 6")
    assert untagged(client, "ESEARCH", "SORT", "RETURN", "(ALL)", "(REVERSE DATE)", "UTF-8", "ALL")[1] \
        .endswith("ALL 6,5,4,1:3")
    assert untagged(client, "ESEARCH", "SORT", "RETURN", "()", "(SUBJECT)", "UTF-8", "NOT 1")[1] \
        .endswith("ALL 2:6")
    # RFC 5182: SAVE keeps the result for `$`.
    typ, _ = client._simple_command("SORT", "RETURN", "(SAVE)", "(DATE)", "UTF-8", "SUBJECT a")
    assert typ == "OK"
    typ, data = client.fetch("$", "(FLAGS)")
    assert typ == "OK" and sorted(int(d.split()[0]) for d in data) == [2, 3]
    assert client.sort("(REVERSE ARRIVAL)", "UTF-8", "$") == ("OK", [b"3 2"])


def test_charsets_algorithms_and_states(client, imap_server):  # noqa: F811
    # RFC 5256 §3: UTF-8 and US-ASCII; any other charset is NO [BADCHARSET (list)].
    typ, data = client.sort("(DATE)", "ISO-8859-1", "ALL")
    assert typ == "NO" and data[0].startswith(b"[BADCHARSET (")
    typ, data = client.thread("REFERENCES", "X-NO-SUCH-CHARSET", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        client.thread("XYZZY", "UTF-8", "ALL")
    with pytest.raises(imaplib.IMAP4.error):
        client.sort("(COLOUR)", "UTF-8", "ALL")
    with pytest.raises(imaplib.IMAP4.error):
        client.sort("(REVERSE)", "UTF-8", "ALL")
    # 8-bit search strings in UTF-8.
    client.literal = "café".encode()
    assert client.sort("(DATE)", "UTF-8", "SUBJECT") == ("OK", [b""])
    other = imap_server.login()
    try:
        with pytest.raises(imaplib.IMAP4.error):  # no mailbox selected: BAD
            other.sort("(DATE)", "UTF-8", "ALL")
    finally:
        other.logout()


def test_expunged_and_new_messages(client, imap_server):  # noqa: F811
    client.store("1", "+FLAGS", "\\Deleted")
    client.expunge()
    # 2..6 are now 1..5; "Re: b" (now 3) lost its parent: a thread of its own.
    assert client.sort("(DATE)", "UTF-8", "ALL") == ("OK", [b"2 1 3 4 5"])
    assert client.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(2 1)(3)((4)(5))"])
    typ, _ = client.append("INBOX", None, None, message("Re: c", "Sun, 07 Jan 2024 00:00:00 +0000", "7",
                                                        "References: <gone@x.org> <6@x.org>"))
    assert typ == "OK"
    client.noop()
    assert client.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(2 1)(3)((4)(5 6))"])
