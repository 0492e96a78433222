"""/metrics on the admin role: counters of the queue role process reach the admin process's
exposition (multiprocess mode under the supervisor) and move by exactly what happened.

Also, in-process: the scrape-time queue gauges and the recording API in single-process mode.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

from metrics_scrape import samples, scrape, value
from serve_process import (
    add_mailbox,
    admin_port,
    initialised_template,
    listener_environ,
    serve,
    served_data,
    wait_healthy,
    wait_until,
)

from courriel import config as config_mod
from courriel import metrics
from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.models import Domain
from courriel.queue import spool
from courriel.queue.spool import Envelope, EnvelopeRecipient

__all__ = ["initialised_template", "served_data"]

MESSAGE = b"From: a@example.net\r\nTo: box@metrics.test\r\nSubject: m\r\n\r\nbody\r\n"


def test_queue_counters_move_by_exactly_the_delivered_and_bounced_recipients(served_data, tmp_path):
    add_mailbox(served_data, "box@metrics.test")
    environ = listener_environ()
    # A previous run's counters: the supervisor empties DATA/run/metrics at start.
    stale = served_data / "run" / "metrics"
    stale.mkdir()
    script = "from courriel import metrics; metrics.delivery_attempts(['bounced'] * 1000)"
    seeded = subprocess.run([sys.executable, "-c", script],
                            env=dict(environ, PROMETHEUS_MULTIPROC_DIR=str(stale)), capture_output=True, text=True)
    assert seeded.returncode == 0 and any(stale.glob("counter_*.db")), seeded.stderr
    port = admin_port(environ)
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(port, served)
        before = scrape(port)
        assert value(before, "courriel_database_up") == 1
        assert value(before, "courriel_delivery_attempts_total", result="bounced") == 0
        config = config_mod.load(served_data, dev=True)
        db = Database(config.database_url)
        blobs = BlobStore(config.blob_dir, db)
        try:
            for _ in range(3):
                spool.accept(db, blobs, Envelope("a@example.net", (EnvelopeRecipient("box@metrics.test"),)),
                             MESSAGE, run_dir=config.run_dir)
            # Null sender: the bounce produces no DSN (RFC 5321 §4.5.5), so nothing else moves.
            spool.accept(db, blobs, Envelope("", (EnvelopeRecipient("nobody@metrics.test"),)), MESSAGE,
                         run_dir=config.run_dir)
            # Not due for an hour: stays in the queue as "incoming".
            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            spool.accept(db, blobs, Envelope("a@example.net", (EnvelopeRecipient("box@metrics.test"),)),
                         MESSAGE, run_dir=config.run_dir, now=later)
        finally:
            db.dispose()

        def settled():
            found = scrape(port)
            done = value(found, "courriel_queue_processed_messages_total", outcome="finished")
            return found if done >= value(before, "courriel_queue_processed_messages_total",
                                          outcome="finished") + 4 else None

        after = wait_until(settled, 30.0, "the queue role to process four messages")
        after = scrape(port)  # once more: nothing else arrives late
        moved = {
            result: value(after, "courriel_delivery_attempts_total", result=result)
            - value(before, "courriel_delivery_attempts_total", result=result)
            for result in ("delivered", "relayed", "deferred", "bounced")
        }
        assert moved == {"delivered": 3, "relayed": 0, "deferred": 0, "bounced": 1}
        assert value(after, "courriel_queue_processed_messages_total", outcome="finished") \
            - value(before, "courriel_queue_processed_messages_total", outcome="finished") == 4
        assert value(after, "courriel_queue_processed_messages_total", outcome="rescheduled") \
            == value(before, "courriel_queue_processed_messages_total", outcome="rescheduled")
        assert value(after, "courriel_queue_messages", state="incoming") == 1
        assert value(after, "courriel_queue_messages", state="deferred") == 0
        assert value(after, "courriel_tls_certificate_expiry_timestamp_seconds", certificate="tls/cert.pem") \
            > dt.datetime.now(dt.UTC).timestamp()
        # The counters came from another process: the queue role wrote them into DATA/run/metrics.
        assert any((served_data / "run" / "metrics").glob("counter_*.db"))
    finally:
        served.stop()


def test_scrape_time_queue_gauges_and_single_process_counters(config, tmp_path):
    from courriel import datadir

    datadir.initialise(config.data_dir)
    db = Database(config.database_url)
    blobs = BlobStore(config.blob_dir, db)
    try:
        exporter = metrics.Exporter(config, db, environ={})
        before = samples(exporter.render()[0].decode())
        received = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        queue_id = spool.accept(db, blobs, Envelope("a@example.net", (EnvelopeRecipient("b@example.org"),)),
                                MESSAGE, now=received)
        assert spool.hold(db, queue_id)
        metrics.auth_failure("imap")
        metrics.auth_failure("not-a-protocol")
        metrics.message_verdict("dkim", "pass")
        records = [{"check": "mx", "status": "ok"}, {"check": "mx", "status": "wrong"},
                   {"check": "spf", "status": "ok"}, {"check": "dkim", "status": "error"}]
        with db.write() as session:  # what the admin role's DNS checker stores
            session.add(Domain(name="metrics.test", verification_token="t", dns_checked_at=received,
                               dns_status=json.dumps({"domain": "metrics.test", "records": records})))
        with metrics.imap_session(), metrics.imap_idle():
            during = samples(exporter.render()[0].decode())
        metrics.imap_command("uid  fetch", "ok", 0.003)
        after = samples(exporter.render()[0].decode())
    finally:
        db.dispose()
    assert value(after, "courriel_queue_messages", state="hold") == 1
    assert 7200 <= value(after, "courriel_queue_oldest_message_age_seconds", state="hold") < 7300
    assert value(after, "courriel_queue_oldest_message_age_seconds", state="deferred") == 0

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("courriel_auth_failures_total", protocol="imap") == 1
    assert moved("courriel_auth_failures_total", protocol="other") == 1
    assert moved("courriel_message_verdicts_total", method="dkim", result="pass") == 1
    assert value(after, "courriel_dns_check_ok", domain="metrics.test", check="mx") == 0
    assert value(after, "courriel_dns_check_ok", domain="metrics.test", check="spf") == 1
    assert ("courriel_dns_check_ok", (("check", "dkim"), ("domain", "metrics.test"))) not in after  # no verdict
    assert value(after, "courriel_dns_checked_timestamp_seconds", domain="metrics.test") == received.timestamp()
    assert value(during, "courriel_imap_open_sessions") - value(after, "courriel_imap_open_sessions") == 1
    assert value(during, "courriel_imap_idle_sessions") - value(after, "courriel_imap_idle_sessions") == 1
    assert moved("courriel_imap_commands_total", command="UID FETCH", status="ok") == 1
    assert moved("courriel_imap_command_duration_seconds_bucket", command="UID FETCH", le="0.005") == 1
    assert moved("courriel_imap_command_duration_seconds_bucket", command="UID FETCH", le="0.001") == 0


def test_alert_rules_and_dashboard_use_only_exported_metric_names(config, db):
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    exposition = metrics.Exporter(config, db, environ={}).render()[0].decode()
    exported = {name for name, _labels in samples(exposition)}
    # Families with no sample yet still declare their names in HELP lines.
    exported |= set(re.findall(r"^# HELP (\S+)", exposition, re.MULTILINE))
    exported |= {name + suffix for name in list(exported) for suffix in ("_total", "_bucket", "_sum", "_count")}

    rules = yaml.safe_load((root / "contrib" / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"CourrielQueueGrowing", "CourrielDeferredMailOld", "CourrielDnsCheckFailing",
            "CourrielCertificateExpiring", "CourrielAuthFailureSpike"} <= names
    dashboard = json.loads((root / "contrib" / "grafana" / "courriel.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\bcourriel_[a-z_]+", expr)}
    assert used and used <= exported, used - exported
    assert "courriel_queue_oldest_message_age_seconds" in used and "courriel_dns_check_ok" in used
