"""The data directory: created and brought up to date by `courriel init`.

Owns its layout: `courriel.toml`, the SQLite database (through Alembic migrations),
`tls/` (self-signed certificate, key mode 0600), `blobs/`, `spool/`, `keys/` (DKIM,
0700), `run/` (notify sockets). `initialise` is idempotent: a second run changes
nothing and reports so.
Durability: files are written through `courriel.durable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from courriel import config as config_mod
from courriel import durable, schema, tls
from courriel.db import Database

SUBDIRS = {"blobs": 0o750, "spool": 0o750, "keys": 0o700, "run": 0o750, "tls": 0o750}


@dataclass
class InitResult:
    data_dir: Path
    created: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created)


def initialise(data_dir: Path, hostname: str | None = None) -> InitResult:
    data_dir = Path(data_dir).absolute()
    result = InitResult(data_dir)
    if not data_dir.exists():
        durable.make_dirs(data_dir, mode=0o750)
        result.created.append(str(data_dir))
    config_path = data_dir / config_mod.CONFIG_FILE
    if not config_path.exists():
        overrides = {("server", "hostname"): hostname} if hostname else {}
        durable.write_file(config_path, config_mod.render_file(overrides).encode(), mode=0o640)
        result.created.append(config_mod.CONFIG_FILE)
    config = config_mod.load(data_dir)
    for name, mode in SUBDIRS.items():
        if not (data_dir / name).exists():
            durable.make_dirs(data_dir / name, mode=mode)
            result.created.append(name + "/")
    cert_path = config.path("tls", "certificate")
    key_path = config.path("tls", "private_key")
    if not cert_path.exists() or not key_path.exists():
        tls.make_self_signed(cert_path, key_path, config.hostname)
        result.created.append("self-signed TLS certificate")
    db = Database(config.database_url)
    try:
        if schema.upgrade(db):
            result.created.append(f"database schema {schema.head_revision()}")
    finally:
        db.dispose()
    return result
