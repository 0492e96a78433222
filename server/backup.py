"""Online backup of a data directory, and restore into an empty one (`courriel backup|restore`).

Owns the backup layout and its manifest. A backup is a directory laid out like a data
directory (so it can be inspected with the usual tools):

    DEST/courriel.db      consistent snapshot of the SQLite database (online backup API)
    DEST/blobs/..         every message body file (hard links when DEST is on the same
                          filesystem as the data directory, else copies)
    DEST/courriel.toml, keys/, tls/, spool/   configuration, DKIM and TLS keys
    DEST/manifest.json    written last: its presence marks a complete backup

Consistency while the server runs: body files are immutable once written (ARCHITECTURE §4,
`courriel.blobs`), so the order is (1) link or copy every body file present, (2) snapshot the
database with SQLite's online backup API (one read transaction: a point in time), (3) add the
body files of blobs the snapshot names that appeared since step 1. Every blob row of the
snapshot thus has its file in the backup; extra files without a row are harmless (the
collector removes them after a restore). A body can only vanish between (1) and (3) if its
blob was created after (1) and collected before (3), which the collector's grace period
(one hour) rules out.

PostgreSQL: the database is not copied. Run `pg_dump --format=custom` first, then
`courriel backup` (body files are then a superset of what the dump names); restore with
`pg_restore` into an empty database, then `courriel restore` for the files. The manifest
records `database.kind = "postgresql"` and the restore prints that reminder.

Security: the backup holds secrets: private keys (DKIM, TLS), password hashes, and the
credential key `keys/sync.key` together with the database whose external-account passwords
it decrypts (the key protects a database that leaks alone, not a backup: see
`courriel.imapsync.accounts`). DEST is created mode 0700, the manifest 0600, files keep their
modes; the manifest's `contains_secrets` and the command's output say so. Nothing secret is
logged (the database URL is never printed).
Durability: every file written is fsynced and so is its directory (`courriel.durable`); the
manifest is written atomically after everything else. A restore writes into a directory that
must be empty and verifies sizes and SHA-256 digests before reporting success.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url

from courriel import __version__, datadir, durable
from courriel import config as config_mod
from courriel.blobs import TEMP_PREFIX
from courriel.db import Database
from courriel.models import Blob

MANIFEST = "manifest.json"
FORMAT = 1
DATABASE_FILE = "courriel.db"
BLOBS = "blobs"
# Copied as files (with their modes); `run/` (sockets, pid, metrics) is never part of a backup.
TREES = ("keys", "tls", "spool")
CHUNK = 1024 * 1024


class BackupError(Exception):
    """The backup or restore cannot proceed; nothing was changed at the destination."""


@dataclass
class BackupReport:
    destination: Path
    database: str  # "sqlite" | "postgresql"
    blobs: int = 0
    blob_bytes: int = 0
    linked: int = 0
    copied: int = 0
    files: list[str] = field(default_factory=list)
    missing_blobs: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # what in the backup must be kept private


SECRETS = {"keys": "private keys (DKIM) and the key that decrypts external-account passwords in the database",
           "tls": "TLS private keys", DATABASE_FILE: "password hashes and encrypted external-account passwords"}


@dataclass
class RestoreReport:
    data_dir: Path
    database: str
    blobs: int = 0
    files: int = 0


# --------------------------------------------------------------------------- files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sync_path(path: Path) -> None:
    with open(path, "rb") as handle:
        durable.sync_file(handle)


def _place(source: Path, target: Path, link: bool) -> bool:
    """Hard-link (when `link` and on one filesystem) or copy `source` to `target`, durably.

    Returns True when it linked. The caller fsyncs the target's directory."""
    if not target.parent.is_dir():
        durable.make_dirs(target.parent, mode=0o750)
    if link:
        try:
            os.link(source, target)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    shutil.copy2(source, target)
    _sync_path(target)
    return False


def _regular_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.name.startswith(TEMP_PREFIX):
            yield path


