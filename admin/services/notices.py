"""Connection settings of a mailbox, and the notices mailed when a mailbox is created or its
password changes.

`connection_settings` derives what a mail client needs (IMAP and SMTP submission host, ports,
security, user name) from `[server] hostname` and the configured listeners. The notices are
composed with the standard library's `email` package and enter the queue through
`courriel.queue.spool.accept`, the single door for new mail; they go to the mailbox itself
(delivered locally) and to its owner's profile address when one is set.

Standards: RFC 5322 (message format), RFC 3834 §5 (Auto-Submitted: auto-generated), RFC 5321
§4.5.5 (notices use the null reverse-path, so they never cause bounces), RFC 8314 §3 (implicit
TLS ports 993 and 465 preferred), RFC 6186 (the same services as the SRV records).
Security: a notice never contains a password; it tells the owner what changed and when, so an
unexpected change is noticed. Addresses come from the registry (already validated).
Durability: a notice is durable once `spool.accept` returns; a failure to queue it is logged
and does not undo the change it reports.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import select

from courriel.admin.services import lookups
from courriel.admin.services.errors import InvalidInput
from courriel.blobs import BlobStore
from courriel.db import Database
from courriel.models import Mailbox, User
from courriel.queue import spool

log = logging.getLogger(__name__)

# listener role → (protocol, security as mail clients name it)
CLIENT_LISTENERS = (
    ("imaps", "IMAP", "SSL/TLS"),
    ("imap", "IMAP", "STARTTLS"),
    ("submissions", "SMTP", "SSL/TLS"),
    ("submission", "SMTP", "STARTTLS"),
)


@dataclass(frozen=True)
class ClientService:
    protocol: str  # IMAP | SMTP
    host: str
    port: int
    security: str  # SSL/TLS | STARTTLS
    username: str
    authentication: str = "normal password"


@dataclass(frozen=True)
class ConnectionSettings:
    address: str
    incoming: tuple[ClientService, ...]
    outgoing: tuple[ClientService, ...]

    def as_dict(self) -> dict:
        return {"address": self.address, "incoming": [asdict(s) for s in self.incoming],
                "outgoing": [asdict(s) for s in self.outgoing]}

    def text(self) -> str:
        lines = []
        for title, services in (("Incoming mail (IMAP)", self.incoming), ("Outgoing mail (SMTP)", self.outgoing)):
            lines.append(title)
            if not services:
                lines.append("  (not offered by this server)")
            for service in services:
                lines.append(f"  server {service.host}  port {service.port}  security {service.security}")
            if services:
                lines.append(f"  user name {services[0].username}  authentication {services[0].authentication}")
        return "\n".join(lines)


def connection_settings(config, address: str) -> ConnectionSettings:
    """What a mail client needs for `address`, from the hostname and the enabled listeners.

    Implicit TLS comes first (RFC 8314 §3.3: clients should prefer it)."""
    key = str(lookups.address(address))
    incoming, outgoing = [], []
    for role, protocol, security in CLIENT_LISTENERS:
        listener = config.listener(role)
        if listener is None:
            continue
        service = ClientService(protocol, config.hostname, listener[1], security, key)
        (incoming if protocol == "IMAP" else outgoing).append(service)
    return ConnectionSettings(key, tuple(incoming), tuple(outgoing))


def mailbox_settings(db: Database, config, address: str) -> ConnectionSettings:
    """`connection_settings` for an existing mailbox (NotFound otherwise)."""
    key = str(lookups.address(address))
    with db.read() as session:
        lookups.mailbox(session, key)
    return connection_settings(config, key)


# --------------------------------------------------------------------------- notices

KINDS = {
    "mailbox_created": "Your new mailbox {address}",
    "password_changed": "The password of {address} was changed",
}


def compose(kind: str, settings: ConnectionSettings, recipients: list[str], *, display_name: str = "",
            now: dt.datetime, hostname: str) -> EmailMessage:
    """The notice as a message (pure: everything it says is given)."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown notice {kind!r}", "invalid_notice")
    address = settings.address
    domain = address.rpartition("@")[2]
    message = EmailMessage()
    message["From"] = f"Courriel <postmaster@{domain}>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = KINDS[kind].format(address=address)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid("notice", domain=hostname)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5
    greeting = f"Hello {display_name}," if display_name else "Hello,"
    when = now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if kind == "mailbox_created":
        intro = [f"The mailbox {address} was created on {when}.", "",
                 "To read and send its mail, set up your mail program with these settings:"]
        outro = ["", "Your password was given to you separately; it is never sent by mail."]
    else:
        intro = [f"The password of the mailbox {address} was changed on {when}.", "",
                 "Use the new password in every mail program that reads or sends this mail:"]
        outro = ["", "If you did not ask for this change, contact your administrator at once."]
    message.set_content("\n".join([greeting, "", *intro, "", settings.text(), *outro]) + "\n")
    return message


def _recipients(db: Database, address: str) -> tuple[Mailbox, list[spool.EnvelopeRecipient], str]:
    key = str(lookups.address(address))
    with db.read() as session:
        mailbox = lookups.mailbox(session, key)
        owner_email = None
        if mailbox.user_id is not None:
            owner_email = session.scalar(select(User.email).where(User.id == mailbox.user_id))
        rcpts = [spool.EnvelopeRecipient(address=mailbox.address, mailbox_id=mailbox.id)]
        if owner_email and owner_email.strip().lower() != mailbox.address:
            rcpts.append(spool.EnvelopeRecipient(address=owner_email.strip()))
        return mailbox, rcpts, mailbox.display_name


def send(db: Database, config, kind: str, address: str, *, now: dt.datetime | None = None) -> str:
    """Queue a notice about mailbox `address`; returns the queue id."""
    now = now or dt.datetime.now(dt.UTC)
    mailbox, rcpts, display_name = _recipients(db, address)
    settings = connection_settings(config, mailbox.address)
    message = compose(kind, settings, [r.address for r in rcpts], display_name=display_name, now=now,
                      hostname=config.hostname)
    smtputf8 = not all(r.address.isascii() for r in rcpts)  # RFC 6531: UTF-8 addresses in headers
    data = message.as_bytes(policy=email_policy.SMTPUTF8 if smtputf8 else email_policy.SMTP)
    # RFC 5321 §4.5.5: the null reverse-path, like other automatic notices.
    envelope = spool.Envelope(sender="", recipients=tuple(rcpts), source="local", smtputf8=smtputf8)
    return spool.accept(db, BlobStore(config.blob_dir, db), envelope, data, now=now, run_dir=config.run_dir)


def send_mailbox_created(db: Database, config, address: str, *, now: dt.datetime | None = None) -> str:
    return send(db, config, "mailbox_created", address, now=now)


def send_password_changed(db: Database, config, address: str, *, now: dt.datetime | None = None) -> str:
    return send(db, config, "password_changed", address, now=now)


class Notifier:
    """What the mailbox service calls after a committed change; a notice that cannot be queued
    is logged, never raised (the change it reports has already happened)."""

    def __init__(self, db: Database, config):
        self.db = db
        self.config = config

    def _send(self, kind: str, address: str) -> str | None:
        try:
            return send(self.db, self.config, kind, address)
        except Exception as exc:
            log.warning("could not queue the %s notice for %s: %s", kind, address, type(exc).__name__)
            return None

    def mailbox_created(self, address: str) -> str | None:
        return self._send("mailbox_created", address)

    def password_changed(self, address: str) -> str | None:
        return self._send("password_changed", address)
