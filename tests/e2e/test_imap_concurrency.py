"""Several sessions on one mailbox plus deliveries: untagged EXISTS/EXPUNGE/FETCH with correct
message numbers, IDLE woken by a delivery, and a large message streamed by FETCH."""

from __future__ import annotations

import hashlib
import re
import socket
import time

import pytest
from imap_server import imap_server  # noqa: F401
from imapclient import IMAPClient
from store_fixtures import sample_message

pytestmark = pytest.mark.timeout(90)

IDLE_DEADLINE = 5.0  # seconds to wait for any IDLE update
HINT_LATENCY = 3.0  # a delivery must wake IDLE sooner than the 5 s periodic recheck would


@pytest.fixture
def server(imap_server):  # noqa: F811
    imap_server.clear()
    return imap_server


def connect(server) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=15)
    client.login(server.address, server.password)
    return client


def uids_by_number(client: IMAPClient) -> list[int]:
    """UIDs in message-number order, from a plain (non-UID) FETCH 1:* (UID)."""
    typ, data = client._imap.fetch("1:*", "(UID)")
    assert typ == "OK"
    pairs = [re.match(rb"(\d+) \(UID (\d+)\)", item).groups() for item in data if item]
    assert [int(msn) for msn, _ in pairs] == list(range(1, len(pairs) + 1))
    return [int(uid) for _, uid in pairs]


def idle_until(client: IMAPClient, wanted, deadline: float) -> list:
    """Collect IDLE responses until `wanted(responses)` holds or the deadline passes."""
    seen: list = []
    end = time.monotonic() + deadline
    while time.monotonic() < end and not wanted(seen):
        seen += client.idle_check(timeout=max(0.1, min(1.0, end - time.monotonic())))
    return seen


def test_idle_wakes_on_delivery_and_other_sessions_changes(server):
    first, second = connect(server), connect(server)
    try:
        server.store.deliver(server.mailbox_id, sample_message(1))
        server.store.deliver(server.mailbox_id, sample_message(2))
        first.select_folder("INBOX")
        second.select_folder("INBOX")
        first.idle()
        started = time.monotonic()
        server.store.deliver(server.mailbox_id, sample_message(3))
        responses = idle_until(first, lambda seen: (3, b"EXISTS") in seen, IDLE_DEADLINE)
        assert (3, b"EXISTS") in responses, responses
        assert time.monotonic() - started < HINT_LATENCY  # woken by the notify hint, not the timer
        # Another session sets a flag: the idler gets FETCH FLAGS for that message number.
        uids = second.search(["ALL"])
        second.add_flags(uids[1:2], [b"\\Flagged"])
        responses = idle_until(first, lambda seen: any(r[0] == 2 and r[1] == b"FETCH" for r in seen),
                               IDLE_DEADLINE)
        fetches = [r for r in responses if r[1] == b"FETCH"]
        assert fetches and fetches[0][0] == 2 and b"\\Flagged" in fetches[0][2][fetches[0][2].index(b"FLAGS") + 1]
        # Another session expunges message 1: the idler is told "* 1 EXPUNGE".
        second.add_flags(uids[:1], [b"\\Deleted"])
        second.expunge()
        responses = idle_until(first, lambda seen: (1, b"EXPUNGE") in seen, IDLE_DEADLINE)
        assert (1, b"EXPUNGE") in responses
        first.idle_done()
        assert first.search(["ALL"]) == uids[1:]
        assert uids_by_number(first) == uids[1:]
    finally:
        for client in (first, second):
            client.logout()


def test_no_expunge_during_fetch_but_exists_is_sent(server):
    """RFC 3501 §7.4.1: an expunge by another session is held back during FETCH (numbers stay
    valid), and announced at the next NOOP; a delivery is announced at once."""
    for n in range(3):
        server.store.deliver(server.mailbox_id, sample_message(n))
    watcher, actor = connect(server), connect(server)
    try:
        watcher.select_folder("INBOX")
        actor.select_folder("INBOX")
        uids = actor.search(["ALL"])
        actor.add_flags(uids[:1], [b"\\Deleted"])
        actor.expunge()
        server.store.deliver(server.mailbox_id, sample_message(9))
        watcher._imap._simple_command("FETCH", "2", "(UID)")
        untagged = watcher._imap.untagged_responses
        assert b"4" in untagged.get("EXISTS", [])
        assert "EXPUNGE" not in untagged
        watcher._imap.untagged_responses.clear()
        watcher.noop()
        assert watcher.search(["ALL"])[0] == uids[1]
        assert len(watcher.search(["ALL"])) == 3
    finally:
        watcher.logout()
        actor.logout()


def test_msn_bookkeeping_with_several_expunges(server):
    for n in range(6):
        server.store.deliver(server.mailbox_id, sample_message(n))
    watcher, actor = connect(server), connect(server)
    try:
        watcher.select_folder("INBOX")
        actor.select_folder("INBOX")
        uids = actor.search(["ALL"])
        actor.add_flags([uids[1], uids[3], uids[4]], [b"\\Deleted"])
        actor.expunge()
        assert watcher._imap.noop()[0] == "OK"
        expunged = [int(n) for n in watcher._imap.untagged_responses.get("EXPUNGE", [])]
        # Applying the EXPUNGEs in order to [1..6] must leave the messages the store kept.
        numbers = list(range(1, 7))
        for msn in expunged:
            del numbers[msn - 1]
        assert [uids[n - 1] for n in numbers] == [uids[0], uids[2], uids[5]]
        assert uids_by_number(watcher) == [uids[0], uids[2], uids[5]]
    finally:
        watcher.logout()
        actor.logout()


def test_large_message_fetch_is_streamed(server):
    body = b"".join(b"%07d " % i + b"z" * 70 + b"\r\n" for i in range(120_000))  # ~9.4 MB
    message = sample_message(1, subject="big", body=body)
    server.store.deliver(server.mailbox_id, message)
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=30) as sock:
        sock.recv(4096)
        sock.sendall(f'a1 LOGIN {server.address} "{server.password}"\r\na2 SELECT INBOX\r\n'
                     f"a3 FETCH 1 (BODY.PEEK[])\r\n".encode())
        data = b""
        header = None
        for _ in range(100_000):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
            if header is None:
                header = re.search(rb"\* 1 FETCH \(BODY\[\] \{(\d+)\}\r\n", data)
            if header and len(data) >= header.end() + int(header.group(1)) and b"a3 OK" in data[header.end():]:
                break
    assert header is not None and int(header.group(1)) == len(message)
    content = data[header.end():header.end() + len(message)]
    assert hashlib.sha256(content).digest() == hashlib.sha256(message).digest()
    assert re.search(rb"\)\r\na3 OK", data[header.end() + len(message):])
