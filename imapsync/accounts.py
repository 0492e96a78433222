"""External accounts: creation, listing, state changes, removal, failure records (ring 1).

Owns the `sync_accounts` rows and the per-account view of `sync_folders` (progress). The sync
runner reads accounts through here and records successes and failures here; the CLI and the
console call the same functions.

Removing an account deletes the local messages it imported (through the store: they are
expunged, recorded for QRESYNC); disabling it stops the sync and keeps them.

Security: passwords are encrypted with `courriel.imapsync.credentials` before they reach the
database and are never returned (`AccountView` has no secret). Host names, ports, protocol,
security and auth values are validated before anything is written (`AccountError`); security
"none" (plain text, password in the clear) is allowed for loopback hosts only (127.0.0.0/8,
::1, localhost: a local bridge such as Proton Mail Bridge), never for a host on the network.
Server text stored as `last_error` is cleaned of control characters and bounded.

Threat model of the stored passwords (they must be usable unattended, so they cannot be hashed):
the Fernet key is `DATA/keys/sync.key` (mode 0600, directory 0700), next to the database.
- Protected: a copy of the database alone. A PostgreSQL dump, a replica, a stolen SQLite
  file or a database backup made without the data directory's `keys/` gives tokens that
  cannot be decrypted.
- Not protected: anyone who can read the data directory (the service user, root, a copy
  of the whole directory) or a `courriel backup`, which holds the database AND `keys/` (it
  says so in its manifest and output; keep backups as private as the server itself).
- Not protected: a compromised sync process (it decrypts the password to log in).
There is no key rotation command: a new key file means removing and re-adding the accounts.
Durability: one transaction per change; removal expunges per folder, then deletes the row,
so a crash in between leaves an account whose remaining imports are removed on a rerun.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select, update

from courriel.db import Database
from courriel.imapsync import credentials, plan
from courriel.models import Folder, Mailbox, SyncAccount, SyncAccountState, SyncFolder, SyncMessage, SyncPopMessage
from courriel.store import Store

PROTOCOLS = ("imap", "pop3")
SECURITIES = ("ssl", "starttls", "none")
AUTHS = ("plain", "cram-md5")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
_ERROR_LIMIT = 1000
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class AccountError(ValueError):
    """Bad account settings or an unknown account; nothing changed."""


@dataclass(frozen=True)
class FolderProgress:
    remote_name: str
    local_folder: str
    done: int
    total: int
    rate: float | None
    eta_seconds: float | None


@dataclass(frozen=True)
class AccountView:
    """An account as shown to operators: never the password."""

    id: int
    mailbox_id: int
    mailbox: str
    email: str
    protocol: str
    host: str
    port: int
    security: str
    username: str
    auth: str
    leave_on_server: bool
    state: str
    failures: int
    last_error: str | None
    last_error_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    last_sync_at: dt.datetime | None
    folders: tuple[FolderProgress, ...] = ()

    def as_json(self) -> dict:
        def iso(value):
            return value.isoformat(timespec="seconds") if value else None

        return {
            "id": self.id, "mailbox": self.mailbox, "email": self.email, "protocol": self.protocol,
            "host": self.host, "port": self.port, "security": self.security, "username": self.username,
            "auth": self.auth, "leave_on_server": self.leave_on_server, "state": self.state,
            "failures": self.failures, "last_error": self.last_error, "last_error_at": iso(self.last_error_at),
            "next_attempt_at": iso(self.next_attempt_at), "last_sync_at": iso(self.last_sync_at),
            "folders": [{"remote": f.remote_name, "local": f.local_folder, "done": f.done, "total": f.total,
                         "rate": round(f.rate, 1) if f.rate else None,
                         "eta_seconds": round(f.eta_seconds) if f.eta_seconds is not None else None}
                        for f in self.folders],
        }


def validate(protocol: str, host: str, port: int, security: str, auth: str) -> None:
    if protocol not in PROTOCOLS:
        raise AccountError(f"protocol must be one of {', '.join(PROTOCOLS)}")
    if not isinstance(host, str) or not _HOST.match(host):
        raise AccountError(f"{host!r} is not a host name")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise AccountError(f"{port!r} is not a port")
    if security not in SECURITIES:
        raise AccountError(f"security must be one of {', '.join(SECURITIES)}")
    if security == "none" and not is_loopback(host):
        raise AccountError(f"security 'none' sends the password in clear text: it is allowed only for a loopback "
                           f"host (127.0.0.0/8, ::1, localhost), not {host!r}; use ssl or starttls")
    if auth not in AUTHS:
        raise AccountError(f"auth must be one of {', '.join(AUTHS)}")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also in brackets) and the usual names of the local host."""
    name = host.strip().lower().rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def find_mailbox(db: Database, mailbox: str | int) -> int:
    with db.read() as session:
        if isinstance(mailbox, int) or str(mailbox).isdigit():
            row = session.get(Mailbox, int(mailbox))
        else:
            row = session.scalar(select(Mailbox).where(Mailbox.address == str(mailbox).strip().lower()))
        if row is None:
            raise AccountError(f"no mailbox {mailbox}")
        return row.id


