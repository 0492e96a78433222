"""Between processes: two processes delivering into one folder (distinct, growing UIDs, no
lost message), and the notify hints that wake processes up.

Each process runs the queue's local delivery path (`Store.deliver` of a spooled blob), so the
same test also proves that concurrent reference-count increments on one blob row add up."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from store_fixtures import blobs, make_mailbox, refcount_problems, sample_message, store

from courriel import notify
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


def test_opposite_moves_and_flag_updates_in_threads(db, store):
    """Folder rows are locked in id order: opposite MOVEs cannot deadlock, and concurrent STOREs
    on one message lose no keyword."""
    mailbox_id = make_mailbox(db)
    inbox = store.get_folder(mailbox_id, "INBOX")
    archive = store.create_folder(mailbox_id, "Archive")
    for n in range(10):
        store.deliver(mailbox_id, sample_message(n))
        store.append(mailbox_id, "Archive", sample_message(100 + n))
    errors: list[BaseException] = []

    def mover(source: int, dest: int) -> None:
        try:
            for _ in range(15):
                uids = [m.uid for m in store.list_messages(source)][:2]
                if uids:
                    store.move(source, uids, dest)
        except BaseException as exc:
            errors.append(exc)

    def tagger(prefix: str) -> None:
        try:
            for n in range(15):
                store.set_flags(archive.id, [m.uid for m in store.list_messages(archive.id)], "add", [f"{prefix}{n}"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=mover, args=(inbox.id, archive.id)),
               threading.Thread(target=mover, args=(archive.id, inbox.id))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert store.quota_usage(mailbox_id).messages == 20
    store.move(inbox.id, [m.uid for m in store.list_messages(inbox.id)], archive.id)

    threads = [threading.Thread(target=tagger, args=(prefix,)) for prefix in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    messages = store.list_messages(archive.id)
    assert len(messages) == 20
    assert all(set(m.keywords) == {f"{p}{n}" for p in "ab" for n in range(15)} for m in messages)
    assert not refcount_problems(db)


# ----------------------------------------------------------------------------- notify hints


def test_hint_reaches_an_asyncio_listener_from_another_process(tmp_path):
    run_dir = tmp_path / "run"

    async def main() -> list[notify.Hint]:
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future = loop.create_future()
        with notify.Listener(run_dir, topics=[notify.MAILBOX]) as listener:
            listener.attach(loop, lambda hints: arrived.done() or arrived.set_result(hints))
            sender = await asyncio.create_subprocess_exec(
                sys.executable, "-c",
                "import sys; from courriel import notify; "
                "notify.send(sys.argv[1], 'queue', 'X'); sys.exit(notify.send(sys.argv[1], 'mailbox', '42') != 1)",
                str(run_dir))
            assert await asyncio.wait_for(sender.wait(), timeout=30) == 0
            return await asyncio.wait_for(arrived, timeout=10)

    assert asyncio.run(main()) == [notify.Hint("mailbox", "42")]  # the queue topic was filtered out


def test_send_never_raises_and_drops_dead_listeners(tmp_path):
    assert notify.send(tmp_path / "missing", "queue") == 0
    # A socket file whose process is gone: the sender removes it.
    listener = notify.Listener(tmp_path, topics=None)
    listener.socket.close()
    assert listener.path.exists()
    assert notify.send(tmp_path, "queue", "A1") == 0
    assert not listener.path.exists()
    # A full receive buffer loses hints without blocking the sender.
    with notify.Listener(tmp_path) as slow:
        slow.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sent = sum(notify.send(tmp_path, "queue", "x" * 400) for _ in range(500))
        assert 0 < sent < 500
        assert slow.receive()[0] == notify.Hint("queue", "x" * 400)


def test_listener_in_a_long_directory_path(tmp_path):
    run_dir = tmp_path / ("d" * 60) / ("e" * 60) / "run"
    with notify.Listener(run_dir) as listener:
        assert len(str(listener.path)) > 108
        assert notify.send(run_dir, "mailbox", 7) == 1
        assert listener.wait(timeout=5) == [notify.Hint("mailbox", "7")]
        assert listener.wait(timeout=0) == []
