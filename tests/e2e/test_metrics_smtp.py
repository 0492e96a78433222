"""/metrics on the admin role after a scripted SMTP session against `courriel serve` (roles forked
from the supervisor, multiprocess metrics): the SMTP counters move by exactly what happened.

The session: on the MX, one message accepted for one recipient after one RCPT refused (unknown
user), judged SPF pass (a loopback DNS zone publishes the sender's SPF record), DKIM none
(unsigned), DMARC none (no record); on submission, one AUTH PLAIN with a wrong password.
"""

from __future__ import annotations

import base64
import smtplib

from dns_test_server import dns_server  # noqa: F401 - pytest fixture "dns_server"
from metrics_scrape import scrape, value
from serve_process import (
    add_mailbox,
    admin_port,
    initialised_template,
    listener_environ,
    serve,
    served_data,
    wait_healthy,
)

__all__ = ["initialised_template", "served_data"]

MESSAGE = (b"From: Bob <bob@remote.test>\r\nTo: box@metrics.test\r\nSubject: counted\r\n"
           b"Message-ID: <counted@remote.test>\r\n\r\nOne message, counted once.\r\n")

COUNTERS = [
    ("courriel_smtp_connections_total", {"listener": "mx"}, 1),
    ("courriel_smtp_connections_total", {"listener": "submission"}, 1),
    ("courriel_smtp_transactions_total", {"listener": "mx", "result": "accepted"}, 1),
    ("courriel_smtp_transactions_total", {"listener": "mx", "result": "rejected"}, 0),
    ("courriel_smtp_transactions_total", {"listener": "mx", "result": "failed"}, 0),
    ("courriel_smtp_received_bytes_total", {"listener": "mx"}, len(MESSAGE)),
    ("courriel_smtp_rejections_total", {"listener": "mx", "stage": "rcpt", "reason": "unknown_recipient"}, 1),
    ("courriel_smtp_rejections_total", {"listener": "mx", "stage": "mail", "reason": "relay_denied"}, 0),
    ("courriel_auth_failures_total", {"protocol": "smtp"}, 1),
    ("courriel_message_verdicts_total", {"method": "spf", "result": "pass"}, 1),
    ("courriel_message_verdicts_total", {"method": "dkim", "result": "none"}, 1),
    ("courriel_message_verdicts_total", {"method": "dmarc", "result": "none"}, 1),
    ("courriel_message_verdicts_total", {"method": "spf", "result": "fail"}, 0),
]


def moved(before, after) -> list[tuple[str, dict, float]]:
    return [(name, labels, value(after, name, **labels) - value(before, name, **labels))
            for name, labels, _expected in COUNTERS]


def test_smtp_counters_move_by_exactly_one_session(served_data, dns_server, tmp_path):  # noqa: F811
    dns_server.add("remote.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    add_mailbox(served_data, "box@metrics.test")
    environ = listener_environ()
    environ["COURRIEL_DNS_NAMESERVERS"] = dns_server.nameserver
    port = admin_port(environ)
    mx_port = int(environ["COURRIEL_LISTENERS_MX"].rpartition(":")[2])
    submission_port = int(environ["COURRIEL_LISTENERS_SUBMISSION"].rpartition(":")[2])
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(port, served)
        before = scrape(port)
        with smtplib.SMTP("127.0.0.1", mx_port, timeout=20) as client:
            client.ehlo("client.remote.test")
            assert client.mail("bob@remote.test")[0] == 250
            assert client.rcpt("box@metrics.test")[0] == 250
            assert client.rcpt("nobody@metrics.test")[0] == 550
            code, text = client.data(MESSAGE)
            assert code == 250, text
        with smtplib.SMTP("127.0.0.1", submission_port, timeout=20) as client:
            client.ehlo("client.remote.test")  # --dev: AUTH offered before TLS on submission
            wrong = base64.b64encode(b"\0box@metrics.test\0not the password").decode()
            assert client.docmd("AUTH", f"PLAIN {wrong}")[0] == 535
        # Every counter is written before the reply that ends its step, so one scrape sees them all.
        after = scrape(port)
        assert moved(before, after) == [(name, labels, expected) for name, labels, expected in COUNTERS], \
            served.log()[-3000:]
        assert "Traceback" not in served.log()
    finally:
        served.stop()