def create(db: Database, data_dir: Path, mailbox_id: int, email: str, password: str, *, protocol: str, host: str,
           port: int, security: str, username: str | None = None, auth: str = "plain",
           leave_on_server: bool = True) -> int:
    """Add an account (state active); returns its id. The password is stored encrypted."""
    validate(protocol, host, port, security, auth)
    if not email or "@" not in email or len(email) > 320:
        raise AccountError(f"{email!r} is not an e-mail address")
    if not password:
        raise AccountError("a password is required")
    secret = credentials.encrypt(data_dir, password)
    with db.write() as session:
        if session.get(Mailbox, mailbox_id) is None:
            raise AccountError(f"no mailbox {mailbox_id}")
        row = SyncAccount(mailbox_id=mailbox_id, email=email.strip(), protocol=protocol, host=host.lower(),
                          port=port, security=security, username=(username or email).strip(), auth=auth,
                          secret=secret, leave_on_server=leave_on_server, state=SyncAccountState.ACTIVE,
                          failures=0)
        session.add(row)
        session.flush()
        return row.id


def password(db: Database, data_dir: Path, account_id: int) -> str:
    with db.read() as session:
        row = session.get(SyncAccount, account_id)
        if row is None:
            raise AccountError(f"no sync account {account_id}")
        token = row.secret
    return credentials.decrypt(data_dir, token)


def _view(session, row: SyncAccount, with_folders: bool) -> AccountView:
    mailbox = session.get(Mailbox, row.mailbox_id)
    folders: list[FolderProgress] = []
    if with_folders:
        now = dt.datetime.now(dt.UTC)
        query = (select(SyncFolder, Folder.name).join(Folder, Folder.id == SyncFolder.local_folder_id)
                 .where(SyncFolder.account_id == row.id).order_by(SyncFolder.id))
        for sf, name in session.execute(query):
            elapsed = (now - sf.import_started_at).total_seconds() if sf.import_started_at else None
            p = plan.progress(sf.done, sf.total, sf.imported_since_start, elapsed)
            folders.append(FolderProgress(sf.remote_name, name, p.done, p.total, p.rate, p.eta_seconds))
    return AccountView(id=row.id, mailbox_id=row.mailbox_id, mailbox=mailbox.address if mailbox else "",
                       email=row.email, protocol=row.protocol, host=row.host, port=row.port, security=row.security,
                       username=row.username, auth=row.auth, leave_on_server=row.leave_on_server, state=row.state,
                       failures=row.failures, last_error=row.last_error, last_error_at=row.last_error_at,
                       next_attempt_at=row.next_attempt_at, last_sync_at=row.last_sync_at, folders=tuple(folders))


def get(db: Database, account_id: int, with_folders: bool = True) -> AccountView:
    with db.read() as session:
        row = session.get(SyncAccount, account_id)
        if row is None:
            raise AccountError(f"no sync account {account_id}")
        return _view(session, row, with_folders)


def has_work(config) -> bool:
    """True when an active account exists: the supervisor's on-demand check for the sync role
    (`courriel.on_demand`; this module, not the role's, so the check imports no IMAP client)."""
    db = Database(config.database_url)
    try:
        with db.read() as session:
            return session.scalar(select(SyncAccount.id).where(
                SyncAccount.state == SyncAccountState.ACTIVE).limit(1)) is not None
    finally:
        db.dispose()


