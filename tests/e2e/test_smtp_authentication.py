"""Inbound SPF, DKIM and DMARC on the MX listener, with the sender domains served by a loopback DNS
server: the verdicts appear in Authentication-Results, DMARC reject refuses the message, quarantine
files it in the recipient's Spam folder, forged results claiming our name are removed."""

from __future__ import annotations

import re

import pytest
from smtp_harness import smtp_world_fixture  # noqa: F401 - pytest fixture "smtp_world"

from courriel import dkim
from courriel.queue import spool
from courriel.queue.local import LocalDelivery


def message(sender: str, extra: bytes = b"") -> bytes:
    return (f"From: Sender <{sender}>\r\nTo: alice@example.org\r\nSubject: authenticated?\r\n"
            f"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{sender.replace('@', '.')}@test>\r\n"
            ).encode() + extra + b"\r\nBody.\r\n"


@pytest.fixture
def world(smtp_world, tmp_path):
    smtp_world.mailbox_id = smtp_world.add_mailbox("alice@example.org")
    key_path = tmp_path / "signer.pem"
    public = dkim.generate_key(key_path, "ed25519-sha256")
    smtp_world.signer = dkim.SigningKey.load(key_path, "signed.test", "s1", "ed25519-sha256")
    zone = smtp_world.dns
    zone.add("signed.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    zone.add("s1._domainkey.signed.test", "TXT", f"v=DKIM1; k=ed25519; p={public}")
    zone.add("_dmarc.signed.test", "TXT", "v=DMARC1; p=reject")
    zone.add("strict.test", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    zone.add("_dmarc.strict.test", "TXT", "v=DMARC1; p=reject")
    zone.add("spammy.test", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    zone.add("_dmarc.spammy.test", "TXT", "v=DMARC1; p=quarantine")
    return smtp_world


def send(world, sender: str, data: bytes) -> tuple[int, bytes]:
    with world.client("mx") as client:
        client.ehlo("client.example")
        assert client.mail(sender)[0] == 250
        assert client.rcpt("alice@example.org")[0] == 250
        return client.data(data)


def results_field(stored: bytes) -> str:
    match = re.search(rb"Authentication-Results: (.*?)\r\n(?![ \t])", stored, re.DOTALL)
    assert match, stored[:500]
    return re.sub(r"\s+", " ", match.group(1).decode())


def test_spf_dkim_dmarc_pass(world):
    signed = dkim.sign(message("news@signed.test"), [world.signer])
    code, _ = send(world, "news@signed.test", signed)
    assert code == 250
    (entry,) = world.queued()
    field = results_field(world.content(entry))
    assert field.startswith("mx.example.org;")
    assert "spf=pass smtp.mailfrom=signed.test" in field
    assert re.search(r"dkim=pass header\.d=signed\.test .*header\.s=s1", field)
    assert "dmarc=pass" in field and "header.from=signed.test" in field
    assert entry.recipients[0].folder is None


def test_dmarc_reject_refuses_the_message(world):
    code, text = send(world, "ceo@strict.test", message("ceo@strict.test"))
    assert (code, text) == (550, b"5.7.1 Rejected by the sender domain's DMARC policy")
    assert world.queued() == []


def test_dmarc_quarantine_files_in_spam(world):
    code, _ = send(world, "offers@spammy.test", message("offers@spammy.test"))
    assert code == 250
    (entry,) = world.queued()
    field = results_field(world.content(entry))
    assert "spf=fail" in field and "dkim=none" in field and "dmarc=fail" in field
    assert [r.folder for r in entry.recipients] == ["Spam"]
    # Local delivery honours the folder chosen at the SMTP layer.
    (leased,) = spool.lease(world.db, "test", 1)
    result = LocalDelivery(world.store).deliver(leased, leased.recipients[0], (world.mailbox_id,))
    assert result.state == "delivered"
    store = world.store
    spam = store.get_folder(world.mailbox_id, "Spam")
    inbox = store.get_folder(world.mailbox_id, "INBOX")
    assert len(store.list_messages(spam.id)) == 1 and store.list_messages(inbox.id) == []


def test_forged_results_are_replaced_and_dkim_failures_reported(world):
    forged = b"Authentication-Results: mx.example.org; dmarc=pass header.from=signed.test\r\n"
    tampered = dkim.sign(message("news@signed.test", forged), [world.signer]).replace(b"Body.", b"B0dy.")
    code, _ = send(world, "news@signed.test", tampered)
    assert code == 250  # SPF still passes aligned, so DMARC passes
    (entry,) = world.queued()
    stored = world.content(entry)
    assert stored.count(b"Authentication-Results: mx.example.org;") == 1
    field = results_field(stored)
    assert "dkim=fail" in field and "spf=pass" in field and "dmarc=pass" in field
