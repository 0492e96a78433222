"""Login throttling shared through the database, disabled mailboxes, the async wrapper."""

import asyncio
import datetime as dt
import threading

import pytest
from sqlalchemy import select

from courriel import logins, passwords
from courriel.admin import services
from courriel.db import Database
from courriel.logins import LoginStatus
from courriel.models import LoginFailure

HASHER = passwords.PasswordHasher(memory_kib=1024, time_cost=1)
POLICY = passwords.PasswordPolicy()
T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
GOOD = "Right password 1"


@pytest.fixture
def accounts(db):
    services.add_domain(db, "example.com")
    for name in ("victim", "other", "sleeper"):
        services.add_mailbox(db, HASHER, POLICY, f"{name}@example.com", password=GOOD)
    return db


def login(db, address, password, ip, now, **kwargs):
    return logins.authenticate_mailbox(db, HASHER, address, password, ip, "imap", now=now, **kwargs)


def test_fifty_wrong_passwords_lock_one_account_only(accounts):
    db = accounts
    now = T0
    # A burst of 50 guesses: a few are checked, the rest are refused without hashing.
    burst = [login(db, "victim@example.com", f"wrong {i}", "192.0.2.7", now).status for i in range(50)]
    free = logins.DEFAULT_THROTTLE.account.free_failures
    assert burst[:free + 1] == [LoginStatus.BAD_CREDENTIALS] * (free + 1)
    assert burst[free + 1:] == [LoginStatus.THROTTLED] * (50 - free - 1)
    # A patient attacker waits out every delay, from ever new addresses: 50 counted guesses.
    for i in range(50):
        result = login(db, "victim@example.com", f"again {i}", f"192.0.{i}.8", now)
        if result.status is LoginStatus.THROTTLED:
            now += dt.timedelta(seconds=result.retry_after + 0.5)
            result = login(db, "victim@example.com", f"again {i}", f"192.0.{i}.8", now)
        assert result.status is LoginStatus.BAD_CREDENTIALS
    assert result.retry_after == logins.DEFAULT_THROTTLE.lockout_seconds
    # Even the right password is refused now, without being checked.
    locked = login(db, "victim@example.com", GOOD, "198.51.100.9", now)
    assert locked.status is LoginStatus.THROTTLED and locked.retry_after > 60
    # Another account from another client logs in at once.
    assert login(db, "other@example.com", GOOD, "203.0.113.5", now).ok
    # After the lockout the owner gets in, and the success clears the account's count.
    later = now + dt.timedelta(seconds=logins.DEFAULT_THROTTLE.lockout_seconds + 1)
    assert login(db, "victim@example.com", GOOD, "198.51.100.9", later).ok
    with db.read() as session:
        keys = set(session.execute(select(LoginFailure.scope, LoginFailure.key)).all())
    # The network counts stay (they fade after the window: the burst address is forgotten).
    assert ("account", "victim@example.com") not in keys and ("ip", "192.0.49.8") in keys
    assert ("ip", "192.0.2.7") not in keys


def test_owner_logs_in_between_free_failures(accounts):
    db = accounts
    policy = logins.DEFAULT_THROTTLE
    now = T0
    delays = []
    for i in range(policy.account.lockout_failures):
        result = login(db, "victim@example.com", f"bad {i}", f"10.0.{i}.1", now)  # a botnet: new IP each time
        assert result.status is LoginStatus.BAD_CREDENTIALS
        delays.append(result.retry_after)
        blocked = login(db, "victim@example.com", GOOD, "10.9.9.9", now)
        assert blocked.ok == (result.retry_after == 0)
        if blocked.ok:
            # A success resets the account's count: spoil it by never succeeding from here on.
            break
        now += dt.timedelta(seconds=result.retry_after + 0.1)
    # The first failures are free, so the owner logged in and reset the count.
    assert delays[0] == 0


