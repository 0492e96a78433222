"""IMAP QRESYNC (RFC 7162 §3.2) over a real socket to the IMAP role process.

A client that was offline while messages were added, flagged and expunged resynchronises with
SELECT (QRESYNC ...) and receives only what changed: VANISHED (EARLIER) for the expunged UIDs and
one FETCH per changed message. The same holds for a 10,000-message folder after 5 changes.
"""

from __future__ import annotations

import pytest
from imap_raw import fetch_uids, login, response_code
from imap_server import imap_server  # noqa: F401
from store_fixtures import sample_message

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(imap_server):  # noqa: F811
    imap_server.clear()
    return imap_server


def test_offline_client_receives_only_changes(server):
    inbox = server.inbox_id()
    for n in range(3):
        server.store.deliver(server.mailbox_id, sample_message(n))
    client = login(server)
    # RFC 7162 §3.2.5: QRESYNC parameters before ENABLE QRESYNC are refused.
    _, tagged = client.run("SELECT INBOX (QRESYNC (1 1))")
    assert " BAD " in tagged
    untagged, tagged = client.run("ENABLE QRESYNC")
    assert "* ENABLED QRESYNC" in untagged and " OK " in tagged
    untagged, _ = client.run("SELECT INBOX")
    uidvalidity, modseq = response_code(untagged, "UIDVALIDITY"), response_code(untagged, "HIGHESTMODSEQ")
    client.close()

    # Offline: two new messages, one flagged, one expunged.
    server.store.deliver(server.mailbox_id, sample_message(3))
    server.store.deliver(server.mailbox_id, sample_message(4))
    server.store.set_flags(inbox, [1], "add", ["\\Flagged"])
    server.store.set_flags(inbox, [2], "add", ["\\Deleted"])
    server.store.expunge(inbox, [2])

    client = login(server)
    client.run("ENABLE QRESYNC")
    untagged, tagged = client.run(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:3))")
    assert " OK " in tagged
    assert "* VANISHED (EARLIER) 2" in untagged
    assert sorted(fetch_uids(untagged)) == [1, 4, 5]
    flagged = next(line for line in untagged if "UID 1 " in line)
    assert "\\Flagged" in flagged and "MODSEQ" in flagged
    # A stale UIDVALIDITY: a plain SELECT, nothing resynchronised; [CLOSED] for the previous mailbox.
    untagged, tagged = client.run(f"EXAMINE INBOX (QRESYNC ({uidvalidity + 1} {modseq}))")
    assert " OK " in tagged and any("[CLOSED]" in line for line in untagged)
    assert not fetch_uids(untagged) and not any("VANISHED" in line for line in untagged)
    client.run("SELECT INBOX")

    # UID FETCH (CHANGEDSINCE VANISHED): expunged UIDs in the set, then the changed messages.
    untagged, tagged = client.run(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert " OK " in tagged
    assert "* VANISHED (EARLIER) 2" in untagged
    assert sorted(fetch_uids(untagged)) == [1, 4, 5]
    untagged, _ = client.run(f"UID FETCH 3:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert not any("VANISHED" in line for line in untagged)

    # After ENABLE QRESYNC an expunge is announced as VANISHED, never EXPUNGE.
    client.run("UID STORE 4 +FLAGS.SILENT (\\Deleted)")
    untagged, tagged = client.run("EXPUNGE")
    assert " OK " in tagged
    assert "* VANISHED 4" in untagged and not any(line.endswith(" EXPUNGE") for line in untagged)
    server.store.set_flags(inbox, [5], "add", ["\\Deleted"])
    server.store.expunge(inbox, [5])
    untagged, _ = client.run("NOOP")
    assert "* VANISHED 5" in untagged and not any(line.endswith(" EXPUNGE") for line in untagged)
    # Without QRESYNC the same fetch modifier is refused.
    client.close()
    other = login(server)
    other.run("SELECT INBOX")
    _, tagged = other.run(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert " BAD " in tagged
    other.close()


def test_large_folder_resync_fetches_only_the_changes(server):
    local = "qresync-large"
    mailbox_id = server.extra_mailboxes.get(local) or server.add_mailbox(local)
    address = f"{local}@{server.address.split('@', 1)[1]}"
    inbox = server.inbox_id(mailbox_id)
    existing = [m.uid for m in server.store.list_messages(inbox)]
    if existing:
        server.store.set_flags(inbox, existing, "add", ["\\Deleted"])
        server.store.expunge(inbox)
    server.store.deliver(mailbox_id, sample_message(0))
    uids = [m.uid for m in server.store.list_messages(inbox)]
    for _ in range(20):  # doubling copies: 10,000 messages in a few transactions
        if len(uids) >= 10_000:
            break
        server.store.copy(inbox, uids[:10_000 - len(uids)], inbox)
        uids = [m.uid for m in server.store.list_messages(inbox)]
    assert len(uids) == 10_000

    client = login(server, address)
    client.run("ENABLE QRESYNC")
    untagged, _ = client.run("SELECT INBOX")
    assert "* 10000 EXISTS" in untagged
    uidvalidity, modseq = response_code(untagged, "UIDVALIDITY"), response_code(untagged, "HIGHESTMODSEQ")
    client.close()

    flagged = [uids[10], uids[5000], uids[9999]]
    server.store.set_flags(inbox, flagged, "add", ["\\Flagged"])
    server.store.set_flags(inbox, [uids[42]], "add", ["\\Seen"])
    new = server.store.deliver(mailbox_id, sample_message(1)).uid
    gone = [uids[7], uids[8]]
    server.store.set_flags(inbox, gone, "add", ["\\Deleted"])  # a sixth and seventh change: expunges
    server.store.expunge(inbox, gone)

    client = login(server, address)
    client.run("ENABLE QRESYNC")
    untagged, tagged = client.run(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))")
    assert " OK " in tagged
    assert sorted(fetch_uids(untagged)) == sorted([*flagged, uids[42], new])
    vanished = [line for line in untagged if line.startswith("* VANISHED")]
    assert vanished == [f"* VANISHED (EARLIER) {gone[0]}:{gone[1]}"]
    client.close()
