"""The mailbox store's exceptions (ring 1): what `courriel.store` refuses, with nothing changed.

Owns `StoreError` and its kinds (no such folder, folder exists, no such mailbox). They live apart
from `courriel.store` so that `courriel.store_folders` and `courriel.store` can both raise them;
`courriel.store` re-exports them and callers keep importing them from there.

Standards: none (the IMAP layer maps them to RFC 5530 response codes: NONEXISTENT, ALREADYEXISTS,
CANNOT).
Security: messages may quote a client-supplied folder name or flag; callers bound what they log.
"""

from __future__ import annotations


class StoreError(ValueError):
    """A request the store refuses (bad name, bad flag, rule violation); nothing changed."""


class NoSuchFolder(StoreError):
    pass


class FolderExists(StoreError):
    pass


class NoSuchMailbox(StoreError):
    pass
