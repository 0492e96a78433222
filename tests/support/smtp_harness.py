"""Test harness for the smtp role: a data directory with domains, mailboxes, aliases and groups,
a loopback DNS zone, and the three SMTP listeners served on 127.0.0.1 by an event loop thread.

Use from a test module::

    from smtp_harness import smtp_world_fixture  # noqa: F401 - the pytest fixture "smtp_world" (SQLite)

    def test_x(smtp_world):
        smtp_world.add_mailbox("alice@example.org", password="secret password 1")
        with smtp_world.client("mx") as client:
            client.sendmail("bob@remote.test", ["alice@example.org"], MESSAGE)
        entry, = smtp_world.queued()

`make_smtp_world(data_dir, db_url, monkeypatch, settings={...}, limits=SessionLimits(...))` builds one
with other configuration values (COURRIEL_<SECTION>_<KEY> overrides) or limits.
Security: test-only; binds and connects to 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import smtplib
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dns_test_server import DnsTestServer, running_dns_server

from courriel import config as config_mod
from courriel import schema, tls
from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.models import Alias, AliasTarget, Domain, GroupMember, Mailbox, MailGroup
from courriel.passwords import PasswordHasher
from courriel.queue import spool
from courriel.smtp.policy import LISTENERS, SessionLimits
from courriel.smtp.server import SmtpService
from courriel.store import Store, create_default_folders

HOSTNAME = "mx.example.org"
CLIENT_TIMEOUT = 10.0


def poll(condition: Callable[[], object], what: str, timeout: float = 10.0, interval: float = 0.05):
    """Wait until `condition()` is truthy (returns it), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(interval)


