"""RCPT outcomes, the open-relay suite, sender ownership and login throttling, over loopback sockets."""

from __future__ import annotations

import base64
import contextlib
import smtplib
import socket

import pytest
from smtp_harness import (
    insecure_context,
    make_smtp_world,
    smtp_world_fixture,  # noqa: F401 - pytest fixture "smtp_world"
)

from courriel.blobs import BlobStore
from courriel.smtp.policy import SessionLimits
from courriel.store import Store

PASSWORD = "Correct horse 42"
BOB_PASSWORD = "Battery staple 77"


def message(sender: str) -> bytes:
    return f"From: <{sender}>\r\nTo: <someone@remote.test>\r\nSubject: policy\r\n\r\nHi.\r\n".encode()


def rcpt_replies(world, recipients: list[str], listener: str = "mx", sender: str = "bob@remote.test",
                 source: str | None = None) -> list[tuple[int, str]]:
    with world.client(listener, source) as client:
        client.ehlo("client.example")
        assert client.mail(sender)[0] == 250
        return [(code, text.decode()) for code, text in (client.rcpt(r) for r in recipients)]


@pytest.fixture
def registry_world(smtp_world):
    world = smtp_world
    world.ids = {
        "alice": world.add_mailbox("alice@example.org", password=PASSWORD),
        "bob": world.add_mailbox("bob@example.org", password=BOB_PASSWORD),
        "carol": world.add_mailbox("carol@example.org", enabled=False),
        "full": world.add_mailbox("full@example.org", quota_bytes=100),
        "counted": world.add_mailbox("counted@example.org", quota_messages=1),  # RFC 9208 §5.2 MESSAGE
    }
    world.add_alias("sales@example.org", ["alice@example.org"])
    world.add_alias("postmaster@example.org", ["alice@example.org"])
    world.add_alias("outside@example.org", ["friend@remote.test"])
    world.add_group("team@example.org", [world.ids["alice"], world.ids["bob"]])
    world.domain_id("catchall.test")
    world.set_catch_all("catchall.test", "bob@example.org")
    store = Store(world.db, BlobStore(world.config.blob_dir, world.db), world.config.run_dir)
    store.deliver(world.ids["full"], b"Subject: filler\r\n\r\n" + b"x" * 200 + b"\r\n")
    store.deliver(world.ids["counted"], b"Subject: the one message allowed\r\n\r\nx\r\n")
    return world


RCPT_OUTCOMES = [
    ("alice@example.org", 250, "2.1.5", "alice"),
    ("ALICE@Example.ORG", 250, "2.1.5", "alice"),
    ("sales@example.org", 250, "2.1.5", "alice"),  # alias
    ("alice+news@example.org", 250, "2.1.5", "alice"),  # sub-address
    ("anything@catchall.test", 250, "2.1.5", "bob"),  # catch-all
    ("team@example.org", 250, "2.1.5", None),  # group: two mailboxes, resolved again at delivery
    ("outside@example.org", 250, "2.1.5", None),  # alias forwarding outside
    ("Postmaster", 250, "2.1.5", "alice"),  # RFC 5321 §4.1.1.3
    ("nobody@example.org", 550, "5.1.1", None),
    ("carol@example.org", 550, "5.2.1", None),
    ("full@example.org", 452, "4.2.2", None),
    ("counted@example.org", 452, "4.2.2", None),  # at its message limit: full, like the byte limit
    ("someone@remote.test", 554, "5.7.1", None),
    ("not-an-address", 553, "5.1.3", None),
]


@pytest.mark.parametrize(("address", "code", "status", "mailbox"), RCPT_OUTCOMES)
def test_every_rcpt_outcome(registry_world, address, code, status, mailbox):
    world = registry_world
    with world.client("mx") as client:
        client.ehlo("client.example")
        assert client.mail("sender@remote.test")[0] == 250
        reply = client.rcpt(address)
        assert (reply[0], reply[1].decode()[:5]) == (code, status)
        if code == 250:
            assert client.data(message("sender@remote.test"))[0] == 250
    if code == 250:
        (entry,) = world.queued()
        (recipient,) = entry.recipients
        assert recipient.mailbox_id == (world.ids[mailbox] if mailbox else None)
    else:
        assert world.queued() == []


