"""Fixtures for the store tests: a blob store, a Store and mailboxes on the `db` fixture's database."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.models import Blob, Domain, Mailbox, Message, QueueMessage
from courriel.store import Store, create_default_folders


def make_mailbox(db: Database, local_part: str | None = None, quota_bytes: int = 0,
                 domain: str = "example.org", quota_messages: int = 0) -> int:
    """A mailbox with the default folders; returns its id."""
    local_part = local_part or "u" + secrets.token_hex(4)
    with db.write() as session:
        row = session.query(Domain).filter_by(name=domain).one_or_none()
        if row is None:
            row = Domain(name=domain, verification_token=secrets.token_hex(8))
            session.add(row)
            session.flush()
        mailbox = Mailbox(domain_id=row.id, local_part=local_part, address=f"{local_part}@{domain}",
                          quota_bytes=quota_bytes, quota_messages=quota_messages)
        session.add(mailbox)
        session.flush()
        create_default_folders(session, mailbox.id)
        return mailbox.id


def blob_files(root: Path) -> set[str]:
    """Every file under the blob directory, relative paths (temporary files included)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def refcount_problems(db: Database) -> list[str]:
    """Blobs whose refcount differs from the rows that refer to them."""
    problems = []
    with db.read() as session:
        for blob in session.query(Blob):
            actual = (session.query(Message).filter_by(blob_id=blob.id).count()
                      + session.query(QueueMessage).filter_by(blob_id=blob.id).count())
            if actual != blob.refcount:
                problems.append(f"blob {blob.id}: refcount {blob.refcount}, referenced {actual}")
    return problems


def sample_message(n: int = 0, subject: str | None = None, body: bytes = b"Hello.\r\n") -> bytes:
    subject = subject or f"message {n}"
    return (f"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{n}.{secrets.token_hex(4)}@example.net>\r\n"
            "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n").encode() + body


@pytest.fixture
def blobs(db, data_dir) -> BlobStore:
    return BlobStore(data_dir / "blobs", db)


@pytest.fixture
def store(db, blobs, data_dir) -> Store:
    return Store(db, blobs, run_dir=data_dir / "run")


@pytest.fixture
def mailbox_id(db) -> int:
    return make_mailbox(db)
