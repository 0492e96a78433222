"""`courriel backup` says that it holds secrets: the credential key of external accounts sits in
`keys/` next to the database whose passwords it decrypts (see courriel.imapsync.accounts)."""

from __future__ import annotations

import json
import stat

import pytest
from store_fixtures import make_mailbox

from courriel import backup, datadir
from courriel.imapsync import accounts, credentials


@pytest.fixture
def world(config, db):
    if not config.database_url.startswith("sqlite"):
        pytest.skip("the SQLite snapshot is what holds the encrypted passwords here")
    datadir.initialise(config.data_dir)
    mailbox_id = make_mailbox(db, "box")
    accounts.create(db, config.data_dir, mailbox_id, "jo@example.net", "remote-secret", protocol="imap",
                    host="imap.example.net", port=993, security="ssl")
    return config


def test_backup_says_it_contains_secrets_and_is_private(world, tmp_path):
    report = backup.backup(world, tmp_path / "backup")
    destination = tmp_path / "backup"
    assert credentials.KEY_FILE.as_posix() in report.files  # the key travels with the database
    assert any(s.startswith("keys:") and "external-account passwords" in s for s in report.secrets)
    assert any(s.startswith(backup.DATABASE_FILE) for s in report.secrets)
    manifest = json.loads((destination / backup.MANIFEST).read_text())
    assert manifest["contains_secrets"] == report.secrets
    assert stat.S_IMODE(destination.stat().st_mode) == 0o700
    assert stat.S_IMODE((destination / backup.MANIFEST).stat().st_mode) == 0o600
    assert stat.S_IMODE((destination / credentials.KEY_FILE).stat().st_mode) == 0o600
    # A restored copy decrypts: the backup is as sensitive as the data directory itself.
    restored = tmp_path / "restored"
    backup.restore(destination, restored)
    assert credentials.decrypt(restored, _token(restored)) == "remote-secret"


def _token(data_dir) -> str:
    from courriel.db import Database
    from courriel.models import SyncAccount

    db = Database(f"sqlite:///{data_dir / backup.DATABASE_FILE}")
    try:
        with db.read() as session:
            return session.query(SyncAccount.secret).scalar()
    finally:
        db.dispose()
