"""IMAP METADATA (RFC 5464) over a real socket to the IMAP role process, with imaplib.

Set, get and remove folder and server entries; DEPTH 1 and infinity; MAXSIZE with
[METADATA LONGENTRIES n]; [METADATA MAXSIZE n] and [METADATA TOOMANY]; a value with CR, LF and NUL sent
as a literal8 and read back as one; the computed entries (/shared/admin on the server,
/private/specialuse of Sent) and the read-only ones; entries following a RENAME and going with DELETE.
"""

from __future__ import annotations

import imaplib

import pytest
from imap_server import imap_server  # noqa: F401
from sqlalchemy import delete, func, select

from courriel.models import MetadataEntry

pytestmark = pytest.mark.timeout(60)

imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
MAX_LINES = 1000


@pytest.fixture
def client(imap_server):  # noqa: F811
    imap_server.clear()
    with imap_server.db.write() as session:
        session.execute(delete(MetadataEntry))
    connection = imap_server.login()
    yield connection
    connection.logout()


def _get(client, mailbox, entries, options=None):
    """GETMETADATA → (status, tagged text, the METADATA responses as imaplib returns them)."""
    args = ([options] if options else []) + [mailbox, entries]
    typ, data = client._simple_command("GETMETADATA", *args)
    return typ, data[0], client.untagged_responses.pop("METADATA", [])


def _set(client, mailbox, pairs):
    typ, data = client._simple_command("SETMETADATA", mailbox, f"({pairs})")
    client.untagged_responses.pop("METADATA", None)  # a [METADATA ...] code of the tagged answer
    return typ, data[0]


def _raw(client, tag: bytes, command: bytes) -> list[bytes]:
    """Send one command as is (LITERAL+ literals inline) and read lines up to its tagged answer."""
    client.send(tag + b" " + command + b"\r\n")
    lines = []
    for _ in range(MAX_LINES):
        line = client.readline()
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines
    raise AssertionError("no tagged answer")


def _rows(server, folder_id):
    with server.db.read() as session:
        return session.scalar(select(func.count()).select_from(MetadataEntry)
                              .where(MetadataEntry.folder_id == folder_id))


def test_capability_set_get_remove(client):
    assert "METADATA" in client.capabilities
    typ, _, responses = _get(client, "INBOX", "/private/comment")
    assert typ == "OK" and responses == [b"INBOX (/private/comment NIL)"]
    assert _set(client, "INBOX", '/private/comment "my inbox" /shared/comment "the inbox"')[0] == "OK"
    typ, _, responses = _get(client, "INBOX", "(/private/comment /SHARED/comment)")
    assert responses == [b'INBOX (/private/comment "my inbox" /shared/comment "the inbox")']
    assert _set(client, "INBOX", "/private/comment NIL")[0] == "OK"  # RFC 5464 §4.3: NIL removes
    typ, _, responses = _get(client, "INBOX", "(/private/comment /shared/comment)")
    assert responses == [b'INBOX (/private/comment NIL /shared/comment "the inbox")']
    typ, text = _set(client, "NoSuchFolder", '/private/comment "x"')
    assert typ == "NO" and b"[NONEXISTENT]" in text


def test_server_entries(client, imap_server):  # noqa: F811
    typ, _, responses = _get(client, '""', "/shared/admin")
    assert responses == [b'"" (/shared/admin "mailto:postmaster@example.org")']
    typ, text = _set(client, '""', '/shared/comment "mine"')
    assert typ == "NO" and b"[NOPERM]" in text
    typ, text = _set(client, '""', '/shared/admin "mailto:me@example.org"')
    assert typ == "NO" and b"[NOPERM]" in text
    assert _set(client, '""', '/private/comment "note" /private/vendor/x-client/theme "dark"')[0] == "OK"
    typ, _, responses = _get(client, '""', "(/private /shared)", "(DEPTH infinity)")
    assert responses == [b'"" (/private/comment "note" /private/vendor/x-client/theme "dark" '
                         b'/shared/admin "mailto:postmaster@example.org")']
    with imap_server.db.read() as session:
        assert session.scalar(select(func.count()).select_from(MetadataEntry)
                              .where(MetadataEntry.folder_id.is_(None))) == 2


