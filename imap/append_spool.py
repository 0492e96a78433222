"""Temporary files that hold large APPEND literals while the client sends them (ring 1: files).

Owns `SpooledLiteral`: the sink the protocol parser writes an APPEND literal into once it is
larger than `Limits.spool_threshold` (`courriel.imap.protocol.parser`), so that a slow client
sending a 35 MB message, on each of many connections, costs disk pages rather than memory.
The store reads it back like any file (`Store.append_batch` takes file objects).

Standards: RFC 3501 §6.3.11 / RFC 9051 §6.3.12 (APPEND), RFC 7889 (APPENDLIMIT bounds the size).
Security: the data is the client's untrusted message; the file is created unlinked (O_TMPFILE
or unlinked at once by `tempfile.TemporaryFile`) in the data directory's `tmp/` (mode 0700, not
/tmp, which may be RAM), so nothing is left behind after a crash and no other user can open it.
Durability: none: the store makes its own durable copy before APPEND answers OK.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


class SpooledLiteral:
    """A write-then-read temporary file that knows its length (`len()` = bytes written)."""

    def __init__(self, directory: Path):
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by `close`
        self._size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._size += len(data)

    def __len__(self) -> int:
        return self._size

    def rewind(self) -> SpooledLiteral:
        """Ready to be read from the start (before the store reads it)."""
        self._file.flush()
        self._file.seek(0)
        return self

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def close(self) -> None:
        self._file.close()


def spool_directory(data_dir: Path) -> Path:
    directory = Path(data_dir) / "tmp"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory
