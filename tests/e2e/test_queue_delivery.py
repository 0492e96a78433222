"""The queue runner end to end: spool → local store or remote SMTP peers found through a real
DNS server on loopback; retries, bounces, DSNs, DKIM signatures."""

from __future__ import annotations

import email
import email.policy

import pytest
from queue_harness import make_world, poll

from courriel import dkim
from courriel.dns.resolver import Resolver
from courriel.models import Alias, AliasTarget
from courriel.queue import stats
from courriel.queue.spool import EnvelopeRecipient

MESSAGE = (b"From: Alice <alice@example.org>\r\nTo: Bob <bob@remote.test>\r\nSubject: queue test\r\n"
           b"Message-ID: <q1@example.org>\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n\r\n"
           b"Hello over SMTP.\r\n.dot line\r\n")


@pytest.fixture
def world(data_dir, monkeypatch):
    with make_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch) as queue_world:
        yield queue_world


def _remote(world, domain="remote.test", host="127.0.0.2", **script):
    world.dns.add(domain, "MX", f"10 mx.{domain}")
    world.dns.add(f"mx.{domain}", "A", host)
    return world.peer(host, **script)


def _report_parts(raw: bytes):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/report"
    status = message.get_payload()[1]
    assert status.get_content_type() == "message/delivery-status"
    return message, status.get_payload()[1:]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_local_and_remote_delivery_with_dkim(backend, data_dir, monkeypatch, request):
    db_url = (f"sqlite:///{data_dir / 'courriel.db'}" if backend == "sqlite"
              else request.getfixturevalue("postgres_cluster").create_database())
    with make_world(data_dir, db_url, monkeypatch) as world:
        alice = world.add_mailbox("alice@example.org")
        carol = world.add_mailbox("carol@example.org")
        world.add_dkim_key("example.org", "rsa1", "rsa-sha256")
        world.add_dkim_key("example.org", "ed1", "ed25519-sha256")
        # Preference order: mx1 (10) answers; mx2 (20) is never needed.
        world.dns.add("remote.test", "MX", "20 mx2.remote.test")
        world.dns.add("remote.test", "MX", "10 mx1.remote.test")
        world.dns.add("mx1.remote.test", "A", "127.0.0.2")
        world.dns.add("mx2.remote.test", "A", "127.0.0.3")
        peer = world.peer("127.0.0.2")
        backup = world.peer("127.0.0.3")
        # Implicit MX: no MX record, only an address (RFC 5321 §5.1).
        world.dns.add("implicit.test", "A", "127.0.0.4")
        implicit = world.peer("127.0.0.4")
        first = world.submit("alice@example.org", ["bob@remote.test", "dave@remote.test", "carol@example.org"],
                             MESSAGE)
        second = world.submit("alice@example.org", ["erin@remote.test", "fred@implicit.test"], MESSAGE)
        with world.running():
            poll(lambda: not world.queue(), "queue empty")
        assert first != second
        assert sorted(peer.recipients()) == ["bob@remote.test", "dave@remote.test", "erin@remote.test"]
        assert backup.received == []
        assert implicit.recipients() == ["fred@implicit.test"]
        # Two messages for remote.test went over one connection.
        assert len({item.connection for item in peer.received}) == 1
        assert len(world.inbox(carol)) == 1 and world.inbox_or_empty(alice) == []
        # Every outbound copy carries both signatures, and both verify against the served keys.
        resolver = Resolver([world.dns.nameserver], timeout=1.0)
        for item in peer.received + implicit.received:
            results = dkim.verify_all(item.data, resolver)
            assert [(r.result, r.selector) for r in results] == [("pass", "rsa1"), ("pass", "ed1")]
        # The local copy is not signed (DKIM is for mail leaving the server).
        assert b"DKIM-Signature" not in world.inbox(carol)[0]
        assert stats.size_by_state(world.db)["deferred"] == 0


def test_temporary_failure_then_success_after_retry(world):
    world.add_mailbox("alice@example.org")
    peer = _remote(world, rcpt=["451 4.3.0 try again later"])
    world.submit("alice@example.org", ["bob@remote.test"], MESSAGE)
    with world.running():
        poll(lambda: peer.recipients() == ["bob@remote.test"], "delivered after retry")
        poll(lambda: not world.queue(), "queue empty")


