"""Test harness for the queue role: a data directory with domains and mailboxes, a loopback DNS
zone, scripted SMTP peers (aiosmtpd) on 127.0.0.x, and a queue runner in a background thread.

Use from a test module::

    from queue_harness import make_world, poll

    def test_x(data_dir, monkeypatch):
        with make_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch) as world:
            world.add_mailbox("alice@example.org")
            peer = world.peer("127.0.0.2", rcpt=["451 4.3.0 later", "250 ok"])
            world.dns.add("remote.test", "MX", "10 mx.remote.test")
            world.dns.add("mx.remote.test", "A", "127.0.0.2")
            world.submit("alice@example.org", ["bob@remote.test"], MESSAGE)
            with world.running():
                poll(lambda: peer.received, "delivered")

Every peer listens on the same port (`world.port`, the queue's `outbound_port`) on its own
loopback address. Security: test-only; binds 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from dns_test_server import running_dns_server

from courriel import config as config_mod
from courriel import dkim, schema
from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.models import DkimKey, Domain, Mailbox
from courriel.queue import spool
from courriel.queue.runner import QueueRunner
from courriel.queue.spool import Envelope, EnvelopeRecipient
from courriel.store import Store


def poll(condition: Callable[[], object], what: str, timeout: float = 15.0, interval: float = 0.05):
    """Wait until `condition()` is truthy (returns it), or fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.2") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    connection: int
    mail_options: list[str]
    rcpt_options: list[list[str]]


class _ScriptHandler:
    def __init__(self, peer: ScriptedPeer):
        self.peer = peer

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.peer.next_reply(self.peer.rcpt_script)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.append(rcpt_options)
        return reply

    async def handle_DATA(self, server, session, envelope):
        reply = self.peer.next_reply(self.peer.data_script)
        if reply.startswith("250"):
            with self.peer.lock:
                self.peer.received.append(Received(
                    envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content),
                    id(session), list(envelope.mail_options), [list(o) for o in envelope.rcpt_options]))
        return reply


class ScriptedPeer:
    """An aiosmtpd server whose RCPT and DATA replies follow a script (then "250 OK" forever)."""

    def __init__(self, host: str, port: int, rcpt: list[str] | None = None, data: list[str] | None = None,
                 smtputf8: bool = True):
        self.host = host
        self.port = port
        self.rcpt_script = list(rcpt or [])
        self.data_script = list(data or [])
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.controller = Controller(_ScriptHandler(self), hostname=host, port=port,
                                     server_hostname=f"peer.{host}", enable_SMTPUTF8=smtputf8, ready_timeout=5)

    def next_reply(self, script: list[str]) -> str:
        with self.lock:
            return script.pop(0) if script else "250 2.0.0 OK"

    def recipients(self) -> list[str]:
        with self.lock:
            return [address for item in self.received for address in item.rcpt_tos]

    def start(self) -> ScriptedPeer:
        self.controller.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.controller.stop()


