"""Sync over implicit TLS and STARTTLS (IMAP and POP3) against Dovecot with a test CA; a
certificate the client does not trust is refused with a clear per-account error."""

from __future__ import annotations

import pytest
from sync_fixtures import dovecot_tls, fill, sync_env_tls  # noqa: F401

from courriel.imapsync import accounts
from courriel.imapsync.client import RemoteError
from courriel.imapsync.runner import AccountSync


def _cycle(env, account: int) -> None:
    sync = AccountSync(env.db, env.store, env.data, account)
    try:
        sync.cycle()
    finally:
        sync.close()


@pytest.mark.parametrize(("protocol", "security"), [("imap", "ssl"), ("imap", "starttls"),
                                                    ("pop3", "ssl"), ("pop3", "starttls")])
def test_import_over_tls(sync_env_tls, protocol, security):  # noqa: F811
    env = sync_env_tls
    with env.imap() as imap:
        fill(imap, "INBOX", 2)
    account = env.add_account(protocol, security=security)
    _cycle(env, account)
    assert env.local_message_ids("INBOX") == ["<INBOX.0@example.net>", "<INBOX.1@example.net>"]
    assert "TLS" in env.dovecot.log()


def test_untrusted_certificate_is_refused(sync_env_tls, monkeypatch):  # noqa: F811
    env = sync_env_tls
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent")
    monkeypatch.setenv("SSL_CERT_DIR", "/nonexistent")
    account = env.add_account("imap", security="ssl")
    with pytest.raises(RemoteError, match=r"(?i)certificate"):
        _cycle(env, account)
    assert accounts.get(env.db, account).state == "active"
    assert env.store.status(env.folder_id("INBOX")).messages == 0
