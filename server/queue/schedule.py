"""Queue scheduling decisions (ring 0, pure: every function takes `now`, nothing reads a clock).

Owns the timing rules of the queue role: the doubling retry backoff between `queue.retry_min`
and `queue.retry_max`, the message lifetime (`queue.lifetime`), when a delay warning is due
(`queue.delay_warning`), the state a message takes after an attempt, how long the runner may
sleep before the next due message (a kick wakes it earlier; the timer is the backstop), the
per-destination concurrency limit and the dead-destination cache.

Queue states (models.QueueState, as Postfix operators know them): `incoming` (accepted, never
tried), `active` (leased by a runner), `deferred` (waiting for its next attempt), `hold` (kept
by the operator), `corrupt` (its file cannot be read; kept for the operator, never retried).

Standards: RFC 5321 §4.5.4.1 (retry strategy: at least 30 minutes apart is advised for the
Internet, give-up time of 4–5 days), RFC 3461 §4.1 / RFC 3464 (delay notices).
Security: none (no input parsing).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

# The values of models.QueueState / models.RecipientState (ring 0 does not import the models).
LEASABLE_STATES = frozenset({"incoming", "deferred"})
FINAL_RECIPIENT_STATES = frozenset({"delivered", "relayed", "bounced"})
DEFAULT_TIMER_SECONDS = 60.0  # the backstop rescan when no hint arrives
DEFAULT_DESTINATION_CONCURRENCY = 4  # connections at once to one destination domain
DEFAULT_DEAD_DESTINATION_SECONDS = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """The retry settings of the [queue] section, in seconds."""

    retry_min: float = 300.0
    retry_max: float = 4 * 3600.0
    lifetime: float = 5 * 86400.0
    delay_warning: float = 4 * 3600.0  # 0: never send a delay notice

    def __post_init__(self):
        if self.retry_min <= 0 or self.retry_max < self.retry_min or self.lifetime <= 0 or self.delay_warning < 0:
            raise ValueError("queue retry settings: need 0 < retry_min <= retry_max, lifetime > 0, delay_warning >= 0")

    @classmethod
    def from_config(cls, config) -> RetryPolicy:
        return cls(
            retry_min=float(config.get("queue", "retry_min")),
            retry_max=float(config.get("queue", "retry_max")),
            lifetime=float(config.get("queue", "lifetime")),
            delay_warning=float(config.get("queue", "delay_warning")),
        )


def retry_delay(failures: int, policy: RetryPolicy) -> dt.timedelta:
    """The wait after the `failures`-th failed attempt: retry_min, doubled each time, capped at retry_max."""
    failures = max(1, failures)
    # 2**n grows past any retry_max quickly; cap the exponent to stay in float range.
    seconds = min(policy.retry_max, policy.retry_min * 2 ** min(failures - 1, 60))
    return dt.timedelta(seconds=seconds)


def expires_at(received_at: dt.datetime, policy: RetryPolicy) -> dt.datetime:
    return received_at + dt.timedelta(seconds=policy.lifetime)


def expired(received_at: dt.datetime, now: dt.datetime, policy: RetryPolicy) -> bool:
    """True once the message has been queued for its whole lifetime (then it bounces)."""
    return now >= expires_at(received_at, policy)


def next_attempt(received_at: dt.datetime, failures: int, now: dt.datetime, policy: RetryPolicy) -> dt.datetime | None:
    """When to try again after a temporary failure, or None when the lifetime is over (bounce).

    The last attempt is made at the end of the lifetime, not after it."""
    if expired(received_at, now, policy):
        return None
    return min(now + retry_delay(failures, policy), expires_at(received_at, policy))


def delay_warning_due(received_at: dt.datetime, now: dt.datetime, already_sent: bool, policy: RetryPolicy) -> bool:
    """RFC 3464 "delayed" notice: once, when the message has waited `delay_warning` seconds."""
    if already_sent or policy.delay_warning <= 0:
        return False
    return now >= received_at + dt.timedelta(seconds=policy.delay_warning)


class Outcome(StrEnum):
    """What happens to a message after an attempt."""

    FINISHED = "finished"  # every recipient final: remove from the queue
    DEFERRED = "deferred"  # some recipients wait: reschedule
    EXPIRED = "expired"  # some recipients wait but the lifetime is over: bounce them, then finish


def outcome(recipient_states: Iterable[str], received_at: dt.datetime, now: dt.datetime,
            policy: RetryPolicy) -> Outcome:
    states = set(recipient_states)
    if states <= FINAL_RECIPIENT_STATES:
        return Outcome.FINISHED
    if expired(received_at, now, policy):
        return Outcome.EXPIRED
    return Outcome.DEFERRED


def leasable(state: str) -> bool:
    """States the runner may lease (hold and corrupt wait for the operator)."""
    return state in LEASABLE_STATES


def sleep_seconds(now: dt.datetime, next_due: dt.datetime | None, timer: float = DEFAULT_TIMER_SECONDS) -> float:
    """How long the runner sleeps when nothing is due: until the next due message, at most `timer`."""
    if next_due is None:
        return timer
    return max(0.0, min(timer, (next_due - now).total_seconds()))


@dataclass
class DestinationSlots:
    """Per-destination-domain concurrency: at most `limit` connections to one domain at once."""

    limit: int = DEFAULT_DESTINATION_CONCURRENCY
    _active: dict[str, int] = field(default_factory=dict)

    def acquire(self, domain: str) -> bool:
        """Take a slot for `domain`; False when the domain already has `limit` connections."""
        count = self._active.get(domain, 0)
        if count >= self.limit:
            return False
        self._active[domain] = count + 1
        return True

    def release(self, domain: str) -> None:
        count = self._active.get(domain, 0) - 1
        if count <= 0:
            self._active.pop(domain, None)
        else:
            self._active[domain] = count

    def active(self, domain: str) -> int:
        return self._active.get(domain, 0)


@dataclass
class DeadDestinations:
    """Domains none of whose mail exchangers answered recently: their mail is deferred at once
    for `ttl` seconds instead of waiting for connection timeouts again (Postfix's dead host cache)."""

    ttl: float = DEFAULT_DEAD_DESTINATION_SECONDS
    _dead: dict[str, tuple[dt.datetime, str]] = field(default_factory=dict)

    def mark_dead(self, domain: str, now: dt.datetime, reason: str) -> None:
        self._dead[domain] = (now + dt.timedelta(seconds=self.ttl), reason)

    def mark_alive(self, domain: str) -> None:
        self._dead.pop(domain, None)

    def reason(self, domain: str, now: dt.datetime) -> str | None:
        """Why `domain` is considered dead now, or None when it may be tried."""
        entry = self._dead.get(domain)
        if entry is None:
            return None
        until, why = entry
        if now >= until:
            del self._dead[domain]
            return None
        return why
