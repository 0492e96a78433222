"""Password logins for mailboxes (SMTP AUTH, IMAP LOGIN/AUTHENTICATE) and console users.

Owns the decision "may this client log in as this account now": password verification
(`courriel.passwords`, which also accepts imported Dovecot hashes), refusal of disabled
mailboxes, the upgrade of legacy or weaker hashes to argon2id on success, and throttling of
failures.

Throttling: failures are counted per client network (IPv4 address or IPv6 /64), per account,
and per (account, network) in the `login_failures` table, so every process and every role
(SMTP, IMAP workers, admin) sees the same counts. After a few free failures each further
failure blocks the scope for a delay that doubles up to a ceiling; past a larger count the
scope is locked for a while. While a scope is blocked no password is verified (the attempt is
answered `THROTTLED` at once, without costing a hash). A network block only blocks that
network; other clients log in as usual. Counts are forgotten after a quiet window; a success
clears the account's counts (not the network's, so one valid account cannot launder guesses
against others).

Account lockout without a denial of service (the choice, after OWASP's "Slow down online
guessing attacks with device cookies" and the per-source penalty of Dovecot's auth_penalty and
fail2ban): a lock on the account alone would let anyone who knows an address keep its owner
out. So the account-wide count (which still slows a botnet guessing one account from many
addresses) does not block a network that logged in to that account successfully within
`trusted_seconds` (30 days): such a network is held only by its own (account, network) count
and its network count. A new network, the attacker's included, is held by all three. The
"trusted" marks are rows of the same table (scope `trusted`, key `account|network`, expiry in
`blocked_until`), so every process sees them too.

Standards: RFC 4954 §6 (SMTP AUTH failure replies are the caller's: 535 5.7.8, 454 4.7.0
for temporary refusals), RFC 9051 §6.2.3 (IMAP LOGIN NO [AUTHENTICATIONFAILED] /
[UNAVAILABLE]), RFC 5321 §4.1.2 (addresses).
Security: handles clear-text passwords: never logged, never stored; unknown accounts cost the
same hashing time as known ones; results do not say whether an account exists.
Durability: failure counts and rehashed passwords are committed in short write transactions.
The password rehash is the one registry write outside `courriel.admin.services`: a
conditional update of the hash just verified.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from courriel.db import Database
from courriel.models import LoginFailure, Mailbox, User, utcnow
from courriel.passwords import PasswordHasher
from courriel.registry import AddressError, parse_address

log = logging.getLogger("courriel.logins")

SCOPE_IP = "ip"
SCOPE_ACCOUNT = "account"
SCOPE_ACCOUNT_NETWORK = "account_ip"  # key "account|network": one account guessed from one network
SCOPE_TRUSTED = "trusted"  # key "account|network": a network that logged in to the account


class LoginStatus(StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"  # unknown account or wrong password (not told apart)
    DISABLED = "disabled"  # right password, disabled mailbox
    THROTTLED = "throttled"  # too many recent failures: retry after `retry_after` seconds


@dataclass(frozen=True)
class LoginResult:
    status: LoginStatus
    account_id: int | None = None  # mailbox id (or user id for console logins)
    account: str | None = None  # canonical address or user name
    retry_after: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is LoginStatus.OK

    @property
    def mailbox_id(self) -> int | None:
        return self.account_id


@dataclass(frozen=True)
class ScopeLimits:
    free_failures: int  # failures allowed before any delay
    lockout_failures: int  # failures that lock the scope for `lockout_seconds`


@dataclass(frozen=True)
class ThrottlePolicy:
    account: ScopeLimits = ScopeLimits(free_failures=5, lockout_failures=20)
    network: ScopeLimits = ScopeLimits(free_failures=10, lockout_failures=50)
    base_delay: float = 1.0  # seconds, doubled on each further failure
    max_delay: float = 120.0
    lockout_seconds: float = 900.0
    window_seconds: float = 3600.0  # failures older than this are forgotten
    trusted_seconds: float = 30 * 86400.0  # a network stays exempt from the account-wide block this long

    def delay_after(self, failures: int, limits: ScopeLimits) -> float:
        """Seconds the scope stays blocked after its `failures`-th failure."""
        if failures >= limits.lockout_failures:
            return self.lockout_seconds
        extra = failures - limits.free_failures
        if extra <= 0:
            return 0.0
        return min(self.base_delay * 2 ** (extra - 1), self.max_delay)


DEFAULT_THROTTLE = ThrottlePolicy()


def network_key(client_ip: str | None) -> str:
    """The throttling key of a client: its IPv4 address or its IPv6 /64."""
    if not client_ip:
        return "unknown"
    try:
        ip = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return client_ip[:64]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


# --------------------------------------------------------------------------- throttle state


def _blocked_for(session: Session, keys: list[tuple[str, str]], now: dt.datetime) -> float:
    longest = 0.0
    for scope, key in keys:
        blocked_until = session.scalar(
            select(LoginFailure.blocked_until).where(LoginFailure.scope == scope, LoginFailure.key == key)
        )
        if blocked_until is not None and blocked_until > now:
            longest = max(longest, (blocked_until - now).total_seconds())
    return longest


def _insert_ignore(db: Database):
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(LoginFailure)


def record_failure(db: Database, keys: list[tuple[str, str]], now: dt.datetime,
                   policy: ThrottlePolicy = DEFAULT_THROTTLE) -> float:
    """Count one failure for each (scope, key); returns the longest resulting block in seconds."""
    window = dt.timedelta(seconds=policy.window_seconds)
    longest = 0.0
    with db.write() as session:
        session.execute(
            delete(LoginFailure).where(
                LoginFailure.last_failure_at < now - window,
                (LoginFailure.blocked_until.is_(None)) | (LoginFailure.blocked_until < now),
            )
        )
        for scope, key in keys:
            # Portable upsert: insert-if-absent, then lock the row (PostgreSQL FOR UPDATE;
            # SQLite write transactions are BEGIN IMMEDIATE, see courriel.db).
            session.execute(
                _insert_ignore(db).values(scope=scope, key=key, failures=0, first_failure_at=now,
                                          last_failure_at=now).on_conflict_do_nothing()
            )
            row = session.scalars(
                select(LoginFailure).where(LoginFailure.scope == scope, LoginFailure.key == key).with_for_update()
            ).one()
            if row.last_failure_at < now - window:
                row.failures, row.first_failure_at = 0, now
            row.failures += 1
            row.last_failure_at = now
            limits = policy.network if scope == SCOPE_IP else policy.account
            delay = policy.delay_after(row.failures, limits)
            if delay:
                row.blocked_until = now + dt.timedelta(seconds=delay)
                longest = max(longest, delay)
    return longest


def clear_failures(db: Database, scope: str, key: str) -> None:
    with db.write() as session:
        session.execute(delete(LoginFailure).where(LoginFailure.scope == scope, LoginFailure.key == key))


def _is_trusted(session: Session, key: str, now: dt.datetime) -> bool:
    """Did this (account, network) log in successfully within the trust period?"""
    until = session.scalar(
        select(LoginFailure.blocked_until).where(LoginFailure.scope == SCOPE_TRUSTED, LoginFailure.key == key)
    )
    return until is not None and until > now


def _succeeded(db: Database, account_key: str, pair_key: str, now: dt.datetime, policy: ThrottlePolicy) -> None:
    """A success: clear the account's counts, mark the network trusted for the account (until
    `now + trusted_seconds`; the failure cleanup keeps a row whose `blocked_until` is ahead)."""
    until = now + dt.timedelta(seconds=policy.trusted_seconds)
    with db.write() as session:
        session.execute(delete(LoginFailure).where(
            ((LoginFailure.scope == SCOPE_ACCOUNT) & (LoginFailure.key == account_key))
            | ((LoginFailure.scope == SCOPE_ACCOUNT_NETWORK) & (LoginFailure.key == pair_key))))
        insert = _insert_ignore(db).values(scope=SCOPE_TRUSTED, key=pair_key, failures=0, first_failure_at=now,
                                           last_failure_at=now, blocked_until=until)
        session.execute(insert.on_conflict_do_update(  # concurrent successes: one row, the latest expiry
            index_elements=["scope", "key"], set_={"last_failure_at": now, "blocked_until": until}))


# --------------------------------------------------------------------------- authentication


@dataclass(frozen=True)
class _Account:
    id: int
    name: str
    password_hash: str | None
    enabled: bool


def _load_mailbox(session: Session, name: str) -> _Account | None:
    row = session.execute(
        select(Mailbox.id, Mailbox.password_hash, Mailbox.enabled).where(Mailbox.address == name)
    ).first()
    return _Account(row.id, name, row.password_hash, bool(row.enabled)) if row else None


def _load_user(session: Session, name: str) -> _Account | None:
    row = session.execute(select(User.id, User.password_hash).where(User.name == name)).first()
    return _Account(row.id, name, row.password_hash, True) if row else None


def _authenticate(db, hasher, model, loader, account_key: str | None, name: str | None, password: str,
                  client_ip: str | None, protocol: str, policy: ThrottlePolicy, now: dt.datetime | None) -> LoginResult:
    now = now or utcnow()
    network = network_key(client_ip)
    keys = [(SCOPE_IP, network)]
    pair_key = f"{account_key}|{network}"[:320] if account_key else ""
    if account_key:
        keys += [(SCOPE_ACCOUNT, account_key), (SCOPE_ACCOUNT_NETWORK, pair_key)]
    with db.read() as session:
        # A network with a successful history is not held by the account-wide count (module docstring).
        held = [k for k in keys if k[0] != SCOPE_ACCOUNT or not _is_trusted(session, pair_key, now)]
        blocked = _blocked_for(session, held, now)
        account = loader(session, name) if (name and not blocked) else None
    if blocked:
        log.info("login throttled protocol=%s account=%s client=%s retry_after=%.0fs",
                 protocol, name, client_ip, blocked)
        return LoginResult(LoginStatus.THROTTLED, account=name, retry_after=blocked)
    if account is None or not account.password_hash:
        hasher.verify_nothing(password)
        verified = False
    else:
        verified = hasher.verify(password, account.password_hash)
    if not verified:
        delay = record_failure(db, keys, now, policy)
        log.info("login failed protocol=%s account=%s client=%s", protocol, name, client_ip)
        return LoginResult(LoginStatus.BAD_CREDENTIALS, account=name, retry_after=delay)
    if not account.enabled:
        log.info("login refused (disabled) protocol=%s account=%s client=%s", protocol, name, client_ip)
        return LoginResult(LoginStatus.DISABLED, account_id=account.id, account=name)
    if account_key:
        _succeeded(db, account_key, pair_key, now, policy)
    if hasher.needs_rehash(account.password_hash):
        new_hash = hasher.hash(password)
        with db.write() as session:
            # Conditional: a password changed meanwhile by an administrator is kept.
            session.execute(
                update(model).where(model.id == account.id, model.password_hash == account.password_hash)
                .values(password_hash=new_hash)
            )
        log.info("password hash upgraded to argon2id account=%s", name)
    return LoginResult(LoginStatus.OK, account_id=account.id, account=name)


def authenticate_mailbox(db: Database, hasher: PasswordHasher, address: str, password: str,
                         client_ip: str | None, protocol: str, *, policy: ThrottlePolicy = DEFAULT_THROTTLE,
                         now: dt.datetime | None = None) -> LoginResult:
    """Verify a mailbox login (blocking: call it from a thread, or use `Authenticator`)."""
    try:
        name = str(parse_address(address))
    except (AddressError, TypeError):
        name = None
    return _authenticate(db, hasher, Mailbox, _load_mailbox, name, name, password, client_ip, protocol, policy, now)


def authenticate_user(db: Database, hasher: PasswordHasher, name: str, password: str, client_ip: str | None,
                      *, policy: ThrottlePolicy = DEFAULT_THROTTLE, now: dt.datetime | None = None) -> LoginResult:
    """Verify a console account login (user name), with the same throttling."""
    key = (name or "").strip().lower()[:64] or None
    account_key = f"user:{key}" if key else None
    return _authenticate(db, hasher, User, _load_user, account_key, key, password, client_ip, "console",
                         policy, now)


class Authenticator:
    """Mailbox logins for event-loop code: verification runs in a bounded thread pool
    (it is CPU-bound and some schemes hold the GIL), and recent successes are remembered
    for `cache_seconds` so that clients that log in again and again (IMAP clients open
    several connections) do not pay a hash each time. Only successes are cached, keyed by
    an HMAC of address and password under a per-process random key."""

    MAX_CACHE_ENTRIES = 10_000

    def __init__(self, db: Database, hasher: PasswordHasher, *, max_workers: int = 2, cache_seconds: float = 30.0,
                 policy: ThrottlePolicy = DEFAULT_THROTTLE):
        self.db = db
        self.hasher = hasher
        self.policy = policy
        self.cache_seconds = cache_seconds
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="courriel-login")
        self._cache: dict[bytes, tuple[float, LoginResult]] = {}
        self._cache_key = secrets.token_bytes(32)

    def _key(self, address: str, password: str) -> bytes:
        text = f"{(address or '').strip().lower()}\0{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._cache_key, text, hashlib.sha256).digest()

    def forget(self) -> None:
        """Drop every cached success (after a password change or a disable)."""
        self._cache.clear()

    async def authenticate(self, address: str, password: str, client_ip: str | None, protocol: str) -> LoginResult:
        key = self._key(address, password)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._executor,
            functools.partial(authenticate_mailbox, self.db, self.hasher, address, password, client_ip, protocol,
                              policy=self.policy),
        )
        if result.ok and self.cache_seconds > 0:
            if len(self._cache) >= self.MAX_CACHE_ENTRIES:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= self.MAX_CACHE_ENTRIES:
                    self._cache.clear()
            self._cache[key] = (now + self.cache_seconds, result)
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=True)
