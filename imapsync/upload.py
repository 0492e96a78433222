"""Local → remote for new local messages: APPEND them to the remote folder, exactly once (ring 2).

A new local message of a synced folder is one with a UID at or above the folder's
`local_uidnext` watermark that no UID map row explains: mail delivered here (SMTP, the queue)
or APPENDed by a local IMAP client. Messages imported FROM the remote always have a map row
(written in their delivery transaction), and moves already replayed with COPYUID too, so they
are never uploaded back. Mail that was in the folder before the account was added stays
local (the watermark starts at the folder's UIDNEXT then).

Exactly once, written down:
1. Intent: a map row with origin "pending" (remote UID = -local UID, unknown yet) is committed
   BEFORE the remote APPEND.
2. APPEND with the local flags and internal date (RFC 3501 §6.3.11).
3. The remote UID comes from APPENDUID (RFC 4315 §3) when the server offers UIDPLUS, else
   from `UID SEARCH HEADER Message-ID` among UIDs the map does not know (confirmed by size);
   the row becomes origin "local" with that UID, in one transaction.
A crash between 2 and 3 leaves the pending row. The next pass, before importing anything,
looks for every pending message among the remote messages the map does not know (Message-ID
and size; size and INTERNALDATE for a message without Message-ID): found → the row is
completed and the remote copy is NOT imported; not found → the APPEND is done again. A crash
between 1 and 2 therefore re-APPENDs once, and a crash between 2 and 3 never duplicates.

Standards: RFC 3501 §6.3.11 (APPEND), §6.4.4 (SEARCH HEADER); RFC 4315 §3 (APPENDUID).
Security: the bytes sent are the stored message as it is; nothing secret is logged.
Durability: the intent row commits before the APPEND; the completed row in one transaction.
Fault points for the crash tests: `imapsync.upload.after_intent`, `imapsync.upload.after_append`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update

from courriel import durable
from courriel.db import Database
from courriel.imapsync import plan
from courriel.imapsync.client import ImapRemote
from courriel.models import SyncMessage
from courriel.store import Store, StoreError

log = logging.getLogger("courriel.imapsync")

PENDING = "pending"
LOCAL = "local"
REMOTE = "remote"


@dataclass(frozen=True)
class Upload:
    """A local message to APPEND to the remote folder."""

    local_uid: int
    message_id: str
    size: int
    flags: frozenset[str]
    internaldate_seconds: int


def pending(db: Database, sync_folder_id: int) -> list[Upload]:
    """Uploads that were started and not recorded (a crash between APPEND and the map row)."""
    with db.read() as session:
        rows = session.execute(select(SyncMessage.local_uid, SyncMessage.message_id, SyncMessage.size,
                                      SyncMessage.flags)
                               .where(SyncMessage.sync_folder_id == sync_folder_id,
                                      SyncMessage.origin == PENDING)).all()
    return [Upload(r.local_uid, r.message_id, r.size, plan.flags_from_text(r.flags), 0) for r in rows]


def resolve_pending(db: Database, store: Store, remote: ImapRemote, sync_folder_id: int, local_folder_id: int,
                    uidvalidity: int, unknown_remote: list[int]) -> tuple[set[int], list[Upload]]:
    """Match pending uploads against the remote messages the map does not know.

    Returns (remote UIDs now mapped: they must not be imported, pending uploads not found on
    the remote: they are APPENDed again). The remote folder is selected."""
    waiting = pending(db, sync_folder_id)
    if not waiting:
        return set(), []
    dates = {m.uid: int(m.internaldate.timestamp())
             for m in store.list_messages(local_folder_id, [u.local_uid for u in waiting])}
    unknown = set(unknown_remote)
    matched: dict[int, int] = {}  # local UID → remote UID
    if unknown:
        identities = remote.identities(sorted(unknown))
        free = dict(identities)
        for upload in waiting:
            for uid in sorted(free, reverse=True):
                message_id, size, seconds = free[uid]
                if size != upload.size:
                    continue
                if upload.message_id and message_id != upload.message_id:
                    continue
                if not upload.message_id and (message_id or seconds != dates.get(upload.local_uid)):
                    continue
                matched[upload.local_uid] = uid
                del free[uid]
                break
    if matched:
        with db.write() as session:
            for local_uid, remote_uid in matched.items():
                session.execute(update(SyncMessage).where(SyncMessage.sync_folder_id == sync_folder_id,
                                                          SyncMessage.origin == PENDING,
                                                          SyncMessage.local_uid == local_uid)
                                .values(remote_uidvalidity=uidvalidity, remote_uid=remote_uid, origin=LOCAL))
        log.info("folder %s: %d interrupted upload(s) found on the remote, not sent again", sync_folder_id,
                 len(matched))
    again = [Upload(u.local_uid, u.message_id, u.size, u.flags, dates.get(u.local_uid, 0))
             for u in waiting if u.local_uid not in matched]
    return set(matched.values()), again


def candidates(store: Store, local_folder_id: int, messages: list) -> list[Upload]:
    """Uploads for new local messages (store MessageInfo), with their Message-IDs."""
    if not messages:
        return []
    ids = {s.uid: s.message_id for s in store.summaries(local_folder_id, [m.uid for m in messages])}
    return [Upload(m.uid, ids.get(m.uid, ""), m.size, plan.normalise_flags(m.all_flags),
                   int(m.internaldate.timestamp())) for m in messages if m.uid in ids]


def upload(db: Database, store: Store, remote: ImapRemote, sync_folder_id: int, local_folder_id: int,
           remote_name: str, uidvalidity: int, uploads: list[Upload], known_remote: set[int],
           stop: threading.Event | None = None) -> tuple[int, bool]:
    """APPEND each upload to the selected remote folder and map it (see the module steps).

    `known_remote`: remote UIDs already in the map (a Message-ID search must not pick them).
    Returns (messages uploaded, True when every upload was done)."""
    done = 0
    uidplus = "UIDPLUS" in remote.capabilities
    for item in uploads:
        if stop is not None and stop.is_set():
            return done, False
        info = store.list_messages(local_folder_id, [item.local_uid])
        if not info:
            _forget_pending(db, sync_folder_id, item.local_uid)  # expunged here meanwhile
            continue
        if not uidplus and not item.message_id:
            # Neither APPENDUID nor a Message-ID to find the copy by: it could not be mapped,
            # and would come back as a new remote message. It stays local.
            log.info("folder %s: local UID %d has no Message-ID and the remote lacks UIDPLUS: kept local",
                     sync_folder_id, item.local_uid)
            continue
        with db.write() as session:  # 1. the intent, committed before the APPEND
            session.execute(delete(SyncMessage).where(SyncMessage.sync_folder_id == sync_folder_id,
                                                      SyncMessage.origin == PENDING,
                                                      SyncMessage.local_uid == item.local_uid))
            session.execute(insert(SyncMessage).values(
                sync_folder_id=sync_folder_id, remote_uidvalidity=uidvalidity, remote_uid=-item.local_uid,
                local_uid=item.local_uid, flags=plan.flags_text(item.flags), message_id=item.message_id,
                size=item.size, origin=PENDING))
        durable.fault_point("imapsync.upload.after_intent")
        try:
            with store.open_message(local_folder_id, item.local_uid) as handle:
                body = handle.read()
        except StoreError:
            _forget_pending(db, sync_folder_id, item.local_uid)
            continue
        appended = remote.append(remote_name, body, sorted(item.flags), info[0].internaldate)  # 2.
        durable.fault_point("imapsync.upload.after_append")
        remote_uid = None
        if appended is not None and appended[0] == uidvalidity:
            remote_uid = appended[1]
        elif item.message_id:
            remote.select(remote_name)
            found = [uid for uid in remote.search_message_id(item.message_id) if uid not in known_remote]
            sizes = remote.sizes(found) if found else {}
            matching = [uid for uid in found if sizes.get(uid) == len(body)]
            remote_uid = max(matching) if matching else None
        if remote_uid is None:
            continue  # left pending: the next pass finds it among the unknown remote messages
        with db.write() as session:  # 3. the map row, complete
            session.execute(update(SyncMessage).where(SyncMessage.sync_folder_id == sync_folder_id,
                                                      SyncMessage.origin == PENDING,
                                                      SyncMessage.local_uid == item.local_uid)
                            .values(remote_uid=remote_uid, origin=LOCAL, size=len(body)))
        known_remote.add(remote_uid)
        done += 1
    return done, True


def _forget_pending(db: Database, sync_folder_id: int, local_uid: int) -> None:
    with db.write() as session:
        session.execute(delete(SyncMessage).where(SyncMessage.sync_folder_id == sync_folder_id,
                                                  SyncMessage.origin == PENDING,
                                                  SyncMessage.local_uid == local_uid))
