"""POP3 import from a real Dovecot on loopback: UIDL tracking, leave-on-server or delete."""

from __future__ import annotations

import poplib

from sqlalchemy import select
from sync_fixtures import dovecot_pop, fill, message, remote_message_ids, sync_env  # noqa: F401

from courriel.imapsync import accounts
from courriel.imapsync.runner import AccountSync
from courriel.models import SyncPopMessage


def _cycle(env, account: int) -> None:
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
    finally:
        sync.close()


def _pop_count(env) -> int:
    client = poplib.POP3("127.0.0.1", env.dovecot.pop3_port, timeout=10)
    try:
        client.user(env.user)
        client.pass_(env.password)
        return client.stat()[0]
    finally:
        client.quit()


def test_pop3_import_tracks_uidl_and_leaves_mail_on_server(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 5)
    account = env.add_account("pop3")
    _cycle(env, account)
    expected = [f"<INBOX.{n}@example.net>" for n in range(5)]
    assert env.local_message_ids("INBOX") == sorted(expected)
    _cycle(env, account)  # UIDL tracking: nothing imported twice
    assert env.local_message_ids("INBOX") == sorted(expected)
    with env.imap() as imap:
        imap.append("INBOX", None, None, message(5))
    _cycle(env, account)
    assert env.local_message_ids("INBOX") == sorted([*expected, "<INBOX.5@example.net>"])
    assert _pop_count(env) == 6  # left on the server
    with env.db.read() as session:
        uidls = list(session.scalars(select(SyncPopMessage.uidl).where(SyncPopMessage.account_id == account)))
    assert len(uidls) == len(set(uidls)) == 6
    view = accounts.get(env.db, account)
    assert [(f.remote_name, f.done, f.total) for f in view.folders] == [("INBOX", 6, 6)]
    # Removing the account removes what it imported, and only that.
    env.store.deliver(env.mailbox_id, message(100, "local"))
    assert accounts.remove(env.db, env.store, account) == 6
    assert env.local_message_ids("INBOX") == ["<local.100@example.net>"]


def test_pop3_delete_from_server_after_import(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 4)
    account = env.add_account("pop3", leave_on_server=False)
    _cycle(env, account)
    assert len(env.local_message_ids("INBOX")) == 4
    assert _pop_count(env) == 0
    with env.imap() as imap:
        assert remote_message_ids(imap, "INBOX") == []
    with env.db.read() as session:
        assert all(session.scalars(select(SyncPopMessage.deleted_on_server)))
