"""The mailbox store: folders and messages (ring 1; the only writer of mailbox tables).

Owns delivery (`Store.deliver`, used by the queue) and IMAP APPEND, flags and keywords,
COPY/MOVE, EXPUNGE, the change log that CONDSTORE/QRESYNC read and its retention
(`prune_expunges`), quota usage; reading messages (`courriel.store_reads`: listing, summaries,
`open_messages`, `changes_since`) and folder management (`courriel.store_folders`) are mixins
whose names are re-exported here. Every write is one transaction; after a
commit that changed a folder, the store sends a `mailbox` hint (`courriel.notify`).

UIDs and MODSEQs are allocated with one atomic
`UPDATE folders SET uidnext = uidnext + n, highestmodseq = highestmodseq + 1 ... RETURNING`,
so two processes delivering into one folder never collide (LIBRARIES.md, SQLAlchemy notes).
Several messages changed by one command share that command's MODSEQ.

Standards: RFC 3501 §2.3.1.1 (UID, UIDVALIDITY: UIDs only grow), §2.3.2 (system flags and
keywords), §6.3.3–§6.3.6 (CREATE with superiors, DELETE, RENAME incl. the INBOX rule,
SUBSCRIBE), §6.3.10 (STATUS), §6.4.3 (EXPUNGE only \\Deleted), §6.4.6 (STORE);
RFC 4315 §3 (COPYUID, APPENDUID); RFC 6851 (MOVE); RFC 7162 §3.1 (MODSEQ, UNCHANGEDSINCE,
HIGHESTMODSEQ), §3.2.10 (VANISHED: expunges recorded with their MODSEQ), §3.2.5.2 and §3.2.6
(past the retained log, VANISHED (EARLIER) reports a superset); RFC 6154 (\\Trash).
Security: message bytes are untrusted and only summarised through `courriel.mime.summarize`
(never fails a delivery); folder names and keywords from clients are validated and bad ones
raise `StoreError` without changes.
Durability: bodies go through `courriel.blobs` (file durable before the commit); the commit
is the delivery point. Fault points for the crash tests: `store.deliver.after_temp`,
`.after_insert`, `.after_link`, `.after_commit`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from courriel import durable, mime, notify
from courriel.blobs import BlobStore, Content, PendingBlob
from courriel.db import Database
from courriel.models import Blob, Expunge, Folder, Mailbox, Message

# Folder names, results and errors stay importable from here (every caller imports courriel.store).
from courriel.store_errors import FolderExists, NoSuchFolder, NoSuchMailbox, StoreError  # noqa: F401
from courriel.store_folders import (  # noqa: F401
    DELIMITER,
    INBOX,
    FolderInfo,
    FolderStatus,
    FolderStore,
    create_default_folders,
    new_uidvalidity,
    normalise_folder_name,
)
from courriel.store_metadata import MAX_ENTRIES, MetadataStore, MetadataTooMany  # noqa: F401
from courriel.store_reads import (  # noqa: F401
    _BATCH,
    _INFO_COLUMNS,
    _SUMMARY_COLUMNS,
    SYSTEM_FLAGS,
    Changes,
    MessageFile,
    MessageInfo,
    MessageReads,
    StoredSummary,
    _split_keywords,
    system_flag_names,
)

SEEN = SYSTEM_FLAGS["\\Seen"]
DELETED = SYSTEM_FLAGS["\\Deleted"]
_SYSTEM_BY_LOWER = {name.lower(): (name, bit) for name, bit in SYSTEM_FLAGS.items()}
# RFC 3501 §9: atom-specials may not appear in a keyword (flag-keyword = atom).
_ATOM_SPECIALS = set('(){ %*"\\]')
MAX_UID = 2**32 - 1  # RFC 3501 §2.3.1.1: UIDs are 32-bit
BATCH_SYNC_THREADS = 16  # Store.append_batch: bodies written and synced at once


# ----------------------------------------------------------------------------- flags (pure)


def parse_flags(flags: Iterable[str]) -> tuple[int, tuple[str, ...]]:
    """System flag bits and keywords (deduplicated case-insensitively, first spelling kept).

    RFC 3501 §2.3.2: \\Recent cannot be set by a client and is ignored here."""
    bits = 0
    keywords: dict[str, str] = {}
    for flag in flags:
        if not isinstance(flag, str) or not flag:
            raise StoreError(f"invalid flag {flag!r}")
        if flag.startswith("\\"):
            if flag.lower() == "\\recent":
                continue
            known = _SYSTEM_BY_LOWER.get(flag.lower())
            if known is None:
                raise StoreError(f"unknown system flag {flag}")
            bits |= known[1]
            continue
        if len(flag) > 250 or any(c in _ATOM_SPECIALS or ord(c) <= 32 or ord(c) >= 127 for c in flag):
            raise StoreError(f"invalid keyword {flag!r}")
        keywords.setdefault(flag.lower(), flag)
    return bits, tuple(keywords.values())


def _merge_keywords(current: Sequence[str], change: Sequence[str], mode: str) -> tuple[str, ...]:
    if mode == "replace":
        return tuple(change)
    lowered = {k.lower() for k in change}
    if mode == "remove":
        return tuple(k for k in current if k.lower() not in lowered)
    present = {k.lower() for k in current}
    return tuple(current) + tuple(k for k in change if k.lower() not in present)


def _text(value: str | None, limit: int | None = None) -> str:
    """Text fit for any backend: no NUL (PostgreSQL rejects it), no lone surrogates."""
    if not value:
        return ""
    clean = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return clean[:limit] if limit else clean


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Delivered:
    mailbox_id: int
    folder_id: int
    folder: str
    uidvalidity: int
    uid: int
    modseq: int
    blob_id: int


@dataclass(frozen=True)
class FlagUpdate:
    changed: list[MessageInfo]  # with their new MODSEQ
    failed: list[int]  # RFC 7162 §3.1.3: UIDs whose MODSEQ was above UNCHANGEDSINCE


@dataclass(frozen=True)
class CopyResult:
    """RFC 4315 §3 COPYUID: the destination's UIDVALIDITY and (source UID, new UID) pairs."""

    uidvalidity: int
    pairs: list[tuple[int, int]]


