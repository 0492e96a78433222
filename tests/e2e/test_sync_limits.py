"""Size limits of the sync engine against a real Dovecot on loopback: a remote message over the
limit is skipped with a visible reason (the run goes on, no failure counted), POP3 messages with
lines longer than poplib's 2,048 octets import, and a skipped POP3 message is never deleted."""

from __future__ import annotations

import poplib

from sync_fixtures import dovecot_pop, message, sync_env  # noqa: F401

from courriel.imapsync import accounts
from courriel.imapsync.runner import AccountSync

LIMIT = 20_000
BIG = message(99, body=(b"z" * 998 + b"\r\n") * 40)  # ~40 KB
LONG_LINE = message(7, body=b"q" * 6000 + b"\r\n")  # one 6,000-octet line


def _cycle(env, account: int) -> AccountSync:
    sync = AccountSync(env.db, env.store, env.data, account, max_message_size=LIMIT)
    try:
        sync.cycle()
        accounts.record_success(env.db, account)
    finally:
        sync.close()
    return sync


def _remote_fill(env) -> None:
    with env.imap() as imap:
        for body in (message(1), BIG, LONG_LINE):
            assert imap.append("INBOX", None, None, body)[0] == "OK"


def test_imap_message_over_the_limit_is_skipped_and_shown(sync_env):  # noqa: F811
    env = sync_env
    _remote_fill(env)
    account = env.add_account("imap")
    _cycle(env, account)
    assert env.local_message_ids("INBOX") == ["<INBOX.1@example.net>", "<INBOX.7@example.net>"]
    view = accounts.get(env.db, account)
    assert view.failures == 0 and view.state == "active"
    assert "skipped remote message" in view.last_error and f"over the {LIMIT}-octet limit" in view.last_error
    assert [(f.done, f.total) for f in view.folders if f.remote_name == "INBOX"] == [(3, 3)]
    _cycle(env, account)  # looked at again, still skipped, nothing imported twice
    assert len(env.local_message_ids("INBOX")) == 2


def test_pop3_long_lines_import_and_skipped_message_stays_on_server(sync_env):  # noqa: F811
    env = sync_env
    _remote_fill(env)
    account = env.add_account("pop3", leave_on_server=False)
    _cycle(env, account)
    assert env.local_message_ids("INBOX") == ["<INBOX.1@example.net>", "<INBOX.7@example.net>"]
    folder = env.folder_id("INBOX")
    bodies = []
    for info in env.store.list_messages(folder):
        with env.store.open_message(folder, info.uid) as handle:
            bodies.append(handle.read())
    assert any(b"q" * 6000 + b"\r\n" in body for body in bodies)  # the long line intact
    view = accounts.get(env.db, account)
    assert view.failures == 0 and "skipped remote message UIDL" in view.last_error
    client = poplib.POP3("127.0.0.1", env.dovecot.pop3_port, timeout=10)
    try:
        client.user(env.user)
        client.pass_(env.password)
        assert client.stat()[0] == 1  # only the imported ones were deleted: the big one stays
    finally:
        client.quit()
