"""The expunge log's retention seen by a QRESYNC client (RFC 7162 §3.2.5.2, §3.2.6), and
MULTIAPPEND as one all-or-nothing store transaction (RFC 3502), over a real socket.

A client whose MODSEQ is older than what the queue role's maintenance pruned from the expunge
log still learns every expunged UID: the server answers VANISHED (EARLIER) with every UID below
UIDNEXT that no longer exists (a superset RFC 7162 allows); from a newer MODSEQ the answer is
exact again.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import time

import pytest
from imap_server import imap_server  # noqa: F401
from store_fixtures import sample_message

from courriel.models import Expunge, Folder

pytestmark = pytest.mark.timeout(120)


class RawClient:
    """Raw IMAP lines over a socket; `run` returns the untagged lines and the tagged line."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.counter = 0
        self.read_until(rb"^\* OK")

    def read_until(self, pattern: bytes) -> bytes:
        deadline = time.monotonic() + 30
        while not re.search(pattern, self.buffer, re.M):
            assert time.monotonic() < deadline, self.buffer[-500:]
            chunk = self.sock.recv(1 << 20)
            assert chunk, "connection closed"
            self.buffer += chunk
        return self.buffer

    def send(self, command: bytes) -> str:
        """Send `<tag> <command>` (literals included) and return the tagged line."""
        self.counter += 1
        tag = f"q{self.counter}".encode()
        self.buffer = b""
        self.sock.sendall(tag + b" " + command + b"\r\n")
        self.read_until(rb"^" + tag + rb" (OK|NO|BAD)[^\r\n]*\r\n")
        return self.buffer.decode("utf-8", "replace")

    def run(self, command: str) -> tuple[list[str], str]:
        tag = f"q{self.counter + 1} "
        lines = self.send(command.encode()).split("\r\n")
        tagged = next(line for line in lines if line.startswith(tag))
        return [line for line in lines if line.startswith("* ")], tagged

    def close(self) -> None:
        self.run("LOGOUT")
        self.sock.close()


def _login(server, address: str | None = None) -> RawClient:
    client = RawClient(server.imap_port)
    _, tagged = client.run(f'LOGIN "{address or server.address}" "{server.password}"')
    assert " OK " in tagged
    return client


def _code(lines: list[str], name: str) -> int:
    for line in lines:
        match = re.search(rf"\[{name} (\d+)\]", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no {name} in {lines}")


def _fetch_uids(lines: list[str]) -> list[int]:
    return [int(re.search(r"UID (\d+)", line).group(1)) for line in lines if re.match(r"\* \d+ FETCH ", line)]


def _expunge(store, folder_id: int, uids: list[int]) -> None:
    store.set_flags(folder_id, uids, "add", ["\\Deleted"])
    store.expunge(folder_id, uids)


def _vanished(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("* VANISHED")]


def test_resync_from_before_the_pruned_log_reports_every_missing_uid(imap_server):  # noqa: F811
    server = imap_server
    local = "retention"
    mailbox_id = server.add_mailbox(local)
    address = f"{local}@{server.address.split('@', 1)[1]}"
    inbox = server.inbox_id(mailbox_id)
    for n in range(5):
        server.store.deliver(mailbox_id, sample_message(n))
    client = _login(server, address)
    client.run("ENABLE QRESYNC")
    untagged, _ = client.run("SELECT INBOX")
    uidvalidity, old = _code(untagged, "UIDVALIDITY"), _code(untagged, "HIGHESTMODSEQ")
    client.close()

    # Offline: 2 and 3 expunged long ago (their entries pruned), 4 expunged recently.
    _expunge(server.store, inbox, [2, 3])
    with server.db.write() as session:
        for row in session.query(Expunge).filter_by(folder_id=inbox):
            row.expunged_at -= dt.timedelta(days=100)
    _expunge(server.store, inbox, [4])
    server.store.deliver(mailbox_id, sample_message(5))
    assert server.store.prune_expunges(dt.datetime.now(dt.UTC) - dt.timedelta(days=90)) == 2
    with server.db.read() as session:
        pruned = session.get(Folder, inbox).expunges_pruned_modseq
        assert session.query(Expunge).filter_by(folder_id=inbox).count() == 1
    assert old < pruned

    client = _login(server, address)
    client.run("ENABLE QRESYNC")
    untagged, tagged = client.run(f"SELECT INBOX (QRESYNC ({uidvalidity} {old}))")
    assert " OK " in tagged
    assert _vanished(untagged) == ["* VANISHED (EARLIER) 2:4"]
    assert sorted(_fetch_uids(untagged)) == [6]
    # With known UIDs: those of them that no longer exist.
    untagged, _ = client.run(f"EXAMINE INBOX (QRESYNC ({uidvalidity} {old} 1:3))")
    assert _vanished(untagged) == ["* VANISHED (EARLIER) 2:3"]
    # UID FETCH (CHANGEDSINCE VANISHED) from the old MODSEQ: the missing UIDs of the set.
    client.run("SELECT INBOX")
    untagged, tagged = client.run(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {old} VANISHED)")
    assert " OK " in tagged
    assert _vanished(untagged) == ["* VANISHED (EARLIER) 2:4"]
    assert sorted(_fetch_uids(untagged)) == [6]
    # From the pruned MODSEQ on the log is complete: only the recent expunge.
    untagged, _ = client.run(f"EXAMINE INBOX (QRESYNC ({uidvalidity} {pruned}))")
    assert _vanished(untagged) == ["* VANISHED (EARLIER) 4"]
    client.close()


def test_multiappend_is_all_or_nothing(imap_server):  # noqa: F811
    server = imap_server
    server.clear()
    client = _login(server)
    good, also_good = sample_message(1), sample_message(2)
    # The second message's flag is refused: neither message is stored.
    reply = client.send(b"APPEND INBOX (\\Seen) {%d+}\r\n%s (\\Bogus) {%d+}\r\n%s"
                        % (len(good), good, len(also_good), also_good))
    assert re.search(r"^q\d+ NO ", reply, re.M), reply
    assert server.store.list_messages(server.inbox_id()) == []
    reply = client.send(b"APPEND INBOX (\\Seen) {%d+}\r\n%s {%d+}\r\n%s"
                        % (len(good), good, len(also_good), also_good))
    assert re.search(r"^q\d+ OK \[APPENDUID \d+ \d+:\d+\]", reply, re.M), reply
    assert [m.flags for m in server.store.list_messages(server.inbox_id())] == [("\\Seen",), ()]
    client.close()
