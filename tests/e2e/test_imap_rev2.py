"""IMAP4rev2 (RFC 9051) after ENABLE IMAP4rev2, and UNAUTHENTICATE (RFC 8437), over a real socket.

One test per difference from IMAP4rev1: no \\Recent or RECENT, SEARCH in the ESEARCH form, the LIST
line in the SELECT response, [CLOSED] on reselect, STATUS SIZE; a rev1 session keeps the old forms.
"""

from __future__ import annotations

import re
import socket
import time

import pytest
from imap_server import imap_server  # noqa: F401
from store_fixtures import sample_message

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(imap_server):  # noqa: F811
    imap_server.clear()
    for n in range(2):
        imap_server.store.deliver(imap_server.mailbox_id, sample_message(n))
    return imap_server


class RawClient:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.counter = 0
        self._read_until(rb"^\* OK")

    def _read_until(self, pattern: bytes) -> None:
        deadline = time.monotonic() + 20
        while not re.search(pattern, self.buffer, re.M):
            assert time.monotonic() < deadline, self.buffer[-500:]
            chunk = self.sock.recv(1 << 16)
            assert chunk, "connection closed"
            self.buffer += chunk

    def run(self, command: str) -> tuple[list[str], str]:
        self.counter += 1
        tag = f"r{self.counter}"
        self.buffer = b""
        self.sock.sendall(f"{tag} {command}\r\n".encode())
        self._read_until(rb"^" + tag.encode() + rb" (OK|NO|BAD)[^\r\n]*\r\n")
        lines = self.buffer.decode("utf-8", "replace").split("\r\n")
        return [line for line in lines if line.startswith("* ")], next(x for x in lines if x.startswith(tag + " "))


def _session(server, rev2: bool) -> RawClient:
    client = RawClient(server.imap_port)
    untagged, tagged = client.run(f'LOGIN "{server.address}" "{server.password}"')
    assert " OK " in tagged and "IMAP4rev2" in tagged and "IMAP4rev1" in tagged and "UNAUTHENTICATE" in tagged
    if rev2:
        untagged, tagged = client.run("ENABLE IMAP4rev2")
        assert "* ENABLED IMAP4rev2" in untagged
    return client


def test_rev1_session_keeps_rev1_forms(server):
    client = _session(server, rev2=False)
    untagged, _ = client.run("SELECT INBOX")
    assert any(re.fullmatch(r"\* \d+ RECENT", line) for line in untagged)
    untagged, _ = client.run("SEARCH ALL")
    assert "* SEARCH 1 2" in untagged


def test_rev2_select_has_list_and_no_recent(server):
    client = _session(server, rev2=True)
    untagged, tagged = client.run("SELECT INBOX")
    assert " OK " in tagged
    assert not any("RECENT" in line for line in untagged)
    assert '* LIST () "/" INBOX' in untagged
    untagged, _ = client.run("FETCH 1:* (FLAGS)")
    assert len(untagged) == 2 and not any("\\Recent" in line for line in untagged)
    server.store.deliver(server.mailbox_id, sample_message(3))
    untagged, _ = client.run("NOOP")
    assert "* 3 EXISTS" in untagged and not any("RECENT" in line for line in untagged)
    untagged, _ = client.run("EXAMINE Sent")
    assert any("[CLOSED]" in line for line in untagged)  # RFC 9051 §7.1: the old mailbox is closed


def test_rev2_search_is_esearch(server):
    client = _session(server, rev2=True)
    client.run("SELECT INBOX")
    untagged, _ = client.run("SEARCH ALL")
    assert untagged == ['* ESEARCH (TAG "r4") ALL 1:2']
    untagged, _ = client.run("UID SEARCH ALL")
    assert len(untagged) == 1 and re.fullmatch(r'\* ESEARCH \(TAG "r5"\) UID ALL \d+:\d+', untagged[0])
    untagged, _ = client.run("SEARCH DELETED")
    assert untagged == ['* ESEARCH (TAG "r6")']  # RFC 4731 §3.1: no ALL when nothing matched


def test_rev2_status_size(server):
    client = _session(server, rev2=True)
    untagged, _ = client.run("STATUS INBOX (MESSAGES SIZE)")
    size = sum(m.size for m in server.store.list_messages(server.inbox_id()))
    assert untagged == [f"* STATUS INBOX (MESSAGES 2 SIZE {size})"]


def test_unauthenticate(server):
    client = _session(server, rev2=True)
    client.run("SELECT INBOX")
    _, tagged = client.run("UNAUTHENTICATE")
    assert " OK " in tagged
    _, tagged = client.run("SELECT INBOX")
    assert " OK " not in tagged  # not authenticated any more
    _, tagged = client.run(f'LOGIN "{server.address}" "{server.password}"')
    assert " OK " in tagged
    untagged, _ = client.run("SELECT INBOX")
    assert any("RECENT" in line for line in untagged)  # IMAP4rev2 was forgotten with the login


def test_utf8_accept_mailbox_names(server):
    client = _session(server, rev2=True)
    untagged, _ = client.run("ENABLE UTF8=ACCEPT")
    assert "* ENABLED UTF8=ACCEPT" in untagged
    _, tagged = client.run('CREATE "Données/Été"')
    assert " OK " in tagged
    untagged, _ = client.run('LIST "" "Données*"')
    assert '* LIST (\\HasChildren) "/" "Données"' in untagged
    assert '* LIST (\\HasNoChildren) "/" "Données/Été"' in untagged
    untagged, _ = client.run('STATUS "Données/Été" (MESSAGES)')
    assert untagged == ['* STATUS "Données/Été" (MESSAGES 0)']
    # A session without UTF8=ACCEPT sees the same folder in modified UTF-7 (RFC 3501 §5.1.3).
    other = _session(server, rev2=False)
    untagged, _ = other.run('LIST "" "Donn&AOk-es/*"')
    assert untagged == ['* LIST (\\HasNoChildren) "/" Donn&AOk-es/&AMk-t&AOk-']
