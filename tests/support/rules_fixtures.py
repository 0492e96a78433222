"""Shared pieces of the server-side rules tests: a queue world (tests/support/queue_harness)
with local mailboxes and their folders, and readers for folders, flags and queue quiescence.

Security: test-only; everything stays on 127.0.0.0/8 (the harness's loopback DNS server).
"""

from __future__ import annotations

from queue_harness import QueueWorld, poll

from courriel.store import NoSuchFolder, create_default_folders


def add_mailbox(world: QueueWorld, address: str) -> int:
    mailbox_id = world.add_mailbox(address)
    with world.db.write() as session:
        create_default_folders(session, mailbox_id)
    return mailbox_id


def folder_messages(world: QueueWorld, mailbox_id: int, name: str) -> list[tuple[bytes, tuple[str, ...]]]:
    """(raw bytes, flags and keywords) of every message of a folder; [] when it does not exist."""
    store = world.store
    try:
        folder = store.get_folder(mailbox_id, name)
    except NoSuchFolder:
        return []
    out = []
    for info in store.list_messages(folder.id):
        with store.open_message(folder.id, info.uid) as handle:
            out.append((handle.read(), info.all_flags))
    return out


def queue_empty(world: QueueWorld) -> bool:
    return not world.queue()


def drain(world: QueueWorld, what: str = "queue empty", timeout: float = 20.0) -> None:
    poll(lambda: queue_empty(world), what, timeout=timeout)


def message(sender: str, to: str, subject: str, *, headers: str = "", body: str = "Hello.\r\n",
            message_id: str | None = None) -> bytes:
    mid = message_id or f"<{abs(hash((sender, to, subject, headers)))}@test.example>"
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
            f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n{headers}MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()
