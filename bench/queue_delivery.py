"""Local delivery throughput of the queue role, alone: spool N messages for 100 local mailboxes
(`spool.accept`, the queue role stopped), then run one `QueueRunner` in this process and time
until the queue is empty. Prints messages per second and this process's CPU milliseconds per
message (steadier than the wall clock on a shared machine).

    PYTHONSAFEPATH=1 .venv/bin/python bench/queue_delivery.py --messages 300

Durability: a scratch data directory under the system temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--max-in-flight", type=int, default=None)
    args = parser.parse_args()
    for name in list(os.environ):
        if name.startswith("COURRIEL_"):
            del os.environ[name]
    os.environ["COURRIEL_DNS_NAMESERVERS"] = "127.0.0.1:1"  # nothing here needs DNS
    from courriel import config as config_mod
    from courriel.blobs import BlobStore
    from courriel.cli import main as cli_main
    from courriel.db import Database
    from courriel.models import Domain, Mailbox
    from courriel.queue import spool
    from courriel.queue.runner import DEFAULT_MAX_IN_FLIGHT, QueueRunner
    from courriel.queue.spool import Envelope, EnvelopeRecipient

    scratch = Path(tempfile.mkdtemp(prefix="courriel-queue-bench-"))
    try:
        data = scratch / "data"
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli_main(["init", "--data", str(data), "--hostname", "mx.example.org"]) == 0
        config = config_mod.load(data, dev=True)
        db = Database(config.database_url)
        with db.write() as session:
            domain = Domain(name="bench.test", verification_token="t" * 16)
            session.add(domain)
            session.flush()
            for n in range(1, 101):
                session.add(Mailbox(domain_id=domain.id, local_part=f"user{n}", address=f"user{n}@bench.test"))
        blobs = BlobStore(config.blob_dir, db)
        for n in range(args.messages):
            body = (f"From: a@example.org\r\nTo: user{n % 100 + 1}@bench.test\r\nSubject: bench {n}\r\n"
                    f"Message-ID: <{n}@example.org>\r\n\r\n").encode() + b"hello world\r\n" * 200
            envelope = Envelope(sender="a@example.org", source="mx",
                                recipients=(EnvelopeRecipient(f"user{n % 100 + 1}@bench.test"),))
            spool.accept(db, blobs, envelope, body)

        async def deliver_all() -> tuple[float, float]:
            runner = QueueRunner(config, db, max_in_flight=args.max_in_flight or DEFAULT_MAX_IN_FLIGHT)
            stop = asyncio.Event()
            wall, cpu = time.monotonic(), time.process_time()
            task = asyncio.create_task(runner.run(stop))
            deadline = wall + 600
            while spool.list_entries(db, limit=1) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu
            stop.set()
            await task
            return wall, cpu

        wall, cpu = asyncio.run(deliver_all())
        db.dispose()
        print(f"{args.messages} messages delivered in {wall:.2f} s: {args.messages / wall:.1f} msg/s, "
              f"{1000 * cpu / args.messages:.1f} ms CPU/msg")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