def test_delays_double_and_lock(accounts):
    db = accounts
    policy = logins.DEFAULT_THROTTLE
    now = T0
    delays = []
    for i in range(policy.account.lockout_failures):
        result = login(db, "sleeper@example.com", f"bad {i}", f"10.1.{i}.1", now)
        assert result.status is LoginStatus.BAD_CREDENTIALS, i
        delays.append(result.retry_after)
        if result.retry_after:
            early = login(db, "sleeper@example.com", GOOD, "10.9.9.9", now)
            assert early.status is LoginStatus.THROTTLED
        now += dt.timedelta(seconds=result.retry_after + 0.1)
    free = policy.account.free_failures
    assert delays[:free] == [0.0] * free
    assert delays[free:free + 3] == [1.0, 2.0, 4.0]
    assert max(delays[:-1]) <= policy.max_delay
    assert delays[-1] == policy.lockout_seconds


def test_one_network_guessing_many_accounts_is_throttled(accounts):
    db = accounts
    limits = logins.DEFAULT_THROTTLE.network
    statuses = [login(db, f"user{i}@example.com", "guess", "2001:db8:5:5::9", T0).status
                for i in range(limits.free_failures + 2)]
    assert statuses[:limits.free_failures + 1] == [LoginStatus.BAD_CREDENTIALS] * (limits.free_failures + 1)
    assert statuses[-1] is LoginStatus.THROTTLED
    # The same /64 is blocked even for a valid login; other networks are not.
    assert login(db, "other@example.com", GOOD, "2001:db8:5:5::10", T0).status is LoginStatus.THROTTLED
    assert login(db, "other@example.com", GOOD, "2001:db8:5:6::10", T0).ok


def test_ipv6_clients_share_their_64(accounts):
    assert logins.network_key("2001:db8:1:2:aaaa::1") == logins.network_key("2001:db8:1:2:bbbb::2")
    assert logins.network_key("2001:db8:1:3::1") != logins.network_key("2001:db8:1:2::1")
    assert logins.network_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert logins.network_key(None) == "unknown"


def test_state_is_shared_between_database_objects(accounts):
    second = Database(accounts.url)
    try:
        now = T0
        for i in range(6):
            result = login(accounts if i % 2 else second, "victim@example.com", f"bad {i}", "192.0.2.50", now)
            assert result.status is LoginStatus.BAD_CREDENTIALS
        # Six failures counted across both engines: the sixth started a delay, seen by both.
        assert result.retry_after == 1.0
        for database in (accounts, second):
            assert login(database, "victim@example.com", GOOD, "192.0.2.50", now).status is LoginStatus.THROTTLED
    finally:
        second.dispose()


def test_unknown_disabled_and_bad_input(accounts):
    db = accounts
    unknown = login(db, "ghost@example.com", GOOD, "192.0.2.1", T0)
    wrong = login(db, "other@example.com", "nope", "192.0.2.1", T0)
    assert unknown.status is wrong.status is LoginStatus.BAD_CREDENTIALS
    assert login(db, "not an address", GOOD, "192.0.2.1", T0).status is LoginStatus.BAD_CREDENTIALS
    services.set_mailbox_enabled(db, "other@example.com", False)
    assert login(db, "other@example.com", GOOD, "192.0.2.1", T0).status is LoginStatus.DISABLED
    assert login(db, "other@example.com", "nope", "192.0.2.1", T0).status is LoginStatus.BAD_CREDENTIALS


def test_console_user_login(accounts):
    db = accounts
    services.add_user(db, HASHER, POLICY, "carol", password=GOOD, role="admin")
    assert logins.authenticate_user(db, HASHER, "Carol", GOOD, "127.0.0.1", now=T0).ok
    assert logins.authenticate_user(db, HASHER, "carol", "x", "127.0.0.1", now=T0).status is LoginStatus.BAD_CREDENTIALS


def test_async_wrapper_runs_off_loop_and_caches_successes(accounts):
    db = accounts
    calls = []

    class CountingHasher(passwords.PasswordHasher):
        def verify(self, password, stored_hash):
            calls.append(password)
            return super().verify(password, stored_hash)

    authenticator = logins.Authenticator(db, CountingHasher(memory_kib=1024, time_cost=1), max_workers=2)

    async def scenario():
        first = await asyncio.gather(*(
            authenticator.authenticate("victim@example.com", GOOD, "127.0.0.1", "imap") for _ in range(3)))
        again = await authenticator.authenticate("VICTIM@example.com", GOOD, "127.0.0.1", "imap")
        bad = await authenticator.authenticate("victim@example.com", "wrong", "127.0.0.1", "imap")
        bad_again = await authenticator.authenticate("victim@example.com", "wrong", "127.0.0.1", "imap")
        return first, again, bad, bad_again

    try:
        first, again, bad, bad_again = asyncio.run(scenario())
    finally:
        authenticator.close()
    assert all(r.ok for r in first) and again.ok
    assert not bad.ok and not bad_again.ok
    assert calls.count(GOOD) == 3  # the three concurrent first logins; the fourth came from the cache
    assert calls.count("wrong") == 2  # failures are never cached


