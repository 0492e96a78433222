"""Configuration: `DATA/courriel.toml` plus `COURRIEL_<SECTION>_<KEY>` environment overrides.

Owns the schema of every setting (name, type, default, documentation), the two profiles
(production and `--dev`, which differ only in listener ports and loopback binding), and the
rendering of the documented configuration file that `courriel init` writes.

Precedence, lowest first: profile default < file < environment.
Security: parses an operator-owned file and environment; rejects unknown keys and bad types
with a clear `ConfigError`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "courriel.toml"
DEFAULT_DATA_DIR = "/var/lib/courriel"


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong type."""


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    default: Any
    doc: str
    dev_default: Any = None

    def default_for(self, dev: bool) -> Any:
        return self.dev_default if dev and self.dev_default is not None else self.default


# Listener roles and their ports: (production, --dev). Issue #2 item 3.
LISTENER_PORTS: dict[str, tuple[int, int]] = {
    "mx": (25, 2525),
    "submission": (587, 2587),
    "submissions": (465, 2465),
    "imap": (143, 2143),
    "imaps": (993, 2993),
    "admin": (8443, 8080),
}

SCHEMA: list[Setting] = [
    Setting("server", "hostname", "localhost", "Public host name: HELO/EHLO, banners, MX target, certificate name."),
    Setting(
        "server", "default_domain", "",
        "Domain on which any user may get a mailbox without the wizard (empty: the hostname's parent domain).",
    ),
    Setting(
        "server", "public_addresses", [],
        "Public IP addresses of this server; the DNS checker confirms their reverse DNS names the hostname.",
    ),
    Setting(
        "domains", "require_verification", True,
        "A new domain receives mail only after its ownership TXT record is verified (the default domain is exempt).",
        dev_default=False,
    ),
    Setting("domains", "mta_sts", False, "Ask for MTA-STS (RFC 8461) and TLS reporting (RFC 8460) records."),
    Setting("domains", "dkim_grace_days", 7, "Days a replaced DKIM key stays published before it is retired."),
    Setting("domains", "check_interval", 3600, "Seconds between DNS checks of every domain (0: never)."),
    Setting("database", "url", "", "SQLAlchemy URL. Empty: SQLite file DATA/courriel.db. PostgreSQL: postgresql+psycopg://user:pass@host/db"),
    Setting("tls", "certificate", "tls/cert.pem", "PEM certificate chain, relative to the data directory."),
    Setting("tls", "private_key", "tls/key.pem", "PEM private key (mode 0600), relative to the data directory."),
    Setting(
        "tls", "allow_plaintext_auth", False,
        "Allow password authentication before TLS on the STARTTLS ports (never on the open Internet).",
        dev_default=True,
    ),
    *[
        Setting(
            "listeners", role, f"0.0.0.0:{prod}", f"Address:port of the {role} listener; empty disables it.",
            dev_default=f"127.0.0.1:{dev}",
        )
        for role, (prod, dev) in LISTENER_PORTS.items()
    ],
    Setting("smtp", "max_message_size", 35 * 1024 * 1024, "Largest message accepted, in bytes (ESMTP SIZE)."),
    Setting("smtp", "max_recipients", 100, "Recipients accepted per transaction (RFC 5321 §4.5.3.1.8: at least 100)."),
    Setting(
        "smtp", "idle_timeout", 300.0,
        "Seconds an SMTP client may stay silent before 421 and disconnection (RFC 5321 §4.5.3.2.7: at least 300).",
    ),
    Setting("smtp", "session_timeout", 1800.0, "Longest SMTP session in seconds, whatever the client does."),
    Setting("smtp", "max_commands", 2000, "Commands accepted in one SMTP session before 421."),
    Setting(
        "smtp", "max_errors", 20,
        "4xx/5xx replies in one SMTP session before 421 (like Postfix's smtpd_hard_error_limit).",
    ),
    Setting("smtp", "max_auth_failures", 3, "Failed AUTH attempts in one SMTP session before 421 and disconnection."),
    Setting("smtp", "max_connections_per_ip", 20, "Concurrent SMTP sessions from one client address."),
    Setting(
        "smtp", "tls_handshake_timeout", 30.0, "Seconds allowed for the TLS handshake on the implicit-TLS port (465).",
    ),
    Setting(
        "smtp", "trusted_networks", [],
        "Networks allowed to relay without authentication (CIDR list). Empty by default: no open relay.",
    ),
    Setting("imap", "workers", 1, "IMAP worker processes sharing the listening sockets."),
    Setting("imap", "max_connections_per_user", 50, "Concurrent IMAP sessions per user."),
    Setting("imap", "max_connections_per_ip", 100, "Concurrent IMAP sessions per client address."),
    Setting(
        "imap", "max_connections", 1000,
        "Concurrent IMAP connections per worker process, from all addresses (0: no limit); past it BYE.",
    ),
    Setting(
        "imap", "login_timeout", 60.0,
        "Seconds a client may stay silent before logging in (RFC 9051 §5.4); it must log in within 3 × this "
        "many seconds of connecting (180 s by default). After login the 30-minute autologout timer applies.",
    ),
    Setting(
        "imap", "max_login_failures", 3,
        "Failed LOGIN/AUTHENTICATE in one IMAP connection before BYE and disconnection (0: no limit).",
    ),
    Setting(
        "imap", "expunge_log_days", 90,
        "Days the expunge log keeps expunged UIDs for QRESYNC (RFC 7162); a client that resyncs from an "
        "older state gets every missing UID as VANISHED. Pruned hourly by the queue role; 0: keep forever.",
    ),
    Setting(
        "sync", "idle_stop", 60.0,
        "Seconds the sync role, when `courriel serve` started it on demand, runs on without an active external "
        "account before it stops; it is started again when an account is added or resumed.",
    ),
    Setting("dns", "nameservers", [], "Resolver name servers as host or host:port. Empty: the system resolver."),
    Setting("dns", "timeout", 5.0, "Seconds per DNS query."),
    Setting("passwords", "min_length", 10, "Minimum password length."),
    Setting(
        "passwords", "min_classes", 2,
        "How many character classes (lower, upper, digits, symbols) a chosen password must mix.",
    ),
    Setting("passwords", "argon2_memory_kib", 65536, "argon2id memory cost (KiB)."),
    Setting("passwords", "argon2_time_cost", 3, "argon2id iterations."),
    Setting(
        "mailboxes", "max_per_user_per_domain", 2,
        "Mailboxes one console user may hold on one domain (0: no limit).",
    ),
    Setting("queue", "retry_min", 300, "First retry delay in seconds; doubles on each failure."),
    Setting("queue", "retry_max", 4 * 3600, "Longest retry delay in seconds."),
    Setting("queue", "lifetime", 5 * 86400, "Seconds a message may stay queued before it bounces."),
    Setting("queue", "delay_warning", 4 * 3600, "Seconds after which a delay notice is sent (0: never)."),
    Setting("queue", "outbound_port", 25, "Destination port for outbound SMTP (tests only; real mail uses 25)."),
    Setting("log", "format", "text", "Log line format: text or json."),
    Setting("log", "level", "info", "Log level: debug, info, warning, error."),
]

