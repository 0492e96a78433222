"""The sync role: keeps every active external account in step (ring 2; ARCHITECTURE §2).

`run(config, sockets)` (the role contract of `courriel.roles`) starts one thread per active
account (`courriel.imapsync.runner.AccountSync.run`) and rescans the accounts table every few
seconds and on a `mailbox` hint: new or resumed accounts get a thread, paused, disabled and
removed ones see their thread end by itself. SIGTERM/SIGINT set one stop event; every thread
notices it within about a second (IDLE is waited on in one-second slices) and the role
returns 0.

On demand (`courriel.on_demand`): `courriel serve` starts this role only while
`accounts.has_work` is true (an active account exists) or after an `accounts` hint; started that
way, the role returns 0 once it has had no active account and no running account thread for
`[sync] idle_stop` seconds. Run alone it never stops by itself.

Security: no listener; it connects out to the configured servers only.
Durability: see the runner (each import is one store delivery transaction).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from courriel import on_demand
from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.imapsync import accounts
from courriel.imapsync.runner import AccountSync
from courriel.models import SyncAccountState
from courriel.store import Store

log = logging.getLogger("courriel.imapsync")
RESCAN_SECONDS = 5.0
STOP_JOIN_SECONDS = 10.0


def supervise(db: Database, store: Store, data_dir: Path, run_dir: Path | None, stop: threading.Event,
              rescan: float = RESCAN_SECONDS, poll_interval: float | None = None,
              max_message_size: int | None = None, idle_stop: float | None = None) -> None:
    """Run account threads until `stop` is set, or until nothing has run for `idle_stop` seconds."""
    threads: dict[int, threading.Thread] = {}
    idle_since: float | None = None

    def work(account_id: int) -> None:
        try:
            kwargs = {"poll_interval": poll_interval} if poll_interval is not None else {}
            if max_message_size is not None:
                kwargs["max_message_size"] = max_message_size
            AccountSync(db, store, data_dir, account_id, **kwargs).run(stop, run_dir)
        except Exception:
            log.exception("sync account %s: unexpected failure", account_id)

    while not stop.is_set():
        try:
            active = [a.id for a in accounts.list_accounts(db, state=SyncAccountState.ACTIVE)]
        except Exception:
            log.exception("sync: cannot read accounts")
            active = []
        for account_id in active:
            thread = threads.get(account_id)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=work, args=(account_id,), name=f"sync-{account_id}", daemon=True)
                threads[account_id] = thread
                thread.start()
        if active or any(thread.is_alive() for thread in threads.values()):
            idle_since = None
        elif idle_stop is not None:
            idle_since = idle_since if idle_since is not None else time.monotonic()
            if time.monotonic() - idle_since >= idle_stop:
                log.info("sync role idle: no active external account; it starts again when one is added")
                break
        stop.wait(rescan if idle_stop is None else min(rescan, max(0.1, idle_stop)))
    for thread in threads.values():
        thread.join(STOP_JOIN_SECONDS)


def run(config, sockets: dict) -> int:
    stop = threading.Event()

    def on_signal(_signum, _frame) -> None:
        stop.set()  # idempotent

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    db = Database(config.database_url)
    try:
        store = Store(db, BlobStore(config.blob_dir, db), run_dir=config.run_dir)
        log.info("sync role started")
        # The largest message imported is the largest the local server accepts (ESMTP SIZE).
        supervise(db, store, config.data_dir, config.run_dir, stop,
                  max_message_size=int(config.get("smtp", "max_message_size")),
                  idle_stop=float(config.get("sync", "idle_stop")) if on_demand.started_on_demand() else None)
        log.info("sync role stopped")
        return 0
    except Exception:
        log.exception("sync role failed")
        return 1
    finally:
        db.dispose()
