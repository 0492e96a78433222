"""SIGHUP to `courriel serve` reloads the TLS certificate and the settings without dropping a connection.

A server started with one certificate (from a trustme CA) has an IMAP session (993, logged in,
INBOX selected) and an SMTP submission session (465, authenticated, MAIL FROM given) open; the
certificate files are replaced with another certificate (other subject and serial) and the
supervisor gets SIGHUP. Then every new TLS handshake (993, 465, and STARTTLS on 143 and 587)
sees the new certificate, the old sessions go on (NOOP answered, the SMTP transaction
completes with 250) and no role was restarted. A bad new pair (a key that is not the
certificate's) is refused with an error line, and the previous certificate keeps serving.
"""

from __future__ import annotations

import imaplib
import os
import signal
import smtplib
import ssl
import subprocess

import httpx
import pytest
import trustme
from cryptography import x509
from serve_process import (
    COURRIEL,
    add_mailbox,
    admin_port,
    initialised_template,
    listener_environ,
    role_children,
    serve,
    served_data,
    wait_healthy,
    wait_until,
)

from courriel import config as config_mod

__all__ = ["initialised_template", "served_data"]

pytestmark = pytest.mark.timeout(180)

ADDRESS = "box@reload.test"
PASSWORD = "correct horse battery staple"
MESSAGE = b"From: box@reload.test\r\nTo: box@reload.test\r\nSubject: reload\r\n\r\nbody\r\n"
ROLES_WITH_TLS = ("smtp", "imap")


def install_pair(data, cert_pem: bytes, key_pem: bytes) -> None:
    """Replace the certificate and key files as a renewal tool does (write aside, rename)."""
    for name, content, mode in (("key.pem", key_pem, 0o600), ("cert.pem", cert_pem, 0o644)):
        target = data / "tls" / name
        aside = target.with_suffix(".new")
        aside.write_bytes(content)
        os.chmod(aside, mode)
        os.replace(aside, target)


def issue(ca: trustme.CA, common_name: str) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", common_name=common_name)


def chain_pem(cert: trustme.LeafCert) -> bytes:
    return b"".join(blob.bytes() for blob in cert.cert_chain_pems)


def serial_of(cert: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number


def peer_serial(sock: ssl.SSLSocket) -> int:
    return x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)).serial_number


def port_of(environ, listener: str) -> int:
    return int(environ[f"COURRIEL_LISTENERS_{listener.upper()}"].rpartition(":")[2])


