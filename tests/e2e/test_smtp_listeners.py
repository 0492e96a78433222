"""The three SMTP listeners over real loopback sockets: EHLO capabilities, plain, STARTTLS and
implicit TLS transactions, pipelining, BDAT, SMTPUTF8, SIZE, DSN parameters, internal errors
and the limits that disconnect misbehaving clients."""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import time

import pytest
from smtp_harness import (
    RawClient,
    insecure_context,
    make_smtp_world,
    poll,
    smtp_world_fixture,  # noqa: F401 - pytest fixture "smtp_world"
)

from courriel import registry
from courriel.queue import spool
from courriel.smtp.policy import SessionLimits

PASSWORD = "Correct horse 42"
MESSAGE = (b"From: Bob <bob@remote.test>\r\nTo: alice@example.org\r\nSubject: hello\r\n"
           b"Message-ID: <m1@remote.test>\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n\r\nHello Alice.\r\n")
OWN_MESSAGE = b"From: Alice <alice@example.org>\r\nTo: bob@remote.test\r\nSubject: out\r\n\r\nHi Bob.\r\n"
COMMON = {"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"}


def keywords(client: smtplib.SMTP) -> set[str]:
    return {name.upper() for name in client.esmtp_features}


def only_entry(world) -> spool.QueuedMessage:
    entries = world.queued()
    assert len(entries) == 1, entries
    return entries[0]


# ----------------------------------------------------------------------------- capabilities


