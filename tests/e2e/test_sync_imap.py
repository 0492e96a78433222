"""Sync against a real Dovecot on loopback: import, resume after kill -9, both-way changes,
UIDVALIDITY reset, IDLE pickup, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select
from sync_fixtures import dovecot_pop, fill, message, remote_message_ids, sync_env, sync_env_pg  # noqa: F401

from courriel.cli import main as cli_main
from courriel.imapsync import accounts, plan
from courriel.imapsync.runner import AccountSync
from courriel.models import Blob, SyncMessage

# Dovecot's maildir hierarchy delimiter is "."; locally it is "/".
FOLDERS = {"INBOX": 1200, "Sent": 300, "Work.Projects": 500}
LOCAL = {"INBOX": "INBOX", "Sent": "Sent", "Work.Projects": "Work/Projects"}


def _poll(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)  # poll interval, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_env(request):
    return request.getfixturevalue("sync_env" if request.param == "sqlite" else "sync_env_pg")


def _count(env, name: str) -> int:
    return env.store.status(env.folder_id(name)).messages


def _blob_count(env) -> int:
    with env.db.read() as session:
        return session.scalar(select(func.count()).select_from(Blob))


@pytest.mark.slow
def test_full_import_then_second_run_imports_nothing(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        imap.create('"Work"')
        for folder, count in FOLDERS.items():
            fill(imap, folder, count, flags="(\\Seen)" if folder == "Sent" else None)
    account = env.add_account()
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
    finally:
        sync.close()
    with env.imap() as imap:
        for folder in FOLDERS:
            assert env.local_message_ids(LOCAL[folder]) == remote_message_ids(imap, folder), folder
    sent = env.store.list_messages(env.folder_id("Sent"))
    assert env.store.get_folder(env.mailbox_id, "Sent").special_use == "\\Sent"
    assert all("\\Seen" in m.flags for m in sent)
    view = accounts.get(env.db, account)
    assert {f.remote_name: (f.done, f.total) for f in view.folders} == {
        "INBOX": (1200, 1200), "Sent": (300, 300), "Work.Projects": (500, 500), "Work": (0, 0)}
    blobs = _blob_count(env)
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.connect()
        searched = []
        uids = sync.remote.uids
        sync.remote.uids = lambda: searched.append(1) or uids()
        sync.cycle()
    finally:
        sync.close()
    assert _blob_count(env) == blobs
    # Dovecot offers QRESYNC: unchanged HIGHESTMODSEQ on every folder, no UID SEARCH at all.
    assert searched == []
    assert sum(_count(env, LOCAL[f]) for f in FOLDERS) == sum(FOLDERS.values())


@pytest.mark.slow
def test_kill_during_import_then_resume_gives_the_exact_set(any_env):
    env = any_env
    with env.imap() as imap:
        fill(imap, "INBOX", 600)
    account = env.add_account()
    command = [sys.executable, "-c", "import sys; from courriel.cli import main; sys.exit(main())",
               "sync", "run", "--once", str(account), "--data", str(env.data)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONSAFEPATH": "1"})
    try:
        _poll(lambda: env.store.get_folder(env.mailbox_id, "INBOX") and _count(env, "INBOX") >= 150, 60,
              "part of the import")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stderr.close()
    partial = _count(env, "INBOX")
    assert 150 <= partial < 600
    status = subprocess.run(command, capture_output=True, env={**os.environ, "PYTHONSAFEPATH": "1"}, timeout=120)
    assert status.returncode == 0, status.stderr
    local = env.local_message_ids("INBOX")
    assert len(local) == len(set(local)) == 600
    with env.imap() as imap:
        assert local == remote_message_ids(imap, "INBOX")
    with env.db.read() as session:
        assert session.scalar(select(func.count()).select_from(SyncMessage)) == 600


def _uid_of(imap, folder: str, message_id: str) -> bytes:
    imap.select(f'"{folder}"')
    typ, data = imap.uid("SEARCH", None, "HEADER", "Message-ID", message_id)
    assert typ == "OK" and data[0], (folder, message_id)
    return data[0].split()[0]


def _remote_flags(imap, folder: str, message_id: str) -> str:
    uid = _uid_of(imap, folder, message_id)
    _, data = imap.uid("FETCH", uid, "(FLAGS)")
    return data[0].decode()


def _local(env, folder: str, message_id: str):
    folder_id = env.folder_id(folder)
    uids = [s.uid for s in env.store.summaries(folder_id) if s.message_id == message_id]
    assert len(uids) == 1, (folder, message_id, uids)
    return env.store.list_messages(folder_id, uids)[0]


def test_flags_moves_and_deletions_both_ways(any_env):
    env = any_env
    with env.imap() as imap:
        fill(imap, "INBOX", 12)
        imap.create('"Archive"')
    account = env.add_account()
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
        assert _count(env, "INBOX") == 12
        mid = [f"<INBOX.{n}@example.net>" for n in range(12)]
        # Remote side, with imaplib: flag 0, expunge 1, move 2 to Archive.
        with env.imap() as imap:
            imap.select("INBOX")
            imap.uid("STORE", _uid_of(imap, "INBOX", mid[0]), "+FLAGS", "(\\Flagged)")
            imap.uid("STORE", _uid_of(imap, "INBOX", mid[1]), "+FLAGS", "(\\Deleted)")
            imap.expunge()
            imap.uid("MOVE", _uid_of(imap, "INBOX", mid[2]), "Archive")
        # Local side, with the store API: \Seen on 3, expunge 4, move 5 to Archive, and a
        # conflicting pair: 6 flagged here while expunged there (deletion wins).
        inbox, archive = env.folder_id("INBOX"), env.folder_id("Archive")
        env.store.set_flags(inbox, [_local(env, "INBOX", mid[3]).uid], "add", ["\\Seen"])
        accounts.expunge_local(env.store, inbox, [_local(env, "INBOX", mid[4]).uid])
        env.store.move(inbox, [_local(env, "INBOX", mid[5]).uid], archive)
        env.store.set_flags(inbox, [_local(env, "INBOX", mid[6]).uid], "add", ["\\Answered"])
        with env.imap() as imap:
            imap.select("INBOX")
            imap.uid("STORE", _uid_of(imap, "INBOX", mid[6]), "+FLAGS", "(\\Deleted)")
            imap.expunge()
        blobs_before = _blob_count(env)
        sync.cycle()
        sync.cycle()  # a second pass changes nothing more
    finally:
        sync.close()
    assert "\\Flagged" in _local(env, "INBOX", mid[0]).flags
    local_inbox = env.local_message_ids("INBOX")
    assert mid[1] not in local_inbox and mid[6] not in local_inbox
    assert mid[2] not in local_inbox and mid[2] in env.local_message_ids("Archive")
    with env.imap() as imap:
        assert "\\Seen" in _remote_flags(imap, "INBOX", mid[3])
        remote_inbox = remote_message_ids(imap, "INBOX")
        assert mid[4] not in remote_inbox and mid[5] not in remote_inbox
        remote_archive = remote_message_ids(imap, "Archive")
        assert sorted(remote_archive) == sorted([mid[2], mid[5]])
        assert remote_inbox == local_inbox
        assert remote_archive == env.local_message_ids("Archive")
    # Both moves were replayed on the other side: nothing was uploaded or downloaded again.
    assert _blob_count(env) == blobs_before


def test_uidvalidity_reset_on_the_remote_duplicates_nothing(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "Work", 30)
    account = env.add_account()
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
        before = {m.uid for m in env.store.list_messages(env.folder_id("Work"))}
        blobs = _blob_count(env)
        with env.imap() as imap:
            imap.select("INBOX")
            assert imap.rename('"Work"', '"Old"')[0] == "OK"
            imap.create('"Work"')
            imap.select('"Old"')
            imap.copy("1:*", '"Work"')
            imap.select("INBOX")
            imap.delete('"Old"')
        sync.close()
        sync.cycle()
        sync.cycle()
    finally:
        sync.close()
    assert {m.uid for m in env.store.list_messages(env.folder_id("Work"))} == before
    assert _blob_count(env) == blobs
    local = env.local_message_ids("Work")
    assert len(local) == len(set(local)) == 30


def test_idle_picks_up_new_remote_mail(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 3)
    account = env.add_account()
    stop = threading.Event()
    # A long poll interval: only IDLE can bring the new message in time.
    sync = AccountSync(env.db, env.store, env.data, account, poll_interval=600)
    thread = threading.Thread(target=sync.run, args=(stop, env.data / "run"), daemon=True)
    thread.start()
    try:
        _poll(lambda: _count(env, "INBOX") == 3, 30, "the initial import")
        time.sleep(0.1)
        _poll(lambda: sync.remote is not None, 10, "the connection")
        with env.imap() as imap:
            imap.append("INBOX", None, None, message(99))
        _poll(lambda: _count(env, "INBOX") == 4, 15, "the IDLE pickup")
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    assert "<INBOX.99@example.net>" in env.local_message_ids("INBOX")


def _cli(capsys, *args):
    capsys.readouterr()
    status = cli_main(list(args))
    captured = capsys.readouterr()
    return status, (json.loads(captured.out) if "--json" in args and status == 0 else captured.out + captured.err)


def test_cli_add_show_pause_error_and_remove(sync_env, capsys, monkeypatch):  # noqa: F811
    env = sync_env
    d = ["--data", str(env.data)]
    with env.imap() as imap:
        fill(imap, "INBOX", 5)
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong-password\n"))
    from courriel.models import Mailbox
    with env.db.read() as session:
        mailbox = session.get(Mailbox, env.mailbox_id).address
    status, added = _cli(capsys, "sync", "add", mailbox, env.user, "--host", "127.0.0.1", "--port",
                         str(env.dovecot.port), "--security", "none", "--password-stdin", "--json", *d)
    assert status == 0
    assert "secret" not in json.dumps(added) and "wrong-password" not in json.dumps(added)
    account = added["id"]
    assert added["settings_from"] == "manual" and added["state"] == "active"
    # A wrong password: the server's own message is kept on the account, with a retry time.
    status, _ = _cli(capsys, "sync", "run", "--once", str(account), *d)
    assert status == 1
    status, shown = _cli(capsys, "sync", "show", str(account), "--json", *d)
    assert "authentication failed" in shown["last_error"].lower()
    assert shown["failures"] == 1 and shown["next_attempt_at"]
    # Fix the password (remove and add again) and import.
    assert _cli(capsys, "sync", "remove", str(account), "--json", *d)[1]["messages_removed"] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(env.password + "\n"))
    status, added = _cli(capsys, "sync", "add", mailbox, env.user, "--host", "127.0.0.1", "--port",
                         str(env.dovecot.port), "--security", "none", "--password-stdin", "--json", *d)
    account = added["id"]
    assert _cli(capsys, "sync", "run", "--once", str(account), *d)[0] == 0
    status, shown = _cli(capsys, "sync", "show", str(account), *d)
    assert "5/5" in shown
    status, listing = _cli(capsys, "sync", "list", "--json", *d)
    assert [a["id"] for a in listing["accounts"]] == [account]
    for action, state in (("pause", "paused"), ("resume", "active"), ("disable", "disabled")):
        assert _cli(capsys, "sync", action, str(account), "--json", *d)[1] == {"id": account, "state": state}
    assert _count(env, "INBOX") == 5  # disabling keeps the imported messages
    status, removed = _cli(capsys, "sync", "remove", str(account), "--json", *d)
    assert removed["messages_removed"] == 5
    assert _count(env, "INBOX") == 0
    with env.imap() as imap:
        assert len(remote_message_ids(imap, "INBOX")) == 5  # the remote keeps its mail
    assert _cli(capsys, "sync", "show", str(account), *d)[0] == 2


def test_password_is_encrypted_at_rest(sync_env):  # noqa: F811
    env = sync_env
    account = env.add_account()
    key = env.data / "keys" / "sync.key"
    assert key.stat().st_mode & 0o777 == 0o600
    stored = b"".join(p.read_bytes() for p in env.data.glob("courriel.db*"))
    assert env.password.encode() not in stored
    assert accounts.password(env.db, env.data, account) == env.password
    assert "password" not in json.dumps(accounts.get(env.db, account).as_json())
    key.write_bytes(b"A" * 43 + b"=\n")  # another key: a clear error, not a crash
    with pytest.raises(accounts.credentials.CredentialError):
        accounts.password(env.db, env.data, account)


def test_sync_role_imports_and_stops_cleanly_on_sigterm(sync_env, tmp_path):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 3)
    env.add_account()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COURRIEL_")} | {"PYTHONSAFEPATH": "1"}
    log = (tmp_path / "role.log").open("wb")
    role = subprocess.Popen([sys.executable, "-c", "import sys; from courriel.cli import main; sys.exit(main())",
                             "serve", "--role", "sync", "--data", str(env.data)],
                            stdout=log, stderr=subprocess.STDOUT, env=environ)
    try:
        _poll(lambda: env.store.status(env.folder_id("INBOX")).messages == 3, 30, "the role's import")
        with env.imap() as imap:
            imap.append("INBOX", None, None, message(42))
        _poll(lambda: env.store.status(env.folder_id("INBOX")).messages == 4, 30, "the role's IDLE pickup")
        role.send_signal(signal.SIGTERM)
        assert role.wait(20) == 0
    finally:
        if role.poll() is None:
            role.kill()
            role.wait(10)
        log.close()


def test_cram_md5_login(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 2)
    account = env.add_account(auth="cram-md5")
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
    finally:
        sync.close()
    assert len(env.local_message_ids("INBOX")) == 2
    assert "method=CRAM-MD5" in env.dovecot.log()


def test_failures_back_off_then_pause_the_account(sync_env):  # noqa: F811
    env = sync_env
    account = env.add_account(password="not-the-password")
    stop = threading.Event()
    sync = AccountSync(env.db, env.store, env.data, account, poll_interval=600)
    thread = threading.Thread(target=sync.run, args=(stop, env.data / "run"), daemon=True)
    thread.start()
    try:
        _poll(lambda: accounts.get(env.db, account, False).failures == 1, 30, "the first failure")
        view = accounts.get(env.db, account, False)
        assert "authentication failed" in view.last_error.lower()  # Dovecot's own words
        assert view.state == "active" and view.next_attempt_at > view.last_error_at  # backing off
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()  # a stop interrupts the back-off wait
    for _ in range(20):
        view = accounts.record_failure(env.db, account, "still failing")
        if view.state == "paused":
            break
    assert view.state == "paused" and view.failures == plan.PAUSE_AFTER_FAILURES
    accounts.set_state(env.db, account, "active")
    resumed = accounts.get(env.db, account, False)
    assert resumed.failures == 0 and resumed.next_attempt_at is None and resumed.last_error == "still failing"


def test_two_remote_folders_never_share_one_local_folder(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "Junk", 2)  # a junk folder by name: mapped to the local \Junk folder (Spam)
        fill(imap, "Spam", 3)  # would map to the same local folder by name: skipped
    account = env.add_account()
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
    finally:
        sync.close()
    assert env.local_message_ids("Spam") == ["<Junk.0@example.net>", "<Junk.1@example.net>"]
    assert [f.remote_name for f in accounts.get(env.db, account).folders] == ["INBOX", "Junk"]
