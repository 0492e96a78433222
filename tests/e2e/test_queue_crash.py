"""Crash recovery of the queue role: the role process is killed (SIGKILL at a fault point) in the
middle of a remote and of a local delivery (one message, then many delivered in batches, killed
inside a batch and right after its commit); after a restart every recipient has its copy, and
only a remote copy that was in flight may arrive twice. Then SIGTERM stops the role cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from dns_test_server import running_dns_server
from queue_harness import ScriptedPeer, free_port, poll, queue_environment

from courriel import config as config_mod
from courriel.blobs import BlobStore
from courriel.cli import main as cli_main
from courriel.db import Database
from courriel.models import Domain, Mailbox
from courriel.queue import spool
from courriel.queue.spool import Envelope, EnvelopeRecipient
from courriel.store import Store

MESSAGE = b"From: alice@example.org\r\nTo: undisclosed-recipients:;\r\nSubject: crash\r\n\r\nbody\r\n"


@pytest.fixture
def installation(tmp_path, monkeypatch):
    """An initialised data directory, a DNS zone and one SMTP peer; yields (env, config, db, dns, peer)."""
    for name in list(os.environ):
        if name.startswith("COURRIEL_") and not name.startswith("COURRIEL_PASSWORDS_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    assert cli_main(["init", "--data", str(data), "--hostname", "mx.example.org"]) == 0
    with running_dns_server() as dns:
        port = free_port()
        db_url = f"sqlite:///{data / 'courriel.db'}"
        env = queue_environment(data, db_url, dns.nameserver, port)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config = config_mod.load(data, dev=True)
        db = Database(config.database_url)
        dns.add("remote.test", "MX", "10 mx.remote.test")
        dns.add("mx.remote.test", "A", "127.0.0.2")
        peer = ScriptedPeer("127.0.0.2", port).start()
        try:
            yield env, config, db, peer
        finally:
            peer.stop()
            db.dispose()


def _role(config, env, fault: str | None = None) -> subprocess.Popen:
    environment = {**os.environ, **env, "PYTHONSAFEPATH": "1"}
    environment.pop("COURRIEL_FAULT", None)
    if fault:
        environment["COURRIEL_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "courriel.cli.serve", "--role", "queue", "--dev",
                             "--data", str(config.data_dir)], env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _crash_then_recover(config, env, fault: str, done) -> None:
    first = _role(config, env, fault)
    try:
        status = first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert status == -signal.SIGKILL, first.stderr.read().decode(errors="replace")[-2000:]
    second = _role(config, env)
    try:
        poll(done, "every recipient delivered after the restart", timeout=30)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0  # clean stop
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()


def test_kill_during_remote_delivery(installation):
    env, config, db, peer = installation
    recipients = ["r1@remote.test", "r2@remote.test", "r3@remote.test"]
    envelope = Envelope(sender="alice@example.org", recipients=tuple(EnvelopeRecipient(a) for a in recipients),
                        source="submission")
    spool.accept(db, _blobs(config, db), envelope, MESSAGE)
    # Killed after the peer took the message, once the first recipient's result is recorded.
    _crash_then_recover(config, env, "queue.remote.after_data:2",
                        lambda: not spool.list_entries(db))
    copies = Counter(peer.recipients())
    assert set(copies) == set(recipients)
    assert copies["r1@remote.test"] == 1  # recorded before the crash: never sent again
    assert all(count <= 2 for count in copies.values())  # only the in-flight transaction was repeated
    assert len(peer.received) == 2


def test_kill_during_local_delivery(installation):
    env, config, db, _peer = installation
    with db.write() as session:
        domain = Domain(name="example.org", verification_token="t" * 16)
        session.add(domain)
        session.flush()
        ids = []
        for name in ("u1", "u2", "u3"):
            mailbox = Mailbox(domain_id=domain.id, local_part=name, address=f"{name}@example.org")
            session.add(mailbox)
            session.flush()
            ids.append(mailbox.id)
    envelope = Envelope(sender="alice@example.org", source="submission",
                        recipients=tuple(EnvelopeRecipient(f"u{i}@example.org") for i in (1, 2, 3)))
    spool.accept(db, _blobs(config, db), envelope, MESSAGE)
    store = Store(db, _blobs(config, db))

    def counts():
        result = []
        for mailbox_id in ids:
            try:
                result.append(len(store.list_messages(store.get_folder(mailbox_id, "INBOX").id)))
            except Exception:
                result.append(0)
        return result

    # Killed inside the second recipient's store transaction: that copy rolls back with its result.
    _crash_then_recover(config, env, "queue.local.before_commit:2",
                        lambda: not spool.list_entries(db) and counts() == [1, 1, 1])
    assert counts() == [1, 1, 1]  # exactly once each


def _local_messages(config, db, count: int) -> tuple[list[int], Store]:
    """`count` messages spooled for u1..u3@example.org in turn (several batches' worth)."""
    with db.write() as session:
        domain = Domain(name="example.org", verification_token="t" * 16)
        session.add(domain)
        session.flush()
        ids = []
        for name in ("u1", "u2", "u3"):
            mailbox = Mailbox(domain_id=domain.id, local_part=name, address=f"{name}@example.org")
            session.add(mailbox)
            session.flush()
            ids.append(mailbox.id)
    for n in range(count):
        envelope = Envelope(sender="alice@example.org", source="mx",
                            recipients=(EnvelopeRecipient(f"u{n % 3 + 1}@example.org"),))
        spool.accept(db, _blobs(config, db), envelope, MESSAGE.replace(b"crash", b"crash %d" % n))
    return ids, Store(db, _blobs(config, db))


def _inbox_counts(store: Store, ids: list[int]) -> list[int]:
    result = []
    for mailbox_id in ids:
        try:
            result.append(len(store.list_messages(store.get_folder(mailbox_id, "INBOX").id)))
        except Exception:
            result.append(0)
    return result


@pytest.mark.parametrize("fault", ["queue.local.before_commit:4", "store.deliver.after_commit:1",
                                   "queue.local.before_finish:1"])
def test_kill_during_batched_local_delivery(installation, fault):
    """Many messages at once: the runner delivers them in batches (one transaction each, with
    the results; then one more that ends the finished messages). A kill inside a batch rolls it
    back whole; a kill after a batch's commit must not deliver its copies again."""
    env, config, db, _peer = installation
    # More than one lease (DEFAULT_MAX_IN_FLIGHT) holds: work is left for the restarted role.
    ids, store = _local_messages(config, db, 45)
    _crash_then_recover(config, env, fault,
                        lambda: not spool.list_entries(db) and _inbox_counts(store, ids) == [15, 15, 15])
    assert _inbox_counts(store, ids) == [15, 15, 15]  # exactly once each
    subjects = Counter()
    for mailbox_id in ids:
        folder = store.get_folder(mailbox_id, "INBOX")
        for info in store.list_messages(folder.id):
            with store.open_message(folder.id, info.uid) as handle:
                subjects[handle.read().split(b"Subject: ")[1].split(b"\r\n")[0]] += 1
    assert len(subjects) == 45 and set(subjects.values()) == {1}


def _blobs(config, db) -> BlobStore:
    return BlobStore(config.blob_dir, db)
