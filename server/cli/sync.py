"""`courriel sync add|list|show|pause|resume|disable|remove|run`: external IMAP/POP3 accounts.

`add` detects the server settings from the address (`courriel.imapsync.discovery`) unless
they are given; the password is read from a prompt, or from standard input with
`--password-stdin`, stored encrypted and never shown again. `show` prints per-folder import
progress (done/total, rate, ETA) and the account's last error as the server worded it.
`run` syncs in the foreground (all active accounts, or one; `--once` for a single pass).

Security: the password never appears in arguments, output or logs; settings are validated
before anything is written (exit 2, nothing changed).
"""

from __future__ import annotations

import getpass
import sys
import threading
import time

from courriel import config as config_mod
from courriel import schema
from courriel.blobs import BlobStore
from courriel.cli import CommandError, add_data_argument, add_json_argument, emit, table
from courriel.db import Database
from courriel.store import Store

DEFAULT_PORTS = {("imap", "ssl"): 993, ("imap", "starttls"): 143, ("imap", "none"): 143,
                 ("pop3", "ssl"): 995, ("pop3", "starttls"): 110, ("pop3", "none"): 110}


def register(subparsers) -> None:
    parser = subparsers.add_parser("sync", help="external IMAP/POP3 accounts kept in step with mailboxes")
    commands = parser.add_subparsers(dest="sync_command", metavar="ACTION")
    commands.required = True

    def leaf(name: str, help_text: str, function, with_id: bool = True):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_data_argument(sub)
        add_json_argument(sub)
        if with_id:
            sub.add_argument("account_id", metavar="ID", type=int, help="account id (see `courriel sync list`)")
        sub.set_defaults(handler=lambda args: _run(args, function))
        return sub

    add = leaf("add", "add an external account to a mailbox", _add, with_id=False)
    add.add_argument("mailbox", help="local mailbox address (or id)")
    add.add_argument("email", help="the external account's e-mail address")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--protocol", choices=["imap", "pop3"])
    add.add_argument("--host")
    add.add_argument("--port", type=int)
    add.add_argument("--security", choices=["ssl", "starttls", "none"])
    add.add_argument("--user", help="login name (default: the e-mail address)")
    add.add_argument("--auth", choices=["plain", "cram-md5"], default="plain")
    add.add_argument("--delete-from-server", action="store_true", help="POP3: delete messages once imported")
    listing = leaf("list", "list external accounts", _list, with_id=False)
    listing.add_argument("--mailbox", help="only the accounts of this mailbox")
    leaf("show", "show an account, its per-folder progress and last error", _show)
    leaf("pause", "pause syncing (resume later)", lambda a, c: _state(a, c, "paused"))
    leaf("resume", "resume syncing (clears the failure count)", lambda a, c: _state(a, c, "active"))
    leaf("disable", "stop syncing; imported messages are kept", lambda a, c: _state(a, c, "disabled"))
    leaf("remove", "remove the account and the messages it imported", _remove)
    run = leaf("run", "sync in the foreground (every active account, or one)", _run_sync, with_id=False)
    run.add_argument("account_id", metavar="ID", type=int, nargs="?", help="only this account")
    run.add_argument("--once", action="store_true", help="one pass, then exit")


class _Context:
    def __init__(self, args):
        self.config = config_mod.load(args.data or config_mod.default_data_dir())
        if not (self.config.data_dir / config_mod.CONFIG_FILE).exists():
            raise CommandError(f"{self.config.data_dir} is not a Courriel data directory (run `courriel init`)")
        self.db = Database(self.config.database_url)
        if schema.current_revision(self.db) != schema.head_revision():
            self.db.dispose()
            raise CommandError("the database schema is not current (run `courriel init` to migrate it)")
        self.store = Store(self.db, BlobStore(self.config.blob_dir, self.db), run_dir=self.config.run_dir)


def _run(args, function) -> int:
    from courriel.imapsync import accounts

    context = _Context(args)
    try:
        return function(args, context) or 0
    except accounts.AccountError as exc:
        raise CommandError(str(exc)) from None
    finally:
        context.db.dispose()


def _read_password(args) -> str:
    if args.password_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = getpass.getpass(f"Password for {args.email}: ")
    if not secret:
        raise CommandError("a password is required")
    return secret


def _add(args, context: _Context) -> int:
    from courriel import notify
    from courriel.dns.resolver import Resolver
    from courriel.imapsync import accounts, discovery

    mailbox_id = accounts.find_mailbox(context.db, args.mailbox)
    if args.host:
        protocol = args.protocol or "imap"
        security = args.security or "ssl"
        port = args.port or DEFAULT_PORTS[(protocol, security)]
        settings = discovery.ServerSettings(protocol, args.host, port, security, args.user or args.email,
                                            args.auth, source="manual")
    else:
        try:
            discovery.split_address(args.email)
            settings = discovery.discover(args.email, Resolver.from_config(context.config))
        except discovery.DiscoveryError as exc:
            raise CommandError(str(exc)) from None
        if settings.confirm:  # RFC 6186 §6: the user confirms a server outside their domain by naming it
            raise CommandError(f"{settings.confirm}; to use it, add the account with --host {settings.host} "
                               f"--port {settings.port} --security {settings.security}")
        settings = discovery.ServerSettings(
            args.protocol or settings.protocol, settings.host, args.port or settings.port,
            args.security or settings.security, args.user or settings.username, args.auth or settings.auth,
            settings.source)
    accounts.validate(settings.protocol, settings.host, settings.port, settings.security, settings.auth)
    secret = _read_password(args)
    account_id = accounts.create(context.db, context.config.data_dir, mailbox_id, args.email, secret,
                                 protocol=settings.protocol, host=settings.host, port=settings.port,
                                 security=settings.security, username=settings.username, auth=settings.auth,
                                 leave_on_server=not args.delete_from_server)
    notify.accounts_changed(context.config.run_dir, account_id)  # `courriel serve` starts the sync role
    view = accounts.get(context.db, account_id)
    payload = view.as_json() | {"settings_from": settings.source}
    emit(args, payload, f"added sync account {account_id}: {settings.protocol} {settings.host}:{settings.port} "
                        f"({settings.security}, from {settings.source})")
    return 0


