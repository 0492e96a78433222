"""Drive `courriel serve` as a real process: an initialised data directory, free loopback
ports through COURRIEL_LISTENERS_* overrides, the process and its children, HTTP probes.

Fixtures: `initialised_template` (one `courriel init` per test session) and `served_data`
(a private copy of it per test). Import them with `from serve_process import ...`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from courriel.config import LISTENER_PORTS

COURRIEL = Path(sys.executable).parent / "courriel"
START_DEADLINE = 30.0  # seconds; the machine is shared and slow under load
STOP_DEADLINE = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listener_environ(**overrides: str) -> dict[str, str]:
    """The environment for a test server: every listener on a free loopback port (so tests
    never collide with a running dev server), then `overrides` (name → "host:port" or "")."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("COURRIEL_LISTENERS_", "LISTEN_"))}
    environ["PYTHONSAFEPATH"] = "1"
    with contextlib.ExitStack() as held:  # held open together: every listener gets its own port
        for name in LISTENER_PORTS:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            environ[f"COURRIEL_LISTENERS_{name.upper()}"] = f"127.0.0.1:{sock.getsockname()[1]}"
    for name, value in overrides.items():
        environ[f"COURRIEL_LISTENERS_{name.upper()}"] = value
    return environ


def admin_port(environ: dict[str, str]) -> int:
    return int(environ["COURRIEL_LISTENERS_ADMIN"].rpartition(":")[2])


@pytest.fixture(scope="session")
def initialised_template(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("serve-template") / "data"
    result = subprocess.run([COURRIEL, "init", "--data", str(data)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return data


@pytest.fixture
def served_data(initialised_template, tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(initialised_template, data, symlinks=True)
    return data


class Served:
    """A `courriel serve` process started by a test; stderr goes to a file."""

    def __init__(self, args: list[str], environ: dict[str, str], log_path: Path, **popen):
        self.log_path = log_path
        self.environ = environ
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, env=environ, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, **popen)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, deadline: float = STOP_DEADLINE) -> int:
        try:
            return self.process.wait(timeout=deadline)
        finally:
            self._log.close()

    def stop(self) -> None:
        """Test cleanup: SIGTERM, then SIGKILL the whole tree if it lingers."""
        if self.process.poll() is None:
            descendants = descendants_of(self.pid)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                for pid in [self.pid, *descendants]:
                    kill_quietly(pid)
                self.process.wait(timeout=5)
        self._log.close()


def serve(data: Path, environ: dict[str, str], log_path: Path, *extra: str, **popen) -> Served:
    return Served([str(COURRIEL), "serve", "--dev", "--data", str(data), *extra], environ, log_path, **popen)


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) from /proc/PID/stat, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry.name))
    return found


def descendants_of(pid: int) -> list[int]:
    found, frontier = [], [pid]
    for _ in range(10):  # bounded depth
        frontier = [child for parent in frontier for child in children_of(parent)]
        if not frontier:
            break
        found += frontier
    return found


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def role_children(supervisor_pid: int, role: str) -> list[int]:
    """Live children of the supervisor running `--role ROLE`."""
    return [pid for pid in children_of(supervisor_pid) if _role_of(command_line(pid)) == role]


def _role_of(argv: list[str]) -> str | None:
    return argv[argv.index("--role") + 1] if "--role" in argv[:-1] else None


def http_get(port: int, path: str, timeout: float = 2.0) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout)


def wait_until(condition, deadline: float, what: str, interval: float = 0.05):
    """Poll `condition()` until it returns a truthy value or `deadline` seconds pass."""
    end = time.monotonic() + deadline
    while True:
        try:
            value = condition()
        except (OSError, httpx.HTTPError):
            value = None
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(interval)


def wait_healthy(port: int, served: Served | None = None, deadline: float = START_DEADLINE) -> httpx.Response:
    def answered():
        if served is not None and served.process.poll() is not None:
            raise AssertionError(f"courriel serve exited with {served.process.returncode}:\n{served.log()}")
        response = http_get(port, "/healthz", timeout=1.0)
        return response if response.status_code == 200 else None

    return wait_until(answered, deadline, f"/healthz on port {port}")


def refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def add_mailbox(data: Path, address: str, password: str | None = None) -> None:
    """The domain of `address` and the mailbox, added through the service layer to a data
    directory that `courriel serve` runs on (no password: one is generated and not needed)."""
    from courriel import config as config_mod
    from courriel import passwords
    from courriel.admin import services
    from courriel.db import Database

    config = config_mod.load(data, dev=True)
    db = Database(config.database_url)
    try:
        services.add_domain(db, address.rpartition("@")[2])
        services.add_mailbox(db, passwords.PasswordHasher.from_config(config),
                             passwords.PasswordPolicy.from_config(config), address, password=password)
    finally:
        db.dispose()