def _require_empty(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{what} {path} exists and is not an empty directory")


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory database cannot be backed up")
    return Path(parsed.database)


# --------------------------------------------------------------------------- backup


def snapshot_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (WAL included) via the online backup API."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30.0)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst, pages=0)
        finally:
            dst.close()
    finally:
        src.close()
    os.chmod(target, 0o640)
    _sync_path(target)


def _blob_rows_sqlite(database: Path) -> list[tuple[str, int, str]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return [(p, int(s), h) for p, s, h in conn.execute("SELECT path, size, sha256 FROM blobs ORDER BY id")]
    finally:
        conn.close()


def _blob_rows(db: Database) -> list[tuple[str, int, str]]:
    with db.read() as session:
        return [(r.path, int(r.size), r.sha256) for r in session.execute(
            select(Blob.path, Blob.size, Blob.sha256).order_by(Blob.id))]


def _revision_sqlite(database: Path) -> str | None:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def backup(config: config_mod.Config, destination: Path | str) -> BackupReport:
    """Back up the data directory of `config` into `destination` (absent or empty)."""
    destination = Path(destination).absolute()
    data_dir = config.data_dir.absolute()
    if destination == data_dir or data_dir in destination.parents:
        raise BackupError("the backup destination must be outside the data directory")
    if not (data_dir / config_mod.CONFIG_FILE).is_file():
        raise BackupError(f"{data_dir} is not an initialised data directory")
    _require_empty(destination, "backup destination")
    sqlite_path = _sqlite_path(config.database_url)
    report = BackupReport(destination, "sqlite" if sqlite_path else "postgresql")
    durable.make_dirs(destination, mode=0o700)
    os.chmod(destination, 0o700)
    same_fs = destination.stat().st_dev == data_dir.stat().st_dev

    # (1) every body file present now
    source_blobs, target_blobs = config.blob_dir, destination / BLOBS
    durable.make_dirs(target_blobs, mode=0o750)
    placed: set[str] = set()
    directories: set[Path] = {target_blobs}
    if source_blobs.is_dir():
        for path in _regular_files(source_blobs):
            relative = path.relative_to(source_blobs).as_posix()
            target = target_blobs / relative
            if _place(path, target, same_fs):
                report.linked += 1
            else:
                report.copied += 1
            placed.add(relative)
            directories.add(target.parent)

    # (2) the database at one point in time
    revision = None
    if sqlite_path is not None:
        snapshot_sqlite(sqlite_path, destination / DATABASE_FILE)
        rows = _blob_rows_sqlite(destination / DATABASE_FILE)
        revision = _revision_sqlite(destination / DATABASE_FILE)
    else:
        db = Database(config.database_url)
        try:
            rows = _blob_rows(db)
        finally:
            db.dispose()

    # (3) bodies of blobs that appeared since (1)
    for relative, size, _digest in rows:
        report.blobs += 1
        report.blob_bytes += size
        if relative in placed:
            continue
        source = source_blobs / relative
        if not source.is_file():
            report.missing_blobs.append(relative)
            continue
        target = target_blobs / relative
        if _place(source, target, same_fs):
            report.linked += 1
        else:
            report.copied += 1
        directories.add(target.parent)

    # configuration and keys
    files = []
    config_file = data_dir / config_mod.CONFIG_FILE
    shutil.copy2(config_file, destination / config_mod.CONFIG_FILE)
    _sync_path(destination / config_mod.CONFIG_FILE)
    files.append(config_mod.CONFIG_FILE)
    for tree in TREES:
        source_tree = data_dir / tree
        if not source_tree.is_dir():
            continue
        target_tree = destination / tree
        durable.make_dirs(target_tree)
        os.chmod(target_tree, source_tree.stat().st_mode & 0o777)
        directories.add(target_tree)
        for path in _regular_files(source_tree):
            relative = path.relative_to(data_dir)
            _place(path, destination / relative, link=False)
            directories.add((destination / relative).parent)
            files.append(relative.as_posix())
    if sqlite_path is not None:
        files.append(DATABASE_FILE)
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        durable.fsync_dir(directory)
    durable.fsync_dir(destination)
    report.files = files
    report.secrets = [f"{name}: {what}" for name, what in SECRETS.items()
                      if any(f == name or f.startswith(name + "/") for f in files)]

    manifest = {
        "format": FORMAT,
        "software": f"courriel {__version__}",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "source": str(data_dir),
        "database": {
            "kind": report.database,
            "schema_revision": revision,
            "file": DATABASE_FILE if sqlite_path else None,
            "note": None if sqlite_path else "restore the pg_dump taken before this backup with pg_restore",
        },
        "contains_secrets": report.secrets,
        "blobs": {"count": report.blobs, "bytes": report.blob_bytes, "missing": report.missing_blobs},
        "files": [{"path": name, "size": (destination / name).stat().st_size,
                   "sha256": _sha256(destination / name)} for name in files],
    }
    durable.write_file(destination / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n", mode=0o600)
    return report


# --------------------------------------------------------------------------- restore


def read_manifest(source: Path) -> dict:
    path = source / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{source} is not a complete backup (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unsupported backup format {manifest.get('format')!r}")
    return manifest


def _unsafe_path(relative: object) -> bool:
    """True for a path from a backup (manifest entry or blob row) that could leave its directory.

    Security: the backup may have been tampered with; only relative paths without `..`, an empty
    part or a NUL are joined onto the source and the data directory."""
    if not isinstance(relative, str) or not relative or "\0" in relative or "\\" in relative:
        return True
    parts = relative.split("/")
    return relative.startswith("/") or any(part in ("", ".", "..") for part in parts)


def _check_files(source: Path, manifest: dict) -> list[tuple[str, int, str]]:
    """The manifest's files and blob rows, all present with the recorded size; else BackupError."""
    problems = []
    files = manifest.get("files", [])
    unsafe = [str(entry)[:80] for entry in files if not isinstance(entry, dict)
              or _unsafe_path(entry.get("path"))]
    if unsafe:
        raise BackupError(f"the backup at {source} names an unsafe path: {unsafe[0]!r}")
    for entry in files:
        path = source / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            problems.append(entry["path"])
    rows: list[tuple[str, int, str]] = []
    database = manifest.get("database", {})
    if database.get("kind") == "sqlite":
        rows = _blob_rows_sqlite(source / DATABASE_FILE)
        for relative, size, _digest in rows:
            if _unsafe_path(relative):
                raise BackupError(f"the backup at {source} names an unsafe path: {str(relative)[:80]!r}")
            path = source / BLOBS / relative
            if not path.is_file() or path.stat().st_size != size:
                problems.append(f"{BLOBS}/{relative}")
    if problems:
        shown = ", ".join(problems[:5]) + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise BackupError(f"the backup at {source} is damaged: missing or changed {shown}")
    return rows


def restore(source: Path | str, data_dir: Path | str, verify: bool = True) -> RestoreReport:
    """Restore a backup into `data_dir`, which must be absent or empty.

    Checks the whole backup before writing anything; with `verify`, every body file's SHA-256
    is compared with its blob row after the copy."""
    source, data_dir = Path(source).absolute(), Path(data_dir).absolute()
    manifest = read_manifest(source)
    _require_empty(data_dir, "data directory")
    rows = _check_files(source, manifest)
    kind = manifest.get("database", {}).get("kind", "sqlite")
    report = RestoreReport(data_dir, kind)
    durable.make_dirs(data_dir, mode=0o750)
    same_fs = source.stat().st_dev == data_dir.stat().st_dev
    directories = {data_dir}
    for entry in manifest.get("files", []):
        target = data_dir / entry["path"]
        _place(source / entry["path"], target, link=False)
        directories.add(target.parent)
        report.files += 1
    for tree in TREES:  # directory modes (keys/ is 0700)
        if (source / tree).is_dir():
            durable.make_dirs(data_dir / tree)
            os.chmod(data_dir / tree, (source / tree).stat().st_mode & 0o777)
    source_blobs = source / BLOBS
    durable.make_dirs(data_dir / BLOBS, mode=0o750)
    directories.add(data_dir / BLOBS)
    for path in _regular_files(source_blobs):
        target = data_dir / BLOBS / path.relative_to(source_blobs)
        _place(path, target, same_fs)  # immutable files: a shared inode is safe
        directories.add(target.parent)
        report.blobs += 1
    for name, mode in datadir.SUBDIRS.items():  # what `courriel serve` expects (run/ is never backed up)
        if not (data_dir / name).is_dir():
            durable.make_dirs(data_dir / name, mode=mode)
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        durable.fsync_dir(directory)
    if verify:
        bad = [relative for relative, _size, digest in rows if _sha256(data_dir / BLOBS / relative) != digest]
        if bad:
            raise BackupError(f"restored body files do not match their digests: {', '.join(bad[:5])}")
    return report
