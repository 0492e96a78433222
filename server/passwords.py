"""Password policy, strength score, generation, hashing and verification.

Owns the only code that sees a clear-text password after the protocol layer:
- `PasswordPolicy`: minimum length and number of character classes, from `[passwords]`;
- `score`: a 0-4 strength estimate (0 too guessable ... 4 very strong) for the console;
- `generate`: random passwords that always meet the policy;
- `PasswordHasher`: argon2id hashes (libpass, imported as `passlib`) with costs from
  `[passwords]`, verification of our own hashes and of hashes imported from Dovecot
  (`{SCHEME}` prefixes, see `verify_legacy`), and `needs_rehash` so that a successful
  login upgrades any other hash to argon2id.

Standards: RFC 9106 (Argon2), Dovecot password schemes (doc.dovecot.org "Password Schemes"),
RFC 2307 §5.3 / RFC 3112 style `{SCHEME}` prefixes, RFC 8018 §5.2 (PBKDF2).
Security: passwords and hashes are secrets: never log or return a clear-text password except
the one generated for the caller. Digest comparisons are constant-time. Verification is
CPU-bound and must run off the event loop (see `courriel.logins`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
import string
from dataclasses import dataclass

from passlib.hash import argon2, bcrypt, md5_crypt, sha256_crypt, sha512_crypt

DEFAULT_MEMORY_KIB = 65536
DEFAULT_TIME_COST = 3
DEFAULT_MIN_LENGTH = 10
DEFAULT_MIN_CLASSES = 2
MAX_LENGTH = 1024  # bounds the hashing work an attacker can ask for
GENERATED_LENGTH = 20

# --------------------------------------------------------------------------- policy

CHARACTER_CLASSES = ("lower case letters", "upper case letters", "digits", "symbols or other characters")


def character_classes(password: str) -> set[int]:
    """Indexes into CHARACTER_CLASSES of the classes present in `password`."""
    found = set()
    for char in password:
        if char.islower():
            found.add(0)
        elif char.isupper():
            found.add(1)
        elif char.isdigit():
            found.add(2)
        else:
            found.add(3)
    return found


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = DEFAULT_MIN_LENGTH
    min_classes: int = DEFAULT_MIN_CLASSES  # how many of CHARACTER_CLASSES must appear
    max_length: int = MAX_LENGTH

    @classmethod
    def from_config(cls, config) -> PasswordPolicy:
        min_length = max(1, config.get("passwords", "min_length"))
        min_classes = min(max(0, config.get("passwords", "min_classes")), len(CHARACTER_CLASSES))
        return cls(min_length=min_length, min_classes=min_classes)

    def problems(self, password: str) -> list[str]:
        """Why `password` does not meet the policy (empty when it does)."""
        found = []
        if len(password) < self.min_length:
            found.append(f"must be at least {self.min_length} characters long")
        if len(password) > self.max_length:
            found.append(f"must be at most {self.max_length} characters long")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
            found.append("must not contain control characters")
        if password != password.strip():
            found.append("must not start or end with white space")
        if len(character_classes(password)) < self.min_classes:
            found.append(
                f"must mix at least {self.min_classes} of: " + ", ".join(CHARACTER_CLASSES)
            )
        return found


# --------------------------------------------------------------------------- score

# A few of the most used passwords and words: they score 0 whatever their length.
COMMON_PASSWORDS = frozenset((
    "password", "password1", "password123", "passw0rd", "123456", "1234567", "12345678", "123456789",
    "1234567890", "qwerty", "qwertyuiop", "azerty", "azertyuiop", "abc123", "letmein", "welcome", "welcome1",
    "admin", "administrator", "iloveyou", "monkey", "dragon", "football", "baseball", "sunshine", "princess",
    "master", "shadow", "superman", "trustno1", "changeme", "secret", "motdepasse", "soleil", "bonjour",
))

_SEQUENCES = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiopasdfghjklzxcvbnm", "azertyuiopqsdfghjklmwxcvbn")


def _effective_length(password: str) -> float:
    """Length discounted for repeated characters and keyboard or alphabet runs."""
    lowered = password.lower()
    effective = 0.0
    for i, char in enumerate(lowered):
        previous = lowered[i - 1] if i else ""
        if char == previous:
            effective += 0.25
        elif previous and any(previous + char in seq or char + previous in seq for seq in _SEQUENCES):
            effective += 0.4
        else:
            effective += 1.0
    return effective


def entropy_bits(password: str) -> float:
    pool = 0
    classes = character_classes(password)
    pool += 26 if 0 in classes else 0
    pool += 26 if 1 in classes else 0
    pool += 10 if 2 in classes else 0
    pool += 33 if 3 in classes else 0
    if not pool:
        return 0.0
    return _effective_length(password) * math.log2(pool)


def score(password: str) -> int:
    """Strength 0-4: 0 trivially guessable, 1 weak, 2 fair, 3 strong, 4 very strong."""
    lowered = password.lower()
    if not password or lowered in COMMON_PASSWORDS or lowered.rstrip(string.digits + "!?.") in COMMON_PASSWORDS:
        return 0
    bits = entropy_bits(password)
    for limit, value in ((28, 0), (40, 1), (60, 2), (80, 3)):
        if bits < limit:
            return value
    return 4


# --------------------------------------------------------------------------- generator

GENERATED_ALPHABET = string.ascii_letters + string.digits
GENERATED_SYMBOLS = "-_.:;,!?@#%+="


def generate(length: int = GENERATED_LENGTH, policy: PasswordPolicy | None = None) -> str:
    """A random password from a secure source that meets `policy`.

    Letters and digits (three classes); symbols are added when the policy asks for four."""
    policy = policy or PasswordPolicy()
    length = max(length, policy.min_length, policy.min_classes)
    alphabet = GENERATED_ALPHABET + (GENERATED_SYMBOLS if policy.min_classes > 3 else "")
    wanted = max(3, policy.min_classes)
    for _ in range(1000):
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if len(character_classes(candidate)) >= wanted and not policy.problems(candidate):
            return candidate
    raise RuntimeError("cannot generate a password for this policy")  # unreachable for sane policies


# --------------------------------------------------------------------------- hashing


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _salted_digest(algorithm: str, digest_size: int):
    """Dovecot SSHA*/SMD5: base64(digest(password + salt) + salt)."""

    def check(password: bytes, encoded: bytes) -> bool:
        if len(encoded) <= digest_size:
            return False
        digest, salt = encoded[:digest_size], encoded[digest_size:]
        return hmac.compare_digest(hashlib.new(algorithm, password + salt).digest(), digest)

    return check


def _plain_digest(algorithm: str):
    """Dovecot SHA/SHA256/SHA512/PLAIN-MD5: digest(password), base64 or hex encoded."""

    def check(password: bytes, encoded: bytes) -> bool:
        return hmac.compare_digest(hashlib.new(algorithm, password).digest(), encoded)

    return check


def _crypt(handler):
    def check(password: str, body: str) -> bool:
        try:
            return handler.verify(password, body)
        except (ValueError, TypeError):
            return False

    return check


def _bcrypt(password: str, body: str) -> bool:
    """BLF-CRYPT: bcrypt reads at most 72 bytes, and Dovecot hashed only those; bcrypt 5
    refuses longer input, so cut it the way the hash was made."""
    try:
        return bcrypt.verify(password.encode("utf-8")[:72], body)
    except (ValueError, TypeError):
        return False


def _pbkdf2(password: str, body: str) -> bool:
    """Dovecot PBKDF2: `$1$<salt>$<rounds>$<hex PBKDF2-HMAC-SHA1>` (RFC 8018 §5.2)."""
    parts = body.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "1" or not parts[3].isdigit():
        return False
    salt, rounds, expected = parts[2], int(parts[3]), parts[4]
    if not 1 <= rounds <= 10_000_000:
        return False
    try:
        wanted = bytes.fromhex(expected)
    except ValueError:
        return False
    derived = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), rounds, dklen=len(wanted) or None)
    return hmac.compare_digest(derived, wanted)


def _plain(password: str, body: str) -> bool:
    return hmac.compare_digest(password.encode(), body.encode())


# Schemes whose stored form is a digest of bytes, keyed by the Dovecot scheme name.
_DIGEST_SCHEMES = {
    "SSHA": _salted_digest("sha1", 20),
    "SSHA256": _salted_digest("sha256", 32),
    "SSHA512": _salted_digest("sha512", 64),
    "SMD5": _salted_digest("md5", 16),
    "SHA": _plain_digest("sha1"),
    "SHA1": _plain_digest("sha1"),
    "SHA256": _plain_digest("sha256"),
    "SHA512": _plain_digest("sha512"),
    "PLAIN-MD5": _plain_digest("md5"),
    "LDAP-MD5": _plain_digest("md5"),
}
# Schemes whose stored form is a crypt(3)-style or text string.
_TEXT_SCHEMES = {
    "SHA512-CRYPT": _crypt(sha512_crypt),
    "SHA256-CRYPT": _crypt(sha256_crypt),
    "MD5-CRYPT": _crypt(md5_crypt),
    "MD5": _crypt(md5_crypt),  # Dovecot's MD5 is MD5-CRYPT
    "BLF-CRYPT": _bcrypt,
    "ARGON2ID": _crypt(argon2),
    "ARGON2I": _crypt(argon2),
    "PBKDF2": _pbkdf2,
    "PLAIN": _plain,
    "CLEAR": _plain,
    "CLEARTEXT": _plain,
}
# Bare crypt(3) prefixes (hashes stored without a {SCHEME}).
_CRYPT_PREFIXES = {
    "$argon2": "ARGON2ID",
    "$6$": "SHA512-CRYPT",
    "$5$": "SHA256-CRYPT",
    "$1$": "MD5-CRYPT",
    "$2a$": "BLF-CRYPT",
    "$2b$": "BLF-CRYPT",
    "$2y$": "BLF-CRYPT",
}

SUPPORTED_SCHEMES = frozenset(_DIGEST_SCHEMES) | frozenset(_TEXT_SCHEMES)


def split_scheme(stored_hash: str) -> tuple[str | None, str, str]:
    """(`{SCHEME}` name upper-cased or None, encoding suffix "HEX"/"B64"/"", rest)."""
    if stored_hash.startswith("{") and "}" in stored_hash:
        name, _, rest = stored_hash[1:].partition("}")
        name = name.upper()
        encoding = ""
        for suffix in (".HEX", ".B64", ".BASE64"):
            if name.endswith(suffix):
                name, encoding = name[: -len(suffix)], suffix[1:4]
        return name, encoding, rest
    for prefix, name in _CRYPT_PREFIXES.items():
        if stored_hash.startswith(prefix):
            return name, "", stored_hash
    return None, "", stored_hash


def verify_legacy(password: str, stored_hash: str) -> bool:
    """Verify a Dovecot-style hash. CRAM-MD5, DIGEST-MD5 and unknown schemes never match
    (those accounts need a password reset)."""
    name, encoding, body = split_scheme(stored_hash)
    if name in _TEXT_SCHEMES:
        return _TEXT_SCHEMES[name](password, body)
    check = _DIGEST_SCHEMES.get(name or "")
    if check is None:
        return False
    try:
        if encoding == "HEX" or (encoding == "" and name in ("PLAIN-MD5", "LDAP-MD5") and len(body) == 32):
            encoded = bytes.fromhex(body)
        else:
            encoded = _b64decode(body)
    except (ValueError, binascii.Error):
        return False
    return check(password.encode(), encoded)


class PasswordHasher:
    """argon2id with configurable cost; `needs_rehash` tells when a login should upgrade."""

    def __init__(self, memory_kib: int = DEFAULT_MEMORY_KIB, time_cost: int = DEFAULT_TIME_COST):
        self._scheme = argon2.using(type="ID", memory_cost=memory_kib, rounds=time_cost, parallelism=1)
        self._dummy_hash: str | None = None

    @classmethod
    def from_config(cls, config) -> PasswordHasher:
        return cls(config.get("passwords", "argon2_memory_kib"), config.get("passwords", "argon2_time_cost"))

    def hash(self, password: str) -> str:
        return self._scheme.hash(password)

    def verify_nothing(self, password: str) -> bool:
        """Spend the time of one verification and fail: used for unknown accounts so that
        response times do not tell which accounts exist."""
        if self._dummy_hash is None:
            self._dummy_hash = self._scheme.hash(secrets.token_urlsafe(16))
        self._scheme.verify(password[:MAX_LENGTH], self._dummy_hash)
        return False

    def verify(self, password: str, stored_hash: str | None) -> bool:
        """True when `password` matches `stored_hash` (ours or an imported Dovecot hash)."""
        if not stored_hash or len(password) > MAX_LENGTH:
            return False
        if stored_hash.startswith("$argon2id$"):
            try:
                return self._scheme.verify(password, stored_hash)
            except (ValueError, TypeError):
                return False
        return verify_legacy(password, stored_hash)

    def needs_rehash(self, stored_hash: str | None) -> bool:
        """True unless `stored_hash` is a bare argon2id hash with the configured costs."""
        if not stored_hash or not stored_hash.startswith("$argon2id$"):
            return True
        try:
            return self._scheme.needs_update(stored_hash)
        except ValueError:
            return True