def test_permanent_failure_bounces_to_the_sender_with_the_remote_reply(world):
    alice = world.add_mailbox("alice@example.org")
    peer = _remote(world, rcpt=["550 5.1.1 <bob@remote.test>: mailbox unknown here"])
    world.submit("alice@example.org", ["bob@remote.test", "dave@remote.test"], MESSAGE, dsn_envid="E-77")
    with world.running():
        poll(lambda: world.inbox_or_empty(alice), "DSN in alice's inbox")
        poll(lambda: not world.queue(), "queue empty")
    assert peer.recipients() == ["dave@remote.test"]
    message, recipients = _report_parts(world.inbox(alice)[0])
    assert message["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.example.org"
    assert [r["Final-Recipient"] for r in recipients] == ["rfc822; bob@remote.test"]
    assert recipients[0]["Action"] == "failed"
    assert recipients[0]["Status"] == "5.1.1"
    assert "mailbox unknown here" in recipients[0]["Diagnostic-Code"]
    assert recipients[0]["Remote-MTA"] == "dns; mx.remote.test"
    assert message.get_payload()[1].get_payload()[0]["Original-Envelope-Id"] == "E-77"


def test_unreachable_until_the_lifetime_ends_bounces(data_dir, monkeypatch):
    with make_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch, lifetime=3) as world:
        alice = world.add_mailbox("alice@example.org")
        world.dns.add("down.test", "MX", "10 mx.down.test")
        world.dns.add("mx.down.test", "A", "127.0.0.9")  # nothing listens there
        queue_id = world.submit("alice@example.org", ["bob@down.test"], MESSAGE)
        with world.running():
            poll(lambda: world.inbox_or_empty(alice), "expiry DSN", timeout=20)
            poll(lambda: not world.queue(), "queue empty")
        message, recipients = _report_parts(world.inbox(alice)[0])
        assert recipients[0]["Action"] == "failed"
        assert recipients[0]["Status"] == "5.4.7"
        assert "expired" in recipients[0]["Diagnostic-Code"]
        assert queue_id in message["Message-ID"]


def test_null_mx_bounces_at_once(world):
    alice = world.add_mailbox("alice@example.org")
    world.dns.add("nomail.test", "MX", "0 .")
    world.submit("alice@example.org", ["bob@nomail.test"], MESSAGE)
    with world.running():
        poll(lambda: world.inbox_or_empty(alice), "null MX DSN", timeout=5)
    _message, recipients = _report_parts(world.inbox(alice)[0])
    assert recipients[0]["Status"] == "5.1.10"
    assert "null MX" in recipients[0]["Diagnostic-Code"]


def test_no_dsn_for_a_dsn_and_notify_never(world):
    alice = world.add_mailbox("alice@example.org")
    peer = _remote(world, rcpt=["550 5.1.1 no"] * 2)
    world.submit("", ["bob@remote.test"], MESSAGE, source="dsn")  # a bounce that bounces
    world.submit("alice@example.org", [EnvelopeRecipient("dave@remote.test", notify="NEVER")], MESSAGE)
    with world.running():
        poll(lambda: not world.queue(), "both bounced and gone")
    assert peer.received == []
    assert world.inbox_or_empty(alice) == []


def test_success_notice_when_asked_and_smtputf8_rules(world):
    alice = world.add_mailbox("alice@example.org")
    _remote(world)
    _remote(world, "ascii.test", "127.0.0.5", smtputf8=False)
    world.submit("alice@example.org", [EnvelopeRecipient("bob@remote.test", notify="SUCCESS")], MESSAGE)
    utf8 = "From: alice@example.org\r\nTo: zoë@ascii.test\r\nSubject: héllo\r\n\r\nbody\r\n".encode()
    world.submit("alice@example.org", ["zoë@ascii.test"], utf8, smtputf8=True, body_type="8BITMIME")
    with world.running():
        poll(lambda: len(world.inbox_or_empty(alice)) == 2, "relayed notice and SMTPUTF8 bounce")
    notices = {}
    for raw in world.inbox(alice):
        message = email.message_from_bytes(raw, policy=email.policy.default)
        notices[message["Subject"]] = (message.get_payload()[1].get_content_type(), raw)
    kind, raw = notices["Successful Mail Delivery Report"]
    assert kind == "message/delivery-status"
    assert b"Action: relayed" in raw  # the peer does not offer DSN (RFC 3461 Â§6.2.2)
    kind, raw = notices["Undelivered Mail Returned to Sender"]
    assert kind == "message/global-delivery-status"  # RFC 6533 for internationalised mail
    assert b"Status: 5.6.7" in raw and "Final-Recipient: utf-8; zoë@ascii.test".encode() in raw


def test_local_over_quota_is_temporary_and_unknown_local_bounces(world):
    alice = world.add_mailbox("alice@example.org")
    full = world.add_mailbox("full@example.org", quota_bytes=10)
    world.submit("alice@example.org", ["full@example.org", "ghost@example.org"], MESSAGE)
    with world.running():
        poll(lambda: world.inbox_or_empty(alice), "bounce for the unknown mailbox")
        entry = poll(lambda: [e for e in world.queue() if e.sender], "entry still queued for the full mailbox")[0]
    states = {r.address: (r.state, r.last_reply) for r in entry.recipients}
    assert states["ghost@example.org"][0] == "bounced"
    assert states["full@example.org"][0] == "deferred" and "4.2.2" in states["full@example.org"][1]
    assert world.inbox_or_empty(full) == []
    _message, recipients = _report_parts(world.inbox(alice)[0])
    assert [r["Final-Recipient"] for r in recipients] == ["rfc822; ghost@example.org"]


