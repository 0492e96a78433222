"""Password hashing, verification and generation (libpass, imported as `passlib`).

Owns the only code that sees a clear-text password after the protocol layer: argon2id
hashes with costs from `[passwords]`, verification, and a generator.
Security: never log or return a clear-text password; verification is CPU-bound and
must run off the event loop.
"""

from __future__ import annotations

import secrets
import string

from passlib.hash import argon2

DEFAULT_MEMORY_KIB = 65536
DEFAULT_TIME_COST = 3


class PasswordHasher:
    """argon2id with configurable cost; `needs_rehash` tells when a login should upgrade."""

    def __init__(self, memory_kib: int = DEFAULT_MEMORY_KIB, time_cost: int = DEFAULT_TIME_COST):
        self._scheme = argon2.using(type="ID", memory_cost=memory_kib, rounds=time_cost, parallelism=1)

    @classmethod
    def from_config(cls, config) -> PasswordHasher:
        return cls(config.get("passwords", "argon2_memory_kib"), config.get("passwords", "argon2_time_cost"))

    def hash(self, password: str) -> str:
        return self._scheme.hash(password)

    def verify(self, password: str, stored_hash: str | None) -> bool:
        if not stored_hash:
            return False
        try:
            return self._scheme.verify(password, stored_hash)
        except ValueError:  # not an argon2 hash
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._scheme.needs_update(stored_hash)


GENERATED_ALPHABET = string.ascii_letters + string.digits


def generate(length: int = 20) -> str:
    """A random password from a secure source, with lower, upper case and digits."""
    while True:
        candidate = "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(length))
        if (
            any(c.islower() for c in candidate)
            and any(c.isupper() for c in candidate)
            and any(c.isdigit() for c in candidate)
        ):
            return candidate