@dataclass
class QueueWorld:
    config: config_mod.Config
    db: Database
    dns: object
    port: int
    peers: list[ScriptedPeer] = field(default_factory=list)

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.config.blob_dir, self.db)

    @property
    def store(self) -> Store:
        return Store(self.db, self.blobs, self.config.run_dir)

    def add_domain(self, name: str) -> int:
        with self.db.write() as session:
            domain = Domain(name=name, verification_token="t" * 16)
            session.add(domain)
            session.flush()
            return domain.id

    def domain_id(self, name: str) -> int:
        with self.db.read() as session:
            found = session.query(Domain).filter_by(name=name).one_or_none()
            return found.id if found else self.add_domain(name)

    def add_mailbox(self, address: str, quota_bytes: int = 0, quota_messages: int = 0) -> int:
        local, _, domain = address.partition("@")
        domain_id = self.domain_id(domain)
        with self.db.write() as session:
            mailbox = Mailbox(domain_id=domain_id, local_part=local, address=address.lower(), quota_bytes=quota_bytes,
                              quota_messages=quota_messages)
            session.add(mailbox)
            session.flush()
            return mailbox.id

    def add_dkim_key(self, domain: str, selector: str, algorithm: str = "rsa-sha256") -> str:
        """An active key for `domain` with its TXT record served; returns the public key."""
        relative = f"keys/{domain}.{selector}.pem"
        public = dkim.generate_key(self.config.data_dir / relative, algorithm,
                                   **({"bits": 1024} if algorithm == "rsa-sha256" else {}))
        with self.db.write() as session:
            session.add(DkimKey(domain_id=self.domain_id(domain), selector=selector, algorithm=algorithm,
                                key_file=relative, public_key=public, state="active",
                                activated_at=dt.datetime.now(dt.UTC)))
        kind = "rsa" if algorithm == "rsa-sha256" else "ed25519"
        self.dns.add(f"{selector}._domainkey.{domain}", "TXT", f"v=DKIM1; k={kind}; p={public}")
        return public

    def peer(self, host: str, **script) -> ScriptedPeer:
        peer = ScriptedPeer(host, self.port, **script).start()
        self.peers.append(peer)
        return peer

    def submit(self, sender: str, recipients: list[str | EnvelopeRecipient], data: bytes, **envelope) -> str:
        rcpts = tuple(r if isinstance(r, EnvelopeRecipient) else EnvelopeRecipient(address=r) for r in recipients)
        envelope.setdefault("source", "submission")
        return spool.accept(self.db, self.blobs, Envelope(sender=sender, recipients=rcpts, **envelope), data,
                            run_dir=self.config.run_dir)

    def inbox(self, mailbox_id: int) -> list[bytes]:
        store = self.store
        folder = store.get_folder(mailbox_id, "INBOX")
        messages = []
        for info in store.list_messages(folder.id):
            with store.open_message(folder.id, info.uid) as handle:
                messages.append(handle.read())
        return messages

    def inbox_or_empty(self, mailbox_id: int) -> list[bytes]:
        try:
            return self.inbox(mailbox_id)
        except Exception:
            return []

    def queue(self) -> list[spool.QueuedMessage]:
        return spool.list_entries(self.db)

    @contextlib.contextmanager
    def running(self, **runner_options) -> Iterator[QueueRunner]:
        """A queue runner in a background thread for the duration of the block."""
        loop = asyncio.new_event_loop()
        runner_box: list[QueueRunner] = []
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main(stop: asyncio.Event):
            runner = QueueRunner(self.config, self.db, **runner_options)
            runner.idle_seconds = 0.5
            runner_box.append(runner)
            ready.set()
            await runner.run(stop)

        stop_box: list[asyncio.Event] = []

        def thread_main():
            asyncio.set_event_loop(loop)
            stop = asyncio.Event()
            stop_box.append(stop)
            try:
                loop.run_until_complete(main(stop))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        thread = threading.Thread(target=thread_main, daemon=True)
        thread.start()
        assert ready.wait(10), "queue runner did not start"
        try:
            yield runner_box[0] if runner_box else None
        finally:
            if stop_box:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(stop_box[0].set)
            thread.join(20)
            assert not thread.is_alive(), "queue runner did not stop"
        if failure:
            raise failure[0]

    def close(self) -> None:
        for peer in self.peers:
            peer.stop()
        self.db.dispose()


def queue_environment(data_dir: Path, db_url: str, nameserver: str, port: int, **settings) -> dict[str, str]:
    """COURRIEL_* variables for a queue test: fast retries, loopback DNS, the peers' port."""
    values = {
        "COURRIEL_DATABASE_URL": db_url,
        "COURRIEL_SERVER_HOSTNAME": "mx.example.org",
        "COURRIEL_DNS_NAMESERVERS": nameserver,
        "COURRIEL_DNS_TIMEOUT": "1.0",
        "COURRIEL_QUEUE_OUTBOUND_PORT": str(port),
        "COURRIEL_QUEUE_RETRY_MIN": "1",
        "COURRIEL_QUEUE_RETRY_MAX": "1",
        "COURRIEL_QUEUE_LIFETIME": "600",
        "COURRIEL_QUEUE_DELAY_WARNING": "0",
    }
    values.update({f"COURRIEL_QUEUE_{key.upper()}": str(value) for key, value in settings.items()})
    return values


@contextlib.contextmanager
def make_world(data_dir: Path, db_url: str, monkeypatch, **settings) -> Iterator[QueueWorld]:
    with running_dns_server() as dns:
        port = free_port()
        for name, value in queue_environment(data_dir, db_url, dns.nameserver, port, **settings).items():
            monkeypatch.setenv(name, value)
        config = config_mod.load(data_dir, dev=True)
        db = Database(config.database_url)
        schema.upgrade(db)
        world = QueueWorld(config=config, db=db, dns=dns, port=port)
        try:
            yield world
        finally:
            world.close()

