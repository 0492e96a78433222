"""Outbound delivery to a real Postfix (a private instance on 127.0.0.2) found through the loopback
DNS server: STARTTLS, CHUNKING, DKIM signatures that verify, a RCPT rejection bounced to the sender."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from postfix_peer import PostfixPeer, postfix_available
from queue_harness import make_world, poll

from courriel import dkim
from courriel.dns.resolver import Resolver
from courriel.queue.spool import EnvelopeRecipient

pytestmark = pytest.mark.skipif(not postfix_available(), reason="needs root and Debian's postfix package")

MESSAGE = ("From: Alice <alice@example.org>\r\nTo: bob@remote.test, carol@remote.test\r\n"
           "Subject: interop ünïcode body\r\nMessage-ID: <interop1@example.org>\r\n"
           "Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           "Grüße aus dem Test.\r\n.a line with a leading dot\r\n").encode()

# With a Date field: Postfix adds one when it is missing, which would break the over-signed Date.
UTF8_MESSAGE = ("From: alice@example.org\r\nTo: zoë@remote.test\r\nSubject: héllo\r\n"
                "Message-ID: <interop2@example.org>\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n\r\nbody\r\n").encode()


def test_delivery_to_postfix(data_dir, monkeypatch):
    with make_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch) as world:
        alice = world.add_mailbox("alice@example.org")
        world.add_dkim_key("example.org", "rsa1", "rsa-sha256")
        world.add_dkim_key("example.org", "ed1", "ed25519-sha256")
        world.dns.add("remote.test", "MX", "10 mx.remote.test")
        world.dns.add("mx.remote.test", "A", "127.0.0.2")
        with PostfixPeer("127.0.0.2", world.port, "remote.test", ["bob", "carol", "zoë"], reject_addresses=["nobody"]) \
                as postfix:
            # Postfix offers DSN: NOTIFY, ORCPT, RET and ENVID go along (RFC 3461 §4); Postfix refuses
            # malformed ones (501/555), which would bounce carol.
            carol = EnvelopeRecipient("carol@remote.test", notify="FAILURE,DELAY", orcpt="rfc822;Carol+x@remote.test")
            world.submit("alice@example.org", ["bob@remote.test", carol, "nobody@remote.test"],
                         MESSAGE, body_type="8BITMIME", dsn_ret="HDRS", dsn_envid="env=42")
            # RFC 6531: an internationalised address goes with MAIL ... SMTPUTF8 (Postfix offers it).
            world.submit("alice@example.org", ["zoë@remote.test"], UTF8_MESSAGE, smtputf8=True, body_type="8BITMIME")
            with world.running():
                poll(lambda: postfix.delivered("bob") and postfix.delivered("carol") and postfix.delivered("zoë"),
                     "Postfix delivered all three", timeout=30)
                poll(lambda: world.inbox_or_empty(alice), "bounce for the rejected recipient", timeout=30)
                poll(lambda: not world.queue(), "queue empty")
            # smtpd's disconnect lines count the commands it saw: TLS on every connection, BDAT per message.
            summaries = poll(lambda: [line for line in postfix.log().splitlines()
                                      if "disconnect from" in line and "bdat=" in line], "smtpd summary lines")
            delivered = postfix.delivered("bob")[0]
            delivered_utf8 = postfix.delivered("zoë")[0]

        assert all("starttls=1" in line for line in summaries), summaries
        assert sum(int(re.search(r"bdat=(\d+)", line).group(1)) for line in summaries) == 2, summaries
        assert "Delivered-To: zoë@remote.test".encode() in delivered_utf8
        assert dkim.verify_all(delivered_utf8, Resolver([world.dns.nameserver], timeout=1.0))[0].result == "pass"
        assert b"using TLSv1." in delivered  # Postfix records the TLS session in its Received field
        assert "Grüße aus dem Test.\n.a line with a leading dot".encode() in delivered.replace(b"\r\n", b"\n")
        resolver = Resolver([world.dns.nameserver], timeout=1.0)
        # Postfix adds its own Received field on top; both of our signatures still verify.
        results = dkim.verify_all(delivered, resolver)
        assert [(r.result, r.domain, r.selector) for r in results] == [
            ("pass", "example.org", "rsa1"), ("pass", "example.org", "ed1")]

        report = email.message_from_bytes(world.inbox(alice)[0], policy=email.policy.default)
        assert report.get_content_type() == "multipart/report"
        recipient = report.get_payload()[1].get_payload()[1]
        assert recipient["Final-Recipient"] == "rfc822; nobody@remote.test"
        assert recipient["Status"] == "5.1.1"
        assert "no such user here" in recipient["Diagnostic-Code"]
        assert "(TLS TLSv1." in recipient["Diagnostic-Code"]  # the STARTTLS result is recorded with the reply
        assert recipient["Remote-MTA"] == "dns; mx.remote.test"
