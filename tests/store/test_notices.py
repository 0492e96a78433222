"""Connection settings and the notices mailed on mailbox creation and password change: queued
through the spool (both backends), and delivered into the new mailbox by the queue runner."""

from __future__ import annotations

import email
import email.policy

import pytest
from queue_harness import make_world, poll

from courriel import passwords
from courriel.admin import services
from courriel.admin.services import notices
from courriel.blobs import BlobStore
from courriel.queue import spool

HASHER = passwords.PasswordHasher(memory_kib=1024, time_cost=1)
POLICY = passwords.PasswordPolicy(min_length=10, min_classes=2)
PASSWORD = "Correct-Horse-9"


@pytest.fixture
def world(db, config):
    config.values[("server", "hostname")] = "mail.example.org"
    services.add_domain(db, "example.org")
    services.add_user(db, HASHER, POLICY, "alice", email="alice@home.example", password=PASSWORD)
    return db, config


def parsed(db, config, queue_id: str) -> email.message.EmailMessage:
    entry = spool.get(db, queue_id)
    assert entry is not None
    data = BlobStore(config.blob_dir, db).read(entry.blob_id)
    return email.message_from_bytes(data, policy=email.policy.default)


def test_connection_settings_follow_the_listeners(config):
    config.values[("server", "hostname")] = "mail.example.org"
    config.values[("listeners", "imap")] = ""
    settings = notices.connection_settings(config, "Bob@Example.ORG")
    assert settings.address == "bob@example.org"
    assert [(s.protocol, s.host, s.port, s.security) for s in settings.incoming] == [
        ("IMAP", "mail.example.org", 2993, "SSL/TLS")]
    assert [(s.port, s.security) for s in settings.outgoing] == [(2465, "SSL/TLS"), (2587, "STARTTLS")]
    assert {s.username for s in settings.incoming + settings.outgoing} == {"bob@example.org"}
    assert "port 2993" in settings.text() and "user name bob@example.org" in settings.text()
    with pytest.raises(services.ServiceError):
        notices.connection_settings(config, "not an address")


def test_mailbox_creation_and_password_change_queue_notices(world):
    db, config = world
    notifier = notices.Notifier(db, config)
    info, _ = services.add_mailbox(db, HASHER, POLICY, "alice@example.org", user="alice", password=PASSWORD,
                                   notifier=notifier)
    entries = spool.list_entries(db)
    assert len(entries) == 1
    created = entries[0]
    assert created.sender == "" and created.source == "local"
    assert [(r.address, r.mailbox_id) for r in created.recipients] == [
        ("alice@example.org", info.id), ("alice@home.example", None)]
    message = parsed(db, config, created.id)
    assert message["Subject"] == "Your new mailbox alice@example.org"
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_content()
    assert "mail.example.org" in body and "2993" in body and "2465" in body
    assert PASSWORD not in body

    generated = services.set_mailbox_password(db, HASHER, POLICY, "alice@example.org", None, notifier=notifier)
    entries = spool.list_entries(db)
    assert len(entries) == 2
    changed = next(e for e in entries if e.id != created.id)
    message = parsed(db, config, changed.id)
    assert message["Subject"] == "The password of alice@example.org was changed"
    assert generated not in message.as_string()

    # A refused change sends nothing.
    with pytest.raises(services.ServiceError):
        services.set_mailbox_password(db, HASHER, POLICY, "alice@example.org", "short", notifier=notifier)
    with pytest.raises(services.ServiceError):
        services.add_mailbox(db, HASHER, POLICY, "alice@example.org", password=PASSWORD, notifier=notifier)
    assert len(spool.list_entries(db)) == 2


def test_mailbox_without_owner_gets_one_recipient(world):
    db, config = world
    services.add_mailbox(db, HASHER, POLICY, "info@example.org", password=PASSWORD)
    assert spool.list_entries(db) == []  # no notifier: nothing queued
    queue_id = notices.send_mailbox_created(db, config, "info@example.org")
    assert [r.address for r in spool.get(db, queue_id).recipients] == ["info@example.org"]
    with pytest.raises(services.ServiceError):
        notices.send_mailbox_created(db, config, "nobody@example.org")


def test_notice_arrives_in_the_new_mailbox(data_dir, monkeypatch):
    with make_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch) as qworld:
        services.add_domain(qworld.db, "example.org")
        info, _ = services.add_mailbox(qworld.db, HASHER, POLICY, "carol@example.org", password=PASSWORD,
                                       notifier=notices.Notifier(qworld.db, qworld.config))
        with qworld.running():
            poll(lambda: qworld.inbox_or_empty(info.id), "notice delivered")
        delivered = email.message_from_bytes(qworld.inbox(info.id)[0], policy=email.policy.default)
        assert delivered["Subject"] == "Your new mailbox carol@example.org"
        assert "carol@example.org" in delivered.get_content()
