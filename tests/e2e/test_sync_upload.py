"""Sync local → remote for new local mail, and the incremental remote reads, against a real
Dovecot: a message APPENDed by a local IMAP client and one delivered locally reach the remote
exactly once (also after a second pass, and after kill -9 between the APPEND and the map
row); flag changes read with CHANGEDSINCE only; deletions with VANISHED; new mail in a
folder other than INBOX picked up while idling, without a full rescan."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from imap_server import PASSWORD, start_imap
from sqlalchemy import select, update
from sync_fixtures import dovecot_pop, fill, message, remote_message_ids, sync_env, sync_env_pg  # noqa: F401

from courriel.imapsync import accounts
from courriel.imapsync.runner import AccountSync
from courriel.models import Mailbox, SyncMessage
from courriel.passwords import PasswordHasher


def _poll(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)  # poll interval, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


def _wait_quiet(sync: AccountSync, cycles: list, timeout: float = 30.0, quiet: float = 2.5,
                idle: bool = True) -> None:
    """Until the runner sits in IDLE with no new cycle for `quiet` seconds (the hints of its own
    imports start one more pass first)."""
    deadline = time.monotonic() + timeout
    since, count = None, -1
    while time.monotonic() < deadline:
        waiting = sync.remote is not None and (not idle or sync.remote.client._idle_tag is not None)
        if not waiting or len(cycles) != count:
            since, count = time.monotonic(), len(cycles)
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)  # poll interval, bounded by the deadline
    raise AssertionError("the runner did not settle in IDLE")


def _origins(env) -> dict[str, int]:
    with env.db.read() as session:
        origins = session.scalars(select(SyncMessage.origin)).all()
    return {o: origins.count(o) for o in set(origins)}


def _local_mail(n: int) -> bytes:
    return (f"From: Bob <bob@example.org>\r\nTo: carol@example.net\r\nSubject: local {n}\r\n"
            f"Message-ID: <local.{n}@example.org>\r\nDate: Thu, 26 Nov 2026 11:00:00 +0000\r\n\r\n"
            "Written here.\r\n").encode()


def test_local_append_and_local_delivery_reach_the_remote_exactly_once(sync_env, tmp_path):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 3)
    # Mail that was here before the account was added stays local.
    env.store.deliver(env.mailbox_id, _local_mail(0))
    account = env.add_account()
    sync = AccountSync(env.db, env.store, env.data, account)
    with env.db.write() as session:
        address = session.get(Mailbox, env.mailbox_id).address
        session.execute(update(Mailbox).where(Mailbox.id == env.mailbox_id).values(
            password_hash=PasswordHasher(memory_kib=1024, time_cost=1).hash(PASSWORD)))
    served, imap_port, _ = start_imap(env.data, tmp_path / "imap.log")
    try:
        sync.cycle()
        assert len(env.local_message_ids("INBOX")) == 4
        # A local client APPENDs (with flags); the queue delivers another message.
        import imaplib
        client = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
        client.login(address, PASSWORD)
        typ, _ = client.append("INBOX", "(\\Flagged $Label1)", None, _local_mail(1))
        assert typ == "OK"
        client.logout()
        env.store.deliver(env.mailbox_id, _local_mail(2))
        sync.cycle()
        sync.cycle()  # a second pass uploads nothing more
        sync.close()
        sync.cycle()  # nor a fresh connection
    finally:
        sync.close()
        served.stop()
    with env.imap() as imap:
        remote = remote_message_ids(imap, "INBOX")
        flags = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")[1]
    assert remote.count("<local.1@example.org>") == 1 and remote.count("<local.2@example.org>") == 1
    assert "<local.0@example.org>" not in remote  # earlier local mail stayed local
    assert len(remote) == 5
    flagged = [item[0].decode() for item in flags if isinstance(item, tuple) and b"local.1@" in item[1]]
    assert "\\Flagged" in flagged[0] and "$Label1" in flagged[0]
    # Nothing came back as a new remote message.
    local = env.local_message_ids("INBOX")
    assert len(local) == len(set(local)) == 6
    assert _origins(env) == {"remote": 3, "local": 2}
    # Removing the account removes what it imported, not the local mail it uploaded.
    assert accounts.remove(env.db, env.store, account) == 3
    assert sorted(env.local_message_ids("INBOX")) == [f"<local.{n}@example.org>" for n in range(3)]


@pytest.mark.parametrize(("database", "fault", "appended"), [
    ("sqlite", "imapsync.upload.after_append", True),
    ("postgresql", "imapsync.upload.after_append", True),
    ("sqlite", "imapsync.upload.after_intent", False),
])
def test_kill_between_remote_append_and_map_row_duplicates_nothing(request, database, fault, appended):
    env = request.getfixturevalue("sync_env" if database == "sqlite" else "sync_env_pg")
    with env.imap() as imap:
        fill(imap, "INBOX", 2)
    account = env.add_account()
    command = [sys.executable, "-c", "import sys; from courriel.cli import main; sys.exit(main())",
               "sync", "run", "--once", str(account), "--data", str(env.data)]
    environ = {**os.environ, "PYTHONSAFEPATH": "1"}
    assert subprocess.run(command, capture_output=True, env=environ, timeout=120).returncode == 0
    env.store.deliver(env.mailbox_id, _local_mail(7))
    # The child is killed (SIGKILL) right after the remote APPEND (or right before it), with
    # the upload intent recorded and not the remote UID.
    crashed = subprocess.run(command, capture_output=True, env={**environ, "COURRIEL_FAULT": fault}, timeout=120)
    assert crashed.returncode == -9, crashed.stderr
    with env.imap() as imap:
        assert remote_message_ids(imap, "INBOX").count("<local.7@example.org>") == int(appended)
    assert _origins(env) == {"remote": 2, "pending": 1}
    for _ in range(2):
        status = subprocess.run(command, capture_output=True, env=environ, timeout=120)
        assert status.returncode == 0, status.stderr
    with env.imap() as imap:
        remote = remote_message_ids(imap, "INBOX")
    assert remote.count("<local.7@example.org>") == 1 and len(remote) == 3
    local = env.local_message_ids("INBOX")
    assert len(local) == len(set(local)) == 3  # the remote copy was not imported back
    assert _origins(env) == {"remote": 2, "local": 1}


def test_flag_changes_and_deletions_are_read_incrementally(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 60)
    account = env.add_account()
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
        assert sync.remote.qresync  # Dovecot offers QRESYNC
        with env.imap() as imap:
            imap.select("INBOX")
            imap.uid("STORE", "5,9", "+FLAGS", "(\\Flagged)")
            imap.uid("STORE", "12", "+FLAGS", "(\\Deleted)")
            imap.expunge()
        before = dict(sync.remote.counts)
        sync.cycle()
        after = sync.remote.counts
        # RFC 7162: only the two changed messages' FLAGS came back, no UID SEARCH ALL; the
        # expunge came as VANISHED.
        assert after["flags_received"] - before["flags_received"] == 2
        assert after["search_all"] == before["search_all"]
        assert after["bodies"] == before["bodies"]
    finally:
        sync.close()
    inbox = env.folder_id("INBOX")
    flagged = {m.uid for m in env.store.list_messages(inbox) if "\\Flagged" in m.flags}
    assert len(flagged) == 2
    assert "<INBOX.11@example.net>" not in env.local_message_ids("INBOX")
    assert len(env.local_message_ids("INBOX")) == 59


def test_new_mail_in_another_folder_is_picked_up_while_idling(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 2)
        fill(imap, "Work", 40)
    account = env.add_account()
    stop = threading.Event()
    # IDLE watches INBOX; the other folders are polled with STATUS every second here.
    sync = AccountSync(env.db, env.store, env.data, account, poll_interval=600, folder_poll=1.0)
    cycles: list[int] = []
    cycle = sync.cycle
    sync.cycle = lambda: (cycles.append(1), cycle())[1]
    thread = threading.Thread(target=sync.run, args=(stop, env.data / "run"), daemon=True)
    thread.start()
    try:
        _poll(lambda: any(f.name == "Work" for f in env.store.list_folders(env.mailbox_id))
              and env.store.status(env.folder_id("Work")).messages == 40, 60, "the initial import")
        _wait_quiet(sync, cycles)
        counts = dict(sync.remote.counts)
        with env.imap() as imap:
            imap.append("Work", None, None, message(99, "Work"))
        _poll(lambda: env.store.status(env.folder_id("Work")).messages == 41, 20, "the pickup in Work")
        # Read with CHANGEDSINCE/VANISHED: no UID SEARCH ALL, one body.
        assert sync.remote.counts["search_all"] == counts["search_all"]
        assert sync.remote.counts["bodies"] == counts["bodies"] + 1
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    assert "<Work.99@example.net>" in env.local_message_ids("Work")


def test_without_appenduid_the_upload_is_found_by_message_id(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 2)
    account = env.add_account()
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
        # A server without UIDPLUS (RFC 4315): no APPENDUID, so the copy is searched by Message-ID.
        sync.remote.capabilities.discard("UIDPLUS")
        append = sync.remote.append
        sync.remote.append = lambda *args: append(*args) and None
        env.store.deliver(env.mailbox_id, _local_mail(3))
        sync.cycle()
        sync.cycle()
    finally:
        sync.close()
    with env.imap() as imap:
        remote = remote_message_ids(imap, "INBOX")
    assert remote.count("<local.3@example.org>") == 1 and len(remote) == 3
    assert len(env.local_message_ids("INBOX")) == 3
    assert _origins(env) == {"remote": 2, "local": 1}


def test_without_qresync_flags_come_from_changedsince_and_uid_diffing(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 30)
    account = env.add_account()
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
        sync.remote.qresync = False  # CONDSTORE only (RFC 7162 §3.1): no VANISHED
        with env.imap() as imap:
            imap.select("INBOX")
            imap.uid("STORE", "3", "+FLAGS", "(\\Seen)")
            imap.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
            imap.expunge()
        before = dict(sync.remote.counts)
        sync.cycle()
        after = sync.remote.counts
        assert after["search_all"] == before["search_all"] + 1  # deletions by UID diffing
        assert after["flags_received"] - before["flags_received"] == 1  # CHANGEDSINCE
    finally:
        sync.close()
    assert len(env.local_message_ids("INBOX")) == 29
    assert "<INBOX.3@example.net>" not in env.local_message_ids("INBOX")
    assert sum("\\Seen" in m.flags for m in env.store.list_messages(env.folder_id("INBOX"))) == 1


def test_without_idle_status_rounds_pick_up_new_mail_in_every_folder(sync_env, monkeypatch):  # noqa: F811
    env = sync_env
    from courriel.imapsync.client import ImapRemote
    monkeypatch.setattr(ImapRemote, "idle_supported", property(lambda self: False))
    with env.imap() as imap:
        fill(imap, "INBOX", 2)
    account = env.add_account()
    stop = threading.Event()
    sync = AccountSync(env.db, env.store, env.data, account, poll_interval=600, folder_poll=1.0)
    cycles: list[int] = []
    cycle = sync.cycle
    sync.cycle = lambda: (cycles.append(1), cycle())[1]
    thread = threading.Thread(target=sync.run, args=(stop, env.data / "run"), daemon=True)
    thread.start()
    try:
        _poll(lambda: env.store.status(env.folder_id("INBOX")).messages == 2, 30, "the initial import")
        _wait_quiet(sync, cycles, idle=False)
        with env.imap() as imap:
            imap.append("INBOX", None, None, message(98))
        _poll(lambda: env.store.status(env.folder_id("INBOX")).messages == 3, 20, "the pickup by STATUS")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
