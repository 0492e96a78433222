"""Passwords of external accounts, encrypted at rest (ring 1).

Owns the key file `DATA/keys/sync.key` (created on first use, mode 0600) and the
encryption of account passwords with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).
A password is stored only as a Fernet token; it is decrypted in the sync process right before
a login and is never printed, logged or returned by the CLI.

Security: the key file is readable by the service user only; a token from another data
directory (another key) fails to decrypt with `CredentialError`, never with a crash.
Durability: the key file is written through `courriel.durable` (temp file, fsync, rename).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from courriel import durable

KEY_FILE = Path("keys") / "sync.key"


class CredentialError(RuntimeError):
    """The stored password cannot be decrypted (key file replaced or missing)."""


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE


def _load_key(data_dir: Path, create: bool) -> bytes:
    path = key_path(data_dir)
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            raise CredentialError(f"no credential key at {path}") from None
    durable.make_dirs(path.parent, 0o700)
    handle, temp = durable.open_temp(path.parent, 0o600)
    try:
        with handle:
            handle.write(Fernet.generate_key() + b"\n")
            durable.sync_file(handle)
        # link, not rename: a concurrent creator's key is kept and read below.
        durable.link_temp(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)
    return path.read_bytes().strip()


def encrypt(data_dir: Path, password: str) -> str:
    return Fernet(_load_key(data_dir, create=True)).encrypt(password.encode("utf-8")).decode("ascii")


def decrypt(data_dir: Path, token: str) -> str:
    try:
        return Fernet(_load_key(data_dir, create=False)).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError) as exc:
        raise CredentialError("the stored password cannot be decrypted with this data directory's key") from exc
