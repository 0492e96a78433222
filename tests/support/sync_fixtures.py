"""Fixtures for the sync tests: a Dovecot with POP3 on loopback, an initialised data directory
with one mailbox, and an external account per test (a Dovecot user of its own)."""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import imapclient
import pytest
from dovecot_server import DovecotServer, dovecot_available
from store_fixtures import make_mailbox

from courriel import config as config_mod
from courriel.blobs import BlobStore
from courriel.cli import main as cli_main
from courriel.db import Database
from courriel.imapsync import accounts
from courriel.store import Store


@pytest.fixture(scope="session")
def dovecot_pop():
    if not dovecot_available() or not Path("/usr/lib/dovecot/pop3").exists():
        pytest.skip("dovecot with POP3 is not installed (Debian packages dovecot-imapd, dovecot-pop3d)")
    server = DovecotServer(pop3=True)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_tls():
    """Dovecot with STARTTLS and implicit TLS (IMAP and POP3), certificate from a test CA."""
    if not dovecot_available() or not Path("/usr/lib/dovecot/pop3").exists():
        pytest.skip("dovecot with POP3 is not installed (Debian packages dovecot-imapd, dovecot-pop3d)")
    pytest.importorskip("trustme")
    server = DovecotServer(pop3=True, tls=True)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server
    server.stop()


@dataclass
class SyncEnv:
    data: Path
    db: Database
    store: Store
    mailbox_id: int
    dovecot: DovecotServer
    user: str
    password: str

    def add_account(self, protocol: str = "imap", leave_on_server: bool = True, password: str | None = None,
                    auth: str = "plain", security: str = "none") -> int:
        ports = {("imap", "none"): self.dovecot.port, ("imap", "starttls"): self.dovecot.port,
                 ("imap", "ssl"): self.dovecot.imaps_port, ("pop3", "none"): self.dovecot.pop3_port,
                 ("pop3", "starttls"): self.dovecot.pop3_port, ("pop3", "ssl"): self.dovecot.pop3s_port}
        return accounts.create(self.db, self.data, self.mailbox_id, self.user, password or self.password,
                               protocol=protocol, host="127.0.0.1", port=ports[(protocol, security)],
                               security=security, username=self.user, leave_on_server=leave_on_server, auth=auth)

    @contextlib.contextmanager
    def imap(self):
        with self.dovecot.client(self.user, self.password) as imap:
            imap._courriel_login = (self.user, self.password)  # for fill()
            yield imap

    def folder_id(self, name: str) -> int:
        return self.store.get_folder(self.mailbox_id, name).id

    def local_message_ids(self, name: str) -> list[str]:
        return sorted(s.message_id for s in self.store.summaries(self.folder_id(name)))


def _environment(tmp_path, monkeypatch, dovecot: DovecotServer, database_url: str | None = None):
    for name in list(os.environ):
        if name.startswith("COURRIEL_") and not name.startswith("COURRIEL_PASSWORDS_"):
            monkeypatch.delenv(name)
    if database_url:
        monkeypatch.setenv("COURRIEL_DATABASE_URL", database_url)
    data = tmp_path / "data"
    assert cli_main(["init", "--data", str(data)]) == 0
    config = config_mod.load(data)
    db = Database(config.database_url)
    store = Store(db, BlobStore(config.blob_dir, db), run_dir=config.run_dir)
    user = f"ext{secrets.token_hex(4)}@example.test"
    password = secrets.token_hex(8)
    dovecot.add_user(user, password)
    return SyncEnv(data, db, store, make_mailbox(db), dovecot, user, password)


@pytest.fixture
def sync_env(tmp_path, monkeypatch, dovecot_pop):
    """A data directory on SQLite (the embedded default)."""
    env = _environment(tmp_path, monkeypatch, dovecot_pop)
    yield env
    env.db.dispose()


@pytest.fixture
def sync_env_tls(tmp_path, monkeypatch, dovecot_tls):
    """Against the TLS Dovecot; the system trust store is replaced by the test CA (SSL_CERT_FILE)."""
    env = _environment(tmp_path, monkeypatch, dovecot_tls)
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot_tls.ca_file))
    yield env
    env.db.dispose()


@pytest.fixture
def sync_env_pg(tmp_path, monkeypatch, dovecot_pop, postgres_cluster):
    """The same on PostgreSQL (the `postgres_cluster` fixture of tests/conftest.py)."""
    env = _environment(tmp_path, monkeypatch, dovecot_pop, postgres_cluster.create_database())
    yield env
    env.db.dispose()


def message(n: int, folder: str = "INBOX", body: bytes = b"Hello.\r\n") -> bytes:
    return (f"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: {folder} {n}\r\n"
            f"Message-ID: <{folder.replace('/', '.')}.{n}@example.net>\r\n"
            "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n").encode() + body


def remote_message_ids(imap, folder: str) -> list[str]:
    """Message-IDs in a Dovecot folder (imaplib, read-only)."""
    typ, _ = imap.select(f'"{folder}"', readonly=True)
    assert typ == "OK"
    typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    ids = []
    for item in data:
        if isinstance(item, tuple):
            header = item[1].decode()
            ids.append(header.split(":", 1)[1].strip())
    return sorted(ids)


def fill(imap, folder: str, count: int, start: int = 0, flags: str | None = None) -> None:
    """Add `count` messages to a folder (creating it unless it is INBOX): RFC 3502 MULTIAPPEND
    in chunks of 250 through a second connection of the same user."""
    if folder != "INBOX":
        imap.create(f'"{folder}"')
    user, password = imap._courriel_login
    host, port = imap.host, imap.port
    with imapclient.IMAPClient(host, port=port, ssl=False, timeout=30) as client:
        client.login(user, password)
        flag_list = flags.strip("()").split() if flags else []
        for first in range(start, start + count, 250):
            last = min(start + count, first + 250)
            client.multiappend(folder, [{"msg": message(n, folder), "flags": flag_list} for n in range(first, last)])
