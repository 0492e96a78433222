"""A child process for the store's concurrency and crash tests.

Usage: python store_child.py <db-url> <data-dir> <mailbox-id> <count> <deliver|deliver-blob:<id>|accept|drain>

Delivers (or spools) `count` messages and prints one line per acknowledged message, flushed at
once, *after* the call returned: `<uid> <tag>` for deliveries, `<queue id> <tag>` for accepts.
`drain` plays the queue role: it leases every due message, delivers its local recipients
(recording each result in the delivery's transaction), relays nothing, marks remote
recipients relayed and finishes the message; it prints `<queue id>` per finished message. A fault point
(COURRIEL_FAULT in the environment) may kill the process at any moment; whatever it printed
before was acknowledged and must survive.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from courriel import durable
from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.models import RecipientState
from courriel.queue import spool
from courriel.store import Store


def message(tag: str, n: int) -> bytes:
    return (f"From: child@example.net\r\nTo: box@example.org\r\nSubject: {tag} {n}\r\n"
            f"Message-ID: <{tag}.{n}@example.net>\r\n\r\nBody of {tag} {n}.\r\n").encode()


def drain(db: Database, store: Store, out) -> None:
    owner = "drain-test"
    spool.clear_stale_leases(db, owner=owner)
    for _ in range(1000):
        batch = spool.lease(db, owner, limit=10)
        if not batch:
            return
        for entry in batch:
            for rcpt in entry.pending_recipients:
                if rcpt.mailbox_id is None:
                    spool.record_result(db, rcpt.id, RecipientState.RELAYED, "250 2.0.0 relayed")
                    continue
                store.deliver(rcpt.mailbox_id, entry.blob_id, rcpt.folder,
                              in_transaction=lambda session, r=rcpt: spool.record_result(
                                  session, r.id, RecipientState.DELIVERED, "250 2.0.0 delivered"))
            spool.finish(db, entry.id)
            out.write(f"{entry.id}\n")
            out.flush()


def run(url: str, data_dir: Path, mailbox_id: int, count: int, mode: str, out) -> None:
    tag = f"p{os.getpid()}"
    db = Database(url)
    blobs = BlobStore(data_dir / "blobs", db)
    store = Store(db, blobs, run_dir=data_dir / "run")
    if mode == "drain":
        drain(db, store, out)
    for n in range(count):
        if mode == "deliver":
            delivered = store.deliver(mailbox_id, message(tag, n))
            out.write(f"{delivered.uid} {tag}.{n}\n")
        elif mode.startswith("deliver-blob:"):  # the queue's local delivery of a spooled body
            delivered = store.deliver(mailbox_id, int(mode.partition(":")[2]))
            out.write(f"{delivered.uid} {tag}.{n}\n")
        elif mode == "accept":
            envelope = spool.Envelope(sender="child@example.net",
                                      recipients=(spool.EnvelopeRecipient("box@example.org", mailbox_id=mailbox_id),
                                                  spool.EnvelopeRecipient("other@example.com")))
            queue_id = spool.accept(db, blobs, envelope, message(tag, n))
            out.write(f"{queue_id} {tag}.{n}\n")
        else:
            raise SystemExit(f"unknown mode {mode}")
        out.flush()
    db.dispose()


@dataclass
class ChildResult:
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str


def fork_child(url: str, data_dir: Path, mailbox_id: int, count: int, mode: str, fault: str | None,
               timeout: float = 60) -> ChildResult:
    """Run `run` in a forked child (no interpreter start-up) with the fault point `fault` armed.

    The child builds its own engine; it never touches the parent's connections and leaves
    with os._exit so that no finaliser of the parent's objects runs in it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(read_end)
            if fault:
                durable.fault_point = durable.make_fault_point(fault)
            with os.fdopen(write_end, "w") as out:
                run(url, data_dir, mailbox_id, count, mode, out)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    chunks = []
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:  # until EOF: the child exited or died
            if not select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TimeoutError("child did not finish in time")
            chunk = pipe.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    output = b"".join(chunks).decode()
    return ChildResult(returncode=os.waitstatus_to_exitcode(status), stdout=output, stderr="")


def main(argv: list[str]) -> int:
    url, data_dir, mailbox_id, count, mode = argv[1], Path(argv[2]), int(argv[3]), int(argv[4]), argv[5]
    run(url, data_dir, mailbox_id, count, mode, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
