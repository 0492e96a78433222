"""Two processes delivering into one folder: distinct, growing UIDs and no lost message.

Each process runs the queue's local delivery path (`Store.deliver` of a spooled blob), so the
same test also proves that concurrent reference-count increments on one blob row add up."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from store_fixtures import blobs, make_mailbox, refcount_problems, sample_message, store

from courriel.models import Message

__all__ = ["blobs", "store"]

CHILD = Path(__file__).parents[1] / "support" / "store_child.py"
PER_PROCESS = 500


def run_children(db_url: str, data_dir: Path, mailbox_id: int, mode: str, count: int, processes: int,
                 timeout: float = 60) -> list[subprocess.CompletedProcess]:
    """Separate interpreters (not forks): nothing is shared but the database and the data directory."""
    children = [
        subprocess.Popen([sys.executable, str(CHILD), db_url, str(data_dir), str(mailbox_id), str(count), mode],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    deadline = time.monotonic() + timeout
    results = []
    for child in children:
        out, err = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
        results.append(subprocess.CompletedProcess(child.args, child.returncode, out, err))
    return results


def test_two_processes_deliver_into_one_folder(db, data_dir, blobs, store):
    mailbox_id = make_mailbox(db)
    body = sample_message(1, subject="shared body")
    blob_id = blobs.put(body, refcount=0)
    results = run_children(db.url, data_dir, mailbox_id, f"deliver-blob:{blob_id}", PER_PROCESS, processes=2)
    acknowledged: dict[int, str] = {}
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
        lines = [line.split() for line in result.stdout.splitlines()]
        assert len(lines) == PER_PROCESS
        uids = [int(uid) for uid, _ in lines]
        assert uids == sorted(set(uids)), "a process saw its own UIDs go backwards"
        for uid, tag in lines:
            assert int(uid) not in acknowledged, f"UID {uid} given twice"
            acknowledged[int(uid)] = tag

    folder = store.get_folder(mailbox_id, "INBOX")
    assert sorted(acknowledged) == list(range(1, 2 * PER_PROCESS + 1))
    assert folder.uidnext == 2 * PER_PROCESS + 1
    with db.read() as session:
        rows = session.query(Message).filter_by(folder_id=folder.id).order_by(Message.uid).all()
        modseqs = [row.modseq for row in rows]
        assert all(row.blob_id == blob_id and row.subject == "shared body" for row in rows)
    assert [row.uid for row in rows] == sorted(acknowledged)
    # MODSEQ grows with the UID: allocated by the same atomic update.
    assert modseqs == sorted(set(modseqs)) and folder.highestmodseq == modseqs[-1]
    assert blobs.lookup(blob_id).refcount == 2 * PER_PROCESS
    with store.open_message(folder.id, max(acknowledged)) as handle:
        assert handle.read() == body
    assert not refcount_problems(db)
