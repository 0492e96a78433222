"""Operations commands: `courriel backup DEST`, `courriel restore SRC`, `courriel import maildir|mbox
PATH --mailbox ADDRESS`, `courriel export --mailbox ADDRESS DEST`, `courriel healthcheck`.

Backup and restore are `courriel.backup`; import and export are `courriel.maildir` (through the
store). `healthcheck` asks the admin role's `/healthz` on this host (the container
HEALTHCHECK): exit status 0 when it answers 200, 1 otherwise.

Standards: none (operator interface). Security: paths come from the operator; a backup holds
keys and is created mode 0700; the health probe connects to loopback only and skips
certificate verification (the self-signed certificate of a fresh install; nothing secret is
sent). Durability: see `courriel.backup` and `courriel.maildir`.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path

from courriel import config as config_mod
from courriel import schema
from courriel.cli import CommandError, add_data_argument, add_json_argument, emit
from courriel.db import Database

HEALTH_PATH = "/healthz"


def register(subparsers) -> None:
    sub = subparsers.add_parser("backup", help="back up the data directory (online) into DEST")
    add_data_argument(sub)
    add_json_argument(sub)
    sub.add_argument("destination", metavar="DEST", help="new or empty directory (outside the data directory)")
    sub.set_defaults(handler=_backup)

    sub = subparsers.add_parser("restore", help="restore a backup into an empty data directory")
    add_data_argument(sub)
    add_json_argument(sub)
    sub.add_argument("source", metavar="SRC", help="a directory written by `courriel backup`")
    sub.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check of every message file")
    sub.set_defaults(handler=_restore)

    sub = subparsers.add_parser("import", help="import a Maildir++ tree or an mbox file into a mailbox")
    add_data_argument(sub)
    add_json_argument(sub)
    sub.add_argument("format", choices=["maildir", "mbox"])
    sub.add_argument("path", metavar="PATH")
    sub.add_argument("--mailbox", required=True, metavar="ADDRESS")
    sub.add_argument("--folder", default="INBOX", help="mbox only: the folder to import into (default INBOX)")
    sub.set_defaults(handler=_import)

    sub = subparsers.add_parser("export", help="export a mailbox as a Maildir++ tree (or one folder as mbox)")
    add_data_argument(sub)
    add_json_argument(sub)
    sub.add_argument("destination", metavar="DEST", help="new or empty directory (a new file with --format mbox)")
    sub.add_argument("--mailbox", required=True, metavar="ADDRESS")
    sub.add_argument("--format", choices=["maildir", "mbox"], default="maildir")
    sub.add_argument("--folder", default="INBOX", help="mbox only: the folder to export (default INBOX)")
    sub.add_argument("--line-endings", choices=["lf", "crlf"], default="lf",
                     help="lf (the Unix convention, default) or crlf (the stored bytes exactly)")
    sub.set_defaults(handler=_export)

    sub = subparsers.add_parser("healthcheck", help="exit 0 when the admin role answers /healthz on this host")
    add_data_argument(sub)
    sub.add_argument("--dev", action="store_true", help="development profile (plain HTTP on the dev port)")
    sub.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    sub.set_defaults(handler=_healthcheck)


def _config(args, dev: bool = False) -> config_mod.Config:
    config = config_mod.load(args.data or config_mod.default_data_dir(), dev=dev)
    if not (config.data_dir / config_mod.CONFIG_FILE).exists():
        raise CommandError(f"{config.data_dir} is not a Courriel data directory (run `courriel init`)")
    return config


def _backup(args) -> int:
    from courriel import backup

    config = _config(args)
    try:
        report = backup.backup(config, Path(args.destination))
    except backup.BackupError as exc:
        raise CommandError(str(exc)) from None
    lines = [f"Backed up {config.data_dir} to {report.destination}:",
             f"  database: {report.database}",
             f"  message files: {report.blobs} ({report.blob_bytes} bytes; {report.linked} hard links, "
             f"{report.copied} copies)",
             f"  other files: {len(report.files)}"]
    if report.secrets:
        lines.append("  CONTAINS SECRETS (directory mode 0700; keep it as private as the server): "
                     + "; ".join(report.secrets))
    if report.database == "postgresql":
        lines.append("  PostgreSQL is not copied: keep the `pg_dump --format=custom` taken just before this backup.")
    if report.missing_blobs:
        lines.append(f"  WARNING: {len(report.missing_blobs)} message file(s) were already missing in the data "
                     "directory")
    emit(args, {"destination": str(report.destination), "database": report.database, "blobs": report.blobs,
                "blob_bytes": report.blob_bytes, "linked": report.linked, "copied": report.copied,
                "files": report.files, "missing_blobs": report.missing_blobs,
                "contains_secrets": report.secrets}, "\n".join(lines))
    return 1 if report.missing_blobs else 0


def _restore(args) -> int:
    from courriel import backup

    data_dir = Path(args.data or config_mod.default_data_dir())
    try:
        report = backup.restore(Path(args.source), data_dir, verify=not args.no_verify)
    except backup.BackupError as exc:
        raise CommandError(str(exc)) from None
    lines = [f"Restored {args.source} into {report.data_dir}: {report.blobs} message files, {report.files} files."]
    if report.database == "postgresql":
        lines.append("Restore the database with `pg_restore` from the dump taken with this backup.")
    emit(args, {"data_dir": str(report.data_dir), "database": report.database, "blobs": report.blobs,
                "files": report.files}, "\n".join(lines))
    return 0


def _open_store(config: config_mod.Config):
    from courriel.blobs import BlobStore
    from courriel.store import Store

    db = Database(config.database_url)
    if schema.current_revision(db) != schema.head_revision():
        db.dispose()
        raise CommandError("the database schema is not current (run `courriel init` to migrate it)")
    return db, Store(db, BlobStore(config.blob_dir, db), config.run_dir)


def _import(args) -> int:
    from courriel import maildir
    from courriel.store import StoreError

    config = _config(args)
    db, store = _open_store(config)
    try:
        mailbox = maildir.mailbox_id(db, args.mailbox)
        if args.format == "maildir":
            report = maildir.import_maildir(store, mailbox, Path(args.path))
        else:
            report = maildir.import_mbox(store, mailbox, Path(args.path), folder=args.folder)
    except (maildir.TransferError, StoreError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.dispose()
    emit(args, {"messages": report.messages, "bytes": report.bytes, "folders": report.folders},
         f"Imported {report.messages} message(s) into {args.mailbox}: "
         + (", ".join(f"{name} {count}" for name, count in report.folders.items()) or "nothing to import"))
    return 0


def _export(args) -> int:
    from courriel import maildir
    from courriel.store import StoreError

    config = _config(args)
    db, store = _open_store(config)
    try:
        mailbox = maildir.mailbox_id(db, args.mailbox)
        if args.format == "maildir":
            report = maildir.export_maildir(store, mailbox, Path(args.destination), line_endings=args.line_endings)
        else:
            report = maildir.export_mbox(store, mailbox, Path(args.destination), folder=args.folder,
                                         line_endings=args.line_endings)
    except (maildir.TransferError, StoreError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.dispose()
    emit(args, {"messages": report.messages, "bytes": report.bytes, "folders": report.folders},
         f"Exported {report.messages} message(s) of {args.mailbox} to {args.destination}")
    return 0


def health_url(config: config_mod.Config) -> str | None:
    """The URL of /healthz on this host, from the admin listener (None when it is disabled)."""
    address = config.listener("admin")
    if address is None:
        return None
    host, port = address
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    host = f"[{host}]" if ":" in host else host
    return f"{'http' if config.dev else 'https'}://{host}:{port}{HEALTH_PATH}"


def _healthcheck(args) -> int:
    config = config_mod.load(args.data or config_mod.default_data_dir(), dev=args.dev)
    url = health_url(config)
    if url is None:
        raise CommandError("the admin listener is disabled; nothing to check", status=1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # loopback liveness probe of our own (often self-signed) certificate
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=context) as response:  # noqa: S310
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"courriel: unhealthy: {url}: {getattr(exc, 'reason', exc)}")
        return 1
    print(f"{'healthy' if ok else 'unhealthy'}: {url}")
    return 0 if ok else 1
