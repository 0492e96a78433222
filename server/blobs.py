"""Message bodies as files under DATA/blobs, shared by reference count (ring 1).

Owns the blob files and the `blobs` table: one file per accepted message, shared by the
queue entry and every mailbox copy of that message. A row's `refcount` counts the
`messages` and `queue_messages` rows that point at it; callers change it in the same
transaction that adds or removes those rows (`add_ref`, `drop_ref`). Garbage collection
removes blobs whose count reached 0 and files a crash left behind (temporary files, and
files that never got a committed row), once they are older than a grace period.

Layout: `blobs/<2 hex>/<30 hex>`; temporary files are `.tmp-*` in the same directory so that
the final link stays on one filesystem. Bodies are stored with CRLF line endings (RFC 5322
§2.1): a bare LF is made CRLF while streaming, so IMAP serves the very bytes that
`mime.summarize` indexed.

Writing a blob is two steps so that the file and the row appear together:
`write_temp` streams the content into a temporary file and fsyncs it (no row yet), then
inside the caller's transaction `link` inserts the row and hard-links the temporary file
under its final name (fsync of the directory). If the transaction fails before its commit
the writer removes the file again (`discard(rolled_back=True)`); after a crash or a failed
commit a file without a row is left to the collector (after the grace period).

Security: stores untrusted bytes as given (only line endings are made CRLF) and never
interprets them; file names are generated here, never taken from input.
Durability: through `courriel.durable` (write → fsync → link → fsync(dir)).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from courriel import durable, mime
from courriel.db import Database
from courriel.models import Blob, Message, QueueMessage

CHUNK = 64 * 1024
TEMP_PREFIX = ".tmp-"
# Files without a row younger than this may belong to a transaction still in flight.
DEFAULT_GRACE_SECONDS = 3600

# What a blob can be written from: bytes, a binary file object, or an iterable of chunks.
Content = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


class BlobError(RuntimeError):
    """A blob row or file is missing."""


@dataclass
class PendingBlob:
    """A synced temporary file waiting to be linked into place inside a transaction."""

    relpath: str
    temp_path: Path
    size: int
    sha256: str
    blob_id: int | None = None
    placed: bool = False  # linked under its final name by this writer


@dataclass
class CollectReport:
    """What one garbage collection removed."""

    blobs: list[str] = field(default_factory=list)  # unreferenced blobs (rows and files)
    temp_files: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)  # files that never got a row
    leaked: list[int] = field(default_factory=list)  # blob ids with a refcount but no reference


def canonical_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """RFC 5322 §2.1, RFC 3501 §2.2: every line ends in CRLF; a bare LF becomes CRLF, streamed
    (a CR at the end of one chunk and an LF at the start of the next stay one CRLF)."""
    previous_cr = False
    for chunk in chunks:
        if not chunk:
            continue
        out = mime.canonical_line_endings(chunk)
        if previous_cr and chunk[:1] == b"\n":
            out = out[1:]  # that LF completed the previous chunk's CR
        previous_cr = chunk[-1:] == b"\r"
        yield out


def _chunks(content: Content) -> Iterable[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        yield bytes(content)
        return
    read = getattr(content, "read", None)
    if read is not None:
        while True:
            chunk = read(CHUNK)
            if not chunk:
                return
            yield chunk
        return
    for chunk in content:
        yield bytes(chunk)


class BlobStore:
    """The blob directory and its table."""

    def __init__(self, root: Path, db: Database):
        self.root = Path(root)
        self.db = db

    # ----------------------------------------------------------------- writing

    def write_temp(self, content: Content, canonical: bool = True) -> PendingBlob:
        """Stream `content` into a synced temporary file in the blob's final directory.

        With `canonical`, line endings are made CRLF on the way (IMAP serves the stored bytes,
        and the cached MIME offsets index them). Nothing is visible to readers yet; `discard`
        removes the file if the caller gives up."""
        name = secrets.token_hex(16)
        relpath = f"{name[:2]}/{name[2:]}"
        directory = self.root / name[:2]
        if not directory.is_dir():
            durable.make_dirs(directory)
        handle, temp_path = durable.open_temp(directory)
        digest = hashlib.sha256()
        size = 0
        try:
            with handle:
                chunks = _chunks(content)
                for chunk in canonical_chunks(chunks) if canonical else chunks:
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                durable.sync_file(handle)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        return PendingBlob(relpath=relpath, temp_path=temp_path, size=size, sha256=digest.hexdigest())

    def link(self, session: Session, pending: PendingBlob, refcount: int = 1) -> int:
        """Insert the row and link the file into place, inside the caller's transaction.

        The file is durable under its final name when this returns; the row is visible once
        the caller commits. Returns the blob id."""
        blob_id = self.insert_row(session, pending, refcount)
        self.place(pending)
        return blob_id

    def insert_row(self, session: Session, pending: PendingBlob, refcount: int = 1) -> int:
        """First half of `link`: the row (flushed, not committed); returns the blob id."""
        row = Blob(path=pending.relpath, size=pending.size, sha256=pending.sha256, refcount=refcount,
                   created_at=dt.datetime.now(dt.UTC))
        session.add(row)
        session.flush()
        pending.blob_id = row.id
        return row.id

    def place(self, pending: PendingBlob) -> None:
        """Second half of `link`: the file under its final name, durably (before the commit)."""
        durable.link_temp(pending.temp_path, self.root / pending.relpath)
        pending.placed = True

    def discard(self, pending: PendingBlob, rolled_back: bool = False) -> None:
        """Remove the temporary file (after commit, or after a failure). Never raises.

        `rolled_back`: the transaction certainly did not commit (it failed before its commit),
        so the final file goes too. After a failed commit the outcome is unknown: the file
        stays, and the collector removes it later if no row was committed."""
        with contextlib.suppress(OSError):
            pending.temp_path.unlink(missing_ok=True)
        if rolled_back and pending.placed:
            with contextlib.suppress(OSError):
                (self.root / pending.relpath).unlink(missing_ok=True)
            pending.placed = False

    def put(self, content: Content, refcount: int = 0) -> int:
        """Write a blob and commit its row in a transaction of its own; returns its id.

        For callers that add references later (a row with refcount 0 is collected once it is
        older than the grace period, if nothing refers to it)."""
        pending = self.write_temp(content)
        body_done = False
        try:
            with self.db.write() as session:
                blob_id = self.link(session, pending, refcount=refcount)
                body_done = True
            return blob_id
        finally:
            self.discard(pending, rolled_back=not body_done)

    # ----------------------------------------------------------------- references

    @staticmethod
    def add_ref(session: Session, blob_id: int, count: int = 1) -> None:
        session.execute(update(Blob).where(Blob.id == blob_id).values(refcount=Blob.refcount + count))

    @staticmethod
    def drop_ref(session: Session, blob_id: int, count: int = 1) -> None:
        session.execute(update(Blob).where(Blob.id == blob_id).values(refcount=Blob.refcount - count))

    # ----------------------------------------------------------------- reading

    def path_of(self, relpath: str) -> Path:
        return self.root / relpath

    def lookup(self, blob_id: int, session: Session | None = None) -> Blob:
        if session is None:
            with self.db.read() as own:
                row = own.get(Blob, blob_id)
        else:
            row = session.get(Blob, blob_id)
        if row is None:
            raise BlobError(f"no blob {blob_id}")
        return row

    def open(self, blob_id: int, session: Session | None = None) -> BinaryIO:
        """The blob's content as a binary file open for reading (the caller closes it)."""
        row = self.lookup(blob_id, session)
        try:
            return open(self.root / row.path, "rb")
        except FileNotFoundError:
            raise BlobError(f"blob {blob_id} has no file {row.path}") from None

    def read(self, blob_id: int, session: Session | None = None) -> bytes:
        with self.open(blob_id, session) as handle:
            return handle.read()

    # ----------------------------------------------------------------- recovery

    def recount(self) -> int:
        """Recompute every refcount from the rows that refer to it; returns rows corrected.

        Repairs counts after rows were removed by a cascade outside the store."""
        actual = (
            select(func.count()).select_from(Message).where(Message.blob_id == Blob.id).scalar_subquery()
            + select(func.count()).select_from(QueueMessage).where(QueueMessage.blob_id == Blob.id)
            .scalar_subquery()
        )
        with self.db.write() as session:
            result = session.execute(update(Blob).where(Blob.refcount != actual).values(refcount=actual))
            return result.rowcount or 0

    def collect(self, grace_seconds: float = DEFAULT_GRACE_SECONDS, now: float | None = None) -> CollectReport:
        """Remove unreferenced blobs and files left by crashes, older than `grace_seconds`.

        A blob goes when no message or queue row refers to it: normally its refcount reached 0;
        a positive count without any reference (rows removed by a cascade outside the store) is
        reported as leaked and collected too. A reference added concurrently is safe: the
        delete re-checks, and the RESTRICT foreign keys refuse to drop a referenced row."""
        now = time.time() if now is None else now
        report = CollectReport()
        cutoff = dt.datetime.fromtimestamp(now - grace_seconds, dt.UTC)
        unreferenced = ~exists().where(Message.blob_id == Blob.id) & ~exists().where(QueueMessage.blob_id == Blob.id)
        with self.db.read() as session:
            candidates = session.execute(
                select(Blob.id, Blob.refcount).where(unreferenced, Blob.created_at <= cutoff).order_by(Blob.id)
            ).all()
        report.leaked = [row.id for row in candidates if row.refcount > 0]
        ids = [row.id for row in candidates]
        for start in range(0, len(ids), 200):
            try:
                with self.db.write() as session:
                    removed = list(session.scalars(
                        delete(Blob).where(Blob.id.in_(ids[start:start + 200]), unreferenced)
                        .returning(Blob.path).execution_options(synchronize_session=False)
                    ))
            except IntegrityError:
                continue  # referenced meanwhile; the next collection looks again
            # The rows are gone (committed) before the files: a crash in between leaves orphan
            # files, which the scan below removes next time.
            for path in removed:
                with contextlib.suppress(OSError):
                    (self.root / path).unlink(missing_ok=True)
                report.blobs.append(path)
        self._collect_files(now - grace_seconds, report)
        return report

    def _collect_files(self, older_than: float, report: CollectReport) -> None:
        if not self.root.is_dir():
            return
        for directory in sorted(self.root.iterdir()):
            if not directory.is_dir() or len(directory.name) != 2:
                continue
            candidates: dict[str, Path] = {}
            for entry in os.scandir(directory):
                try:
                    if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime > older_than:
                        continue
                except FileNotFoundError:
                    continue
                if entry.name.startswith(TEMP_PREFIX):
                    Path(entry.path).unlink(missing_ok=True)
                    report.temp_files.append(f"{directory.name}/{entry.name}")
                else:
                    candidates[f"{directory.name}/{entry.name}"] = Path(entry.path)
            names = list(candidates)
            for start in range(0, len(names), 500):
                batch = names[start:start + 500]
                with self.db.read() as session:
                    known = set(session.scalars(select(Blob.path).where(Blob.path.in_(batch))))
                for relpath in batch:
                    if relpath not in known:
                        candidates[relpath].unlink(missing_ok=True)
                        report.orphan_files.append(relpath)