_SCHEMA_INDEX = {(s.section, s.key): s for s in SCHEMA}


@dataclass
class Config:
    """Resolved configuration for one data directory."""

    data_dir: Path
    dev: bool = False
    values: dict[tuple[str, str], Any] = field(default_factory=dict)

    def get(self, section: str, key: str) -> Any:
        return self.values[(section, key)]

    def path(self, section: str, key: str) -> Path:
        return self.data_dir / self.get(section, key)

    @property
    def hostname(self) -> str:
        return self.get("server", "hostname")

    @property
    def database_url(self) -> str:
        return self.get("database", "url") or f"sqlite:///{self.data_dir / 'courriel.db'}"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def listener(self, role: str) -> tuple[str, int] | None:
        """The (host, port) of a listener role, or None when it is disabled."""
        value = self.get("listeners", role)
        if not value:
            return None
        host, _, port = value.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


def _coerce(setting: Setting, raw: Any, origin: str) -> Any:
    kind = type(setting.default)
    name = f"{setting.section}.{setting.key}"
    if isinstance(raw, str) and kind is not str:
        text = raw.strip()
        try:
            if kind is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if kind is list:
                return [item.strip() for item in text.split(",") if item.strip()]
            return kind(text)
        except ValueError:
            raise ConfigError(f"{origin}: {name} must be a {kind.__name__}, got {raw!r}") from None
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if not isinstance(raw, kind) or (kind is int and isinstance(raw, bool)):
        raise ConfigError(f"{origin}: {name} must be a {kind.__name__}, got {raw!r}")
    return raw


def default_data_dir() -> Path:
    return Path(os.environ.get("COURRIEL_DATA") or DEFAULT_DATA_DIR)


def load(data_dir: Path | str | None = None, dev: bool = False, environ=None) -> Config:
    """Load the configuration of a data directory (the file may be absent)."""
    environ = os.environ if environ is None else environ
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    values = {(s.section, s.key): s.default_for(dev) for s in SCHEMA}
    config_path = data_dir / CONFIG_FILE
    if config_path.exists():
        try:
            document = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
        for section, table in document.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{config_path}: top-level key {section!r} is not a [section]")
            for key, raw in table.items():
                setting = _SCHEMA_INDEX.get((section, key))
                if setting is None:
                    raise ConfigError(f"{config_path}: unknown setting {section}.{key}")
                values[(section, key)] = _coerce(setting, raw, str(config_path))
    for setting in SCHEMA:
        name = f"COURRIEL_{setting.section.upper()}_{setting.key.upper()}"
        if name in environ:
            values[(setting.section, setting.key)] = _coerce(setting, environ[name], name)
    return Config(data_dir=data_dir, dev=dev, values=values)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def render_file(overrides: dict[tuple[str, str], Any] | None = None) -> str:
    """The documented configuration file: every key with its default, commented out
    unless `overrides` sets it."""
    overrides = overrides or {}
    lines = [
        "# Courriel configuration. Every setting is listed with its default; uncomment to change.",
        "# Environment variables COURRIEL_<SECTION>_<KEY> override this file.",
        "# `courriel serve --dev` uses loopback listeners on ports 2525/2587/2465/2143/2993/8080.",
    ]
    section = None
    for setting in SCHEMA:
        if setting.section != section:
            section = setting.section
            lines += ["", f"[{section}]"]
        lines.append(f"# {setting.doc}")
        if setting.dev_default is not None:
            lines.append(f"# (--dev default: {_toml_value(setting.dev_default)})")
        key = (setting.section, setting.key)
        if key in overrides:
            lines.append(f"{setting.key} = {_toml_value(overrides[key])}")
        else:
            lines.append(f"# {setting.key} = {_toml_value(setting.default)}")
    return "\n".join(lines) + "\n"
