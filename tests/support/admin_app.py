"""The admin application on a migrated test database, with known accounts, for the API, role,
schemathesis and browser tests.

Accounts: admin `root` (console user, role admin), user `bob` (console user, role user, owns
bob@example.org), mailbox alice@example.org (no owner). The DNS resolver points at a closed
loopback port, so DNS routes answer quickly with lookup errors and never leave the machine.

Fixtures: `admin_setup` (an `AdminSetup`), `api` (a signed-in admin API client). Import them
with `from admin_app import admin_setup, api`.
"""

from __future__ import annotations

import re
import socket
import warnings
from dataclasses import dataclass

import pytest

from courriel import config as config_mod
from courriel import passwords, schema
from courriel.admin import services
from courriel.admin.app import create_app
from courriel.blobs import BlobStore
from courriel.config import Config
from courriel.db import Database
from courriel.queue import spool

with warnings.catch_warnings():
    # Starlette asks for a renamed httpx package; the client itself is unchanged.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ADMIN = ("root", "Admin-pass-2026")
USER = ("bob", "Bob-pass-2026x")
BOB_MAILBOX = ("bob@example.org", "Bobmail-pass-1")
ALICE = ("alice@example.org", "Alice-pass-2026")
DOMAIN = "example.org"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_test_environ(monkeypatch, db_url: str) -> None:
    monkeypatch.setenv("COURRIEL_DATABASE_URL", db_url)
    monkeypatch.setenv("COURRIEL_SERVER_HOSTNAME", "mail.example.org")
    monkeypatch.setenv("COURRIEL_DNS_NAMESERVERS", f"127.0.0.1:{closed_udp_port()}")
    monkeypatch.setenv("COURRIEL_DNS_TIMEOUT", "0.2")


def populate(db: Database, config: Config) -> None:
    hasher = passwords.PasswordHasher.from_config(config)
    policy = passwords.PasswordPolicy.from_config(config)
    services.add_user(db, hasher, policy, ADMIN[0], role="admin", password=ADMIN[1])
    services.add_user(db, hasher, policy, USER[0], role="user", password=USER[1])
    services.add_domain(db, DOMAIN, is_default=True)
    services.add_mailbox(db, hasher, policy, ALICE[0], password=ALICE[1])
    services.add_mailbox(db, hasher, policy, BOB_MAILBOX[0], user=USER[0], password=BOB_MAILBOX[1])


def queue_message(db: Database, config: Config, recipient: str = "someone@remote.example") -> str:
    envelope = spool.Envelope(sender=ALICE[0], recipients=(spool.EnvelopeRecipient(recipient),),
                              source="submission")
    return spool.accept(db, BlobStore(config.blob_dir, db), envelope, b"Subject: hi\r\n\r\nhello\r\n",
                        run_dir=config.run_dir)


@dataclass
class AdminSetup:
    config: Config
    db: Database
    app: object

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://127.0.0.1")

    def bearer(self, username: str, password: str) -> TestClient:
        """A client signed in through the API (Bearer session token)."""
        client = self.client()
        response = client.post("/api/v1/session", json={"username": username, "password": password})
        assert response.status_code == 201, response.text
        client.headers["Authorization"] = f"Bearer {response.json()['token']}"
        return client

    def console(self, username: str, password: str) -> tuple[TestClient, str]:
        """A client signed in through the login form (cookie), and its CSRF token."""
        client = self.client()
        page = client.get("/login")
        token = CSRF_INPUT.search(page.text).group(1)
        response = client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                               follow_redirects=False)
        assert response.status_code == 303, response.text
        page = client.get("/account" if "@" in username or username == USER[0] else "/")
        return client, CSRF_INPUT.search(page.text).group(1)


def make_setup(data_dir, db_url: str, monkeypatch) -> AdminSetup:
    """A migrated, populated database and the application on it (call `db.dispose()` at the end)."""
    set_test_environ(monkeypatch, db_url)
    config = config_mod.load(data_dir, dev=True)
    db = Database(config.database_url)
    schema.upgrade(db)
    populate(db, config)
    return AdminSetup(config, db, create_app(config))


@pytest.fixture
def admin_setup(data_dir, db_url, monkeypatch) -> AdminSetup:
    setup = make_setup(data_dir, db_url, monkeypatch)
    yield setup
    setup.db.dispose()


@pytest.fixture
def api(admin_setup) -> TestClient:
    with admin_setup.bearer(*ADMIN) as client:
        yield client
