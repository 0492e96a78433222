"""The SMTP role asks DNS once per answer lifetime, not once per message: SPF and DMARC answers are
kept for their TTL (RFC 1035 §3.2.1; negative answers for the SOA minimum, RFC 2308 §5), and the
client's reverse DNS name is looked up once per connection; a temporary failure is held 30 s.
Over real loopback sockets, with a loopback DNS server that counts the queries."""

from __future__ import annotations

import pytest
from smtp_harness import smtp_world_fixture  # noqa: F401 - pytest fixture "smtp_world"

MESSAGE = b"From: Bob <bob@remote.test>\r\nTo: alice@example.org\r\nSubject: again\r\n\r\nHello.\r\n"


def count(world, name: str, rtype: str) -> int:
    return sum(1 for query in world.dns.queries if query[0].rstrip(".").lower() == name and query[1] == rtype)


def test_answers_kept_for_their_ttl_and_reverse_name_once_per_connection(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    smtp_world.dns.add("remote.test", "TXT", "v=spf1 ip4:127.0.0.1 -all", ttl=300)
    smtp_world.dns.add("_dmarc.other.test", "TXT", "v=DMARC1; p=none", ttl=0)  # TTL 0: never kept
    for _ in range(2):
        with smtp_world.client("mx") as client:
            client.ehlo("client.example")
            for _ in range(3):
                client.sendmail("bob@remote.test", ["alice@example.org"], MESSAGE)
                client.sendmail("bob@remote.test", ["alice@example.org"], MESSAGE.replace(b"remote.test>",
                                                                                           b"other.test>"))
    entries = smtp_world.queued()
    assert len(entries) == 12
    assert all(b"spf=pass" in smtp_world.content(entry) for entry in entries)
    assert count(smtp_world, "remote.test", "TXT") == 1  # SPF: one query for twelve messages
    assert count(smtp_world, "_dmarc.other.test", "TXT") == 6  # asked again for each message
    assert count(smtp_world, "1.0.0.127.in-addr.arpa", "PTR") == 2  # once per connection


def test_a_failing_name_is_asked_once_per_hold_not_once_per_message(smtp_world):
    """RFC 2308 §7.1: a server failure may be remembered (at most five minutes; 30 s here)."""
    smtp_world.add_mailbox("alice@example.org")
    smtp_world.dns.add("remote.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    smtp_world.dns.fail("remote.test", "servfail")
    with smtp_world.client("mx") as client:
        client.ehlo("client.example")
        for _ in range(3):
            client.sendmail("bob@remote.test", ["alice@example.org"], MESSAGE)
    entries = smtp_world.queued()
    assert len(entries) == 3  # a temporary DNS failure refuses nothing
    assert all(b"spf=temperror" in smtp_world.content(entry) for entry in entries)
    assert count(smtp_world, "remote.test", "TXT") == 1


def test_failure_hold_expires(monkeypatch):
    from courriel.dns.resolver import Resolver, TemporaryFailure
    from courriel.smtp.inbound_dns import InboundResolver

    now = [100.0]
    calls = []

    def failing(self, name, rtype):
        calls.append((name, rtype))
        raise TemporaryFailure(name, rtype, "timed out")

    monkeypatch.setattr(Resolver, "query", failing)
    resolver = InboundResolver(["127.0.0.1:1"], timeout=1.0, hold_seconds=30.0, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(TemporaryFailure):
            resolver.txt("Example.ORG.")
    assert calls == [("Example.ORG.", "TXT")]
    now[0] += 30.5
    with pytest.raises(TemporaryFailure):
        resolver.txt("example.org")
    assert len(calls) == 2
