"""The smtp role's DNS resolver (ring 2): the shared `courriel.dns.resolver.Resolver` with memory.

Every inbound message asks DNS the same few questions (SPF and DMARC records of the sender's
domains, DKIM keys, the client's reverse name), and mail from one domain arrives in runs. So:
- answers are kept for their TTL, negative answers for the SOA minimum (RFC 1035 §3.2.1,
  RFC 2308 §5), in dnspython's cache behind `Resolver(cache_size=...)`;
- a temporary failure (time-out, SERVFAIL, no server reachable) of one name and type is
  remembered for `FAILURE_HOLD_SECONDS` (RFC 2308 §7.1 allows up to five minutes): during a DNS
  outage each question costs one time-out per hold, not one per message, and the messages get
  the same temperror verdicts (SPF, DKIM and DMARC treat it as temporary: nothing is refused).

Standards: RFC 1035 §3.2.1 (TTL), RFC 2308 §5 and §7.1 (negative and failure caching).
Security: answers come from the configured name servers only; the caches are bounded.
"""

from __future__ import annotations

import threading
import time

from courriel.dns.resolver import Resolver, TemporaryFailure

CACHE_ENTRIES = 4096  # answers (name, type) kept, least recently used dropped first
FAILURE_HOLD_SECONDS = 30.0
MAX_FAILURES_KEPT = 4096


class InboundResolver(Resolver):
    """A `Resolver` with an answer cache (TTL) and a short memory of temporary failures."""

    def __init__(self, nameservers: list[str] | None = None, timeout: float = 5.0,
                 hold_seconds: float = FAILURE_HOLD_SECONDS, clock=time.monotonic):
        super().__init__(nameservers, timeout, cache_size=CACHE_ENTRIES)
        self.hold_seconds = hold_seconds
        self._clock = clock
        self._failed_until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # lookups run on the event loop and in worker threads

    @classmethod
    def from_config(cls, config) -> InboundResolver:
        return cls(config.get("dns", "nameservers"), config.get("dns", "timeout"))

    @staticmethod
    def _key(name: str, rtype: str) -> tuple[str, str]:
        return str(name).rstrip(".").lower(), rtype.upper()

    def _held(self, key: tuple[str, str]) -> bool:
        with self._lock:
            until = self._failed_until.get(key)
            if until is None:
                return False
            if until > self._clock():
                return True
            del self._failed_until[key]
            return False

    def _remember_failure(self, key: tuple[str, str]) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failed_until) >= MAX_FAILURES_KEPT:
                for stale in [k for k, until in self._failed_until.items() if until <= now]:
                    del self._failed_until[stale]
                if len(self._failed_until) >= MAX_FAILURES_KEPT:
                    self._failed_until.clear()  # an outage of many names: start again, still bounded
            self._failed_until[key] = now + self.hold_seconds

    def query(self, name: str, rtype: str) -> list:
        key = self._key(name, rtype)
        if self._held(key):
            raise TemporaryFailure(name, rtype, "failed moments ago (held)")
        try:
            return super().query(name, rtype)
        except TemporaryFailure:
            self._remember_failure(key)
            raise

    async def query_async(self, name: str, rtype: str) -> list:
        key = self._key(name, rtype)
        if self._held(key):
            raise TemporaryFailure(name, rtype, "failed moments ago (held)")
        try:
            return await super().query_async(name, rtype)
        except TemporaryFailure:
            self._remember_failure(key)
            raise
