"""Open-relay probes on the MX listener over a real loopback socket: a client from outside may only
deliver to local recipients, whatever address syntax it tries (RFC 5321 §3.6 source routes,
§4.1.2 quoted local parts, the percent hack of RFC 1123 §5.2.16, an `@` inside the local part)."""

from __future__ import annotations

import pytest
from smtp_harness import smtp_world_fixture  # noqa: F401 - pytest fixture "smtp_world"


@pytest.mark.parametrize("recipient", [
    "<bob%remote.test@example.org>",
    "<@example.org:bob@remote.test>",
    "<\"bob@remote.test\"@example.org>",
    "<bob@remote.test@example.org>",
    "<bob@remote.test>",
    "<bob@[127.0.0.1]>",
    "<bob@remote.test.>",
    "<\"bob%remote.test\"@example.org>",
])
def test_mx_relays_nothing(smtp_world, recipient):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("MAIL FROM:<eve@remote.test>")[0] == 250
        code, text = client.command(f"RCPT TO:{recipient}")
        assert code >= 500, (recipient, code, text)
    assert smtp_world.queued() == []


def test_bare_postmaster_is_local_and_relays_nothing(smtp_world):
    """RFC 5321 §4.1.1.3: `<Postmaster>` without a domain is accepted, for the local postmaster only."""
    smtp_world.add_mailbox("postmaster@example.org")
    with smtp_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("MAIL FROM:<eve@remote.test>")[0] == 250
        code, text = client.command("RCPT TO:<Postmaster>")
        assert code == 250, text
        assert client.command("DATA")[0] == 354
        client.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n")
        assert client.reply()[0] == 250
    entry, = smtp_world.queued()
    assert [r.address.lower() for r in entry.recipients] == ["postmaster@example.org"]


def test_null_sender_many_recipients(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("MAIL FROM:<>")[0] == 250
        codes = [client.command(f"RCPT TO:<user{n}@remote.test>")[0] for n in range(5)]
        assert all(code >= 500 for code in codes), codes


@pytest.mark.parametrize("sender", ["<alice@example.org>", "<ALICE@EXAMPLE.ORG>", "<alice@example.org.>",
                                    "<nobody@Example.Org>"])
def test_mx_refuses_unauthenticated_local_sender(smtp_world, sender):
    """A local domain's own users send through submission: on MX, from outside, a sender in a
    local domain (any spelling) is refused at MAIL, so nobody forges it to local users."""
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        code, text = client.command(f"MAIL FROM:{sender}")
        assert code == 553, text
    assert smtp_world.queued() == []


@pytest.mark.parametrize("sender", ["<bob@example.org>", "<alice@xn--exmple-cua.org>", "<alice@remote.test>"])
def test_submission_refuses_senders_the_login_does_not_own(smtp_world, sender):
    """Signed in as alice, another local address, an IDN homograph of her domain (exаmple.org with
    a Cyrillic а) or a foreign address is refused at MAIL; her own address is accepted."""
    import base64
    smtp_world.add_mailbox("alice@example.org", password="Sekrit horse 42 zq")
    smtp_world.add_mailbox("bob@example.org")
    with smtp_world.raw("submissions") as client:
        assert client.command("EHLO client.example")[0] == 250
        blob = base64.b64encode(b"\0alice@example.org\0Sekrit horse 42 zq").decode()
        assert client.command(f"AUTH PLAIN {blob}")[0] == 235
        code, text = client.command(f"MAIL FROM:{sender}")
        assert code == 553, text
        assert client.command("MAIL FROM:<alice@example.org>")[0] == 250
