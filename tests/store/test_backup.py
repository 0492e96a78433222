"""`courriel backup` / `courriel restore` (courriel.backup): an online backup taken while mail
is being delivered restores into an empty directory, and every message of the snapshot reads
back byte-identical; a damaged backup or a non-empty target is refused without writing."""

from __future__ import annotations

import json
import os
import threading

import pytest
from store_fixtures import make_mailbox

from courriel import backup, datadir
from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.store import Store

BINARY = bytes(range(256)) * 4096  # 1 MiB, every byte value


def messages(i: int) -> bytes:
    return (f"From: a{i}@example.net\r\nTo: box@example.org\r\nSubject: message {i}\r\n\r\n".encode()
            + (BINARY if i == 0 else f"line {i}\r\n".encode() * (i + 1)))


def read_all(db: Database, blob_root) -> dict[tuple[str, str, int], bytes]:
    """Every message of every mailbox: (address, folder, uid) -> bytes."""
    from courriel.models import Mailbox

    store = Store(db, BlobStore(blob_root, db))
    found = {}
    with db.read() as session:
        boxes = [(m.id, m.address) for m in session.query(Mailbox)]
    for mailbox_id, address in boxes:
        for folder in store.list_folders(mailbox_id):
            for info in store.list_messages(folder.id):
                with store.open_message(folder.id, info.uid) as handle:
                    found[(address, folder.name, info.uid)] = handle.read()
    return found


@pytest.fixture
def world(config, db):
    datadir.initialise(config.data_dir)
    os.chmod(config.data_dir / "keys", 0o700)  # the conftest data_dir made it with the umask's mode
    (config.data_dir / "keys" / "example.org.default.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    os.chmod(config.data_dir / "keys" / "example.org.default.pem", 0o600)
    store = Store(db, BlobStore(config.blob_dir, db))
    mailbox_id = make_mailbox(db, "box")
    for i in range(12):
        store.deliver(mailbox_id, messages(i), flags=["\\Seen"] if i % 2 else ())
    store.deliver(mailbox_id, b"Subject: bare LF\n\nbody\n", folder="Sent")
    return config, db, store, mailbox_id


def test_online_backup_restores_every_message_byte_identical(world, tmp_path):
    config, db, store, mailbox_id = world
    if not db.is_sqlite:
        pytest.skip("PostgreSQL databases are backed up with pg_dump (see the next test)")
    stop = threading.Event()
    delivered_during = []

    def deliver_while_backing_up():
        for i in range(100, 160):  # bounded
            if stop.is_set():
                return
            store.deliver(mailbox_id, messages(i))
            delivered_during.append(i)

    writer = threading.Thread(target=deliver_while_backing_up)
    writer.start()
    try:
        report = backup.backup(config, tmp_path / "backup")
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not writer.is_alive()
    assert report.database == "sqlite" and not report.missing_blobs
    assert report.linked > 0 and report.copied == 0  # same filesystem: hard links, not copies

    manifest = json.loads((tmp_path / "backup" / backup.MANIFEST).read_text())
    assert manifest["database"]["kind"] == "sqlite" and manifest["database"]["schema_revision"]
    assert {"courriel.toml", "courriel.db", "keys/example.org.default.pem", "tls/cert.pem", "tls/key.pem"} \
        <= {entry["path"] for entry in manifest["files"]}

    restored = tmp_path / "restored"
    result = backup.restore(tmp_path / "backup", restored)
    assert result.blobs >= 13
    assert (restored / "keys" / "example.org.default.pem").stat().st_mode & 0o777 == 0o600
    assert (restored / "keys").stat().st_mode & 0o777 == 0o700
    assert all((restored / name).is_dir() for name in datadir.SUBDIRS)

    original = read_all(db, config.blob_dir)
    copy_db = Database(f"sqlite:///{restored / 'courriel.db'}")
    try:
        copy = read_all(copy_db, restored / "blobs")
    finally:
        copy_db.dispose()
    # The snapshot holds every message delivered before the backup and a prefix of the others.
    assert len(copy) >= 13
    assert set(copy) <= set(original)
    for key, data in copy.items():
        assert data == original[key], key
    assert len(copy[("box@example.org", "INBOX", 1)]) > len(BINARY)  # the 1 MiB binary body is there
    assert copy[("box@example.org", "INBOX", 2)] == messages(1)
    assert copy[("box@example.org", "Sent", 1)] == b"Subject: bare LF\r\n\r\nbody\r\n"


def test_postgresql_backup_holds_files_and_names_pg_dump(world, tmp_path):
    config, db, _store, _mailbox_id = world
    if db.is_sqlite:
        pytest.skip("SQLite is covered by the round trip")
    report = backup.backup(config, tmp_path / "backup")
    assert report.database == "postgresql" and report.blobs == 13 and not report.missing_blobs
    manifest = json.loads((tmp_path / "backup" / backup.MANIFEST).read_text())
    assert "pg_dump" in manifest["database"]["note"] or "pg_restore" in manifest["database"]["note"]
    assert not (tmp_path / "backup" / "courriel.db").exists()
    assert len(list((tmp_path / "backup" / "blobs").rglob("*"))) >= 13


def test_bad_targets_and_damaged_backups_change_nothing(world, tmp_path):
    config, db, _store, _mailbox_id = world
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep").write_text("x")
    with pytest.raises(backup.BackupError, match="not an empty directory"):
        backup.backup(config, occupied)
    assert sorted(p.name for p in occupied.iterdir()) == ["keep"]
    with pytest.raises(backup.BackupError, match="outside the data directory"):
        backup.backup(config, config.data_dir / "inside")
    with pytest.raises(backup.BackupError, match=r"no manifest\.json"):
        backup.restore(occupied, tmp_path / "nowhere")
    if not db.is_sqlite:
        return
    backup.backup(config, tmp_path / "backup")
    with pytest.raises(backup.BackupError, match="not an empty directory"):
        backup.restore(tmp_path / "backup", occupied)
    assert sorted(p.name for p in occupied.iterdir()) == ["keep"]
    victim = next(p for p in (tmp_path / "backup" / "blobs").rglob("*") if p.is_file())
    victim.unlink()
    with pytest.raises(backup.BackupError, match="damaged"):
        backup.restore(tmp_path / "backup", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()


@pytest.mark.parametrize("hostile", ["../escaped.txt", "/ABSOLUTE/escaped.txt", "config/../../escaped.txt"])
def test_restore_refuses_manifest_paths_leaving_the_data_directory(world, tmp_path, hostile):
    """A tampered backup cannot write outside the data directory: a manifest path that is absolute
    or climbs with `..` is refused before anything is written."""
    config, _db, _store, _mailbox_id = world
    source = tmp_path / "backup"
    backup.backup(config, source)
    payload = tmp_path / "escaped.txt"
    payload.write_text("planted")
    path = hostile.replace("/ABSOLUTE", str(tmp_path / "abs"))
    if path.startswith("/"):
        (tmp_path / "abs").mkdir()
        (tmp_path / "abs" / "escaped.txt").write_text("planted")
    manifest = json.loads((source / "manifest.json").read_text())
    digest = backup._sha256(payload)
    manifest.setdefault("files", []).append({"path": path, "size": payload.stat().st_size, "sha256": digest})
    (source / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "restored" / "data"
    with pytest.raises(backup.BackupError, match="unsafe path"):
        backup.restore(source, target)
    assert not target.exists()