def test_too_many_recipients(data_dir, monkeypatch):
    with make_smtp_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch,
                         limits=SessionLimits(max_recipients=2)) as world:
        world.domain_id("example.org", default=True)
        for name in ("a", "b", "c"):
            world.add_mailbox(f"{name}@example.org")
        replies = rcpt_replies(world, ["a@example.org", "b@example.org", "c@example.org"])
        assert [(code, text[:5]) for code, text in replies] == [(250, "2.1.5"), (250, "2.1.5"), (452, "4.5.3")]


# ----------------------------------------------------------------------------- open relay


def test_no_relay_for_unauthenticated_clients_on_any_listener(registry_world):
    world = registry_world
    assert rcpt_replies(world, ["victim@remote.test"]) == [(554, "5.7.1 Relay access denied")]
    # Submission listeners want AUTH before MAIL (RFC 6409 §4.3).
    with world.client("submission") as client:
        client.ehlo("client.example")
        client.starttls(context=insecure_context())
        client.ehlo("client.example")
        assert client.mail("bob@remote.test") == (530, b"5.7.0 Authentication required")
        assert client.rcpt("victim@remote.test")[0] == 503
    with world.client("submissions") as client:
        client.ehlo("client.example")
        assert client.mail("bob@remote.test")[0] == 530
    assert world.queued() == []


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_no_relay_from_ipv6_loopback(data_dir, monkeypatch):
    with make_smtp_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch,
                         hosts={"mx": "::1"}) as world:
        world.domain_id("example.org", default=True)
        client = smtplib.SMTP("::1", world.ports["mx"], timeout=10)
        with client:
            client.ehlo("client.example")
            assert client.mail("bob@remote.test")[0] == 250
            assert client.rcpt("victim@remote.test") == (554, b"5.7.1 Relay access denied")


def test_trusted_network_may_relay_only_when_configured(data_dir, monkeypatch):
    with make_smtp_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch,
                         settings={"smtp_trusted_networks": "127.0.0.2/32"}) as world:
        world.domain_id("example.org", default=True)
        assert rcpt_replies(world, ["victim@remote.test"], source="127.0.0.1")[0][0] == 554
        assert rcpt_replies(world, ["friend@remote.test"], source="127.0.0.2")[0][0] == 250


def test_forged_local_sender_on_mx(registry_world):
    with registry_world.client("mx") as client:
        client.ehlo("client.example")
        assert client.mail("alice@example.org") == (
            553, b"5.7.1 Sender address is local: authenticate on the submission port")
        assert client.mail("")[0] == 250  # the null reverse-path is always allowed (RFC 5321 §4.5.5)


def test_auth_refused_before_tls_and_on_mx(registry_world):
    world = registry_world
    with world.client("submission") as client:
        client.ehlo("client.example")
        assert client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUub3JnAENvcnJlY3QgaG9yc2UgNDI=") == (
            530, b"5.7.0 Must issue a STARTTLS command first")
    with world.client("mx") as client:
        client.ehlo("client.example")
        client.starttls(context=insecure_context())
        client.ehlo("client.example")
        assert client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUub3JnAENvcnJlY3QgaG9yc2UgNDI=")[0] == 503


def test_plaintext_auth_when_the_operator_allows_it(data_dir, monkeypatch):
    with make_smtp_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch,
                         settings={"tls_allow_plaintext_auth": "true"}) as world:
        world.add_mailbox("alice@example.org", password=PASSWORD)
        with world.client("submission") as client:
            client.ehlo("client.example")
            assert "auth" in client.esmtp_features
            assert client.login("alice@example.org", PASSWORD)[0] == 235


