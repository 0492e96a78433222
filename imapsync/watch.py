"""Waiting between two passes of one external IMAP/POP3 account (ring 2), one connection each.

Owns `wait_for_change(sync, stop, listener)`, called by `AccountSync.run` after a pass: it
returns on a change on either side, at the poll interval, or on a stop.

Remote changes: IDLE (RFC 2177) on INBOX when the server offers it, left every FOLDER_POLL
seconds for one STATUS round (HIGHESTMODSEQ with CONDSTORE, RFC 7162 §3.1.2.3, else UIDNEXT and
MESSAGES) over the other synced folders; a change starts a pass, which reads only the changed
folder, incrementally. NOTIFY (RFC 5465) would save the rounds but is rare on servers and
missing from the client library; one IDLE connection per folder would multiply connections.
Without IDLE the same STATUS rounds cover INBOX too. IDLE is re-issued before the server's
30-minute inactivity timeout (RFC 2177 §3). Local changes: `mailbox` hints (`courriel.notify`)
for the account's mailbox. The account's state is checked every STATE_CHECK seconds: a paused,
disabled or removed account ends the wait (and `run`).

Security: server text is not logged here. Durability: none (reads only).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from courriel.imapsync.client import ImapRemote
from courriel.models import SyncAccountState, SyncFolder
from courriel.store import INBOX

FOLDER_POLL = 10.0  # seconds between STATUS rounds over the other folders while idling on INBOX
IDLE_SLICE = 1.0  # seconds per IDLE check, so that a stop or a local hint is seen quickly
IDLE_RESTART = 25 * 60  # RFC 2177 §3: re-issue IDLE before the 30-minute inactivity timeout
STATE_CHECK = 5.0  # seconds between account state checks while waiting


def wait_for_change(sync, stop: threading.Event, listener) -> None:
    """Wait for a change on either side of `sync` (an `AccountSync` after a pass, its connection
    open); return on one, after `sync.poll_interval` seconds, or on a stop (module docstring).
    New mail in any synced folder shows up within about `sync.folder_poll` seconds."""
    deadline = time.monotonic() + sync.poll_interval
    remote = sync.remote
    imap = sync.protocol == "imap" and isinstance(remote, ImapRemote)
    idle = imap and remote.idle_supported
    watched = _watched_folders(sync, with_inbox=not idle) if imap else {}
    baseline = sync.status_seen
    if idle:
        remote.select(INBOX)  # RFC 3501 §6.3.10: STATUS is not meant for the selected folder
    if imap and watched and _folders_changed(remote, watched, baseline):
        return
    polled = time.monotonic()
    checked = polled
    if idle:
        while not stop.is_set() and time.monotonic() < deadline:
            remote.idle_start()
            try:
                started = time.monotonic()
                round_end = min(deadline, started + IDLE_RESTART,
                                polled + sync.folder_poll if watched else deadline)
                while not stop.is_set() and time.monotonic() < round_end:
                    if remote.idle_wait(IDLE_SLICE) or _local_hint(sync, listener):
                        return
                    if time.monotonic() - checked > STATE_CHECK:
                        checked = time.monotonic()
                        if sync.state() != SyncAccountState.ACTIVE:
                            return  # paused, disabled or removed: run() ends
            finally:
                remote.idle_stop()
            if watched and time.monotonic() >= polled + sync.folder_poll:
                polled = time.monotonic()
                if _folders_changed(remote, watched, baseline):
                    return
        return
    while not stop.is_set() and time.monotonic() < deadline:
        if listener is not None:
            if any(h.payload == str(sync.mailbox_id) for h in listener.wait(IDLE_SLICE)):
                return
        elif stop.wait(IDLE_SLICE):
            return
        if watched and time.monotonic() >= polled + sync.folder_poll:
            polled = time.monotonic()
            if _folders_changed(remote, watched, baseline):
                return
        if time.monotonic() - checked > STATE_CHECK:
            checked = time.monotonic()
            if sync.state() != SyncAccountState.ACTIVE:
                return


def _watched_folders(sync, with_inbox: bool) -> dict[str, int]:
    """Synced remote folders (INBOX only `with_inbox`) → the HIGHESTMODSEQ the last pass saw."""
    with sync.db.read() as session:
        rows = session.execute(select(SyncFolder.remote_name, SyncFolder.remote_modseq)
                               .where(SyncFolder.account_id == sync.account_id)).all()
    return {name: modseq for name, modseq in rows if with_inbox or name.upper() != INBOX}


def _folders_changed(remote: ImapRemote, watched: dict[str, int], baseline: dict[str, tuple]) -> bool:
    """One STATUS round over the watched folders: True when one changed since the previous
    round (HIGHESTMODSEQ, RFC 7162 §3.1.2.3, UIDNEXT, MESSAGES), or, for a folder not seen
    before, since the last pass (its HIGHESTMODSEQ). `baseline` keeps what each round saw
    (across waits: a server whose STATUS and SELECT disagree cannot start passes in a loop)."""
    changed = False
    remote.noop()  # Dovecot answers STATUS of the selected folder from the session's view: refresh it
    for name, value in remote.status(sorted(watched)).items():
        previous = baseline.get(name)
        baseline[name] = value
        if previous is not None:
            changed = changed or previous != value
        elif value[0] is not None and watched[name] and value[0] != watched[name]:
            changed = True
    return changed


def _local_hint(sync, listener) -> bool:
    if listener is None:
        return False
    return any(h.payload == str(sync.mailbox_id) for h in listener.receive())
