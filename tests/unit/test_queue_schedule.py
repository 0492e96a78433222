"""Queue scheduling rules as tables, with a fake clock (pure code: no IO)."""

from __future__ import annotations

import datetime as dt

import pytest

from courriel import config as config_mod
from courriel.queue import schedule
from courriel.queue.schedule import DeadDestinations, DestinationSlots, Outcome, RetryPolicy

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
POLICY = RetryPolicy(retry_min=300, retry_max=4 * 3600, lifetime=5 * 86400, delay_warning=4 * 3600)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(("failures", "seconds"), [
    (0, 300), (1, 300), (2, 600), (3, 1200), (4, 2400), (5, 4800), (6, 9600), (7, 14400), (8, 14400), (500, 14400),
])
def test_backoff_doubles_between_min_and_max(failures, seconds):
    assert schedule.retry_delay(failures, POLICY) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(("now", "failures", "expected"), [
    (at(0), 1, at(300)),
    (at(1000), 3, at(2200)),
    (at(5 * 86400 - 100), 9, at(5 * 86400)),  # the last try is at the end of the lifetime
    (at(5 * 86400), 9, None),  # lifetime over: bounce
    (at(6 * 86400), 1, None),
])
def test_next_attempt_is_clamped_to_the_lifetime(now, failures, expected):
    assert schedule.next_attempt(T0, failures, now, POLICY) == expected


@pytest.mark.parametrize(("now", "sent", "policy", "due"), [
    (at(4 * 3600 - 1), False, POLICY, False),
    (at(4 * 3600), False, POLICY, True),
    (at(4 * 3600), True, POLICY, False),  # only once
    (at(10 * 3600), False, RetryPolicy(delay_warning=0), False),  # 0: never
])
def test_delay_warning(now, sent, policy, due):
    assert schedule.delay_warning_due(T0, now, sent, policy) is due


@pytest.mark.parametrize(("states", "now", "expected"), [
    (["delivered", "relayed", "bounced"], at(10), Outcome.FINISHED),
    (["delivered", "deferred"], at(10), Outcome.DEFERRED),
    (["pending"], at(10), Outcome.DEFERRED),
    (["delivered", "deferred"], at(5 * 86400), Outcome.EXPIRED),
    (["bounced"], at(9 * 86400), Outcome.FINISHED),
])
def test_outcome_after_an_attempt(states, now, expected):
    assert schedule.outcome(states, T0, now, POLICY) is expected


@pytest.mark.parametrize(("state", "leasable"), [
    ("incoming", True), ("deferred", True), ("active", False), ("hold", False), ("corrupt", False),
])
def test_only_waiting_states_are_leased(state, leasable):
    assert schedule.leasable(state) is leasable


@pytest.mark.parametrize(("next_due", "timer", "seconds"), [
    (None, 60, 60),  # nothing queued: the backstop timer
    (at(10), 60, 10),
    (at(-5), 60, 0),  # overdue: no sleep
    (at(3600), 60, 60),
])
def test_sleep_until_next_due_at_most_the_timer(next_due, timer, seconds):
    assert schedule.sleep_seconds(T0, next_due, timer) == seconds


def test_destination_slots_limit_connections_per_domain():
    slots = DestinationSlots(limit=2)
    assert slots.acquire("a.example") and slots.acquire("a.example")
    assert not slots.acquire("a.example")
    assert slots.acquire("b.example")  # other domains are independent
    slots.release("a.example")
    assert slots.active("a.example") == 1
    assert slots.acquire("a.example")


def test_dead_destination_cache_expires():
    dead = DeadDestinations(ttl=300)
    assert dead.reason("a.example", at(0)) is None
    dead.mark_dead("a.example", at(0), "no answer")
    assert dead.reason("a.example", at(299)) == "no answer"
    assert dead.reason("b.example", at(10)) is None
    assert dead.reason("a.example", at(300)) is None
    dead.mark_dead("a.example", at(400), "no answer")
    dead.mark_alive("a.example")
    assert dead.reason("a.example", at(401)) is None


@pytest.mark.parametrize("bad", [
    dict(retry_min=0), dict(retry_min=600, retry_max=300), dict(lifetime=0), dict(delay_warning=-1),
])
def test_bad_policies_are_refused(bad):
    with pytest.raises(ValueError):
        RetryPolicy(**bad)


def test_policy_from_config(tmp_path):
    policy = RetryPolicy.from_config(config_mod.load(tmp_path, environ={}))
    assert (policy.retry_min, policy.retry_max, policy.lifetime, policy.delay_warning) == (300, 14400, 432000, 14400)
