"""The sync engine: one account at a time, both ways for IMAP, import-only for POP3 (ring 2).

`AccountSync(...).cycle()` connects, maps folders, then for each folder reads both sides,
asks `courriel.imapsync.plan` what to do and applies it; `run(stop)` repeats cycles, waiting
for a change in between (see "Waiting" below), woken early by local `mailbox` hints.

How each direction is read:
- remote → local: a folder whose HIGHESTMODSEQ did not move (QRESYNC servers count expunges
  too, RFC 7162 §3.2) and has no local change is skipped. With QRESYNC enabled and the last
  pass complete, `UID FETCH 1:* (FLAGS) (CHANGEDSINCE m VANISHED)` (RFC 7162 §3.2.6) gives
  the changed and new messages and the expunged UIDs: no UID SEARCH, no FLAGS of unchanged
  messages (the UID set is checked against EXISTS; a mismatch falls back to UID diffing).
  Otherwise UID SEARCH ALL gives the remote UID set (deletions and moves show up as missing
  UIDs, new mail as unknown ones); flags come from UID FETCH FLAGS, restricted with
  CHANGEDSINCE (RFC 7162 §3.1.4.1) when CONDSTORE is offered, for every message otherwise.
- local → remote: `Store.changes_since(remembered MODSEQ)` gives local flag changes and
  expunged UIDs. A local message expunged from one synced folder whose Message-ID and size
  appear as a new local message in another synced folder was moved: the move is replayed on
  the remote (UID COPY with COPYUID, then expunge), keeping one copy each side. Other new
  local messages (delivered here, APPENDed by local clients) are uploaded exactly once by
  `courriel.imapsync.upload` (intent row, APPEND, APPENDUID or Message-ID search).
Remote moves (gone from one folder, new in another, same Message-ID and size) are replayed
locally with `Store.move`, so the message is not downloaded again.

Import: the new remote UIDs are cut into batches (FETCH_BATCH messages, FETCH_BYTES by
RFC822.SIZE); a thread fetches the next batches (one UID FETCH BODY.PEEK[] each) while the
previous one is stored, at most PREFETCH ahead (bounded memory). Each batch is ONE store
transaction (`Store.append_batch`: consecutive UIDs, one MODSEQ) that also inserts its UID
map rows and the folder's progress, so a crash can neither duplicate nor skip a message.
UIDVALIDITY change (RFC 3501 §2.3.1.1): the old map is re-matched by Message-ID + size
(`plan.rematch`); matched messages are not downloaded again.

Waiting between passes (one connection per account): `courriel.imapsync.watch`.

Size limit: a remote message over `max_message_size` (config `[smtp] max_message_size`, the
size the local server accepts at all) is not imported: skipped before the download when its
RFC822.SIZE / POP3 LIST size says so, refused by the client's literal bound when the server
understated it. A skip is logged, shown on the account (`accounts.record_skip`: last_error
without counting a failure) and counted as done; the rest of the run goes on. Skipped POP3
messages are never deleted from the server.

Standards: see `courriel.imapsync.client`, `plan` and `upload`.
Security: remote data is untrusted; folder names the store refuses are skipped with a log
line; server text is cleaned (`plan.printable`) before it is logged or stored; nothing
secret is logged.
Durability: the store's batch transaction is the import commit point (map rows included);
uploads: see `courriel.imapsync.upload`. A pass interrupted by a stop records neither its
MODSEQs nor its UIDNEXT watermark, so the next pass redoes what is left.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import delete, insert, select, update

from courriel import metrics, notify
from courriel.db import Database
from courriel.imapsync import accounts, plan, upload, watch
from courriel.imapsync.client import (
    MAX_MESSAGE_SIZE,
    Endpoint,
    FetchedMessage,
    ImapRemote,
    MessageTooLarge,
    PopRemote,
    RemoteError,
)
from courriel.models import Folder, SyncAccount, SyncAccountState, SyncFolder, SyncMessage, SyncPopMessage
from courriel.store import INBOX, Store, StoreError

log = logging.getLogger("courriel.imapsync")

FETCH_BATCH = 100  # messages per UID FETCH BODY.PEEK[] and per store transaction
FETCH_BYTES = 8 * 1024 * 1024  # ... and at most this many bytes (RFC822.SIZE) per batch
PREFETCH = 2  # batches fetched ahead while the previous one is stored: memory ≤ (2 + 1) batches
POLL_INTERVAL = 60.0  # a cycle at least this often, whatever the watch saw


class AccountSync:
    """Sync of one account; `connect` and `cycle` are blocking (run it in a thread)."""

    def __init__(self, db: Database, store: Store, data_dir: Path, account_id: int,
                 poll_interval: float = POLL_INTERVAL, on_progress: Callable[[str], None] | None = None,
                 folder_poll: float = watch.FOLDER_POLL, max_message_size: int = MAX_MESSAGE_SIZE):
        self.folder_poll = folder_poll
        self.max_message_size = max_message_size
        self.status_seen: dict[str, tuple] = {}  # remote folder → its last STATUS (the wait's baseline)
        self.moved = {"imported": 0, "uploaded": 0}  # messages copied by the last cycle, each way
        self.db = db
        self.store = store
        self.data_dir = Path(data_dir)
        self.account_id = account_id
        self.poll_interval = poll_interval
        self.on_progress = on_progress
        self.remote: ImapRemote | PopRemote | None = None
        self.stop: threading.Event | None = None  # set by run(): imports end early on a stop
        with db.read() as session:
            row = session.get(SyncAccount, account_id)
            if row is None:
                raise accounts.AccountError(f"no sync account {account_id}")
            self.mailbox_id = row.mailbox_id
            self.protocol = row.protocol
            self.leave_on_server = row.leave_on_server
            self.endpoint = Endpoint(row.host, row.port, row.security, row.username, row.auth)

    # ------------------------------------------------------------- connection

    def connect(self) -> None:
        self.close()
        if self.endpoint.security == "none" and not accounts.is_loopback(self.endpoint.host):
            # A row from before the loopback-only rule: never send its password in clear text.
            raise accounts.AccountError(f"security 'none' is allowed only for a loopback host, not "
                                        f"{self.endpoint.host!r}: change the account to ssl or starttls")
        secret = accounts.password(self.db, self.data_dir, self.account_id)
        self.remote = (ImapRemote if self.protocol == "imap" else PopRemote)(
            self.endpoint, secret, max_message_size=self.max_message_size)

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()
            self.remote = None

    def state(self) -> str | None:
        with self.db.read() as session:
            return session.scalar(select(SyncAccount.state).where(SyncAccount.id == self.account_id))

    # ------------------------------------------------------------- one pass

    def cycle(self) -> None:
        """One full pass over every folder (connects first if needed)."""
        self.moved = {"imported": 0, "uploaded": 0}
        if self.remote is None:
            self.connect()
        if self.protocol == "pop3":
            self._pop_cycle()
            self.close()  # POP3 sessions are short: QUIT commits the deletions
        else:
            self._imap_cycle()

    def _imap_cycle(self) -> None:
        remote = self.remote
        assert isinstance(remote, ImapRemote)
        folders = self._sync_folders(plan.map_folders(remote.folders()))
        scans = []
        for sf in folders:
            scan = self._scan(remote, sf)
            if scan is not None:
                scans.append(scan)
        self._replay_local_moves(remote, scans)
        self._replay_remote_moves(remote, scans)
        for scan in scans:
            self._apply(remote, scan)

    # ------------------------------------------------------------- folders

    def _local_folder(self, target: plan.FolderTarget) -> int | None:
        existing = self.store.list_folders(self.mailbox_id)
        if target.special_use is not None:
            for info in existing:
                if info.special_use == target.special_use:
                    return info.id
            name = {"\\Sent": "Sent", "\\Drafts": "Drafts", "\\Junk": "Spam", "\\Trash": "Trash"}[target.special_use]
            for info in existing:
                if info.name == name:
                    return info.id
            return self.store.create_folder(self.mailbox_id, name, target.special_use).id
        for info in existing:
            if info.name == target.local:
                return info.id
        try:
            return self.store.create_folder(self.mailbox_id, target.local).id
        except StoreError as exc:
            log.warning("account %s: remote folder %r skipped: %s", self.account_id, target.remote, exc)
            return None

    def _sync_folders(self, targets: list[plan.FolderTarget]) -> list[SyncFolder]:
        with self.db.read() as session:
            known = {sf.remote_name: sf for sf in session.scalars(
                select(SyncFolder).where(SyncFolder.account_id == self.account_id))}
        result = []
        used = {sf.local_folder_id for sf in known.values()}
        for target in targets:
            sf = known.get(target.remote)
            if sf is None:
                folder_id = self._local_folder(target)
                if folder_id is None:
                    continue
                if folder_id in used:
                    # Two remote folders for one local folder (a "Spam" folder beside the
                    # \Junk one): the second one is not synced, so each local message has one source.
                    log.warning("account %s: remote folder %r skipped: its local folder is already synced",
                                self.account_id, target.remote)
                    continue
                used.add(folder_id)
                start = self.store.folder(folder_id)  # earlier local mail stays local
                with self.db.write() as session:
                    sf = SyncFolder(account_id=self.account_id, remote_name=target.remote, local_folder_id=folder_id,
                                    remote_uidvalidity=0, remote_modseq=0, local_modseq=start.highestmodseq,
                                    local_uidnext=start.uidnext, total=0, done=0, imported_since_start=0)
                    session.add(sf)
                    session.flush()
            result.append(sf)
        return result

    # ------------------------------------------------------------- scanning

    def _scan(self, remote: ImapRemote, sf: SyncFolder) -> _Scan | None:
        try:
            selected = remote.select(sf.remote_name)
        except RemoteError as exc:
            log.warning("account %s: cannot select %r: %s", self.account_id, sf.remote_name, exc)
            return None
        remote_modseq = sf.remote_modseq
        if sf.remote_uidvalidity and selected.uidvalidity != sf.remote_uidvalidity:
            self._rematch(remote, sf, selected.uidvalidity)
            remote_modseq = 0
        elif not sf.remote_uidvalidity:
            with self.db.write() as session:
                session.execute(update(SyncFolder).where(SyncFolder.id == sf.id)
                                .values(remote_uidvalidity=selected.uidvalidity))
        changes = self.store.changes_since(sf.local_folder_id, sf.local_modseq)
        with self.db.read() as session:
            rows = session.execute(select(SyncMessage.remote_uid, SyncMessage.local_uid, SyncMessage.flags,
                                          SyncMessage.message_id, SyncMessage.size, SyncMessage.origin)
                                   .where(SyncMessage.sync_folder_id == sf.id,
                                          SyncMessage.remote_uidvalidity == selected.uidvalidity)).all()
        has_pending = any(r.origin == upload.PENDING for r in rows)
        settled = [r for r in rows if r.origin != upload.PENDING]
        resumable = remote_modseq and selected.highestmodseq is not None and sf.done >= sf.total
        if (remote.qresync and resumable and selected.highestmodseq == remote_modseq
                and not changes.messages and not changes.vanished and not has_pending):
            return None  # RFC 7162: neither side changed since the last pass
        known_remote = {r.remote_uid for r in settled}
        remote_uids = None
        if remote.qresync and resumable:
            # RFC 7162 §3.2.6: only the messages changed or added since the last pass, and the
            # UIDs expunged since (VANISHED (EARLIER)); no UID SEARCH, no FLAGS of the others.
            remote_flags, vanished = remote.changes_since(remote_modseq)
            if vanished is not None:
                # The ranges are intersected with the UIDs we know, never expanded (RFC 7162 §3.2.10).
                candidate = (known_remote - plan.uids_within(vanished, known_remote)) | set(remote_flags)
                if len(candidate) == selected.exists:
                    remote_uids = sorted(candidate)
            # else the map and the remote disagree on the count: fall back to UID diffing
        if remote_uids is None:
            remote_uids = remote.uids()
            changed_since = remote_modseq if (selected.highestmodseq is not None and remote_modseq) else None
            remote_flags = remote.flags(remote_uids, changed_since) if remote_uids else {}
        mapped = [plan.MappedMessage(r.remote_uid, r.local_uid, plan.flags_from_text(r.flags)) for r in settled]
        mapped_local = {r.local_uid for r in rows}
        vanished_local = set(changes.vanished)
        local_flags = {m.uid: plan.normalise_flags(m.all_flags) for m in changes.messages}
        present = {r.local_uid for r in settled} - (vanished_local - set(local_flags))
        folder_plan = plan.plan_folder(mapped, remote_uids, remote_flags, local_flags, present)
        retry: list[upload.Upload] = []
        if has_pending:
            # Uploads interrupted between APPEND and map row: found → mapped, not imported.
            resolved, retry = upload.resolve_pending(self.db, self.store, remote, sf.id, sf.local_folder_id,
                                                     selected.uidvalidity, folder_plan.to_import)
            folder_plan.to_import = [uid for uid in folder_plan.to_import if uid not in resolved]
            known_remote |= resolved
        local_new = [m for m in changes.messages if m.uid not in mapped_local]
        identity = {r.remote_uid: (r.message_id, r.size, r.local_uid) for r in settled}
        with self.db.write() as session:
            session.execute(update(SyncFolder).where(SyncFolder.id == sf.id).values(
                total=len(remote_uids), done=len(remote_uids) - len(folder_plan.to_import),
                **({"import_started_at": dt.datetime.now(dt.UTC), "imported_since_start": 0}
                   if folder_plan.to_import else {})))
        scan = _Scan(sf=sf, uidvalidity=selected.uidvalidity, remote_modseq=selected.highestmodseq,
                     local_modseq=changes.highestmodseq, plan=folder_plan, local_new=local_new, identity=identity)
        scan.origin = {r.remote_uid: r.origin for r in settled}
        scan.retry_uploads = retry
        scan.known_remote = known_remote
        scan.local_uidnext = changes.uidnext
        return scan

    def _rematch(self, remote: ImapRemote, sf: SyncFolder, uidvalidity: int) -> None:
        """RFC 3501 §2.3.1.1: the remote UIDs changed meaning; re-match without downloading."""
        log.info("account %s: UIDVALIDITY of %r changed; re-matching by Message-ID and size",
                 self.account_id, sf.remote_name)
        headers = remote.headers(remote.uids())
        with self.db.write() as session:
            # Pending uploads keep their intent under the new UIDVALIDITY (the scan resolves them).
            session.execute(update(SyncMessage).where(SyncMessage.sync_folder_id == sf.id,
                                                      SyncMessage.origin == upload.PENDING)
                            .values(remote_uidvalidity=uidvalidity))
            old = session.execute(select(SyncMessage.id, SyncMessage.message_id, SyncMessage.size)
                                  .where(SyncMessage.sync_folder_id == sf.id,
                                         SyncMessage.remote_uidvalidity != uidvalidity)).all()
            result = plan.rematch([(r.id, r.message_id, r.size) for r in old], [h[:3] for h in headers])
            for row_id, uid in result.matched.items():
                session.execute(update(SyncMessage).where(SyncMessage.id == row_id)
                                .values(remote_uidvalidity=uidvalidity, remote_uid=uid))
            if result.unmatched_rows:
                # Gone from the remote as far as anyone can tell: the local copies are kept.
                for batch in plan.batches(result.unmatched_rows, 500):
                    session.execute(delete(SyncMessage).where(SyncMessage.id.in_(batch)))
            session.execute(update(SyncFolder).where(SyncFolder.id == sf.id)
                            .values(remote_uidvalidity=uidvalidity, remote_modseq=0))
        sf.remote_uidvalidity = uidvalidity
        sf.remote_modseq = 0

    # ------------------------------------------------------------- local moves

    def _replay_local_moves(self, remote: ImapRemote, scans: list[_Scan]) -> None:
        """A local message expunged in folder A and new in folder B (same Message-ID and size) was
        moved: UID COPY it on the remote and map the copy, so that it is not re-imported."""
        arrivals: dict[tuple[str, int], list[tuple[_Scan, int, frozenset[str]]]] = {}
        for scan in scans:
            if not scan.local_new:
                continue
            summaries = {s.uid: s.message_id for s in self.store.summaries(scan.sf.local_folder_id,
                                                                             [m.uid for m in scan.local_new])}
            for message in scan.local_new:
                message_id = summaries.get(message.uid, "")
                if message_id:
                    arrivals.setdefault((message_id, message.size), []).append(
                        (scan, message.uid, plan.normalise_flags(message.all_flags)))
        if not arrivals or "UIDPLUS" not in remote.capabilities:
            return  # without COPYUID (RFC 4315 §3) a copy could not be mapped: it stays local only
        for scan in scans:
            for remote_uid in list(scan.plan.delete_remote):
                message_id, size, _ = scan.identity[remote_uid]
                candidates = arrivals.get((message_id, size)) if message_id else None
                if not candidates:
                    continue
                dest, local_uid, flags = candidates.pop(0)
                if dest is scan:
                    continue
                remote.select(scan.sf.remote_name)
                copied = remote.copy([remote_uid], dest.sf.remote_name)
                new_uid = copied.get(remote_uid)
                if new_uid is None:
                    # No COPYUID we can trust (RFC 4315 §3): find the copy by Message-ID and size
                    # among the destination's UIDs the map does not know.
                    new_uid = self._find_copy(remote, dest, message_id, size)
                if new_uid is None:
                    continue  # not found: left as delete + re-import
                with self.db.write() as session:
                    session.add(SyncMessage(sync_folder_id=dest.sf.id, remote_uidvalidity=dest.uidvalidity,
                                            remote_uid=new_uid, local_uid=local_uid, flags=plan.flags_text(flags),
                                            message_id=message_id, size=size,
                                            origin=scan.origin.get(remote_uid, upload.REMOTE)))
                dest.moved_in.add(new_uid)
                dest.moved_local.add(local_uid)

    def _find_copy(self, remote: ImapRemote, dest: _Scan, message_id: str, size: int) -> int | None:
        """The remote UID of a message just copied into `dest` (RFC 3501 §6.4.4 SEARCH HEADER
        Message-ID, confirmed by RFC822.SIZE), or None."""
        remote.select(dest.sf.remote_name)
        found = [uid for uid in remote.search_message_id(message_id)
                 if uid not in dest.known_remote and uid not in dest.moved_in]
        sizes = remote.sizes(found) if found else {}
        matching = [uid for uid in found if sizes.get(uid) == size]
        return max(matching) if matching else None

    def _replay_remote_moves(self, remote: ImapRemote, scans: list[_Scan]) -> None:
        """A remote message gone from folder A and new in folder B (same Message-ID and size) was
        moved: move the local copy too instead of deleting it and downloading it again."""
        departures: dict[tuple[str, int], list[tuple[_Scan, int]]] = {}
        for scan in scans:
            by_local = {local_uid: (message_id, size) for message_id, size, local_uid in scan.identity.values()}
            for local_uid in scan.plan.delete_local:
                message_id, size = by_local.get(local_uid, ("", 0))
                if message_id:
                    departures.setdefault((message_id, size), []).append((scan, local_uid))
        if not departures:
            return
        for scan in scans:
            wanted = [uid for uid in scan.plan.to_import if uid not in scan.moved_in]
            if not wanted:
                continue
            remote.select(scan.sf.remote_name)
            for uid, message_id, size, flags in remote.headers(wanted):
                candidates = departures.get((message_id, size)) if message_id else None
                if not candidates or candidates[0][0] is scan:
                    continue
                source, local_uid = candidates.pop(0)
                origin = next((source.origin.get(r, upload.REMOTE) for r, ident in source.identity.items()
                               if ident[2] == local_uid), upload.REMOTE)
                moved = self.store.move(source.sf.local_folder_id, [local_uid], scan.sf.local_folder_id)
                source.plan.delete_local.remove(local_uid)
                if not moved.pairs:
                    continue  # gone locally meanwhile: imported as new
                new_local = moved.pairs[0][1]
                self.store.set_flags(scan.sf.local_folder_id, [new_local], "replace", sorted(flags))
                with self.db.write() as session:
                    session.execute(insert(SyncMessage).values(
                        sync_folder_id=scan.sf.id, remote_uidvalidity=scan.uidvalidity, remote_uid=uid,
                        local_uid=new_local, flags=plan.flags_text(flags), message_id=message_id, size=size,
                        origin=origin))
                scan.moved_in.add(uid)

    # ------------------------------------------------------------- applying

    def _apply(self, remote: ImapRemote, scan: _Scan) -> None:
        sf, p = scan.sf, scan.plan
        folder_id = sf.local_folder_id
        p.to_import = [uid for uid in p.to_import if uid not in scan.moved_in]
        if p.delete_remote or p.set_remote or p.to_import:
            remote.select(sf.remote_name)
        # Remote deletions first, so that a crash after them re-reads a consistent remote.
        if p.delete_remote:
            remote.delete(p.delete_remote)
        if p.set_remote:
            remote.set_flags(p.set_remote)
        if p.delete_local:
            accounts.expunge_local(self.store, folder_id, p.delete_local)
        groups: dict[frozenset[str], list[int]] = {}
        for uid, flags in p.set_local.items():
            groups.setdefault(flags, []).append(uid)
        raced: set[int] = set()
        for flags, uids in groups.items():
            # RFC 7162 §3.1.3 UNCHANGEDSINCE: a local client that changed a message after the
            # scan keeps its change; the message is merged again next cycle.
            result = self.store.set_flags(folder_id, uids, "replace", sorted(flags), unchanged_since=scan.local_modseq)
            raced.update(result.failed)
        remote_of = {local_uid: remote_uid for remote_uid, (_, _, local_uid) in scan.identity.items()}
        skip = {remote_of[uid] for uid in raced if uid in remote_of}
        with self.db.write() as session:
            for remote_uid, flags in p.agreed.items():
                if remote_uid in skip:
                    continue
                session.execute(update(SyncMessage).where(SyncMessage.sync_folder_id == sf.id,
                                                          SyncMessage.remote_uidvalidity == scan.uidvalidity,
                                                          SyncMessage.remote_uid == remote_uid)
                                .values(flags=plan.flags_text(flags)))
            for batch in plan.batches(p.forget, 500):
                session.execute(delete(SyncMessage).where(SyncMessage.sync_folder_id == sf.id,
                                                          SyncMessage.remote_uidvalidity == scan.uidvalidity,
                                                          SyncMessage.remote_uid.in_(batch)))
        complete = self._import(remote, sf, scan.uidvalidity, p.to_import)
        complete = self._upload(remote, scan) and complete
        with self.db.write() as session:
            # An interrupted pass (a stop) records nothing that would let the next one skip work.
            values = {"local_modseq": self._settled_modseq(scan) if complete else sf.local_modseq}
            if complete:
                values["local_uidnext"] = max(sf.local_uidnext, scan.local_uidnext)
                if scan.remote_modseq is not None:
                    values["remote_modseq"] = scan.remote_modseq
            session.execute(update(SyncFolder).where(SyncFolder.id == sf.id).values(**values))

    def _upload(self, remote: ImapRemote, scan: _Scan) -> bool:
        """Local → remote for new local messages (`courriel.imapsync.upload`); True when all were done."""
        sf = scan.sf
        fresh = [m for m in scan.local_new if m.uid >= sf.local_uidnext and m.uid not in scan.moved_local]
        uploads = scan.retry_uploads + upload.candidates(self.store, sf.local_folder_id, fresh)
        if not uploads:
            return True
        remote.select(sf.remote_name)
        done, complete = upload.upload(self.db, self.store, remote, sf.id, sf.local_folder_id, sf.remote_name,
                                       scan.uidvalidity, uploads, scan.known_remote, self.stop)
        self.moved["uploaded"] += done
        return complete

    def _settled_modseq(self, scan: _Scan) -> int:
        """The local MODSEQ the next pass may start from. Our own writes of this pass (imports,
        merged flags, expunges) are skipped over only when every local change since the scan
        is accounted for by the UID map; otherwise the next pass re-reads from the scan's MODSEQ
        (nothing a local client did is ever skipped)."""
        changes = self.store.changes_since(scan.sf.local_folder_id, scan.local_modseq)
        if not changes.messages and not changes.vanished:
            return scan.local_modseq
        with self.db.read() as session:
            rows = session.execute(select(SyncMessage.local_uid, SyncMessage.flags)
                                   .where(SyncMessage.sync_folder_id == scan.sf.id,
                                          SyncMessage.remote_uidvalidity == scan.uidvalidity))
            agreed = {uid: plan.flags_from_text(flags) for uid, flags in rows}
        seen_new = {m.uid for m in scan.local_new}
        for message in changes.messages:
            if message.uid in agreed:
                if plan.normalise_flags(message.all_flags) != agreed[message.uid]:
                    return scan.local_modseq
            elif message.uid not in seen_new:
                return scan.local_modseq
        if any(uid in agreed for uid in changes.vanished):
            return scan.local_modseq
        return changes.highestmodseq

    def _import(self, remote: ImapRemote, sf: SyncFolder, uidvalidity: int, uids: list[int]) -> bool:
        """Download and store remote messages; True when all were imported (False: stopped)."""
        if not uids:
            return True
        folder_name = self.store.folder(sf.local_folder_id).name
        sizes = remote.sizes(uids)  # UIDs missing here were expunged meanwhile
        too_large = [uid for uid in uids if sizes.get(uid, 0) > self.max_message_size]
        for uid in too_large:
            self._skipped(sf, uid, f"{sizes[uid]} octets (RFC822.SIZE), over the {self.max_message_size}-octet limit")
        # The batches are planned from the server's RFC822.SIZE; a server that understates it
        # still cannot make one FETCH hold more than max(FETCH_BYTES, max_message_size): the
        # client drops the bodies past the budget and fetches them again one at a time.
        groups = plan.size_batches([(uid, sizes[uid]) for uid in uids if uid in sizes and uid not in too_large],
                                   FETCH_BATCH, FETCH_BYTES)
        with _Prefetch(remote, groups) as fetched:
            for messages in fetched:
                if self.stop is not None and self.stop.is_set():
                    return False  # resumable: the UID map says what is left
                for message in messages:
                    if message.refused:
                        self._skipped(sf, message.uid, message.refused)
                self._deliver_batch(sf, folder_name, uidvalidity, [m for m in messages if not m.refused])
        return True

    def _skipped(self, sf: SyncFolder, uid: int | str, reason: str) -> None:
        """A remote message that is not imported (too large): logged, shown on the account,
        counted as done so that the progress completes. It is looked at again next pass."""
        text = f"skipped remote message {uid} in {plan.printable(sf.remote_name, 100)!r}: {reason}"
        log.warning("account %s: %s", self.account_id, text)
        accounts.record_skip(self.db, self.account_id, text)
        with self.db.write() as session:
            session.execute(update(SyncFolder).where(SyncFolder.id == sf.id).values(done=SyncFolder.done + 1))

    def _deliver_batch(self, sf: SyncFolder, folder_name: str, uidvalidity: int,
                       messages: list[FetchedMessage]) -> None:
        """One store transaction for the whole batch (`Store.append_batch`): the messages, their
        UID map rows and the folder's progress commit together, so a crash can neither
        duplicate nor skip a message."""
        if not messages:
            return

        def record(session, delivered) -> None:
            session.execute(insert(SyncMessage), [
                {"sync_folder_id": sf.id, "remote_uidvalidity": uidvalidity, "remote_uid": m.uid,
                 "local_uid": d.uid, "flags": plan.flags_text(m.flags), "message_id": m.message_id,
                 "size": m.size, "origin": upload.REMOTE} for m, d in zip(messages, delivered, strict=True)])
            session.execute(update(SyncFolder).where(SyncFolder.id == sf.id).values(
                done=SyncFolder.done + len(messages),
                imported_since_start=SyncFolder.imported_since_start + len(messages)))

        try:
            self.store.append_batch(self.mailbox_id, folder_name,
                                    [(m.body, sorted(m.flags), m.internaldate) for m in messages],
                                    in_transaction=record)
        except StoreError as exc:
            raise StoreError(f"the local folder {folder_name!r} cannot take the import: {exc}") from exc
        self.moved["imported"] += len(messages)
        if self.on_progress is not None:
            self.on_progress(sf.remote_name)  # after each imported batch

    # ------------------------------------------------------------- POP3

    def _pop_cycle(self) -> None:
        remote = self.remote
        assert isinstance(remote, PopRemote)
        inbox = self.store.get_folder(self.mailbox_id, INBOX)
        [sf] = self._sync_folders([plan.FolderTarget(INBOX, INBOX, None)])
        listing = remote.uidls()
        sizes = remote.sizes()
        with self.db.read() as session:
            known = dict(session.execute(select(SyncPopMessage.uidl, SyncPopMessage.deleted_on_server)
                                         .where(SyncPopMessage.account_id == self.account_id)).all())
        new = sorted((number, uidl) for uidl, number in listing.items() if uidl not in known)
        with self.db.write() as session:
            session.execute(update(SyncFolder).where(SyncFolder.id == sf.id).values(
                total=len(listing), done=len(listing) - len(new),
                **({"import_started_at": dt.datetime.now(dt.UTC), "imported_since_start": 0} if new else {})))
        stored: set[str] = set()
        for number, uidl in new:
            if self.stop is not None and self.stop.is_set():
                break
            if sizes.get(number, 0) > self.max_message_size:
                self._skipped(sf, f"UIDL {plan.printable(uidl, 70)}",
                              f"{sizes[number]} octets (LIST), over the {self.max_message_size}-octet limit")
                continue
            try:
                body = remote.retrieve(number)
            except MessageTooLarge as exc:
                self._skipped(sf, f"UIDL {plan.printable(uidl, 70)}", str(exc))
                continue

            def record(session, uidl=uidl) -> None:
                uidnext = session.scalar(select(Folder.uidnext).where(Folder.id == inbox.id))
                session.add(SyncPopMessage(account_id=self.account_id, uidl=uidl, local_folder_id=inbox.id,
                                           local_uid=uidnext - 1, deleted_on_server=False))
                session.execute(update(SyncFolder).where(SyncFolder.id == sf.id).values(
                    done=SyncFolder.done + 1, imported_since_start=SyncFolder.imported_since_start + 1))

            self.store.deliver(self.mailbox_id, body, folder=INBOX, in_transaction=record)
            stored.add(uidl)
        if self.leave_on_server:
            remote.quit()
            return
        # RFC 1939 §6: DELE takes effect at QUIT; only then are the rows marked.
        # Only what was imported is deleted: never a skipped (too large) message, nor one a stop
        # left unread.
        imported = [uidl for uidl in listing if uidl in known or uidl in stored]
        for uidl in imported:
            remote.delete(listing[uidl])
        remote.quit()
        with self.db.write() as session:
            for batch in [imported[i:i + 500] for i in range(0, len(imported), 500)]:
                session.execute(update(SyncPopMessage).where(SyncPopMessage.account_id == self.account_id,
                                                             SyncPopMessage.uidl.in_(batch))
                                .values(deleted_on_server=True))

    # ------------------------------------------------------------- continuous

    def run(self, stop: threading.Event, run_dir: Path | None = None) -> None:
        """Cycle until `stop` is set or the account leaves the active state. Failures are
        recorded on the account (with back-off and pause); this method does not raise."""
        self.stop = stop
        listener = None
        if run_dir is not None:
            with contextlib.suppress(OSError):
                listener = notify.Listener(run_dir, [notify.MAILBOX])
        try:
            while not stop.is_set() and self.state() == SyncAccountState.ACTIVE:
                if not self._wait_until_due(stop):
                    break
                try:
                    self.cycle()
                    accounts.record_success(self.db, self.account_id)
                    metrics.sync_run(self.account_id, "ok", messages=sum(self.moved.values()))
                    self._wait_for_change(stop, listener)
                except (RemoteError, OSError, StoreError, accounts.AccountError,
                        accounts.credentials.CredentialError) as exc:
                    metrics.sync_run(self.account_id, "failed", messages=sum(self.moved.values()))
                    self._failed(str(exc))
                except Exception as exc:
                    # An internal fault still backs off (no tight restart loop) and shows on the account.
                    log.exception("account %s: internal error during sync", self.account_id)
                    metrics.sync_run(self.account_id, "failed", messages=sum(self.moved.values()))
                    self._failed(f"internal error: {exc.__class__.__name__}")
        finally:
            self.close()
            if listener is not None:
                listener.close()

    def _failed(self, message: str) -> None:
        message = plan.printable(message, 500)  # server text: no control characters in logs and records
        self.close()
        try:
            view = accounts.record_failure(self.db, self.account_id, message)
        except accounts.AccountError:
            return  # removed meanwhile: run() ends at the next state check
        log.warning("account %s (%s): sync failed (%d in a row): %s", self.account_id, view.email, view.failures,
                    message)

    def _wait_until_due(self, stop: threading.Event) -> bool:
        with self.db.read() as session:
            due = session.scalar(select(SyncAccount.next_attempt_at).where(SyncAccount.id == self.account_id))
        if due is not None:
            delay = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if delay > 0 and stop.wait(delay):
                return False
        return not stop.is_set()

    def _wait_for_change(self, stop: threading.Event, listener) -> None:
        watch.wait_for_change(self, stop, listener)


class _Scan:
    """What one folder looked like at the start of a cycle, and its plan."""

    def __init__(self, sf: SyncFolder, uidvalidity: int, remote_modseq: int | None, local_modseq: int,
                 plan: plan.FolderPlan, local_new: list, identity: dict[int, tuple[str, int, int]]):
        self.sf = sf
        self.uidvalidity = uidvalidity
        self.remote_modseq = remote_modseq
        self.local_modseq = local_modseq
        self.plan = plan
        self.local_new = local_new
        self.identity = identity
        self.moved_in: set[int] = set()  # remote UIDs mapped by a replayed move
        self.moved_local: set[int] = set()  # local UIDs mapped by a replayed local move
        self.origin: dict[int, str] = {}  # remote UID → origin of its map row
        self.retry_uploads: list[upload.Upload] = []  # interrupted uploads not found on the remote
        self.known_remote: set[int] = set()  # remote UIDs in the map
        self.local_uidnext = 0  # the local folder's UIDNEXT at the scan


class _Prefetch:
    """Pipelined import: a thread runs the UID FETCH of the next batches while the caller stores
    the current one (the fetch waits on the network and parses; the store waits on fsync).

    At most PREFETCH batches wait in the queue, so memory stays bounded. The connection is
    used by this thread only until the context exits (which joins it); an error in the fetch
    is raised in the caller."""

    _END = object()

    def __init__(self, remote: ImapRemote, groups: list[list[int]]):
        self.remote = remote
        self.groups = groups
        self.queue: queue.Queue = queue.Queue(maxsize=PREFETCH)
        self.abandon = threading.Event()
        self.thread = threading.Thread(target=self._fetch, name="sync-prefetch", daemon=True)

    def _put(self, item) -> bool:
        while not self.abandon.is_set():
            try:
                self.queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _fetch(self) -> None:
        try:
            for group in self.groups:
                if self.abandon.is_set() or not self._put(self.remote.fetch(group, FETCH_BYTES)):
                    return
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
            return
        self._put(self._END)

    def __enter__(self):
        self.thread.start()
        return self._items()

    def _items(self):
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __exit__(self, *exc_info) -> None:
        self.abandon.set()
        self.thread.join()
