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

import pytest
from imap_raw import fetch_uids, login, response_code
from imap_server import imap_server  # noqa: F401
from store_fixtures import sample_message

from courriel.models import Expunge, Folder

pytestmark = pytest.mark.timeout(120)


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
    client = login(server, address)
    client.run("ENABLE QRESYNC")
    untagged, _ = client.run("SELECT INBOX")
    uidvalidity, old = response_code(untagged, "UIDVALIDITY"), response_code(untagged, "HIGHESTMODSEQ")
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

    client = login(server, address)
    client.run("ENABLE QRESYNC")
    untagged, tagged = client.run(f"SELECT INBOX (QRESYNC ({uidvalidity} {old}))")
    assert " OK " in tagged
    assert _vanished(untagged) == ["* VANISHED (EARLIER) 2:4"]
    assert sorted(fetch_uids(untagged)) == [6]
    # With known UIDs: those of them that no longer exist.
    untagged, _ = client.run(f"EXAMINE INBOX (QRESYNC ({uidvalidity} {old} 1:3))")
    assert _vanished(untagged) == ["* VANISHED (EARLIER) 2:3"]
    # UID FETCH (CHANGEDSINCE VANISHED) from the old MODSEQ: the missing UIDs of the set.
    client.run("SELECT INBOX")
    untagged, tagged = client.run(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {old} VANISHED)")
    assert " OK " in tagged
    assert _vanished(untagged) == ["* VANISHED (EARLIER) 2:4"]
    assert sorted(fetch_uids(untagged)) == [6]
    # From the pruned MODSEQ on the log is complete: only the recent expunge.
    untagged, _ = client.run(f"EXAMINE INBOX (QRESYNC ({uidvalidity} {pruned}))")
    assert _vanished(untagged) == ["* VANISHED (EARLIER) 4"]
    client.close()


def test_multiappend_is_all_or_nothing(imap_server):  # noqa: F811
    server = imap_server
    server.clear()
    client = login(server)
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
