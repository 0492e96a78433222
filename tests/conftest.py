"""Shared fixtures: temporary data directories and databases on SQLite and PostgreSQL.

The PostgreSQL variant runs a throwaway cluster from Debian's postgresql package, started
once per test session on a Unix socket and 127.0.0.1, and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

# Shared test support modules (loopback DNS server, peers, clients) live in tests/support.
sys.path.insert(0, str(Path(__file__).parent / "support"))

from courriel import config as config_mod
from courriel import schema
from courriel.db import Database

PG_BIN = Path("/usr/lib/postgresql/15/bin")

# Tests only ever talk to 127.0.0.0/8: any DNS query a test does not point at its own loopback
# DNS server goes to a closed loopback port (inherited by every server process a test starts),
# never to the machine's resolver; periodic DNS checks are off unless a test turns them on.
os.environ.setdefault("COURRIEL_DNS_NAMESERVERS", "127.0.0.1:1")
os.environ.setdefault("COURRIEL_DNS_TIMEOUT", "1.0")
os.environ.setdefault("COURRIEL_DOMAINS_CHECK_INTERVAL", "0")

# Cheap password hashing in tests; production keeps the argon2id defaults.
os.environ.setdefault("COURRIEL_PASSWORDS_ARGON2_MEMORY_KIB", "1024")
os.environ.setdefault("COURRIEL_PASSWORDS_ARGON2_TIME_COST", "1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="courriel-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._template_ready = False

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            [*self._as_postgres, PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "courriel",
             "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True,
        )
        options = f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*self._as_postgres, PG_BIN / "pg_ctl", "-D", self.data, "-o", options,
             "-l", self.root / "log", "-w", "start"],
            check=True, capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            [*self._as_postgres, PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    TEMPLATE = "courriel_template"

    def url(self, name: str) -> str:
        return f"postgresql+psycopg://courriel@127.0.0.1:{self.port}/{name}"

    def _execute(self, sql: str) -> None:
        admin = Database(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.engine.connect() as conn:
            conn.exec_driver_sql(sql)
        admin.dispose()

    def create_database(self) -> str:
        """A new database already migrated to head (cloned from a migrated template)."""
        if not self._template_ready:
            self._execute(f'CREATE DATABASE "{self.TEMPLATE}"')
            template = Database(self.url(self.TEMPLATE))
            schema.upgrade(template)
            template.dispose()
            self._template_ready = True
        name = "t_" + uuid.uuid4().hex[:12]
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.TEMPLATE}"')
        return self.url(name)


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists() and (os.geteuid() != 0 or shutil.which("runuser"))


@pytest.fixture(scope="session")
def postgres_cluster():
    if not postgres_available():
        pytest.skip("PostgreSQL server binaries are not installed")
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    path = tmp_path / "data"
    for name in ("blobs", "spool", "keys", "run", "tls"):
        (path / name).mkdir(parents=True)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, data_dir) -> str:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{data_dir / 'courriel.db'}"
    return request.getfixturevalue("postgres_cluster").create_database()


@pytest.fixture
def db(db_url):
    database = Database(db_url)
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def config(data_dir, db_url, monkeypatch):
    """Configuration of the temporary data directory, pointing at the test database."""
    monkeypatch.setenv("COURRIEL_DATABASE_URL", db_url)
    return config_mod.load(data_dir, dev=True)
