"""The smtp and queue roles as real processes (`courriel serve --role NAME`) on an initialised
data directory, for crash tests: start, wait for the SMTP greeting, SIGKILL, restart.

Use from a test module::

    from smtp_process import installation_fixture  # noqa: F401 - the pytest fixture "installation"

    def test_x(installation):
        installation.add_mailbox("alice@example.org")
        smtp = installation.start("smtp", fault="spool.accept.after_commit")
        ...

Security: test-only; every listener is on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dns_test_server import running_dns_server
from smtp_harness import HOSTNAME, Registry, poll

from courriel import config as config_mod
from courriel.blobs import BlobStore
from courriel.cli import main as cli_main
from courriel.config import LISTENER_PORTS
from courriel.db import Database
from courriel.store import Store

START_DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RoleProcess:
    def __init__(self, name: str, process: subprocess.Popen, log_path: Path):
        self.name = name
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> int:
        """SIGKILL: no clean-up of any kind."""
        os.kill(self.pid, signal.SIGKILL)
        return self.process.wait(timeout=10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=10)


class Installation(Registry):
    """An initialised data directory served by role processes started by the test."""

    def __init__(self, data: Path, environ: dict[str, str], db: Database, config: config_mod.Config):
        super().__init__(db)
        self.data = data
        self.environ = environ
        self.config = config
        self.processes: list[RoleProcess] = []

    def port(self, listener: str) -> int:
        return int(self.environ[f"COURRIEL_LISTENERS_{listener.upper()}"].rpartition(":")[2])

    def start(self, role: str, fault: str | None = None) -> RoleProcess:
        environ = dict(self.environ)
        if fault:
            environ["COURRIEL_FAULT"] = fault
        log_path = self.data.parent / f"{role}-{len(self.processes)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "courriel.cli.serve", "--role", role, "--dev", "--data", str(self.data)],
                env=environ, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
        started = RoleProcess(role, process, log_path)
        self.processes.append(started)
        if role == "smtp":
            poll(lambda: self._greets(started), f"the smtp role greeting\n{started.log()}", timeout=START_DEADLINE)
        return started

    def _greets(self, role: RoleProcess) -> bool:
        if role.process.poll() is not None:
            raise AssertionError(f"the smtp role exited with {role.process.returncode}:\n{role.log()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port("mx")), timeout=2) as sock:
                return sock.recv(100).startswith(b"220 ")
        except OSError:
            return False

    @property
    def store(self) -> Store:
        return Store(self.db, BlobStore(self.config.blob_dir, self.db), self.config.run_dir)

    def inbox(self, mailbox_id: int) -> list[bytes]:
        store = self.store
        folder = store.get_folder(mailbox_id, "INBOX")
        messages = []
        for info in store.list_messages(folder.id):
            with store.open_message(folder.id, info.uid) as handle:
                messages.append(handle.read())
        return messages


@pytest.fixture(name="installation")
def installation_fixture(tmp_path, monkeypatch) -> Iterator[Installation]:
    for name in list(os.environ):
        if name.startswith("COURRIEL_") and not name.startswith("COURRIEL_PASSWORDS_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    assert cli_main(["init", "--data", str(data), "--hostname", HOSTNAME]) == 0
    with running_dns_server() as dns:
        environ = {
            "COURRIEL_DATABASE_URL": f"sqlite:///{data / 'courriel.db'}",
            "COURRIEL_SERVER_HOSTNAME": HOSTNAME,
            "COURRIEL_DNS_NAMESERVERS": dns.nameserver,
            "COURRIEL_DNS_TIMEOUT": "1.0",
            "COURRIEL_QUEUE_RETRY_MIN": "1",
            "COURRIEL_QUEUE_RETRY_MAX": "1",
        }
        for name in LISTENER_PORTS:
            environ[f"COURRIEL_LISTENERS_{name.upper()}"] = f"127.0.0.1:{free_port()}"
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        config = config_mod.load(data, dev=True)
        db = Database(config.database_url)
        full_environ = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "COURRIEL_FAULT"))}
        installation = Installation(data, {**full_environ, "PYTHONSAFEPATH": "1"}, db, config)
        try:
            yield installation
        finally:
            for process in installation.processes:
                process.cleanup()
            db.dispose()
