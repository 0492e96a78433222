"""Pure SMTP policy: MAIL/RCPT argument parsing, relay, sender and recipient decisions (tables)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from courriel.smtp import policy, replies
from courriel.smtp.policy import MailCommand, RcptCommand, RecipientFacts
from courriel.smtp.replies import Reply

SMTP_DIR = Path(__file__).resolve().parents[2] / "smtp"
MAX = 35 * 1024 * 1024


@pytest.mark.parametrize("module", ["policy.py", "replies.py", "received.py"])
def test_pure_modules_import_no_io(module):
    """ARCHITECTURE §4 ring 0: no IO, database, clock or library imports."""
    source = (SMTP_DIR / module).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    forbidden = {"socket", "asyncio", "sqlalchemy", "subprocess", "os", "time", "threading", "aiosmtpd", "ssl"}
    assert not {name.split(".")[0] for name in imported} & forbidden
    assert all(not name.startswith("courriel") or name in ("courriel.smtp", "courriel.smtp.replies")
               for name in imported), imported
    assert ".now(" not in source and "time.time" not in source


@pytest.mark.parametrize(("argument", "expected"), [
    ("FROM:<alice@example.org>", MailCommand("alice@example.org")),
    ("FROM:<>", MailCommand("")),
    ("from:<alice@example.org>", MailCommand("alice@example.org")),
    ("FROM: <alice@example.org>", MailCommand("alice@example.org")),
    ("FROM:alice@example.org", MailCommand("alice@example.org")),
    ("FROM:<@relay.example:alice@example.org>", MailCommand("alice@example.org")),
    ("FROM:<a@example.org> SIZE=1000 BODY=8bitmime", MailCommand("a@example.org", size=1000, body="8BITMIME")),
    ("FROM:<a@example.org> RET=hdrs ENVID=QQ+2Bx", MailCommand("a@example.org", ret="HDRS", envid="QQ+x")),
    ("FROM:<a@example.org> AUTH=<>", MailCommand("a@example.org", auth="<>")),
    ("FROM:<jøran@exämple.org> SMTPUTF8", MailCommand("jøran@exämple.org", smtputf8=True)),
])
def test_parse_mail_accepts(argument, expected):
    assert policy.parse_mail(argument, extended=True, max_size=MAX) == expected


@pytest.mark.parametrize(("argument", "code", "status"), [
    ("", 501, "5.5.4"),
    ("TO:<a@example.org>", 501, "5.5.4"),
    ("FROM:<a@example.org", 553, "5.1.3"),
    ("FROM:<no-at-sign>", 553, "5.1.3"),
    ("FROM:<a b@example.org>", 553, "5.1.3"),
    ("FROM:<a@example.org>x", 553, "5.1.3"),
    ("FROM:<" + "a" * 300 + "@example.org>", 553, "5.1.3"),
    ("FROM:<a@example.org> SIZE=99999999999", 552, "5.3.4"),
    ("FROM:<a@example.org> SIZE=big", 501, "5.5.4"),
    ("FROM:<a@example.org> BODY=BINARYMIME", 501, "5.5.4"),
    ("FROM:<a@example.org> RET=ALL", 501, "5.5.4"),
    ("FROM:<a@example.org> ENVID=" + "x" * 101, 501, "5.5.4"),
    ("FROM:<a@example.org> ENVID=bad+zz", 501, "5.5.4"),
    ("FROM:<a@example.org> SMTPUTF8=yes", 501, "5.5.4"),
    ("FROM:<a@example.org> SIZE=1 SIZE=2", 501, "5.5.4"),
    ("FROM:<a@example.org> XFOO=1", 555, "5.5.4"),
    ("FROM:<jøran@example.org>", 553, "5.6.7"),
    ("FROM:<a\udcff@example.org> SMTPUTF8", 553, "5.1.3"),  # a byte that was not UTF-8
])
def test_parse_mail_refuses(argument, code, status):
    reply = policy.parse_mail(argument, extended=True, max_size=MAX)
    assert isinstance(reply, Reply)
    assert (reply.code, reply.status) == (code, status)


def test_parameters_need_ehlo():
    reply = policy.parse_mail("FROM:<a@example.org> SIZE=10", extended=False, max_size=MAX)
    assert isinstance(reply, Reply) and reply.code == 501
    assert policy.parse_mail("FROM:<a@example.org>", extended=False, max_size=MAX) == MailCommand("a@example.org")


@pytest.mark.parametrize(("argument", "smtputf8", "expected"), [
    ("TO:<bob@example.org>", False, RcptCommand("bob@example.org")),
    ("TO:<Postmaster>", False, RcptCommand("postmaster@example.org")),
    ("TO:<bob@example.org> NOTIFY=success,delay", False, RcptCommand("bob@example.org", notify="SUCCESS,DELAY")),
    ("TO:<bob@example.org> NOTIFY=NEVER", False, RcptCommand("bob@example.org", notify="NEVER")),
    ("TO:<bob@example.org> ORCPT=rfc822;bob+2Btag@example.org", False,
     RcptCommand("bob@example.org", orcpt="rfc822;bob+tag@example.org")),
    ("TO:<δοκιμή@example.org>", True, RcptCommand("δοκιμή@example.org")),
])
def test_parse_rcpt_accepts(argument, smtputf8, expected):
    assert policy.parse_rcpt(argument, extended=True, smtputf8=smtputf8, postmaster_domain="example.org") == expected


@pytest.mark.parametrize(("argument", "code", "status"), [
    ("TO:<>", 553, "5.1.3"),
    ("FROM:<bob@example.org>", 501, "5.5.4"),
    ("TO:<bob@example.org> NOTIFY=NEVER,SUCCESS", 501, "5.5.4"),
    ("TO:<bob@example.org> NOTIFY=SOMETIMES", 501, "5.5.4"),
    ("TO:<bob@example.org> ORCPT=bob@example.org", 501, "5.5.4"),
    ("TO:<bob@example.org> ORCPT=rfc822;", 501, "5.5.4"),
    ("TO:<bob@example.org> XFOO", 555, "5.5.4"),
    ("TO:<δοκιμή@example.org>", 553, "5.6.7"),
])
def test_parse_rcpt_refuses(argument, code, status):
    reply = policy.parse_rcpt(argument, extended=True, smtputf8=False, postmaster_domain="example.org")
    assert isinstance(reply, Reply)
    assert (reply.code, reply.status) == (code, status)


@pytest.mark.parametrize(("text", "decoded"), [
    ("plain", "plain"), ("a+2Bb", "a+b"), ("+3D", "="), ("bad+2", None), ("bad+zz", None), ("sp ace", None),
    ("ctl+0A", None), ("", ""),
])
def test_xtext(text, decoded):
    assert policy.decode_xtext(text) == decoded


@pytest.mark.parametrize(("client", "networks", "trusted"), [
    ("127.0.0.1", [], False),  # loopback is not trusted by default
    ("::1", [], False),
    ("10.1.2.3", [], False),
    ("192.168.1.5", [], False),
    ("fe80::1%eth0", [], False),
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),
    ("2001:db8::5", ["2001:db8::/32"], True),
    ("2001:db9::5", ["2001:db8::/32"], False),
    ("10.1.2.3", ["not a network"], False),
    (None, ["0.0.0.0/0"], False),
])
def test_trusted_networks(client, networks, trusted):
    assert policy.is_trusted(client, networks) is trusted


SENDER_CASES = [
    # listener, authenticated, trusted, sender, local domain, owned -> reply
    ("submission", False, False, "alice@example.org", True, False, replies.AUTH_REQUIRED),
    ("submissions", False, True, "alice@example.org", True, False, replies.AUTH_REQUIRED),
    ("submission", True, False, "alice@example.org", True, True, replies.SENDER_OK),
    ("submission", True, False, "bob@example.org", True, False, replies.SENDER_NOT_OWNED),
    ("submission", True, False, "someone@gmail.example", False, False, replies.SENDER_NOT_OWNED),
    ("submission", True, False, "", False, False, replies.SENDER_OK),
    ("mx", False, False, "someone@remote.test", False, False, replies.SENDER_OK),
    ("mx", False, False, "", False, False, replies.SENDER_OK),
    ("mx", False, False, "alice@example.org", True, False, replies.LOCAL_SENDER_NEEDS_AUTH),
    ("mx", False, True, "alice@example.org", True, False, replies.SENDER_OK),
]


@pytest.mark.parametrize(("listener", "authenticated", "trusted", "sender", "local", "owned", "expected"),
                         SENDER_CASES)
def test_sender_reply(listener, authenticated, trusted, sender, local, owned, expected):
    assert policy.sender_reply(listener=listener, authenticated=authenticated, trusted=trusted, sender=sender,
                               sender_domain_is_local=local, sender_owned=owned) == expected


RECIPIENT_CASES = [
    # facts, accepted so far, relay allowed -> (code, status)
    (RecipientFacts("deliver"), 0, False, (250, "2.1.5")),
    (RecipientFacts("deliver", over_quota=True), 0, False, (452, "4.2.2")),
    (RecipientFacts("reject", "unknown_recipient"), 0, False, (550, "5.1.1")),
    (RecipientFacts("reject", "mailbox_disabled"), 0, False, (550, "5.2.1")),
    (RecipientFacts("reject", "invalid_address"), 0, False, (553, "5.1.3")),
    (RecipientFacts("reject", "alias_loop"), 0, False, (550, "5.4.6")),
    (RecipientFacts("reject", "domain_unverified"), 0, False, (550, "5.1.2")),
    (RecipientFacts("reject", "something new"), 0, False, (550, "5.1.1")),
    (RecipientFacts("remote"), 0, False, (554, "5.7.1")),
    (RecipientFacts("remote"), 0, True, (250, "2.1.5")),
    (RecipientFacts("deliver"), 100, True, (452, "4.5.3")),
    (RecipientFacts("remote"), 99, True, (250, "2.1.5")),
]


@pytest.mark.parametrize(("facts", "so_far", "relay", "expected"), RECIPIENT_CASES)
def test_recipient_reply(facts, so_far, relay, expected):
    reply = policy.recipient_reply(facts, accepted_so_far=so_far, max_recipients=100, relay_allowed=relay)
    assert (reply.code, reply.status) == expected


def test_relay_needs_authentication_or_trust():
    assert not policy.may_relay(authenticated=False, trusted=False)
    assert policy.may_relay(authenticated=True, trusted=False)
    assert policy.may_relay(authenticated=False, trusted=True)


@pytest.mark.parametrize(("disposition", "authenticated", "action"), [
    ("reject", False, "reject"), ("quarantine", False, "quarantine"), ("none", False, "accept"),
    ("reject", True, "accept"),
])
def test_dmarc_action(disposition, authenticated, action):
    assert policy.dmarc_action(disposition, authenticated=authenticated) == action
