"""Prometheus metrics of every role, and their exposition at the admin role's `/metrics`.

Owns the metric definitions (names, labels, buckets), the small recording functions that role
code calls (one line at the place where the event happens), the multiprocess directory, and
the scrape-time collector that reads the queue tables and the TLS certificate.

Processes: every role runs in its own process (ARCHITECTURE §2). prometheus-client's
multiprocess mode aggregates them: the supervisor empties `DATA/run/metrics` at start and
passes `PROMETHEUS_MULTIPROC_DIR` to each role (it must be in the environment before
prometheus-client is imported), and calls `forget_process` when a role exits so that its
live gauges (open IMAP sessions...) disappear. Counters of exited processes stay in the sum,
so a restarted role does not make a counter go backwards. Without the variable (a role run
alone, tests) every metric lives in the process's default registry.

API for the roles (each call is cheap and never raises on a bad label value)::

    # smtp role
    metrics.smtp_connection(listener)                       # "mx" | "submission" | "submissions"
    metrics.smtp_transaction(listener, result, size=0)      # result: accepted | rejected | failed
    metrics.smtp_rejection(listener, stage, reason)         # stage: connect | mail | rcpt | data (SMTP_STAGES)
    metrics.auth_failure(protocol)                          # "smtp" | "imap" | "admin"
    metrics.message_verdict(method, result)                 # method: dkim | spf | dmarc; RFC 8601 result
    # imap role
    with metrics.imap_session(): ...                        # one connected session (gauge + counter)
    with metrics.imap_idle(): ...                           # a session in IDLE (RFC 2177)
    metrics.imap_command(command, status, seconds)          # status: ok | no | bad
    # queue role (wired in `courriel.queue.runner`)
    metrics.delivery_attempts(states)                       # one per recipient result of an attempt
    metrics.queue_message_processed(outcome)                # finished | rescheduled
    # sync role
    metrics.sync_run(account, result, messages=0)           # result: ok | failed (wired in imapsync.runner)
Read at scrape time (`StateCollector`), so they are right even when no role is running: queue
size and age of the oldest message per state, the DNS checker's last verdict per domain and
check (stored on the domain by `courriel.admin.services.dns`), the certificate's expiry, each
external account's import progress (done/total messages from `sync_folders`).

Standards: Prometheus text exposition format 0.0.4 (through prometheus-client).
Security: labels never carry addresses, passwords or message content; domain names and
external account ids only. The exposition reads the database and the certificate file only.
Durability: none (metrics are not durable state; `DATA/run/metrics` is emptied at start).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from courriel import __version__
from courriel.models import Domain, QueueMessage, SyncFolder
from courriel.queue import stats

log = logging.getLogger("courriel.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_SUBDIR = "metrics"

# Label values outside these sets are recorded as "other" (bounded cardinality).
SMTP_LISTENERS = frozenset({"mx", "submission", "submissions"})
SMTP_RESULTS = frozenset({"accepted", "rejected", "failed"})
SMTP_STAGES = frozenset({"connect", "mail", "rcpt", "data"})
# Why the SMTP role refused a command (courriel.smtp.replies.reason maps its replies to these).
SMTP_REJECT_REASONS = frozenset({
    "syntax", "bad_sequence", "bad_address", "unknown_recipient", "disabled_recipient", "unverified_domain",
    "alias_loop", "mailbox_full", "too_many_recipients", "relay_denied", "sender_not_owned",
    "local_sender_needs_auth", "from_not_owned", "no_valid_recipients", "message_too_big", "line_too_long",
    "bare_line_ending", "dmarc_reject", "malformed_message", "auth_required", "too_many_connections",
    "internal_error",
})
PROTOCOLS = frozenset({"smtp", "imap", "pop", "admin", "sync"})
VERDICT_METHODS = frozenset({"dkim", "spf", "dmarc", "arc"})
# RFC 8601 §2.7 result keywords for DKIM, SPF and DMARC.
VERDICT_RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"})
DELIVERY_RESULTS = frozenset({"delivered", "relayed", "deferred", "bounced"})
QUEUE_OUTCOMES = frozenset({"finished", "rescheduled"})
IMAP_STATUSES = frozenset({"ok", "no", "bad"})
# RFC 9051 §6 and the extensions the IMAP role implements.
IMAP_COMMAND_NAMES = frozenset({
    "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "ENABLE", "SELECT", "EXAMINE", "CREATE",
    "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "NAMESPACE", "STATUS", "APPEND", "IDLE",
    "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID", "ID", "SORT",
    "THREAD", "GETQUOTA", "GETQUOTAROOT", "SETQUOTA", "GETMETADATA", "SETMETADATA", "COMPRESS", "ESEARCH",
    "UID FETCH", "UID STORE", "UID SEARCH", "UID COPY", "UID MOVE", "UID EXPUNGE", "UID SORT", "UID THREAD",
})
SYNC_RESULTS = frozenset({"ok", "failed"})
_SAFE_LABEL = re.compile(r"^[A-Za-z0-9._:@-]{1,253}$")

# --------------------------------------------------------------------------- definitions

SMTP_CONNECTIONS = Counter("courriel_smtp_connections", "SMTP connections accepted.", ["listener"])
SMTP_TRANSACTIONS = Counter("courriel_smtp_transactions", "SMTP mail transactions by result.",
                            ["listener", "result"])
SMTP_BYTES = Counter("courriel_smtp_received_bytes", "Message bytes accepted over SMTP.", ["listener"])
SMTP_REJECTIONS = Counter("courriel_smtp_rejections", "SMTP commands refused, by stage and reason.",
                          ["listener", "stage", "reason"])
AUTH_FAILURES = Counter("courriel_auth_failures", "Failed authentications by protocol.", ["protocol"])
VERDICTS = Counter("courriel_message_verdicts", "DKIM, SPF and DMARC results of received mail (RFC 8601).",
                   ["method", "result"])
DELIVERY_ATTEMPTS = Counter("courriel_delivery_attempts", "Recipient delivery attempts by result.", ["result"])
QUEUE_PROCESSED = Counter("courriel_queue_processed_messages", "Queue entries processed by outcome.", ["outcome"])
IMAP_SESSIONS_TOTAL = Counter("courriel_imap_sessions", "IMAP sessions opened.")
IMAP_SESSIONS_OPEN = Gauge("courriel_imap_open_sessions", "IMAP sessions connected now.",
                           multiprocess_mode="livesum")
IMAP_IDLE_OPEN = Gauge("courriel_imap_idle_sessions", "IMAP sessions in IDLE now (RFC 2177).",
                       multiprocess_mode="livesum")
IMAP_COMMANDS = Counter("courriel_imap_commands", "IMAP commands by name and completion.", ["command", "status"])
IMAP_LATENCY = Histogram("courriel_imap_command_duration_seconds", "IMAP command latency.", ["command"],
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
SYNC_RUNS = Counter("courriel_sync_runs", "External account synchronisation runs by result.", ["account", "result"])
SYNC_MESSAGES = Counter("courriel_sync_messages", "Messages copied from external accounts.", ["account"])
SYNC_LAST_SUCCESS = Gauge("courriel_sync_last_success_timestamp_seconds",
                          "Unix time of the last successful run per external account.", ["account"],
                          multiprocess_mode="mostrecent")


def _one_of(value: str, allowed: frozenset[str]) -> str:
    value = str(value).lower()
    return value if value in allowed else "other"


def _label(value: object) -> str:
    text = str(value)
    return text if _SAFE_LABEL.match(text) else "other"


# --------------------------------------------------------------------------- recording API


def smtp_connection(listener: str) -> None:
    SMTP_CONNECTIONS.labels(_one_of(listener, SMTP_LISTENERS)).inc()


def smtp_transaction(listener: str, result: str, size: int = 0) -> None:
    """One MAIL FROM ... DATA transaction; `size` bytes counted when it was accepted."""
    listener = _one_of(listener, SMTP_LISTENERS)
    result = _one_of(result, SMTP_RESULTS)
    SMTP_TRANSACTIONS.labels(listener, result).inc()
    if result == "accepted" and size > 0:
        SMTP_BYTES.labels(listener).inc(size)


def smtp_rejection(listener: str, stage: str, reason: str) -> None:
    """One refused MAIL, RCPT or end of data (or a connection turned away), by reason."""
    SMTP_REJECTIONS.labels(_one_of(listener, SMTP_LISTENERS), _one_of(stage, SMTP_STAGES),
                           _one_of(reason, SMTP_REJECT_REASONS)).inc()


def auth_failure(protocol: str) -> None:
    AUTH_FAILURES.labels(_one_of(protocol, PROTOCOLS)).inc()


def message_verdict(method: str, result: str) -> None:
    VERDICTS.labels(_one_of(method, VERDICT_METHODS), _one_of(result, VERDICT_RESULTS)).inc()


def delivery_attempts(states: Iterable[str]) -> None:
    """The recipient results of one delivery attempt (RecipientState values)."""
    for state in states:
        DELIVERY_ATTEMPTS.labels(_one_of(state, DELIVERY_RESULTS)).inc()


def queue_message_processed(outcome: str) -> None:
    QUEUE_PROCESSED.labels(_one_of(outcome, QUEUE_OUTCOMES)).inc()


@contextlib.contextmanager
def imap_session() -> Iterator[None]:
    IMAP_SESSIONS_TOTAL.inc()
    IMAP_SESSIONS_OPEN.inc()
    try:
        yield
    finally:
        IMAP_SESSIONS_OPEN.dec()


@contextlib.contextmanager
def imap_idle() -> Iterator[None]:
    IMAP_IDLE_OPEN.inc()
    try:
        yield
    finally:
        IMAP_IDLE_OPEN.dec()


def imap_command(command: str, status: str, seconds: float) -> None:
    name = " ".join(str(command).upper().split())
    name = name if name in IMAP_COMMAND_NAMES else "OTHER"
    IMAP_COMMANDS.labels(name, _one_of(status, IMAP_STATUSES)).inc()
    IMAP_LATENCY.labels(name).observe(max(0.0, seconds))


def sync_run(account: str | int, result: str, messages: int = 0) -> None:
    account = _label(account)
    result = _one_of(result, SYNC_RESULTS)
    SYNC_RUNS.labels(account, result).inc()
    if messages > 0:
        SYNC_MESSAGES.labels(account).inc(messages)
    if result == "ok":
        SYNC_LAST_SUCCESS.labels(account).set(time.time())


# --------------------------------------------------------------------------- forked roles


def _close_inherited_files() -> None:
    """In a child just forked from a process that holds metric files (the supervisor imports this
    module, and defining a metric without labels opens its file): close those files at once.

    prometheus-client closes them itself on the child's first recording, by then too late: a forked
    role has meanwhile put its listening sockets on descriptors 3, 4... (LISTEN_FDS), the same
    numbers, so that close would shut a listening socket and fail ("Illegal seek"). Closing is
    idempotent in prometheus-client, so its own close later does nothing; the child then records
    into files of its own pid, as it does after any fork.
    """
    reset = getattr(values.ValueClass, "_MmapedValue__reset", None)
    if reset is None or not reset.__closure__:
        return  # single-process mode: no files
    cells = dict(zip(reset.__code__.co_freevars, reset.__closure__, strict=False))
    files = cells["files"].cell_contents if "files" in cells else {}
    for mapped in list(files.values()):
        with contextlib.suppress(OSError, ValueError):
            mapped.close()


os.register_at_fork(after_in_child=_close_inherited_files)


# --------------------------------------------------------------------------- multiprocess directory


def multiprocess_dir(config) -> Path:
    return config.run_dir / METRICS_SUBDIR


def reset_multiprocess_dir(config) -> Path:
    """Create `DATA/run/metrics` and remove the files of a previous run; returns its path."""
    path = multiprocess_dir(config)
    path.mkdir(mode=0o750, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def forget_process(path: Path | str | None, pid: int) -> None:
    """Drop the live gauges of an exited process (prometheus-client keeps them otherwise)."""
    if path:
        try:
            multiprocess.mark_process_dead(pid, str(path))
        except OSError as exc:
            log.warning("cannot clear the metrics of an exited role", extra={"child_pid": pid, "error": str(exc)})


# --------------------------------------------------------------------------- exposition


def _as_utc(value) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def certificate_not_after(path: Path) -> dt.datetime | None:
    """The expiry of the first certificate of a PEM file, or None when it is missing or unreadable."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
    except (OSError, ValueError):
        return None


