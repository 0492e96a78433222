"""Wake-up hints between the processes of one host (ring 1).

Owns the hint channel of ARCHITECTURE §2: every listening process binds one Unix datagram
socket `DATA/run/notify/<pid>-<random>.sock`; `send` writes one datagram
`<topic> <payload>` to every socket there, without blocking, and never raises. Listeners keep
the topics they asked for. A hint may be lost (a full receive buffer, a process starting):
that costs latency only, because every consumer also rescans on a timer.

Topics: `mailbox` (payload: the mailbox id whose folders changed), `queue` (payload: a
queue id or empty: new or rescheduled mail), `accounts` (payload: an external account id:
added or resumed; the supervisor starts the sync role on it, `courriel.on_demand`).

Security: datagrams come from processes of the same service user (the directory is 0750);
a hint only triggers a rescan, so a forged one costs a database read.
Durability: none; hints are not data.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

SUBDIR = "notify"
MAX_DATAGRAM = 512
MAILBOX = "mailbox"
QUEUE = "queue"
ACCOUNTS = "accounts"
# sun_path is 108 bytes on Linux; longer paths are reached through /proc/self/fd.
_SUN_PATH_MAX = 107


@dataclass(frozen=True)
class Hint:
    topic: str
    payload: str


def _directory(run_dir: Path) -> Path:
    return Path(run_dir) / SUBDIR


@contextlib.contextmanager
def _short_path(path: Path):
    """A name for `path` that fits in sun_path (through an open fd of its directory if needed)."""
    text = os.fsencode(path)
    if len(text) <= _SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield os.fsencode(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)


def send(run_dir: Path, topic: str, payload: str | int = "") -> int:
    """Send a hint to every listener; returns how many sockets took it. Never blocks or raises."""
    try:
        message = f"{topic} {payload}".encode()[:MAX_DATAGRAM]
        directory = _directory(run_dir)
        names = [name for name in os.listdir(directory) if name.endswith(".sock")]
    except (OSError, UnicodeError):
        return 0
    sent = 0
    try:
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        return 0
    with sender:
        sender.setblocking(False)
        for name in names:
            path = directory / name
            try:
                with _short_path(path) as address:
                    sender.sendto(message, address)
                sent += 1
            except ConnectionRefusedError:
                # Nobody is bound any more: a listener that died without cleaning up.
                with contextlib.suppress(OSError):
                    path.unlink()
            except OSError:
                continue  # full buffer (EAGAIN), vanished file: the hint is lost, no harm
    return sent


def mailbox_changed(run_dir: Path | None, mailbox_id: int) -> None:
    if run_dir is not None:
        send(run_dir, MAILBOX, str(mailbox_id))


def queue_changed(run_dir: Path | None, queue_id: str = "") -> None:
    if run_dir is not None:
        send(run_dir, QUEUE, queue_id)


def accounts_changed(run_dir: Path | None, account_id: int) -> None:
    if run_dir is not None:
        send(run_dir, ACCOUNTS, str(account_id))


class Listener:
    """One bound datagram socket receiving the hints of the given topics (all if None).

    From asyncio: `listener.attach(loop, callback)`; from a thread: `listener.wait(timeout)`."""

    def __init__(self, run_dir: Path, topics: Iterable[str] | None = None):
        self.topics = frozenset(topics) if topics is not None else None
        directory = _directory(run_dir)
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            with _short_path(self.path) as address:
                self.socket.bind(address)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self._loop = None

    def fileno(self) -> int:
        return self.socket.fileno()

    def receive(self) -> list[Hint]:
        """Every hint waiting now, without blocking."""
        hints = []
        for _ in range(10_000):
            try:
                data = self.socket.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                raise
            topic, _, payload = data.decode("utf-8", "replace").partition(" ")
            if self.topics is None or topic in self.topics:
                hints.append(Hint(topic, payload))
        return hints

    def wait(self, timeout: float | None) -> list[Hint]:
        """Block up to `timeout` seconds for hints (for threads); [] on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([self.socket], [], [], remaining)
            if readable:
                hints = self.receive()
                if hints:
                    return hints
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def attach(self, loop, callback: Callable[[list[Hint]], object]) -> None:
        """Call `callback(hints)` from the asyncio `loop` whenever hints arrive."""

        def on_readable() -> None:
            hints = self.receive()
            if hints:
                callback(hints)

        loop.add_reader(self.fileno(), on_readable)
        self._loop = loop

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.fileno())
            self._loop = None
        with contextlib.suppress(OSError):
            self.path.unlink()
        self.socket.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