def _list(args, context: _Context) -> int:
    from courriel.imapsync import accounts

    mailbox_id = accounts.find_mailbox(context.db, args.mailbox) if args.mailbox else None
    views = accounts.list_accounts(context.db, mailbox_id=mailbox_id)
    rows = [{"id": v.id, "mailbox": v.mailbox, "email": v.email, "server": f"{v.protocol}://{v.host}:{v.port}",
             "state": v.state, "failures": v.failures, "last_error": (v.last_error or "")[:60]} for v in views]
    emit(args, {"accounts": [v.as_json() for v in views]},
         lambda: table(rows, ["id", "mailbox", "email", "server", "state", "failures", "last_error"]))
    return 0


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _show(args, context: _Context) -> int:
    from courriel.imapsync import accounts

    view = accounts.get(context.db, args.account_id)

    def text() -> str:
        data = view.as_json()
        lines = [f"{key}: {data[key]}" for key in ("id", "mailbox", "email", "protocol", "host", "port", "security",
                                                   "username", "auth", "state", "failures", "last_error",
                                                   "last_error_at", "next_attempt_at", "last_sync_at")]
        rows = [{"remote": f.remote_name, "local": f.local_folder, "progress": f"{f.done}/{f.total}",
                 "rate": f"{f.rate:.1f}/s" if f.rate else "-", "eta": _duration(f.eta_seconds)}
                for f in view.folders]
        return "\n".join(lines) + "\n\n" + table(rows, ["remote", "local", "progress", "rate", "eta"])

    emit(args, view.as_json(), text)
    return 0


def _state(args, context: _Context, state: str) -> int:
    from courriel import notify
    from courriel.imapsync import accounts

    accounts.set_state(context.db, args.account_id, state)
    notify.mailbox_changed(context.config.run_dir, accounts.get(context.db, args.account_id, False).mailbox_id)
    if state == "active":
        notify.accounts_changed(context.config.run_dir, args.account_id)
    emit(args, {"id": args.account_id, "state": state}, f"sync account {args.account_id}: {state}")
    return 0


def _remove(args, context: _Context) -> int:
    from courriel.imapsync import accounts

    removed = accounts.remove(context.db, context.store, args.account_id)
    emit(args, {"id": args.account_id, "removed": True, "messages_removed": removed},
         f"sync account {args.account_id} removed with {removed} imported messages")
    return 0


def _progress_printer(context: _Context, account_id: int, every: float = 2.0):
    """A progress callback printing per-folder done/total, rate and ETA on stderr every few seconds."""
    from courriel.imapsync import accounts

    last = [time.monotonic()]

    def report(remote_name: str) -> None:
        now = time.monotonic()
        if now - last[0] < every:
            return
        last[0] = now
        for f in accounts.get(context.db, account_id).folders:
            if f.remote_name == remote_name:
                rate = f"{f.rate:.1f}/s" if f.rate else "-"
                print(f"account {account_id} {f.remote_name}: {f.done}/{f.total} ({rate}, ETA "
                      f"{_duration(f.eta_seconds)})", file=sys.stderr)

    return report


def _run_sync(args, context: _Context) -> int:
    from courriel.imapsync import accounts, role
    from courriel.imapsync.runner import AccountSync

    if args.account_id is None and not args.once:
        stop = threading.Event()
        try:
            role.supervise(context.db, context.store, context.config.data_dir, context.config.run_dir, stop)
        except KeyboardInterrupt:
            stop.set()
        return 0
    ids = [args.account_id] if args.account_id is not None else [
        a.id for a in accounts.list_accounts(context.db, state="active")]
    if not args.once:
        stop = threading.Event()
        try:
            AccountSync(context.db, context.store, context.config.data_dir, ids[0]).run(stop, context.config.run_dir)
        except KeyboardInterrupt:
            stop.set()
        return 0
    failed = 0
    for account_id in ids:
        sync = AccountSync(context.db, context.store, context.config.data_dir, account_id,
                           on_progress=None if args.json else _progress_printer(context, account_id))
        try:
            sync.cycle()
            accounts.record_success(context.db, account_id)
        except Exception as exc:
            failed += 1
            accounts.record_failure(context.db, account_id, str(exc))
            print(f"courriel: sync account {account_id}: {exc}", file=sys.stderr)
        finally:
            sync.close()
    views = [accounts.get(context.db, i) for i in ids]
    emit(args, {"accounts": [v.as_json() for v in views]},
         lambda: "\n".join(f"account {v.id}: " + ", ".join(f"{f.remote_name} {f.done}/{f.total}" for f in v.folders)
                           for v in views))
    return 1 if failed else 0
