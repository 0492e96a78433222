"""The queue role process: runs the delivery loop (`courriel.queue.runner`) until SIGTERM/SIGINT.

Role contract (`courriel.roles`): `run(config, sockets) -> int`; the queue role has no
listeners, so `sockets` is empty. A stop signal lets in-flight deliveries finish for a few
seconds, hands the rest back to the queue (their leases are released), and returns 0. SIGHUP
(`courriel.reload`) applies the settings read again to the delivery attempts that follow.

Security: none here. Durability: through the runner (spool and store).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from courriel import reload
from courriel.config import Config
from courriel.db import Database
from courriel.queue.runner import QueueRunner

log = logging.getLogger("courriel.queue")


def run(config: Config, sockets: dict[str, socket.socket]) -> int:
    for sock in sockets.values():  # none expected; never leave a stray listener open
        sock.close()
    db = Database(config.database_url)
    try:
        return asyncio.run(_serve(config, db))
    finally:
        db.dispose()


async def _serve(config: Config, db: Database) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)  # idempotent: a second signal changes nothing
    runner = QueueRunner(config, db)
    loop.add_signal_handler(signal.SIGHUP, reload.apply, config, "queue", runner.reconfigure)
    log.info("queue runner started", extra={"owner": runner.owner})
    try:
        await runner.run(stop)
    except Exception:
        log.exception("queue runner failed")
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        reload.install_default(config, "queue")  # asyncio restored SIGHUP's default action, a kill
    log.info("queue runner stopped")
    return 0

