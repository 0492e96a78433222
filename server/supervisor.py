"""Supervisor: binds the listening sockets, spawns one process per role, restarts them."""

from __future__ import annotations


def main(data_dir=None, dev: bool = False, role: str | None = None) -> int:
    raise SystemExit("courriel serve: not implemented yet")