def test_ehlo_capabilities_per_listener(smtp_world):
    with smtp_world.client("mx") as mx:
        mx.ehlo("client.example")
        assert COMMON | {"STARTTLS"} <= keywords(mx)
        assert "AUTH" not in keywords(mx)
        assert mx.esmtp_features["size"] == str(35 * 1024 * 1024)
        mx.starttls(context=insecure_context())
        mx.ehlo("client.example")
        assert "STARTTLS" not in keywords(mx) and "AUTH" not in keywords(mx)
    with smtp_world.client("submission") as submission:
        submission.ehlo("client.example")
        assert "STARTTLS" in keywords(submission) and "AUTH" not in keywords(submission)
        submission.starttls(context=insecure_context())
        submission.ehlo("client.example")
        assert COMMON | {"AUTH"} <= keywords(submission)
        assert set(submission.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        assert submission.docmd("STARTTLS")[0] == 503
    with smtp_world.client("submissions") as submissions:
        submissions.ehlo("client.example")
        assert COMMON | {"AUTH"} <= keywords(submissions)
        assert "STARTTLS" not in keywords(submissions)


def test_enhanced_status_codes_on_errors_and_helo_without_them(smtp_world):
    with smtp_world.raw("mx") as client:
        code, text = client.command("HELO client.example")
        assert code == 250 and not re.match(r"\d\.\d", text)  # RFC 2034 §3
        assert client.command("FOO") == (500, '5.5.2 command "FOO" not recognized')
        assert client.command("RCPT TO:<alice@example.org>") == (503, "5.5.1 Need MAIL command first")
        assert client.command("NOOP") == (250, "2.0.0 OK")
        assert client.command("QUIT")[0] == 221


# ----------------------------------------------------------------------------- transactions


def test_plain_mx_transaction_is_queued_with_trace_fields(smtp_world, caplog):
    caplog.set_level("INFO", logger="courriel.smtp")
    mailbox_id = smtp_world.add_mailbox("alice@example.org")
    with smtp_world.client("mx") as client:
        client.ehlo("client.example")
        assert client.mail("bob@remote.test") == (250, b"2.1.0 Sender OK")
        assert client.rcpt("alice@example.org") == (250, b"2.1.5 Recipient OK")
        code, text = client.data(MESSAGE)
    entry = only_entry(smtp_world)
    assert (code, text.decode()) == (250, f"2.0.0 queued as {entry.id}")
    assert (entry.sender, entry.source, entry.client_address, entry.client_helo) == (
        "bob@remote.test", "mx", "127.0.0.1", "client.example")
    assert [(r.address, r.mailbox_id, r.folder) for r in entry.recipients] == [("alice@example.org", mailbox_id, None)]
    stored = smtp_world.content(entry)
    assert stored.startswith(b"Received: from client.example ([127.0.0.1])\r\n\tby mx.example.org\r\n\twith ESMTP\r\n"
                             b"\tfor <alice@example.org>;\r\n")
    assert b"\r\nAuthentication-Results: mx.example.org;" in stored
    assert stored.endswith(MESSAGE)
    # One log line per transaction, with the queue id (like Postfix's).
    (line,) = [r for r in caplog.records if r.name == "courriel.smtp" and getattr(r, "queue_id", None) == entry.id]
    assert (line.getMessage(), line.listener, line.client, line.sender, line.recipients) == (
        "message queued", "mx", "127.0.0.1", "bob@remote.test", 1)


def test_transaction_on_each_database_backend(data_dir, db_url, monkeypatch):
    with make_smtp_world(data_dir, db_url, monkeypatch) as world:
        world.domain_id("example.org", default=True)
        alice = world.add_mailbox("alice@example.org", password=PASSWORD)
        world.add_alias("sales@example.org", ["alice@example.org"])
        with world.client("mx") as client:
            client.ehlo("client.example")
            assert client.mail("bob@remote.test")[0] == 250
            assert client.rcpt("sales@example.org")[0] == 250
            assert client.rcpt("nobody@example.org")[0] == 550
            assert client.data(MESSAGE)[0] == 250
        with world.logged_in("alice@example.org", PASSWORD, "submissions") as client:
            assert client.sendmail("sales@example.org", ["bob@remote.test"], OWN_MESSAGE) == {}
        entries = world.queued()
        assert sorted((e.source, e.recipients[0].address, e.recipients[0].mailbox_id) for e in entries) == [
            ("mx", "sales@example.org", alice), ("submission", "bob@remote.test", None)]


def test_received_names_the_forward_confirmed_client(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    smtp_world.dns.add_ptr("127.0.0.1", "relay.client.example")
    smtp_world.dns.add("relay.client.example", "A", "127.0.0.1")
    with smtp_world.client("mx") as client:
        client.sendmail("bob@remote.test", ["alice@example.org"], MESSAGE)
    stored = smtp_world.content(only_entry(smtp_world))
    assert stored.startswith(b"Received: from ")
    assert stored.split(b"\r\n")[0].endswith(b"(relay.client.example [127.0.0.1])")


@pytest.mark.parametrize("listener", ["submission", "submissions"])
def test_authenticated_submission_over_tls(smtp_world, listener):
    smtp_world.add_mailbox("alice@example.org", password=PASSWORD)
    with smtp_world.logged_in("alice@example.org", PASSWORD, listener) as client:
        assert client.sendmail("alice@example.org", ["bob@remote.test"], OWN_MESSAGE) == {}
    entry = only_entry(smtp_world)
    assert (entry.source, entry.auth_user) == ("submission", "alice@example.org")
    assert [(r.address, r.mailbox_id) for r in entry.recipients] == [("bob@remote.test", None)]
    stored = smtp_world.content(entry)
    assert re.match(rb"Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n\tby mx\.example\.org "
                    rb"\(TLSv1\.[23] cipher [A-Z0-9_-]+\)\r\n\twith ESMTPSA\r\n", stored)
    # RFC 6409 §8: a submission server adds Date and Message-ID when they are missing.
    assert re.search(rb"\r\nDate: [A-Z][a-z]{2}, \d", stored)
    assert re.search(rb"\r\nMessage-ID: <[0-9a-f.]+@mx\.example\.org>\r\n", stored)
    assert b"Authentication-Results" not in stored


def test_auth_login_mechanism(smtp_world):
    smtp_world.add_mailbox("alice@example.org", password=PASSWORD)
    with smtp_world.client("submissions") as client:
        client.ehlo("client.example")
        client.user, client.password = "alice@example.org", PASSWORD
        assert client.auth("LOGIN", client.auth_login, initial_response_ok=False)[0] == 235
        assert client.docmd("AUTH", "PLAIN")[0] == 503  # already authenticated


def test_pipelined_transaction(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        # RFC 2920: the whole envelope and DATA in one write; replies come back in order.
        client.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\n"
                    b"RCPT TO:<nobody@example.org>\r\nDATA\r\n")
        assert [client.reply()[0] for _ in range(4)] == [250, 250, 550, 354]
        client.send(MESSAGE + b".\r\nMAIL FROM:<bob@remote.test>\r\nRSET\r\nQUIT\r\n")
        code, text = client.reply()
        assert code == 250 and text.startswith("2.0.0 queued as ")
        assert [client.reply()[0] for _ in range(3)] == [250, 250, 221]
    assert [r.address for r in only_entry(smtp_world).recipients] == ["alice@example.org"]


def test_dot_stuffing_and_data_without_valid_recipients(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        client.command("EHLO client.example")
        client.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n")
        assert [client.reply() for _ in range(3)][2] == (554, "5.5.1 No valid recipients")
        client.send(b"RSET\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert [client.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        client.send(b"Subject: dots\r\n\r\n..leading dot\r\n.\r\n")
        assert client.reply()[0] == 250
    entry = only_entry(smtp_world)
    assert entry.sender == ""
    assert smtp_world.content(entry).endswith(b"\r\n\r\n.leading dot\r\n")


def test_bdat_chunks(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    first = b"Subject: chunked\r\nFrom: bob@remote.test\r\n\r\n"
    second = b".not stuffed\r\nlast line\r\n"
    with smtp_world.raw("mx") as client:
        client.command("EHLO client.example")
        client.send(b"MAIL FROM:<bob@remote.test> BODY=8BITMIME\r\nRCPT TO:<alice@example.org>\r\n"
                    + f"BDAT {len(first)}\r\n".encode() + first)
        assert [client.reply()[0] for _ in range(2)] == [250, 250]
        assert client.reply() == (250, f"2.0.0 {len(first)} octets received")
        assert client.command(b"DATA") == (503, "5.5.1 DATA cannot follow BDAT in one transaction")
        client.send(f"BDAT {len(second)} LAST\r\n".encode() + second)
        code, text = client.reply()
        assert code == 250 and text.startswith("2.0.0 queued as ")
        # An empty last chunk ends a transaction too.
        client.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\n"
                    + f"BDAT {len(first)}\r\n".encode() + first + b"BDAT 0 LAST\r\n")
        assert [client.reply()[0] for _ in range(4)] == [250, 250, 250, 250]
    entries = smtp_world.queued()
    assert len(entries) == 2
    contents = sorted(smtp_world.content(e) for e in entries)
    assert any(c.endswith(first + second) for c in contents)
    assert any(c.endswith(first) for c in contents)
    assert {e.body_type for e in entries} == {"8BITMIME", None}


def test_bdat_refused_chunk_is_consumed(smtp_world):
    with smtp_world.raw("mx") as client:
        client.command("EHLO client.example")
        client.send(b"BDAT 6\r\nNOOP\r\n")  # six octets that look like a command
        assert client.reply() == (503, "5.5.1 Need MAIL command first")
        assert client.command("NOOP") == (250, "2.0.0 OK")  # the chunk was not run as a command


def test_commands_pipelined_after_starttls_are_discarded(smtp_world):
    """RFC 3207 §4.2: plain-text input after STARTTLS must not run inside the TLS session."""
    with smtp_world.raw("submission") as client:
        client.command("EHLO client.example")
        client.send(b"STARTTLS\r\nMAIL FROM:<injected@remote.test>\r\n")
        assert client.reply()[0] == 220
        client.sock = insecure_context().wrap_socket(client.sock)
        client.buffer = b""
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("RCPT TO:<alice@example.org>") == (503, "5.5.1 Need MAIL command first")


def test_clients_vanishing_mid_message_leave_nothing(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    for tail in (b"DATA\r\nSubject: cut\r\n\r\npartial", b"BDAT 1000 LAST\r\nSubject: cut\r\n"):
        with smtp_world.raw("mx") as client:
            client.command("EHLO client.example")
            client.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\n" + tail)
            assert [client.reply()[0] for _ in range(2)] == [250, 250]
    with smtp_world.client("mx") as client:  # the server is unharmed
        assert client.sendmail("bob@remote.test", ["alice@example.org"], b"Subject: whole\n\nbare LF body\n") == {}
    entry = only_entry(smtp_world)
    assert b"\r\nSubject: whole\r\n\r\nbare LF body\r\n" in smtp_world.content(entry)


def test_hostile_helo_is_sanitised_not_fatal(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        assert client.command(b"EHLO bad\xff\x01name")[0] == 250
        client.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert [client.reply()[0] for _ in range(3)] == [250, 250, 354]
        client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert client.reply()[0] == 250
    entry = only_entry(smtp_world)
    assert entry.client_helo == "bad??name"
    assert smtp_world.content(entry).startswith(b"Received: from bad??name ([127.0.0.1])")


def test_stop_closes_open_sessions_with_421_and_acknowledges_nothing(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        client.command("EHLO client.example")
        client.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert [client.reply()[0] for _ in range(3)] == [250, 250, 354]
        client.send(b"Subject: interrupted\r\n\r\nhalf a body\r\n")
        smtp_world.stop()
        assert final_reply(client) == (421, "4.3.2 Service shutting down, closing connection")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", smtp_world.ports["mx"]), timeout=2).close()
    assert smtp_world.queued() == []


def test_bdat_without_a_size_cannot_continue(smtp_world):
    with smtp_world.raw("mx") as client:
        client.command("EHLO client.example")
        assert client.command("BDAT lots") == (501, "5.5.4 Syntax: BDAT size [LAST]")
        assert final_reply(client) == (421, "4.5.0 Cannot resynchronise after a bad BDAT command")


def test_smtputf8_addresses(smtp_world):
    mailbox_id = smtp_world.add_mailbox("jøran@xn--exmple-cua.org")
    message = "From: Bøb <bøb@remote.test>\r\nSubject: ünïcode\r\n\r\nHej.\r\n".encode()
    with smtp_world.client("mx") as client:
        client.ehlo("client.example")
        client.command_encoding = "utf-8"
        assert client.docmd("MAIL", "FROM:<bøb@remote.test>")[0] == 553  # RFC 6531: needs SMTPUTF8
        assert client.docmd("MAIL", "FROM:<bøb@remote.test> SMTPUTF8")[0] == 250
        assert client.docmd("RCPT", "TO:<Jøran@exämple.org>")[0] == 250
        assert client.data(message)[0] == 250
    entry = only_entry(smtp_world)
    assert entry.smtputf8 and entry.sender == "bøb@remote.test"
    assert [(r.address, r.mailbox_id) for r in entry.recipients] == [("jøran@xn--exmple-cua.org", mailbox_id)]
    assert b"with UTF8SMTP" in smtp_world.content(entry)


def test_dsn_parameters_are_kept_in_the_envelope(smtp_world):
    smtp_world.add_mailbox("alice@example.org", password=PASSWORD)
    with smtp_world.logged_in("alice@example.org", PASSWORD, "submissions") as client:
        assert client.docmd("MAIL", "FROM:<alice@example.org> RET=HDRS ENVID=env+2B1")[0] == 250
        assert client.docmd("RCPT", "TO:<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx@remote.test")[0] \
            == 250
        assert client.docmd("RCPT", "TO:<carol@remote.test> NOTIFY=NEVER")[0] == 250
        assert client.data(OWN_MESSAGE)[0] == 250
    entry = only_entry(smtp_world)
    assert (entry.dsn_ret, entry.dsn_envid) == ("HDRS", "env+1")
    assert [(r.address, r.notify, r.orcpt) for r in entry.recipients] == [
        ("bob@remote.test", "SUCCESS,FAILURE", "rfc822;Bob+x@remote.test"), ("carol@remote.test", "NEVER", None)]


# ----------------------------------------------------------------------------- size


def test_size_parameter_over_the_limit(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.client("mx") as client:
        client.ehlo("client.example")
        code, text = client.mail("bob@remote.test", [f"SIZE={36 * 1024 * 1024}"])
        assert (code, text[:5]) == (552, b"5.3.4")
    assert smtp_world.queued() == []


@pytest.fixture
def small_world(data_dir, monkeypatch):
    with make_smtp_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch,
                         settings={"smtp_max_message_size": "2000"}) as world:
        world.add_mailbox("alice@example.org")
        yield world


def test_oversize_data_and_bdat_are_refused_after_reading(small_world):
    big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" * 1 + (b"y" * 70 + b"\r\n") * 40
    with small_world.raw("mx") as client:
        client.command("EHLO client.example")
        client.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert [client.reply()[0] for _ in range(3)] == [250, 250, 354]
        client.send(big + b".\r\n")
        assert client.reply() == (552, "5.3.4 Message size exceeds fixed maximum message size")
        client.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\n")
        assert [client.reply()[0] for _ in range(2)] == [250, 250]  # the session goes on
        half = len(big) // 2
        client.send(f"BDAT {half}\r\n".encode() + big[:half])
        assert client.reply()[0] == 250
        client.send(f"BDAT {len(big) - half} LAST\r\n".encode() + big[half:])
        assert client.reply()[:1] == (552,)
        assert client.command("NOOP") == (250, "2.0.0 OK")
    assert small_world.queued() == []


# ----------------------------------------------------------------------------- failures and limits


def test_internal_error_answers_451_without_details(smtp_world, monkeypatch, caplog):
    smtp_world.add_mailbox("alice@example.org")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire at /secret/path")

    monkeypatch.setattr(spool, "accept", broken)
    with smtp_world.client("mx") as client:
        client.ehlo("client.example")
        client.mail("bob@remote.test")
        client.rcpt("alice@example.org")
        code, text = client.data(MESSAGE)
        assert (code, text) == (451, b"4.3.0 Internal error, try again later")
        assert client.noop()[0] == 250  # the session survives and the transaction is reset
        assert client.docmd("RCPT", "TO:<alice@example.org>")[0] == 503
    assert smtp_world.queued() == []
    assert any("disk on fire" in (r.exc_text or str(r.exc_info)) for r in caplog.records if r.exc_info)


def test_registry_failure_at_rcpt_answers_451(smtp_world, monkeypatch):
    def unavailable(*args, **kwargs):
        raise OSError("database unreachable")

    monkeypatch.setattr(registry, "resolve", unavailable)
    with smtp_world.client("mx") as client:
        client.ehlo("client.example")
        assert client.mail("bob@remote.test")[0] == 250
        assert client.rcpt("alice@example.org") == (451, b"4.3.0 Internal error, try again later")
        assert client.noop()[0] == 250


@contextlib.contextmanager
def limited(data_dir, monkeypatch, **limits):
    with make_smtp_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch,
                         limits=SessionLimits(**limits)) as world:
        world.add_mailbox("alice@example.org")
        yield world


def final_reply(client) -> tuple[int, str]:
    """The 421 a disconnected client finds, then the end of the stream."""
    reply = client.reply()
    assert client.closed()
    return reply


def test_idle_client_gets_421(data_dir, monkeypatch):
    with limited(data_dir, monkeypatch, idle_seconds=0.5) as world, world.raw("mx") as client:
        started = time.monotonic()
        assert final_reply(client) == (421, "4.4.2 Timeout exceeded, closing connection")
        assert time.monotonic() - started < 5


def test_slow_but_steady_data_is_not_idle(data_dir, monkeypatch):
    with limited(data_dir, monkeypatch, idle_seconds=0.6) as world, world.raw("mx") as client:
        client.command("EHLO client.example")
        client.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert [client.reply()[0] for _ in range(3)] == [250, 250, 354]
        client.send(b"Subject: slow\r\n\r\n")
        for index in range(6):  # 1.5 s of upload, paced well under the idle timeout per line
            time.sleep(0.25)
            client.send(f"line {index}\r\n".encode())
        assert client.command(".")[0] == 250
    assert len(world.queued()) == 1


def test_too_many_errors_disconnects(data_dir, monkeypatch):
    with limited(data_dir, monkeypatch, max_errors=3) as world, world.raw("mx") as client:
        client.command("EHLO client.example")
        assert client.command("BOGUS")[0] == 500
        assert client.command("RCPT TO:<alice@example.org>")[0] == 503
        client.send(b"VRFY\r\n")
        assert client.reply()[0] == 501
        assert final_reply(client) == (421, "4.7.0 Too many errors, closing connection")


def test_too_many_commands_and_long_lines(data_dir, monkeypatch):
    with limited(data_dir, monkeypatch, max_commands=5) as world, world.raw("mx") as client:
        assert client.command(b"NOOP " + b"x" * 2000)[0] == 500  # over RFC 5321 §4.5.3.1.4
        for _ in range(5):
            assert client.command("NOOP")[0] == 250
        client.send(b"NOOP\r\n")
        assert final_reply(client) == (421, "4.7.0 Too many commands, closing connection")


def test_concurrent_sessions_per_client_address_are_bounded(data_dir, monkeypatch):
    with limited(data_dir, monkeypatch, max_connections_per_ip=2) as world:
        first, second = world.raw("mx"), world.raw("submission")
        try:
            refused = RawClient(world.ports["mx"])
            assert final_reply(refused) == (421, "4.7.0 Too many connections from your address, try again later")
            refused.close()
            with world.raw("mx", source="127.0.0.2") as other:  # another client address is not affected
                assert other.command("NOOP")[0] == 250
            first.command("QUIT")
            assert first.closed()

            def admitted():
                client = RawClient(world.ports["mx"])
                try:
                    return client.reply()[0] == 220
                finally:
                    client.close()

            poll(admitted, "a free slot after a QUIT", timeout=5)
        finally:
            first.close()
            second.close()


def test_session_time_limit(data_dir, monkeypatch):
    with limited(data_dir, monkeypatch, session_seconds=1.0) as world, world.raw("mx") as client:
        started = time.monotonic()
        replies = []
        for _ in range(100):  # busy, never idle; bounded by the session limit
            code, text = client.command("NOOP")
            replies.append(code)
            if code == 421:
                assert text == "4.4.2 Session time limit exceeded, closing connection"
                break
            time.sleep(0.05)
        assert replies[-1] == 421 and time.monotonic() - started < 4
        assert client.closed()
