"""`courriel domain|mailbox|alias|group|user`: registry management over admin services."""

from __future__ import annotations


def register(subparsers) -> None:
    """Commands are added here by the registry service layer."""