class Listeners:
    """New connections to each TLS listener of the served instance, verified against the CA."""

    def __init__(self, environ, context: ssl.SSLContext):
        self.environ = environ
        self.context = context

    def imaps(self) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL("127.0.0.1", port_of(self.environ, "imaps"), ssl_context=self.context, timeout=10)

    def imap_starttls(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", port_of(self.environ, "imap"), timeout=10)
        client.starttls(ssl_context=self.context)
        return client

    def submissions(self) -> smtplib.SMTP_SSL:
        client = smtplib.SMTP_SSL("127.0.0.1", port_of(self.environ, "submissions"), context=self.context,
                                  timeout=10)
        client.ehlo("client.reload.test")
        return client

    def submission_starttls(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", port_of(self.environ, "submission"), timeout=10)
        client.ehlo("client.reload.test")
        client.starttls(context=self.context)
        return client

    def serials(self) -> dict[str, int]:
        """The serial each listener presents to a new handshake."""
        found = {}
        for name, connect in (("imaps", self.imaps), ("imap", self.imap_starttls),
                              ("submissions", self.submissions), ("submission", self.submission_starttls)):
            client = connect()
            try:
                found[name] = peer_serial(client.sock)
            finally:
                _close(client)
        return found


def _close(client) -> None:
    try:
        if isinstance(client, imaplib.IMAP4):
            client.logout()
        else:
            client.quit()
    except (OSError, imaplib.IMAP4.error, smtplib.SMTPException):
        pass


def sighup_and_wait(served, mark: int, reloaded: bool) -> str:
    """SIGHUP the supervisor; wait until both TLS roles logged their reload (or its failure)
    after `mark`; returns the log."""
    served.process.send_signal(signal.SIGHUP)

    def logged():
        log = served.log()[mark:]
        if reloaded:
            done = all(f"reloaded role={role}" in log for role in ROLES_WITH_TLS)
        else:
            done = log.count("TLS certificate reload failed") >= len(ROLES_WITH_TLS)
        return served.log() if done else None

    return wait_until(logged, 30, "the reload of the smtp and imap roles")


@pytest.fixture
def ca():
    return trustme.CA()


def test_sighup_serves_the_new_certificate_to_new_handshakes_and_keeps_sessions(served_data, tmp_path, ca):
    first, second = issue(ca, "first.reload.test"), issue(ca, "second.reload.test")
    install_pair(served_data, chain_pem(first), first.private_key_pem.bytes())
    add_mailbox(served_data, ADDRESS, PASSWORD)
    environ = listener_environ()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    listeners = Listeners(environ, context)
    served = serve(served_data, environ, tmp_path / "serve.log")
    imap = smtp = None
    try:
        wait_healthy(admin_port(environ), served)
        wait_until(lambda: set(listeners.serials().values()) == {serial_of(first)}, 30, "every TLS listener")
        roles_before = {role: role_children(served.pid, role) for role in ("smtp", "imap", "queue", "admin")}

        # Sessions in the middle of their work, over TLS with the first certificate.
        imap = listeners.imaps()
        imap.login(ADDRESS, PASSWORD)
        assert imap.append("INBOX", None, None, MESSAGE)[0] == "OK"
        assert imap.select("INBOX")[0] == "OK"
        smtp = listeners.submissions()
        smtp.login(ADDRESS, PASSWORD)
        assert smtp.mail(ADDRESS)[0] == 250
        assert peer_serial(imap.sock) == peer_serial(smtp.sock) == serial_of(first)

        install_pair(served_data, chain_pem(second), second.private_key_pem.bytes())
        mark = len(served.log())
        log = sighup_and_wait(served, mark, reloaded=True)
        assert "CN=second.reload.test" in log[mark:]
        assert f"serial={serial_of(second):x}" in log[mark:]
        assert "reload forwarded" in log[mark:]
        for role in ("queue", "admin"):  # the roles without TLS re-read their settings and live on
            wait_until(lambda role=role: f"reloaded role={role}" in served.log()[mark:], 30, f"the {role} reload")

        assert listeners.serials() == {name: serial_of(second)
                                       for name in ("imaps", "imap", "submissions", "submission")}
        # The sessions opened before the reload go on, with the certificate they negotiated.
        assert imap.noop()[0] == "OK"
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"Subject: reload" in data[0][1]
        assert peer_serial(imap.sock) == serial_of(first)
        assert smtp.noop()[0] == 250
        assert smtp.rcpt(ADDRESS)[0] == 250
        assert smtp.data(MESSAGE)[0] == 250
        assert smtp.noop()[0] == 250

        assert {role: role_children(served.pid, role) for role in roles_before} == roles_before
        assert "role exited" not in served.log()
    finally:
        for client in (imap, smtp):
            if client is not None:
                _close(client)
        served.stop()
    assert served.process.returncode == 0, served.log()


def test_bad_new_certificate_keeps_the_previous_one_serving(served_data, tmp_path, ca):
    first, second = issue(ca, "first.reload.test"), issue(ca, "second.reload.test")
    install_pair(served_data, chain_pem(first), first.private_key_pem.bytes())
    environ = listener_environ()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    listeners = Listeners(environ, context)
    served = serve(served_data, environ, tmp_path / "serve.log")
    imap = None
    try:
        wait_healthy(admin_port(environ), served)
        wait_until(lambda: set(listeners.serials().values()) == {serial_of(first)}, 30, "every TLS listener")
        imap = listeners.imaps()

        # The second certificate with the first key: a pair that cannot be served.
        install_pair(served_data, chain_pem(second), first.private_key_pem.bytes())
        mark = len(served.log())
        log = sighup_and_wait(served, mark, reloaded=False)
        assert log[mark:].count("the private key does not belong to the certificate") >= len(ROLES_WITH_TLS)
        assert listeners.serials() == {name: serial_of(first)
                                       for name in ("imaps", "imap", "submissions", "submission")}
        assert imap.noop()[0] == "OK"

        # A file that is not PEM at all: refused the same way.
        install_pair(served_data, b"not a certificate\n", first.private_key_pem.bytes())
        mark = len(served.log())
        sighup_and_wait(served, mark, reloaded=False)
        assert listeners.serials()["submissions"] == serial_of(first)

        # Fixed files are picked up by the next SIGHUP.
        install_pair(served_data, chain_pem(second), second.private_key_pem.bytes())
        mark = len(served.log())
        sighup_and_wait(served, mark, reloaded=True)
        assert set(listeners.serials().values()) == {serial_of(second)}
        assert imap.noop()[0] == "OK"
        assert "role exited" not in served.log()
    finally:
        if imap is not None:
            _close(imap)
        served.stop()
    assert served.process.returncode == 0, served.log()


def test_unreadable_configuration_on_sighup_keeps_the_running_settings(served_data, tmp_path):
    environ = listener_environ()
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(admin_port(environ), served)
        config_file = served_data / config_mod.CONFIG_FILE
        config_file.write_text(config_file.read_text() + "\n[log\n")  # no longer TOML
        mark = len(served.log())
        served.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "configuration=unchanged" in served.log()[mark:], 30, "the supervisor's answer")
        wait_until(lambda: served.log()[mark:].count("configuration reload failed") >= 3, 30, "the roles' answers")
        assert wait_healthy(admin_port(environ), served).status_code == 200
        assert "role exited" not in served.log()
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()


def test_sighup_applies_changed_settings_to_the_sessions_that_follow(served_data, tmp_path):
    """`[smtp] max_message_size` lowered and `[passwords] min_length` raised in the file, then
    SIGHUP: a new SMTP session announces the new SIZE, a new IMAP session the new APPENDLIMIT,
    and the console's password policy refuses what it accepted, while a session opened before
    goes on and completes its transaction; the queue role applies its settings too; no restart."""
    add_mailbox(served_data, ADDRESS, PASSWORD)
    added = subprocess.run([COURRIEL, "user", "add", "operator", "--role", "admin", "--password-stdin",
                            "--data", str(served_data)], input=PASSWORD, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    environ = listener_environ()
    served = serve(served_data, environ, tmp_path / "serve.log")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        wait_healthy(admin_port(environ), served)
        before = smtplib.SMTP("127.0.0.1", port_of(environ, "submission"), timeout=10)
        before.starttls(context=context)
        before.ehlo("before.reload.test")
        assert int(before.esmtp_features["size"]) == 35 * 1024 * 1024
        before.login(ADDRESS, PASSWORD)
        assert before.mail(ADDRESS)[0] == 250
        pids = {role: role_children(served.pid, role) for role in ("smtp", "imap", "queue", "admin")}
        console = httpx.Client(base_url=f"http://127.0.0.1:{admin_port(environ)}", timeout=10)
        session = console.post("/api/v1/session", json={"username": "operator", "password": PASSWORD})
        assert session.status_code == 201, session.text
        console.headers["Authorization"] = f"Bearer {session.json()['token']}"
        candidate = {"password": "twelve chars 1"}
        assert console.post("/api/v1/passwords/score", json=candidate).json()["problems"] == []

        config_file = served_data / config_mod.CONFIG_FILE
        text = config_file.read_text()
        assert "# max_message_size = 36700160\n" in text
        assert "# min_length = 10\n" in text
        config_file.write_text(text.replace("# max_message_size = 36700160\n", "max_message_size = 1000000\n")
                               .replace("# min_length = 10\n", "min_length = 16\n"))
        mark = len(served.log())
        served.process.send_signal(signal.SIGHUP)
        for role in ("smtp", "imap", "queue", "admin"):
            wait_until(lambda role=role: f"reloaded role={role} applied=settings" in served.log()[mark:], 30,
                       f"the {role} role's reload")

        after = smtplib.SMTP("127.0.0.1", port_of(environ, "submission"), timeout=10)
        after.starttls(context=context)
        after.ehlo("after.reload.test")
        assert int(after.esmtp_features["size"]) == 1_000_000
        _close(after)
        imap = imaplib.IMAP4_SSL("127.0.0.1", port_of(environ, "imaps"), ssl_context=context, timeout=10)
        assert "APPENDLIMIT=1000000" in imap.capabilities
        _close(imap)
        assert console.post("/api/v1/passwords/score", json=candidate).json()["problems"] != []
        console.close()

        assert before.rcpt(ADDRESS)[0] == 250  # the session opened before the reload goes on
        assert before.data(MESSAGE)[0] == 250
        _close(before)
        assert {role: role_children(served.pid, role) for role in pids} == pids
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()