@dataclass(frozen=True)
class QuotaUsage:
    """RFC 9208 §5.1 STORAGE (bytes) and §5.2 MESSAGE (count) usage of one mailbox and its limits."""
    used_bytes: int
    messages: int
    limit_bytes: int  # 0: unlimited
    limit_messages: int = 0  # 0: unlimited

    @property
    def limited(self) -> bool:
        return bool(self.limit_bytes or self.limit_messages)

    @property
    def over(self) -> bool:
        """At or past a limit: nothing more fits (the RCPT check)."""
        return ((bool(self.limit_bytes) and self.used_bytes >= self.limit_bytes)
                or (bool(self.limit_messages) and self.messages >= self.limit_messages))

    def would_exceed(self, added_bytes: int, added_messages: int) -> bool:
        """Adding this much would pass a limit (delivery, APPEND, COPY)."""
        return ((bool(self.limit_bytes) and self.used_bytes + added_bytes > self.limit_bytes)
                or (bool(self.limit_messages) and self.messages + added_messages > self.limit_messages))


def _stored(session: Session, mailbox_id: int) -> tuple[int, int]:
    """Bytes and messages in all folders of a mailbox (reads the (folder_id, flags, size) index only)."""
    used, count = session.execute(select(func.coalesce(func.sum(Message.size), 0), func.count(Message.id))
                                  .join(Folder, Folder.id == Message.folder_id)
                                  .where(Folder.mailbox_id == mailbox_id)).one()
    return int(used), count


def _summary_values(data: bytes) -> dict:
    """The cached columns of a message; a message mime cannot read still gets delivered."""
    try:
        summary = mime.summarize(data)
        values = {name: getattr(summary, name) for name in _SUMMARY_COLUMNS}
    except Exception:
        return {"envelope": "", "bodystructure": "", "message_id": "", "subject": "", "from_addr": "",
                "to_addr": "", "cc_addr": "", "reference_ids": "", "sent_date": None}
    for name in _SUMMARY_COLUMNS[:-1]:
        values[name] = _text(values[name] if isinstance(values[name], str) else "",
                             998 if name == "message_id" else None)
    sent = values["sent_date"]
    values["sent_date"] = sent if isinstance(sent, dt.datetime) and sent.tzinfo is not None else None
    return values


# ----------------------------------------------------------------------------- the store