def test_wrong_password_is_535(registry_world):
    with registry_world.client("submissions") as client:
        client.ehlo("client.example")
        client.user, client.password = "alice@example.org", "wrong password"
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            client.auth("PLAIN", client.auth_plain)
        assert (failure.value.smtp_code, failure.value.smtp_error) == (535, b"5.7.8 Authentication credentials invalid")


OWNERSHIP_CASES = [
    # envelope sender, From header, MAIL reply, end-of-data reply
    ("alice@example.org", "alice@example.org", 250, 250),
    ("alice+lists@example.org", "alice@example.org", 250, 250),  # sub-address of her own
    ("sales@example.org", "sales@example.org", 250, 250),  # alias leading to her
    ("team@example.org", "team@example.org", 250, 250),  # group whose members may send
    ("", "alice@example.org", 250, 250),
    ("bob@example.org", "alice@example.org", 553, None),
    ("someone@remote.test", "alice@example.org", 553, None),
    ("alice@example.org", "bob@example.org", 250, 553),
    ("alice@example.org", "ceo@remote.test", 250, 553),
]


@pytest.mark.parametrize(("sender", "header_from", "mail_code", "data_code"), OWNERSHIP_CASES)
def test_submission_sender_and_from_must_be_owned(registry_world, sender, header_from, mail_code, data_code):
    world = registry_world
    with world.logged_in("alice@example.org", PASSWORD, "submissions") as client:
        code, text = client.mail(sender)
        assert code == mail_code
        if mail_code != 250:
            assert text.startswith(b"5.7.1 ")
            return
        assert client.rcpt("friend@remote.test")[0] == 250
        code, text = client.data(message(header_from))
        assert code == data_code
        if data_code == 553:
            assert text == b"5.7.1 From header address not owned by the authenticated user"
    assert len(world.queued()) == (1 if data_code == 250 else 0)


# ----------------------------------------------------------------------------- brute force


def auth_attempt(client: smtplib.SMTP, user: str, password: str) -> int:
    client.user, client.password = user, password
    try:
        return client.auth("PLAIN", client.auth_plain)[0]
    except smtplib.SMTPAuthenticationError as failure:
        return failure.smtp_code


def test_third_failed_auth_in_one_session_closes_it(registry_world):
    """`[smtp] max_auth_failures` (3): the third 535 is followed by 421 and the end of the session."""
    with registry_world.raw("submissions") as client:
        assert client.command("EHLO client.example")[0] == 250
        wrong = base64.b64encode(b"\0alice@example.org\0wrong password").decode("ascii")
        for _ in range(3):
            assert client.command(f"AUTH PLAIN {wrong}") == (535, "5.7.8 Authentication credentials invalid")
        assert client.reply() == (421, "4.7.0 Too many failed authentications, closing connection")
        assert client.closed()


def test_brute_force_is_throttled_and_other_accounts_still_log_in(registry_world):
    world = registry_world
    codes: list[int] = []
    locked_out_with_right_password = None
    client = None
    try:
        for attempt in range(50):
            if client is None:
                client = world.client("submissions", source="127.0.0.1")
                client.ehlo("attacker.example")
            try:
                code = auth_attempt(client, "alice@example.org", f"guess {attempt}")
            except smtplib.SMTPServerDisconnected:
                code = 421
            if code == 421:  # too many errors: 421 and disconnected; the attacker reconnects
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    client.close()
                client = None
                continue
            codes.append(code)
            if codes[-1] == 454 and locked_out_with_right_password is None:
                # The account is blocked now: even the right password, from elsewhere, is refused.
                with world.client("submissions", source="127.0.0.3") as other:
                    other.ehlo("owner.example")
                    locked_out_with_right_password = auth_attempt(other, "alice@example.org", PASSWORD)
    finally:
        if client is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.close()
    assert set(codes) <= {535, 454} and 454 in codes, codes
    assert codes[:5] == [535] * 5  # a few honest typos cost nothing
    assert locked_out_with_right_password == 454
    # Another account, from another client address, logs in as usual.
    with world.logged_in("bob@example.org", BOB_PASSWORD, "submissions", source="127.0.0.2") as client:
        assert client.mail("bob@example.org")[0] == 250