def test_local_at_message_limit_is_temporary_like_over_bytes(world):
    """RFC 9208 §5.2 MESSAGE: a mailbox holding its limit of messages is full (4.2.2, deferred)."""
    counted = world.add_mailbox("counted@example.org", quota_messages=1)
    world.store.deliver(counted, b"Subject: the one message allowed\r\n\r\nx\r\n")
    world.submit("alice@example.org", ["counted@example.org"], MESSAGE)
    with world.running():
        entry = poll(lambda: [e for e in world.queue() if e.recipients[0].state == "deferred"],
                     "entry deferred for the full mailbox")[0]
    state, reply = entry.recipients[0].state, entry.recipients[0].last_reply
    assert state == "deferred" and "4.2.2" in reply
    assert len(world.inbox(counted)) == 1


def test_delay_warning_once_then_delivery(data_dir, monkeypatch):
    with make_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch, delay_warning=1) as world:
        alice = world.add_mailbox("alice@example.org")
        peer = _remote(world, rcpt=["451 4.2.1 busy, later"] * 3)
        world.submit("alice@example.org", ["bob@remote.test"], MESSAGE)
        with world.running():
            poll(lambda: peer.recipients() == ["bob@remote.test"], "delivered after several retries", timeout=20)
            poll(lambda: not world.queue(), "queue empty")
        notices = world.inbox(alice)
        assert len(notices) == 1  # one delay notice, no success notice (not requested)
        message, recipients = _report_parts(notices[0])
        assert message["Subject"] == "Delayed Mail (still being retried)"
        assert recipients[0]["Action"] == "delayed"
        assert recipients[0]["Will-Retry-Until"]
        assert "busy, later" in recipients[0]["Diagnostic-Code"]
        # RFC 3461 §4.3: without RET a delay notice returns the header only.
        assert message.get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_a_hint_wakes_the_runner_before_its_timer(world):
    carol = world.add_mailbox("carol@example.org")
    with world.running(timer=30.0) as runner:
        poll(lambda: runner.sleeping, "runner asleep with nothing to do")
        # spool.accept sends a `queue` hint; the runner must not wait for its 30 s timer.
        world.submit("alice@example.org", ["carol@example.org"], MESSAGE)
        poll(lambda: world.inbox_or_empty(carol), "local delivery after the hint", timeout=5)


def test_alias_with_an_external_target_forwards(world):
    carol = world.add_mailbox("carol@example.org")
    peer = _remote(world)
    with world.db.write() as session:
        session.add(Alias(domain_id=world.domain_id("example.org"), address="team@example.org",
                          targets=[AliasTarget(target="carol@example.org"), AliasTarget(target="bob@remote.test")]))
    world.submit("zed@elsewhere.test", ["team@example.org"], MESSAGE)
    with world.running():
        poll(lambda: peer.recipients() == ["bob@remote.test"] and world.inbox_or_empty(carol), "both copies")
        poll(lambda: not world.queue(), "queue empty")
    assert peer.received[0].mail_from == "zed@elsewhere.test"


def test_local_success_notice_when_asked(world):
    alice = world.add_mailbox("alice@example.org")
    carol = world.add_mailbox("carol@example.org")
    world.submit("alice@example.org", [EnvelopeRecipient("carol@example.org", notify="SUCCESS,FAILURE",
                                                         orcpt="rfc822;Carol@example.org")], MESSAGE)
    with world.running():
        poll(lambda: world.inbox_or_empty(alice), "delivered notice")
    assert len(world.inbox(carol)) == 1
    message, recipients = _report_parts(world.inbox(alice)[0])
    assert message["Subject"] == "Successful Mail Delivery Report"
    assert recipients[0]["Action"] == "delivered"
    assert recipients[0]["Original-Recipient"] == "rfc822; Carol@example.org"
    assert message.get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_dns_failure_is_temporary(world):
    world.add_mailbox("alice@example.org")
    peer = _remote(world, "flaky.test", "127.0.0.6")
    world.dns.fail("flaky.test", "servfail")
    world.submit("alice@example.org", ["bob@flaky.test"], MESSAGE)
    with world.running():
        entry = poll(lambda: [e for e in world.queue() if e.recipients[0].state == "deferred"], "deferred")[0]
        assert "DNS lookup for flaky.test failed" in entry.recipients[0].last_reply
        world.dns.fail("flaky.test", None)
        poll(lambda: peer.recipients() == ["bob@flaky.test"], "delivered once DNS answers")
        poll(lambda: not world.queue(), "queue empty")
