"""Two processes delivering into one folder: distinct, growing UIDs and no lost message."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from store_fixtures import blobs, make_mailbox, refcount_problems, store

from courriel.models import Message

__all__ = ["blobs", "store"]

CHILD = Path(__file__).parents[1] / "support" / "store_child.py"
PER_PROCESS = 500


def run_children(db_url: str, data_dir: Path, mailbox_id: int, mode: str, count: int, processes: int,
                 timeout: float = 60) -> list[subprocess.CompletedProcess]:
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


def test_two_processes_deliver_into_one_folder(db, data_dir, store):
    mailbox_id = make_mailbox(db)
    results = run_children(db.url, data_dir, mailbox_id, "deliver", PER_PROCESS, processes=2)
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
        subjects = {row.uid: row.subject for row in rows}
        modseqs = [row.modseq for row in rows]
    assert len(rows) == 2 * PER_PROCESS
    # Every acknowledged message is the one stored under its UID; MODSEQ grows with the UID.
    assert all(subjects[uid] == tag.replace(".", " ") for uid, tag in acknowledged.items())
    assert modseqs == sorted(set(modseqs))
    assert folder.highestmodseq == modseqs[-1]
    sample = max(acknowledged)
    with store.open_message(folder.id, sample) as handle:
        assert handle.read().endswith(f"Body of {acknowledged[sample].replace('.', ' ')}.\r\n".encode())
    assert not refcount_problems(db)
