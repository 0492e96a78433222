"""The admin role re-checks every domain's DNS on a timer and stores the result per domain."""

import subprocess

from dns_test_server import dns_server  # noqa: F401
from serve_process import (  # noqa: F401
    COURRIEL,
    admin_port,
    initialised_template,
    listener_environ,
    serve,
    served_data,
    wait_healthy,
    wait_until,
)

from courriel import config as config_mod
from courriel.admin.services import dns as dns_service
from courriel.db import Database


def test_periodic_check_stores_status(served_data, dns_server, tmp_path):  # noqa: F811
    environ = listener_environ(mx="", submission="", submissions="", imap="", imaps="")
    environ["COURRIEL_DNS_NAMESERVERS"] = dns_server.nameserver
    environ["COURRIEL_DOMAINS_CHECK_INTERVAL"] = "1"
    environ["COURRIEL_SERVER_HOSTNAME"] = "mail.checked.test"
    added = subprocess.run([COURRIEL, "domain", "add", "checked.test", "--data", str(served_data)],
                           capture_output=True, text=True, env=environ)
    assert added.returncode == 0, added.stderr
    served = serve(served_data, environ, tmp_path / "serve.log", "--role", "admin")
    try:
        wait_healthy(admin_port(environ), served)
        db = Database(config_mod.load(served_data).database_url)
        try:
            status, checked_at = wait_until(
                lambda: (lambda r: r if r[1] is not None else None)(dns_service.last_check(db, "checked.test")),
                30.0, "a stored DNS check")
        finally:
            db.dispose()
        assert checked_at is not None
        # Nothing is published for the domain in the loopback zone: the check must report problems.
        assert status["status"] != "ok"
        assert any(record["status"] == "missing" for record in status["records"])
    finally:
        served.stop()