def list_accounts(db: Database, mailbox_id: int | None = None, state: str | None = None) -> list[AccountView]:
    with db.read() as session:
        query = select(SyncAccount).order_by(SyncAccount.id)
        if mailbox_id is not None:
            query = query.where(SyncAccount.mailbox_id == mailbox_id)
        if state is not None:
            query = query.where(SyncAccount.state == state)
        return [_view(session, row, False) for row in session.scalars(query)]


def set_state(db: Database, account_id: int, state: str) -> None:
    """pause | resume (active) | disable; resuming clears the failure count and retry time."""
    if state not in set(SyncAccountState):
        raise AccountError(f"unknown state {state}")
    values: dict = {"state": state}
    if state == SyncAccountState.ACTIVE:
        values.update(failures=0, next_attempt_at=None)
    with db.write() as session:
        result = session.execute(update(SyncAccount).where(SyncAccount.id == account_id).values(**values)
                                 .execution_options(synchronize_session=False))
        if not result.rowcount:
            raise AccountError(f"no sync account {account_id}")


def record_failure(db: Database, account_id: int, message: str) -> AccountView:
    """Count a failure with the server's message; back off, and pause after too many in a row."""
    now = dt.datetime.now(dt.UTC)
    with db.write() as session:
        row = session.get(SyncAccount, account_id, with_for_update=True)
        if row is None:
            raise AccountError(f"no sync account {account_id}")
        row.failures += 1
        row.last_error = plan.printable(message, _ERROR_LIMIT)
        row.last_error_at = now
        row.next_attempt_at = now + dt.timedelta(seconds=plan.retry_delay(row.failures))
        if plan.should_pause(row.failures) and row.state == SyncAccountState.ACTIVE:
            row.state = SyncAccountState.PAUSED
        session.flush()
        return _view(session, row, False)


def record_skip(db: Database, account_id: int, message: str) -> None:
    """Show why a remote message was not imported (too large) on the account, as `last_error`,
    without counting a failure: the run goes on and the account is not backed off."""
    with db.write() as session:
        session.execute(update(SyncAccount).where(SyncAccount.id == account_id)
                        .values(last_error=plan.printable(message, _ERROR_LIMIT), last_error_at=dt.datetime.now(dt.UTC))
                        .execution_options(synchronize_session=False))


def record_success(db: Database, account_id: int) -> None:
    with db.write() as session:
        session.execute(update(SyncAccount).where(SyncAccount.id == account_id)
                        .values(failures=0, next_attempt_at=None, last_sync_at=dt.datetime.now(dt.UTC))
                        .execution_options(synchronize_session=False))


def remove(db: Database, store: Store, account_id: int) -> int:
    """Delete the account and every local message it imported (not the local mail it uploaded);
    returns how many were removed."""
    with db.read() as session:
        if session.get(SyncAccount, account_id) is None:
            raise AccountError(f"no sync account {account_id}")
        by_folder: dict[int, set[int]] = defaultdict(set)
        rows = session.execute(select(SyncFolder.local_folder_id, SyncMessage.local_uid)
                               .join(SyncMessage, SyncMessage.sync_folder_id == SyncFolder.id)
                               .where(SyncFolder.account_id == account_id,
                                      SyncMessage.origin == "remote"))  # uploaded local mail stays
        for folder_id, uid in rows:
            by_folder[folder_id].add(uid)
        for folder_id, uid in session.execute(select(SyncPopMessage.local_folder_id, SyncPopMessage.local_uid)
                                              .where(SyncPopMessage.account_id == account_id)):
            by_folder[folder_id].add(uid)
    removed = 0
    for folder_id, uids in by_folder.items():
        removed += len(expunge_local(store, folder_id, sorted(uids)))
    with db.write() as session:
        session.execute(delete(SyncAccount).where(SyncAccount.id == account_id))
    return removed


def expunge_local(store: Store, folder_id: int, uids: list[int]) -> list[int]:
    """Remove local messages by UID (\\Deleted, then UID EXPUNGE of exactly those)."""
    if not uids:
        return []
    store.set_flags(folder_id, uids, "add", ["\\Deleted"])
    return store.expunge(folder_id, uids)