def test_depth_and_maxsize(client):
    pairs = ('/private/vendor/a "1" /private/vendor/a/b "22" /private/vendor/a/b/c "333" '
             f'/private/vendor/a/long "{"x" * 40}"')
    assert _set(client, "INBOX", pairs)[0] == "OK"
    _, _, responses = _get(client, "INBOX", "/private/vendor/a")
    assert responses == [b'INBOX (/private/vendor/a "1")']
    _, _, responses = _get(client, "INBOX", "/private/vendor/a", "(DEPTH 1)")
    assert responses == [b'INBOX (/private/vendor/a "1" /private/vendor/a/b "22" /private/vendor/a/long "'
                         + b"x" * 40 + b'")']
    _, _, responses = _get(client, "INBOX", "/private/vendor", "(DEPTH infinity)")
    assert responses[0].count(b"/private/vendor/") == 4
    # RFC 5464 §4.2.1: values over MAXSIZE are left out; the OK names the longest.
    typ, text, responses = _get(client, "INBOX", "/private/vendor/a", "(MAXSIZE 2 DEPTH infinity)")
    assert typ == "OK" and b"[METADATA LONGENTRIES 40]" in text
    # imaplib files the tagged response code under METADATA too.
    assert responses == [b'INBOX (/private/vendor/a "1" /private/vendor/a/b "22")', b"LONGENTRIES 40"]


def test_limits(client, imap_server):  # noqa: F811
    typ, text = _set(client, "Drafts", f'/private/vendor/big "{"v" * 1000}"')
    assert typ == "OK"
    lines = _raw(client, b"m1", b"SETMETADATA Drafts (/private/vendor/huge {40000+}\r\n" + b"v" * 40000 + b")")
    assert lines[-1].startswith(b"m1 NO [METADATA MAXSIZE 32768]")
    # 100 entries per folder: the hundredth fits, the next is TOOMANY and changes nothing.
    pairs = " ".join(f'/private/vendor/n{i} "{i}"' for i in range(99))
    assert _set(client, "Drafts", pairs)[0] == "OK"
    typ, text = _set(client, "Drafts", '/private/vendor/one-more "x"')
    assert typ == "NO" and b"[METADATA TOOMANY]" in text
    folder = imap_server.store.get_folder(imap_server.mailbox_id, "Drafts")
    assert _rows(imap_server, folder.id) == 100
    # Replacing or removing at the limit is allowed.
    assert _set(client, "Drafts", '/private/vendor/n1 "again" /private/vendor/n2 NIL')[0] == "OK"
    assert _set(client, "Drafts", '/private/vendor/n2 "back"')[0] == "OK"


def test_value_with_crlf_and_nul_round_trips(client):
    value = b"line one\r\nline two\x00end"
    lines = _raw(client, b"v1", b"SETMETADATA INBOX (/shared/vendor/blob ~{%d+}\r\n" % len(value) + value
                 + b" /private/comment {5+}\r\na\r\nbc)")
    assert lines[-1].startswith(b"v1 OK")
    typ, _, responses = _get(client, "INBOX", "(/shared/vendor/blob /private/comment)")
    assert typ == "OK"
    # imaplib returns literals as (prefix, data) tuples; the NUL value comes back as a literal8.
    assert responses[0] == (b"INBOX (/shared/vendor/blob ~{%d}" % len(value), value)
    assert responses[1] == (b" /private/comment {5}", b"a\r\nbc")


def test_special_use_entry(client):
    _, _, responses = _get(client, "Sent", "/private/specialuse")
    assert responses == [b"Sent (/private/specialuse \"\\\\Sent\")"]
    _, _, responses = _get(client, "INBOX", "/private/specialuse")
    assert responses == [b"INBOX (/private/specialuse NIL)"]
    typ, text = _set(client, "Sent", '/private/specialuse "\\\\Trash"')
    assert typ == "NO" and b"[NOPERM]" in text


def test_entries_follow_rename_and_go_with_delete(client, imap_server):  # noqa: F811
    assert client.create("Projects/Old")[0] == "OK"
    assert _set(client, "Projects/Old", '/shared/comment "notes" /private/vendor/x "1"')[0] == "OK"
    folder_id = imap_server.store.get_folder(imap_server.mailbox_id, "Projects/Old").id
    assert client.rename("Projects", "Archive")[0] == "OK"
    _, _, responses = _get(client, "Archive/Old", "(/shared/comment /private/vendor/x)")
    assert responses == [b'Archive/Old (/shared/comment "notes" /private/vendor/x "1")']
    typ, text, _ = _get(client, "Projects/Old", "/shared/comment")
    assert typ == "NO" and b"[NONEXISTENT]" in text
    assert _rows(imap_server, folder_id) == 2
    assert client.delete("Archive/Old")[0] == "OK"
    assert _rows(imap_server, folder_id) == 0
    assert client.create("Archive/Old")[0] == "OK"  # a new folder of the same name starts empty
    _, _, responses = _get(client, "Archive/Old", "/shared/comment")
    assert responses == [b"Archive/Old (/shared/comment NIL)"]