def insecure_context() -> ssl.SSLContext:
    """The client side for the data directory's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(64)
    return sock


def smtp_environment(db_url: str, nameserver: str, **settings: str) -> dict[str, str]:
    values = {
        "COURRIEL_DATABASE_URL": db_url,
        "COURRIEL_SERVER_HOSTNAME": HOSTNAME,
        "COURRIEL_DNS_NAMESERVERS": nameserver,
        "COURRIEL_DNS_TIMEOUT": "1.0",
        "COURRIEL_TLS_ALLOW_PLAINTEXT_AUTH": "false",
    }
    values.update({f"COURRIEL_{key.upper()}": str(value) for key, value in settings.items()})
    return values


def prepare_data_dir(data_dir: Path, hostname: str = HOSTNAME) -> None:
    """Directories and the self-signed certificate that `courriel init` would make."""
    for name in ("blobs", "spool", "keys", "run", "tls"):
        (data_dir / name).mkdir(parents=True, exist_ok=True)
    if not (data_dir / "tls" / "cert.pem").exists():
        tls.make_self_signed(data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem", hostname)


@dataclass
class Registry:
    """Direct inserts into the registry tables (the admin services are another part's)."""

    db: Database
    hasher: PasswordHasher = field(default_factory=lambda: PasswordHasher(memory_kib=1024, time_cost=1))

    def domain_id(self, name: str, default: bool = False) -> int:
        with self.db.write() as session:
            found = session.query(Domain).filter_by(name=name).one_or_none()
            if found is not None:
                return found.id
            domain = Domain(name=name, verification_token="t" * 16, is_default=default)
            session.add(domain)
            session.flush()
            return domain.id

    def add_mailbox(self, address: str, password: str | None = None, quota_bytes: int = 0,
                    enabled: bool = True, quota_messages: int = 0) -> int:
        local, _, domain = address.partition("@")
        domain_id = self.domain_id(domain)
        with self.db.write() as session:
            mailbox = Mailbox(domain_id=domain_id, local_part=local.lower(), address=address.lower(),
                              quota_bytes=quota_bytes, quota_messages=quota_messages, enabled=enabled,
                              password_hash=self.hasher.hash(password) if password else None)
            session.add(mailbox)
            session.flush()
            create_default_folders(session, mailbox.id)  # as the admin services do
            return mailbox.id

    def add_alias(self, address: str, targets: list[str]) -> None:
        domain_id = self.domain_id(address.partition("@")[2])
        with self.db.write() as session:
            alias = Alias(domain_id=domain_id, address=address.lower())
            alias.targets = [AliasTarget(target=t.lower()) for t in targets]
            session.add(alias)

    def add_group(self, address: str, member_ids: list[int], members_can_send: bool = True) -> None:
        domain_id = self.domain_id(address.partition("@")[2])
        with self.db.write() as session:
            group = MailGroup(domain_id=domain_id, address=address.lower(), members_can_send=members_can_send)
            group.members = [GroupMember(mailbox_id=m) for m in member_ids]
            session.add(group)

    def set_catch_all(self, domain: str, target: str) -> None:
        domain_id = self.domain_id(domain)
        with self.db.write() as session:
            session.get(Domain, domain_id).catch_all = target


class RawClient:
    """A bare socket client for what smtplib cannot do: pipelining, BDAT, misbehaviour."""

    def __init__(self, port: int, host: str = "127.0.0.1", tls: bool = False, timeout: float = CLIENT_TIMEOUT,
                 source: str | None = None):
        sock = socket.create_connection((host, port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        self.sock = insecure_context().wrap_socket(sock) if tls else sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unread: {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, str]:
        """One complete (possibly multi-line) reply: (code, text lines joined by newlines)."""
        lines = []
        for _ in range(100):
            line = self._line()
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)
        raise AssertionError("reply longer than 100 lines")

    def command(self, text: str | bytes) -> tuple[int, str]:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True once the server closed the connection (after reading what is left)."""
        try:
            return self.sock.recv(65536) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SmtpWorld(Registry):
    def __init__(self, config: config_mod.Config, db: Database, dns: DnsTestServer):
        super().__init__(db)
        self.config = config
        self.dns = dns
        self.ports: dict[str, int] = {}
        self.service: SmtpService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ server
    def start(self, limits: SessionLimits | None = None, hosts: dict[str, str] | None = None) -> SmtpWorld:
        hosts = hosts or {}
        sockets = {name: listening_socket(hosts.get(name, "127.0.0.1")) for name in LISTENERS}
        self.ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def begin():
            self.service = SmtpService(self.config, self.db, limits=limits)
            await self.service.start(sockets)

        def thread_main():
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(begin())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=thread_main, daemon=True, name="smtp-test-loop")
        self._thread.start()
        assert ready.wait(10), "SMTP service did not start"
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self.service is not None:
            asyncio.run_coroutine_threadsafe(self.service.stop(grace=2.0), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        assert not self._thread.is_alive(), "SMTP loop thread did not stop"
        self._loop.close()
        self._loop = None

    # ------------------------------------------------------------------ clients
    def client(self, listener: str = "mx", source: str | None = None) -> smtplib.SMTP:
        source_address = (source, 0) if source else None
        if listener == "submissions":
            return smtplib.SMTP_SSL("127.0.0.1", self.ports[listener], timeout=CLIENT_TIMEOUT,
                                    context=insecure_context(), source_address=source_address)
        return smtplib.SMTP("127.0.0.1", self.ports[listener], timeout=CLIENT_TIMEOUT,
                            source_address=source_address)

    def raw(self, listener: str = "mx", **options) -> RawClient:
        client = RawClient(self.ports[listener], tls=listener == "submissions", **options)
        code, _ = client.reply()
        assert code == 220
        return client

    def logged_in(self, address: str, password: str, listener: str = "submission",
                  source: str | None = None) -> smtplib.SMTP:
        client = self.client(listener, source)
        client.ehlo("client.example")
        if listener == "submission":
            client.starttls(context=insecure_context())
            client.ehlo("client.example")
        client.login(address, password)
        return client

    # ------------------------------------------------------------------ spool and store
    @property
    def store(self) -> Store:
        return Store(self.db, BlobStore(self.config.blob_dir, self.db), self.config.run_dir)

    def queued(self) -> list[spool.QueuedMessage]:
        return spool.list_entries(self.db)

    def content(self, entry: spool.QueuedMessage) -> bytes:
        blobs = BlobStore(self.config.blob_dir, self.db)
        return blobs.path_of(blobs.lookup(entry.blob_id).path).read_bytes()


_MIGRATED_TEMPLATE: list[Path] = []


def migrated_sqlite(target: Path) -> None:
    """A migrated SQLite database at `target`: a copy of one migrated once per test session."""
    if not _MIGRATED_TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="courriel-smtp-schema-")) / "courriel.db"
        database = Database(f"sqlite:///{template}")
        schema.upgrade(database)
        database.dispose()  # the last connection checkpoints the WAL into the main file
        _MIGRATED_TEMPLATE.append(template)
    shutil.copyfile(_MIGRATED_TEMPLATE[0], target)


@contextlib.contextmanager
def make_smtp_world(data_dir: Path, db_url: str, monkeypatch, settings: dict[str, str] | None = None,
                    limits: SessionLimits | None = None, hosts: dict[str, str] | None = None,
                    ) -> Iterator[SmtpWorld]:
    with running_dns_server() as dns:
        for name, value in smtp_environment(db_url, dns.nameserver, **(settings or {})).items():
            monkeypatch.setenv(name, value)
        prepare_data_dir(data_dir)
        config = config_mod.load(data_dir, dev=True)
        sqlite_file = data_dir / "courriel.db"
        copied = db_url == f"sqlite:///{sqlite_file}" and not sqlite_file.exists()
        if copied:
            migrated_sqlite(sqlite_file)
        db = Database(config.database_url)
        if not copied:
            schema.upgrade(db)
        world = SmtpWorld(config, db, dns)
        try:
            world.start(limits, hosts)
            yield world
        finally:
            try:
                world.stop()
            finally:
                db.dispose()


@pytest.fixture(name="smtp_world")
def smtp_world_fixture(data_dir, monkeypatch) -> Iterator[SmtpWorld]:
    """Listeners on 127.0.0.1, SQLite, an empty DNS zone; domain example.org is the default domain."""
    with make_smtp_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch) as world:
        world.domain_id("example.org", default=True)
        yield world
