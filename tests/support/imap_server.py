"""A real IMAP role process for end-to-end and interop tests.

`imap_server` (module scope): `courriel serve --dev --role imap` on free loopback ports over
an initialised data directory with one mailbox (`user@example.org`, a known password) and a
`Store` on the same database, so tests deliver with `server.store.deliver(...)` exactly as
the queue does. Import with `from imap_server import imap_server`.
"""

from __future__ import annotations

import contextlib
import imaplib
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from serve_process import COURRIEL, Served, free_port, listener_environ

from courriel import config as config_mod
from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.models import Domain, Mailbox, utcnow
from courriel.passwords import PasswordHasher
from courriel.store import Store, create_default_folders

ADDRESS = "user@example.org"
PASSWORD = "correct horse battery"
START_DEADLINE = 30.0


@dataclass
class IMAPServer:
    data: Path
    imap_port: int
    imaps_port: int
    store: Store
    db: Database
    mailbox_id: int
    served: Served
    address: str = ADDRESS
    password: str = PASSWORD
    extra_mailboxes: dict[str, int] = field(default_factory=dict)

    @property
    def cert(self) -> Path:
        return self.data / "tls" / "cert.pem"

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert))
        context.check_hostname = False
        return context

    def client(self) -> imaplib.IMAP4:
        return imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)

    def login(self) -> imaplib.IMAP4:
        client = self.client()
        client.login(self.address, self.password)
        return client

    def add_mailbox(self, local_part: str) -> int:
        mailbox_id = _make_mailbox(self.db, local_part, self.password)
        self.extra_mailboxes[local_part] = mailbox_id
        return mailbox_id

    def inbox_id(self, mailbox_id: int | None = None) -> int:
        return self.store.get_folder(mailbox_id or self.mailbox_id, "INBOX").id

    def clear(self) -> None:
        """Empty every folder and drop the folders tests created (a fresh mailbox per test)."""
        for folder in self.store.list_folders(self.mailbox_id):
            uids = [m.uid for m in self.store.list_messages(folder.id)]
            if uids:
                self.store.set_flags(folder.id, uids, "add", ["\\Deleted"])
                self.store.expunge(folder.id)
        for folder in sorted(self.store.list_folders(self.mailbox_id), key=lambda f: -len(f.name)):
            if folder.name not in ("INBOX", "Sent", "Drafts", "Trash", "Spam"):
                self.store.delete_folder(self.mailbox_id, folder.name)
        for folder in self.store.list_folders(self.mailbox_id):
            uids = [m.uid for m in self.store.list_messages(folder.id)]
            if uids:
                self.store.set_flags(folder.id, uids, "add", ["\\Deleted"])
                self.store.expunge(folder.id)


def _make_mailbox(db: Database, local_part: str, password: str) -> int:
    hasher = PasswordHasher(memory_kib=1024, time_cost=1)
    with db.write() as session:
        domain = session.query(Domain).filter_by(name="example.org").one_or_none()
        if domain is None:
            domain = Domain(name="example.org", verification_token="t", verified_at=utcnow())
            session.add(domain)
            session.flush()
        mailbox = Mailbox(domain_id=domain.id, local_part=local_part, address=f"{local_part}@example.org",
                          password_hash=hasher.hash(password))
        session.add(mailbox)
        session.flush()
        create_default_folders(session, mailbox.id)
        return mailbox.id


def wait_port(port: int, served: Served, tls: bool = False, deadline: float = START_DEADLINE) -> None:
    """Poll until the port greets with `* OK` (through TLS for the implicit-TLS port)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if served.process.poll() is not None:
            raise AssertionError(f"imap role exited: {served.log()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
            raw.settimeout(5)
            sock = context.wrap_socket(raw) if tls else raw
            if sock.recv(100).startswith(b"* OK"):
                return
        time.sleep(0.05)
    raise AssertionError(f"imap role did not answer on {port}: {served.log()}")


def start_imap(data: Path, log_path: Path, **settings: str) -> tuple[Served, int, int]:
    imap_port, imaps_port = free_port(), free_port()
    environ = listener_environ(imap=f"127.0.0.1:{imap_port}", imaps=f"127.0.0.1:{imaps_port}")
    environ.update(settings)
    served = Served([str(COURRIEL), "serve", "--dev", "--data", str(data), "--role", "imap"], environ, log_path)
    try:
        wait_port(imap_port, served)
        wait_port(imaps_port, served, tls=True)
    except BaseException:
        served.stop()
        raise
    return served, imap_port, imaps_port


@contextlib.contextmanager
def running_imap_server(root: Path, **settings: str):
    """An initialised data directory under `root` with one mailbox, and the IMAP role serving
    it; `settings` are COURRIEL_* environment overrides (e.g. COURRIEL_IMAP_MAX_CONNECTIONS_PER_USER)."""
    data = root / "data"
    result = subprocess.run([COURRIEL, "init", "--data", str(data)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = config_mod.load(data, dev=True)
    db = Database(config.database_url)
    mailbox_id = _make_mailbox(db, "user", PASSWORD)
    store = Store(db, BlobStore(config.blob_dir, db), run_dir=config.run_dir)
    served, imap_port, imaps_port = start_imap(data, root / "imap.log", **settings)
    server = IMAPServer(data=data, imap_port=imap_port, imaps_port=imaps_port, store=store, db=db,
                        mailbox_id=mailbox_id, served=served)
    try:
        yield server
    finally:
        served.stop()
        db.dispose()
        log = served.log()
        status = served.process.returncode
        shutil.rmtree(root, ignore_errors=True)
    # An exception inside a session is answered with BYE; the tests must not hide one.
    assert "Traceback" not in log, log
    assert status == 0, f"the IMAP role did not stop cleanly on SIGTERM ({status}): {log}"


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory):
    with running_imap_server(tmp_path_factory.mktemp("imap")) as server:
        yield server