class Store(MessageReads, FolderStore, MetadataStore):
    """Synchronous store API over one Database and BlobStore (event loops call it in a thread).

    The folder operations come from `courriel.store_folders.FolderStore`, reading messages from
    `courriel.store_reads.MessageReads`."""

    def __init__(self, db: Database, blobs: BlobStore, run_dir: Path | None = None):
        self.db = db
        self.blobs = blobs
        self.run_dir = run_dir

    def _changed(self, mailbox_id: int | None) -> None:
        if mailbox_id is not None:
            notify.mailbox_changed(self.run_dir, mailbox_id)

    # ------------------------------------------------------------- allocation

    @staticmethod
    def _allocate(session: Session, folder_id: int, count: int) -> tuple[int, int, int]:
        """Reserve `count` UIDs and one MODSEQ atomically: (first uid, modseq, uidvalidity)."""
        row = session.execute(
            update(Folder).where(Folder.id == folder_id)
            .values(uidnext=Folder.uidnext + count, highestmodseq=Folder.highestmodseq + 1)
            .returning(Folder.uidnext, Folder.highestmodseq, Folder.uidvalidity)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if row is None:
            raise NoSuchFolder(f"no folder {folder_id}")
        if row.uidnext - 1 > MAX_UID:
            raise StoreError("folder UID space exhausted")
        return row.uidnext - count, row.highestmodseq, row.uidvalidity

    @staticmethod
    def _bump_modseq(session: Session, folder_id: int) -> int:
        return session.execute(
            update(Folder).where(Folder.id == folder_id).values(highestmodseq=Folder.highestmodseq + 1)
            .returning(Folder.highestmodseq).execution_options(synchronize_session=False)
        ).scalar_one()

    # ------------------------------------------------------------- new messages

    def _prepare(self, content: Content | int) -> tuple[PendingBlob | None, int | None, dict, int]:
        """Write the body (unless it is an existing blob id) and summarise it, outside any transaction."""
        if isinstance(content, int) and not isinstance(content, bool):
            blob = self.blobs.lookup(content)
            try:
                data = self.blobs.path_of(blob.path).read_bytes()
            except FileNotFoundError:
                raise StoreError(f"blob {content} has no file") from None
            return None, content, _summary_values(data), blob.size
        pending = self.blobs.write_temp(content)
        try:
            durable.fault_point("store.deliver.after_temp")
            data = pending.temp_path.read_bytes()
            return pending, None, _summary_values(data), pending.size
        except BaseException:
            self.blobs.discard(pending)
            raise

    def _insert(self, session: Session, folder: Folder, pending: PendingBlob | None, blob_id: int | None,
                summary: dict, size: int, flags: Iterable[str], internaldate: dt.datetime | None) -> Delivered:
        bits, keywords = parse_flags(flags)
        if internaldate is not None and internaldate.tzinfo is None:
            raise StoreError("internal date without a time zone")
        if pending is not None:
            blob_id = self.blobs.insert_row(session, pending, refcount=1)
        else:
            result = session.execute(update(Blob).where(Blob.id == blob_id).values(refcount=Blob.refcount + 1)
                                     .execution_options(synchronize_session=False))
            if not result.rowcount:
                raise StoreError(f"no blob {blob_id}")
        uid, modseq, uidvalidity = self._allocate(session, folder.id, 1)
        session.execute(insert(Message).values(
            folder_id=folder.id, uid=uid, modseq=modseq, flags=bits, keywords=" ".join(keywords),
            internaldate=internaldate or dt.datetime.now(dt.UTC), size=size, blob_id=blob_id, **summary,
        ))
        return Delivered(mailbox_id=folder.mailbox_id, folder_id=folder.id, folder=folder.name,
                         uidvalidity=uidvalidity, uid=uid, modseq=modseq, blob_id=blob_id)

    def _delivery_folder(self, session: Session, mailbox_id: int, name: str | None) -> Folder:
        """The named folder, else INBOX (mail is never refused for a missing folder)."""
        wanted = INBOX
        if name:
            try:
                wanted = normalise_folder_name(name)
            except StoreError:
                wanted = INBOX
        for candidate in dict.fromkeys((wanted, INBOX)):
            folder = session.scalar(select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == candidate))
            if folder is not None:
                return folder
        if session.get(Mailbox, mailbox_id) is None:
            raise NoSuchMailbox(f"no mailbox {mailbox_id}")
        create_default_folders(session, mailbox_id)
        for candidate in dict.fromkeys((wanted, INBOX)):
            folder = session.scalar(select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == candidate))
            if folder is not None:
                return folder
        raise StoreError(f"mailbox {mailbox_id} has no INBOX")

    def deliver(self, mailbox_id: int, content: Content | int, folder: str | None = INBOX,
                flags: Iterable[str] = (), internaldate: dt.datetime | None = None, *,
                in_transaction: Callable[[Session], object] | None = None) -> Delivered:
        """Deliver a message (a blob id, or bytes / a file / chunks) into a mailbox folder.

        Falls back to INBOX when `folder` does not exist. `in_transaction(session)` runs in the
        delivery's transaction (the queue records the recipient's result there, so a crash
        can neither lose nor duplicate the delivery)."""
        pending, blob_id, summary, size = self._prepare(content)
        body_done = False
        try:
            with self.db.write() as session:
                target = self._delivery_folder(session, mailbox_id, folder)
                delivered = self._insert(session, target, pending, blob_id, summary, size, flags, internaldate)
                durable.fault_point("store.deliver.after_insert")
                if pending is not None:
                    self.blobs.place(pending)
                    durable.fault_point("store.deliver.after_link")
                if in_transaction is not None:
                    in_transaction(session)
                body_done = True
            durable.fault_point("store.deliver.after_commit")
        finally:
            if pending is not None:
                self.blobs.discard(pending, rolled_back=not body_done)
        self._changed(mailbox_id)
        return delivered

    def deliver_batch(self, items: Sequence[tuple[int, int, str | None, Iterable[str]]], *,
                      in_transaction: Callable[[Session], object] | None = None) -> list[Delivered]:
        """Deliver queued copies (mailbox id, blob id, folder, flags) in ONE transaction, as `deliver`.

        All or none. Each folder gets consecutive UIDs in item order and one MODSEQ for the batch
        (RFC 7162 §3.1); each copy adds a reference to its blob. `in_transaction(session)` runs
        before the commit (the queue records results and ends finished messages there)."""
        for _, _, _, flags in items:
            parse_flags(flags)  # bad flags are refused before anything is written
        if not items and in_transaction is None:
            return []
        prepared: dict[int, tuple[dict, int]] = {}  # blob id → (summary, size), each body read once
        with self.db.read() as session:
            blobs = {row.id: row for row in session.execute(select(Blob.id, Blob.path, Blob.size).where(
                Blob.id.in_({blob_id for _, blob_id, _, _ in items})))}
        for blob_id in dict.fromkeys(blob_id for _, blob_id, _, _ in items):
            try:
                data = self.blobs.path_of(blobs[blob_id].path).read_bytes()
            except (KeyError, FileNotFoundError):
                raise StoreError(f"blob {blob_id} has no file") from None
            prepared[blob_id] = _summary_values(data), blobs[blob_id].size
        delivered: list[Delivered] = []
        with self.db.write() as session:
            folders: dict[tuple[int, str | None], Folder] = {}
            for mailbox_id, _, folder, _ in items:
                if (mailbox_id, folder) not in folders:
                    folders[mailbox_id, folder] = self._delivery_folder(session, mailbox_id, folder)
            targets = [folders[mailbox_id, folder] for mailbox_id, _, folder, _ in items]
            next_uid = {}
            for folder_id, count in Counter(target.id for target in targets).items():
                next_uid[folder_id] = self._allocate(session, folder_id, count)
            for blob_id, count in Counter(blob_id for _, blob_id, _, _ in items).items():
                result = session.execute(update(Blob).where(Blob.id == blob_id)
                                         .values(refcount=Blob.refcount + count)
                                         .execution_options(synchronize_session=False))
                if not result.rowcount:
                    raise StoreError(f"no blob {blob_id}")
            rows = []
            now = dt.datetime.now(dt.UTC)
            for (mailbox_id, blob_id, _, flags), target in zip(items, targets, strict=True):
                uid, modseq, uidvalidity = next_uid[target.id]
                next_uid[target.id] = (uid + 1, modseq, uidvalidity)
                bits, keywords = parse_flags(flags)
                summary, size = prepared[blob_id]
                rows.append(dict(folder_id=target.id, uid=uid, modseq=modseq, flags=bits, keywords=" ".join(keywords),
                                 internaldate=now, size=size, blob_id=blob_id, **summary))
                delivered.append(Delivered(mailbox_id=mailbox_id, folder_id=target.id, folder=target.name,
                                           uidvalidity=uidvalidity, uid=uid, modseq=modseq, blob_id=blob_id))
            if rows:
                session.execute(insert(Message), rows)
            durable.fault_point("store.deliver.after_insert")
            if in_transaction is not None:
                in_transaction(session)
        durable.fault_point("store.deliver.after_commit")
        for mailbox_id in dict.fromkeys(copy.mailbox_id for copy in delivered):
            self._changed(mailbox_id)
        return delivered

    def append(self, mailbox_id: int, folder: str, content: Content, flags: Iterable[str] = (),
               internaldate: dt.datetime | None = None) -> tuple[int, int]:
        """IMAP APPEND (RFC 3501 §6.3.11): returns (uidvalidity, uid) for RFC 4315 APPENDUID.

        Raises NoSuchFolder (the IMAP layer answers NO [TRYCREATE])."""
        name = normalise_folder_name(folder)
        parse_flags(flags)  # bad flags are refused before anything is written
        pending, blob_id, summary, size = self._prepare(content)
        body_done = False
        try:
            with self.db.write() as session:
                target = session.scalar(select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == name))
                if target is None:
                    raise NoSuchFolder(f"no folder {name}")
                delivered = self._insert(session, target, pending, blob_id, summary, size, flags, internaldate)
                if pending is not None:
                    self.blobs.place(pending)
                body_done = True
        finally:
            if pending is not None:
                self.blobs.discard(pending, rolled_back=not body_done)
        self._changed(mailbox_id)
        return delivered.uidvalidity, delivered.uid

    def append_batch(self, mailbox_id: int, folder: str,
                     items: Sequence[tuple[Content, Iterable[str], dt.datetime | None]], *,
                     in_transaction: Callable[[Session, list[Delivered]], object] | None = None) -> list[Delivered]:
        """Append several messages (content, flags, internal date) in ONE transaction (bulk import).

        The bodies are written and synced first (outside the transaction); then the rows get
        consecutive UIDs and one shared MODSEQ (RFC 7162 §3.1: one change), and
        `in_transaction(session, delivered)` runs before the commit (the sync engine writes its
        UID map rows there). All or none: a crash before the commit leaves only orphan files
        for the collector. Raises NoSuchFolder.

        Speed: each body still gets its own fsync (file, then directory after the link), but up
        to BATCH_SYNC_THREADS of them run at once, which the filesystem journal commits together;
        the database commits once per batch instead of once per message."""
        name = normalise_folder_name(folder)
        for _, flags, internaldate in items:
            parse_flags(flags)  # bad flags or dates are refused before anything is written
            if internaldate is not None and internaldate.tzinfo is None:
                raise StoreError("internal date without a time zone")
        if not items:
            return []
        prepared: list[tuple[PendingBlob, dict, int]] = []
        body_done = False
        workers = ThreadPoolExecutor(max_workers=min(BATCH_SYNC_THREADS, len(items)),
                                     thread_name_prefix="store-batch")
        try:
            futures = [workers.submit(self._prepare, content) for content, _, _ in items]
            failure = None
            for future in futures:
                try:
                    pending, _, summary, size = future.result()
                    prepared.append((pending, summary, size))
                except BaseException as exc:  # the others are discarded below
                    failure = failure or exc
            if failure is not None:
                raise failure
            with self.db.write() as session:
                target = session.scalar(select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == name))
                if target is None:
                    raise NoSuchFolder(f"no folder {name}")
                first_uid, modseq, uidvalidity = self._allocate(session, target.id, len(items))
                # The blob rows in one INSERT (ids back in order), as `BlobStore.insert_row` would.
                now = dt.datetime.now(dt.UTC)
                blob_ids = session.scalars(
                    insert(Blob).returning(Blob.id, sort_by_parameter_order=True),
                    [{"path": p.relpath, "size": p.size, "sha256": p.sha256, "refcount": 1, "created_at": now}
                     for p, _, _ in prepared]).all()
                delivered: list[Delivered] = []
                rows = []
                for offset, (pending, summary, size) in enumerate(prepared):
                    _, flags, internaldate = items[offset]
                    bits, keywords = parse_flags(flags)
                    blob_id = pending.blob_id = blob_ids[offset]
                    rows.append(dict(folder_id=target.id, uid=first_uid + offset, modseq=modseq, flags=bits,
                                     keywords=" ".join(keywords), internaldate=internaldate or dt.datetime.now(dt.UTC),
                                     size=size, blob_id=blob_id, **summary))
                    delivered.append(Delivered(mailbox_id=mailbox_id, folder_id=target.id, folder=target.name,
                                               uidvalidity=uidvalidity, uid=first_uid + offset, modseq=modseq,
                                               blob_id=blob_id))
                session.execute(insert(Message), rows)
                durable.fault_point("store.append_batch.after_insert")
                for placed in [workers.submit(self.blobs.place, pending) for pending, _, _ in prepared]:
                    placed.result()
                if in_transaction is not None:
                    in_transaction(session, delivered)
                body_done = True
        finally:
            workers.shutdown(wait=True)
            for pending, _, _ in prepared:
                self.blobs.discard(pending, rolled_back=not body_done)
        self._changed(mailbox_id)
        return delivered

    # ------------------------------------------------------------- flags

    def set_flags(self, folder_id: int, uids: Iterable[int], mode: str, flags: Iterable[str],
                  unchanged_since: int | None = None) -> FlagUpdate:
        """RFC 3501 §6.4.6 STORE (mode add | remove | replace) with RFC 7162 §3.1.3 UNCHANGEDSINCE.

        Only messages whose flags really change get the new MODSEQ."""
        if mode not in ("add", "remove", "replace"):
            raise StoreError(f"unknown flag mode {mode!r}")
        bits, keywords = parse_flags(flags)
        changes: list[tuple[object, int, tuple[str, ...]]] = []  # (row, new bits, new keywords)
        failed: list[int] = []
        changed: list[MessageInfo] = []
        with self.db.write() as session:
            folder = self._lock(session, folder_id)[folder_id]
            # Columns only (never the cached summaries), and one executemany UPDATE: the write
            # lock is held for as short a time as possible.
            for row in self._columns(session, folder_id, uids, _INFO_COLUMNS):
                if unchanged_since is not None and row.modseq > unchanged_since:
                    failed.append(row.uid)
                    continue
                current = _split_keywords(row.keywords)
                if mode == "add":
                    new_bits = row.flags | bits
                elif mode == "remove":
                    new_bits = row.flags & ~bits
                else:
                    new_bits = bits
                new_keywords = _merge_keywords(current, keywords, mode)
                if new_bits != row.flags or new_keywords != current:
                    changes.append((row, new_bits, new_keywords))
            if changes:
                modseq = self._bump_modseq(session, folder_id)
                session.execute(update(Message), [
                    {"id": row.id, "flags": new_bits, "keywords": " ".join(new_keywords), "modseq": modseq}
                    for row, new_bits, new_keywords in changes])
                changed = [MessageInfo(uid=row.uid, modseq=modseq, flags=system_flag_names(new_bits),
                                       keywords=tuple(new_keywords), size=row.size, internaldate=row.internaldate,
                                       blob_id=row.blob_id, id=row.id) for row, new_bits, new_keywords in changes]
            mailbox_id = folder.mailbox_id
            result = FlagUpdate(changed=changed, failed=failed)
        if changed:
            self._changed(mailbox_id)
        return result

    # ------------------------------------------------------------- copy, move, expunge

    def _copy_rows(self, session: Session, rows: list[Message], dest_id: int) -> CopyResult:
        first, modseq, uidvalidity = self._allocate(session, dest_id, len(rows))
        pairs = []
        values = []
        for offset, row in enumerate(rows):
            uid = first + offset
            pairs.append((row.uid, uid))
            values.append(dict(
                folder_id=dest_id, uid=uid, modseq=modseq, flags=row.flags, keywords=row.keywords,
                internaldate=row.internaldate, size=row.size, blob_id=row.blob_id,
                **{name: getattr(row, name) for name in _SUMMARY_COLUMNS},
            ))
        session.execute(insert(Message), values)
        for blob_id, count in Counter(row.blob_id for row in rows).items():
            BlobStore.add_ref(session, blob_id, count)
        return CopyResult(uidvalidity=uidvalidity, pairs=pairs)

    def _remove_rows(self, session: Session, folder_id: int, rows: Sequence) -> int:
        """Delete messages (rows with id, uid and blob_id), recording RFC 7162 expunges with one
        new MODSEQ; drops blob references."""
        modseq = self._bump_modseq(session, folder_id)
        now = dt.datetime.now(dt.UTC)
        session.execute(insert(Expunge), [dict(folder_id=folder_id, uid=r.uid, modseq=modseq, expunged_at=now)
                                          for r in rows])
        ids = [r.id for r in rows]
        for start in range(0, len(ids), _BATCH):
            session.execute(delete(Message).where(Message.id.in_(ids[start:start + _BATCH]))
                            .execution_options(synchronize_session=False))
        for blob_id, count in Counter(r.blob_id for r in rows).items():
            BlobStore.drop_ref(session, blob_id, count)
        return modseq

    @staticmethod
    def _lock(session: Session, *folder_ids: int) -> dict[int, Folder]:
        """Lock folder rows (PostgreSQL FOR UPDATE; SQLite write transactions are exclusive), in
        id order so that two commands on the same folders cannot deadlock. Writers of one folder
        then see each other's committed rows: no lost flag update, no double expunge."""
        rows = {}
        for folder_id in sorted(set(folder_ids)):
            row = session.get(Folder, folder_id, with_for_update=True, populate_existing=True)
            if row is None:
                raise NoSuchFolder(f"no folder {folder_id}")
            rows[folder_id] = row
        return rows

    def _two_folders(self, session: Session, folder_id: int, dest_folder_id: int) -> tuple[Folder, Folder]:
        rows = self._lock(session, folder_id, dest_folder_id)
        return rows[folder_id], rows[dest_folder_id]

    def copy(self, folder_id: int, uids: Iterable[int], dest_folder_id: int) -> CopyResult:
        """RFC 3501 §6.4.7 COPY; the result gives RFC 4315 COPYUID. Flags are copied."""
        with self.db.write() as session:
            _, dest = self._two_folders(session, folder_id, dest_folder_id)
            rows = self._messages(session, folder_id, uids)
            if not rows:
                return CopyResult(uidvalidity=dest.uidvalidity, pairs=[])
            result = self._copy_rows(session, rows, dest_folder_id)
            mailbox_id = dest.mailbox_id
        self._changed(mailbox_id)
        return result

    def move(self, folder_id: int, uids: Iterable[int], dest_folder_id: int) -> CopyResult:
        """RFC 6851 MOVE: copy and expunge in one transaction (the source records VANISHED UIDs)."""
        if folder_id == dest_folder_id:
            raise StoreError("cannot move a message into its own folder")
        with self.db.write() as session:
            source, dest = self._two_folders(session, folder_id, dest_folder_id)
            rows = self._messages(session, folder_id, uids)
            if not rows:
                return CopyResult(uidvalidity=dest.uidvalidity, pairs=[])
            result = self._move_rows(session, rows, folder_id, dest_folder_id)
            mailboxes = {source.mailbox_id, dest.mailbox_id}
        for mailbox_id in mailboxes:
            self._changed(mailbox_id)
        return result

    def _move_rows(self, session: Session, rows: list[Message], folder_id: int, dest_folder_id: int) -> CopyResult:
        self._lock(session, folder_id, dest_folder_id)  # no-op when the caller holds them
        result = self._copy_rows(session, rows, dest_folder_id)
        self._remove_rows(session, folder_id, rows)
        return result

    def expunge(self, folder_id: int, uids: Iterable[int] | None = None) -> list[int]:
        """RFC 3501 §6.4.3 EXPUNGE / RFC 4315 UID EXPUNGE: remove \\Deleted messages; returns their UIDs."""
        with self.db.write() as session:
            folder = self._lock(session, folder_id)[folder_id]
            rows = self._columns(session, folder_id, uids, (Message.uid, Message.id, Message.blob_id),
                                 Message.flags.op("&")(DELETED) != 0)
            if not rows:
                return []
            self._remove_rows(session, folder_id, rows)
            mailbox_id = folder.mailbox_id
        self._changed(mailbox_id)
        return [row.uid for row in rows]

    @staticmethod
    def _status(session: Session, folder: Folder) -> FolderStatus:
        """The counts of one folder, from the (folder_id, flags, size) index."""
        count, unseen, size, deleted = session.execute(
            select(func.count(Message.id),
                   func.coalesce(func.sum(case((Message.flags.op("&")(SEEN) == 0, 1), else_=0)), 0),
                   func.coalesce(func.sum(Message.size), 0),
                   func.coalesce(func.sum(case((Message.flags.op("&")(DELETED) != 0, 1), else_=0)), 0))
            .where(Message.folder_id == folder.id)
        ).one()
        return FolderStatus(messages=count, unseen=int(unseen), uidnext=folder.uidnext,
                            uidvalidity=folder.uidvalidity, highestmodseq=folder.highestmodseq,
                            size=int(size), deleted=int(deleted))

    def quota_usages(self, mailbox_ids: Iterable[int]) -> dict[int, QuotaUsage]:
        """`quota_usage(only_if_limited=True)` of several mailboxes in one read: the limits of all,
        the sums of the limited ones only (a delivery batch checks every recipient's quota).
        A mailbox that does not exist is left out."""
        with self.db.read() as session:
            usages = {}
            for row in session.execute(select(Mailbox.id, Mailbox.quota_bytes, Mailbox.quota_messages)
                                       .where(Mailbox.id.in_(set(mailbox_ids)))):
                limit_bytes, limit_messages = row.quota_bytes or 0, row.quota_messages or 0
                used, count = _stored(session, row.id) if limit_bytes or limit_messages else (0, 0)
                usages[row.id] = QuotaUsage(used_bytes=used, messages=count, limit_bytes=limit_bytes,
                                            limit_messages=limit_messages)
        return usages

    def quota_usage(self, mailbox_id: int, *, only_if_limited: bool = False) -> QuotaUsage:
        """Bytes and messages stored in all folders of a mailbox, and its limits (0: none).

        `only_if_limited`: for quota checks (RCPT, delivery, APPEND, COPY), a mailbox without a
        limit answers zero usage without summing. The sum reads the (folder_id, flags, size) index only."""
        with self.db.read() as session:
            limits = session.execute(select(Mailbox.quota_bytes, Mailbox.quota_messages)
                                     .where(Mailbox.id == mailbox_id)).one_or_none()
            if limits is None:
                raise NoSuchMailbox(f"no mailbox {mailbox_id}")
            limit_bytes, limit_messages = limits[0] or 0, limits[1] or 0
            if only_if_limited and not (limit_bytes or limit_messages):
                return QuotaUsage(used_bytes=0, messages=0, limit_bytes=0)
            used, count = _stored(session, mailbox_id)
            return QuotaUsage(used_bytes=used, messages=count, limit_bytes=limit_bytes,
                              limit_messages=limit_messages)

    def prune_expunges(self, older_than: dt.datetime, max_folders: int = 1000) -> int:
        """Drop expunge log entries recorded before `older_than` (RFC 7162 retention), folder by
        folder in short transactions, and record per folder the highest MODSEQ dropped
        (`Folder.expunges_pruned_modseq`) so that `changes_since` knows when its log is
        incomplete. Entries are dropped by MODSEQ, so what stays is always a suffix of the log.
        Returns the number of entries removed."""
        with self.db.read() as session:
            folder_ids = list(session.scalars(
                select(Expunge.folder_id).where(Expunge.expunged_at < older_than).distinct()
                .order_by(Expunge.folder_id).limit(max_folders)))
        removed = 0
        for folder_id in folder_ids:
            with self.db.write() as session:
                if session.get(Folder, folder_id, with_for_update=True) is None:
                    continue  # deleted meanwhile (its log went with it)
                highest = session.scalar(select(func.max(Expunge.modseq)).where(
                    Expunge.folder_id == folder_id, Expunge.expunged_at < older_than))
                if highest is None:
                    continue
                result = session.execute(delete(Expunge).where(Expunge.folder_id == folder_id,
                                                               Expunge.modseq <= highest))
                session.execute(update(Folder).where(Folder.id == folder_id, Folder.expunges_pruned_modseq < highest)
                                .values(expunges_pruned_modseq=highest).execution_options(synchronize_session=False))
                removed += result.rowcount or 0
        return removed

    def purge_mailbox(self, mailbox_id: int) -> int:
        """Remove every message and folder of a mailbox in a transaction of its own (see
        `remove_mailbox_contents`). Returns the number of messages removed."""
        with self.db.write() as session:
            removed = remove_mailbox_contents(session, mailbox_id)
        self._changed(mailbox_id)
        return removed


def remove_mailbox_contents(session: Session, mailbox_id: int) -> int:
    """Delete every message and folder of a mailbox inside the caller's transaction, dropping
    the blob references, so that deleting the mailbox row next keeps reference counts right.
    Returns the number of messages removed."""
    folder_ids = list(session.scalars(select(Folder.id).where(Folder.mailbox_id == mailbox_id)))
    removed = 0
    for folder_id in folder_ids:
        counts = Counter(session.scalars(select(Message.blob_id).where(Message.folder_id == folder_id)))
        session.execute(delete(Message).where(Message.folder_id == folder_id)
                        .execution_options(synchronize_session=False))
        for blob_id, count in counts.items():
            BlobStore.drop_ref(session, blob_id, count)
        removed += sum(counts.values())
    if folder_ids:
        session.execute(delete(Expunge).where(Expunge.folder_id.in_(folder_ids)))
        # Inferiors go with their superiors (ON DELETE CASCADE on parent_id).
        session.execute(delete(Folder).where(Folder.id.in_(folder_ids)).execution_options(synchronize_session=False))
    return removed