def test_concurrent_failures_are_all_counted(db):
    """Two engines (as two processes would) count failures on one key at the same time."""
    engines = [db, Database(db.url)]
    errors = []

    def hammer(database):
        try:
            for _ in range(15):
                logins.record_failure(database, [(logins.SCOPE_IP, "198.51.100.77")], T0)
        except Exception as exc:  # reported below; a lost update or a deadlock fails the test
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    engines[1].dispose()
    assert not errors and not any(t.is_alive() for t in threads)
    with db.read() as session:
        row = session.scalars(select(LoginFailure).where(LoginFailure.key == "198.51.100.77")).one()
    assert row.failures == 30
    assert row.blocked_until is not None


def test_case_and_idn_variants_share_one_account_throttle(accounts):
    """Spelling the address differently (case, trailing dot, U-label vs A-label domain, spaces) is
    one account for throttling: variants from ever new networks cannot multiply the guesses."""
    db = accounts
    services.add_domain(db, "bücher.example")
    services.add_mailbox(db, HASHER, POLICY, "anna@bücher.example", password=GOOD)
    variants = ["anna@xn--bcher-kva.example", "ANNA@BÜCHER.EXAMPLE", "Anna@bücher.example.",
                " anna@Xn--Bcher-Kva.Example "]
    free = logins.DEFAULT_THROTTLE.account.free_failures
    statuses = [login(db, variants[i % len(variants)], f"wrong {i}", f"198.51.{i}.1", T0).status
                for i in range(free + 3)]
    assert statuses[:free + 1] == [LoginStatus.BAD_CREDENTIALS] * (free + 1)
    assert statuses[free + 1:] == [LoginStatus.THROTTLED] * 2
    assert login(db, "anna@bücher.example", GOOD, "203.0.113.77", T0).status is LoginStatus.THROTTLED


def test_locked_account_still_admits_a_network_that_logged_in_before(accounts):
    """An attacker who knows the address locks the account for new networks only: the owner's
    network, trusted by an earlier success, is held by its own counts, not the account-wide one."""
    db = accounts
    policy = logins.DEFAULT_THROTTLE
    assert login(db, "victim@example.com", GOOD, "203.0.113.20", T0).ok  # the owner's home network
    now = T0 + dt.timedelta(minutes=5)
    for i in range(policy.account.lockout_failures):  # a patient botnet: a new address each time
        result = login(db, "victim@example.com", f"bad {i}", f"10.2.{i}.1", now)
        if result.status is LoginStatus.THROTTLED:
            now += dt.timedelta(seconds=result.retry_after + 0.1)
            result = login(db, "victim@example.com", f"bad {i}", f"10.2.{i}.1", now)
        assert result.status is LoginStatus.BAD_CREDENTIALS
    assert result.retry_after == policy.lockout_seconds
    assert login(db, "victim@example.com", GOOD, "198.51.100.30", now).status is LoginStatus.THROTTLED
    assert login(db, "victim@example.com", GOOD, "203.0.113.20", now).ok
    # The trusted network guessing on its own is still held by its (account, network) count.
    for i in range(policy.account.free_failures + 1):
        assert login(db, "victim@example.com", f"typo {i}", "203.0.113.20", now).status is LoginStatus.BAD_CREDENTIALS
    assert login(db, "victim@example.com", GOOD, "203.0.113.20", now).status is LoginStatus.THROTTLED
    # Trust fades: past `trusted_seconds` without a success the network is a stranger again.
    with db.read() as session:
        row = session.scalars(select(LoginFailure).where(LoginFailure.scope == logins.SCOPE_TRUSTED)).one()
    assert row.key == "victim@example.com|203.0.113.20"
    assert row.blocked_until == now + dt.timedelta(seconds=policy.trusted_seconds)