class StateCollector:
    """Gauges read at scrape time: queue size and oldest age per state, TLS certificate expiry."""

    def __init__(self, config, database):
        self.config = config
        self.database = database

    def collect(self):
        info = GaugeMetricFamily("courriel_build_info", "Version of the running software.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        up = GaugeMetricFamily("courriel_database_up", "1 when the database answered the scrape's queries.")
        try:
            sizes = stats.size_by_state(self.database)
            with self.database.read() as session:
                oldest = dict(session.execute(
                    select(QueueMessage.state, func.min(QueueMessage.received_at)).group_by(QueueMessage.state)
                ).all())
        except (SQLAlchemyError, OSError) as exc:
            log.warning("metrics: database not reachable", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            size = GaugeMetricFamily("courriel_queue_messages", "Messages in the queue per state.", labels=["state"])
            age = GaugeMetricFamily("courriel_queue_oldest_message_age_seconds",
                                    "Age of the oldest queued message per state (0 when none).", labels=["state"])
            now = dt.datetime.now(dt.UTC)
            for state, count in sizes.items():
                size.add_metric([state], count)
                received = _as_utc(oldest.get(state))
                age.add_metric([state], max(0.0, (now - received).total_seconds()) if received else 0.0)
            yield size
            yield age
        yield from self._dns_checks()
        yield from self._sync_progress()
        expiry = GaugeMetricFamily("courriel_tls_certificate_expiry_timestamp_seconds",
                                   "Unix time at which the served TLS certificate expires.", labels=["certificate"])
        relative = str(self.config.get("tls", "certificate"))
        not_after = certificate_not_after(self.config.path("tls", "certificate"))
        if not_after is not None:
            expiry.add_metric([relative], not_after.timestamp())
        yield expiry


    def _sync_progress(self):
        """courriel_sync_import_{done,total}_messages{account}: each external account's import
        progress (its folders summed: remote messages present here / on the remote at the last scan)."""
        done = GaugeMetricFamily("courriel_sync_import_done_messages",
                                 "Remote messages already present locally, per external account.", labels=["account"])
        total = GaugeMetricFamily("courriel_sync_import_total_messages",
                                  "Remote messages at the last scan, per external account.", labels=["account"])
        try:
            with self.database.read() as session:
                rows = session.execute(select(SyncFolder.account_id, func.sum(SyncFolder.done),
                                              func.sum(SyncFolder.total)).group_by(SyncFolder.account_id)).all()
        except (SQLAlchemyError, OSError):
            return
        for account, done_count, total_count in rows:
            done.add_metric([_label(account)], float(done_count or 0))
            total.add_metric([_label(account)], float(total_count or 0))
        yield done
        yield total

    def _dns_checks(self):
        """courriel_dns_check_ok{domain, check}: 1 when every record of that check was found right,
        0 when one is missing or wrong; a check with only temporary DNS failures is left out."""
        verdicts = GaugeMetricFamily("courriel_dns_check_ok",
                                     "1 when the domain's last DNS check found the records right, 0 otherwise.",
                                     labels=["domain", "check"])
        checked = GaugeMetricFamily("courriel_dns_checked_timestamp_seconds",
                                    "Unix time of the domain's last DNS check.", labels=["domain"])
        try:
            with self.database.read() as session:
                rows = session.execute(select(Domain.name, Domain.dns_status, Domain.dns_checked_at)
                                       .where(Domain.dns_status.is_not(None))).all()
        except (SQLAlchemyError, OSError):
            return
        for name, status, checked_at in rows:
            try:
                records = json.loads(status).get("records", [])
                by_check: dict[str, set[str]] = {}
                for record in records:
                    by_check.setdefault(str(record["check"]), set()).add(str(record["status"]))
            except (ValueError, TypeError, AttributeError, KeyError):
                continue
            for check, statuses in sorted(by_check.items()):
                if statuses <= {"error"}:
                    continue
                verdicts.add_metric([_label(name), _label(check)], 1 if statuses <= {"ok", "error"} else 0)
            when = _as_utc(checked_at)
            if when is not None:
                checked.add_metric([_label(name)], when.timestamp())
        yield verdicts
        yield checked


class _ProcessRegistry:
    """The default registry's collectors (single-process mode: a role run alone, tests)."""

    def collect(self):
        yield from REGISTRY.collect()


class Exporter:
    """What `/metrics` serves: every role's metrics plus the scrape-time gauges."""

    def __init__(self, config, database, environ=None):
        environ = os.environ if environ is None else environ
        self.registry = CollectorRegistry(auto_describe=False)
        path = environ.get(MULTIPROC_ENV)
        if path and Path(path).is_dir():
            multiprocess.MultiProcessCollector(self.registry, path=path)
        else:
            self.registry.register(_ProcessRegistry())
        self.registry.register(StateCollector(config, database))

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type (blocking: reads files and the database)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
