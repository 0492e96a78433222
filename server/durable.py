"""Durable files: the only module that calls fsync (ARCHITECTURE §4).

Owns the write → fsync → rename → fsync(directory) sequence that makes a file appear
whole or not at all, and directory creation with an fsync of the parent.
Durability: after `write_file` or `commit_temp` returns, the file survives a crash.

Also owns the named fault points of the crash tests: with `COURRIEL_FAULT=<point>` (or
`<point>:<n>` for the n-th time the point is reached) in the environment of a process,
`fault_point(<point>)` kills that process with SIGKILL, as a power cut would between two
durability steps. Without the variable `fault_point` is a function that does nothing.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

FAULT_ENV = "COURRIEL_FAULT"


def _fault_point_off(name: str) -> None:
    return None


def make_fault_point(spec: str):
    """A fault point function armed for `<point>` or `<point>:<n>` (tests arm forked children with it)."""
    point, _, count = spec.partition(":")
    remaining = [int(count) if count.isdigit() else 1]

    def fault_point(name: str) -> None:
        if name != point:
            return
        remaining[0] -= 1
        if remaining[0] <= 0:
            os.kill(os.getpid(), signal.SIGKILL)

    return fault_point


# Decided once at import: production processes get the no-op.
fault_point = make_fault_point(os.environ[FAULT_ENV]) if os.environ.get(FAULT_ENV) else _fault_point_off


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, mode: int = 0o750) -> None:
    """Create `path` and missing parents, each made durable in its parent directory."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            continue
        fsync_dir(directory.parent)


def open_temp(directory: Path, mode: int = 0o640):
    """A new temporary file in `directory` (same filesystem as its final name)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    os.fchmod(fd, mode)
    return os.fdopen(fd, "wb"), Path(name)


def sync_file(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def commit_temp(temp_path: Path, final_path: Path) -> None:
    """Rename a synced temp file into place and make the rename durable."""
    os.replace(temp_path, final_path)
    fsync_dir(final_path.parent)


def link_temp(temp_path: Path, final_path: Path) -> None:
    """Hard-link a synced temp file under its final name (fails if it exists), durably."""
    os.link(temp_path, final_path)
    fsync_dir(final_path.parent)


def write_file(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write `data` to `path` atomically and durably; the file has `mode` from its first byte."""
    path = Path(path)
    make_dirs(path.parent)
    handle, temp = open_temp(path.parent, mode)
    try:
        with handle:
            handle.write(data)
            sync_file(handle)
        commit_temp(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
