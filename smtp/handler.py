"""The SMTP transaction handler (ring 2): what happens on AUTH, MAIL, RCPT and end of data.

Owns the glue between the protocol engine (`courriel.smtp.esmtp`) and the state behind it:
logins (`courriel.logins`, throttled), the registry (`resolve`, `is_local_domain`,
`owns_address`), mailbox quotas (`courriel.store`), inbound authentication
(`courriel.smtp.authentication`) and the spool (`courriel.queue.spool.accept`, the single door).
Every database call runs in a worker thread (ARCHITECTURE §4); decisions come from the pure
`courriel.smtp.policy`.

At the end of data, in order:
- submission: every From address must be owned by the account (553 5.7.1); Date and
  Message-ID are added when missing (RFC 6409 §8);
- MX: SPF, DKIM and DMARC are judged, forged Authentication-Results fields removed and ours
  prepended (RFC 8601 §5); DMARC reject answers 550 5.7.1, quarantine files the local copies
  in the "Spam" folder;
- the Received field is prepended (RFC 5321 §4.4);
- `spool.accept` runs in a thread; only after it returned does the client get
  `250 2.0.0 queued as <id>`; any failure answers 451 4.3.0 (ARCHITECTURE §3 step 2);
- the queue id and the verdicts go on the envelope, from which `courriel.smtp.esmtp` writes the
  transaction's one log line (like Postfix's) and its metrics.
Metrics recorded here: the DKIM, SPF and DMARC verdicts of inbound mail (`courriel.metrics`).
Per connection, not per message: the client's verified reverse DNS name and whether it is trusted.
Local delivery is the queue role's (`courriel.queue.local`), woken by the spool's hint.

Standards: RFC 5321 §3.3 (transaction), §4.4 (trace), RFC 6409 (submission), RFC 4954 §6
(AUTH replies), RFC 7489 §6.6 and §10.3 (DMARC dispositions), RFC 8601 (Authentication-Results).
Security: untrusted envelope and message; passwords are passed to `courriel.logins` and
never logged; the From check and sender ownership stop authenticated users from forging.
Durability: through `spool.accept` only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import secrets

from sqlalchemy import select

from courriel import logins as logins_mod
from courriel import metrics, registry
from courriel.blobs import BlobStore
from courriel.config import Config
from courriel.db import Database
from courriel.dns.resolver import DnsError, Resolver
from courriel.models import Domain
from courriel.queue import spool
from courriel.smtp import authentication, policy, received, replies
from courriel.smtp.esmtp import Account, PlannedRecipient
from courriel.smtp.policy import MailCommand, RcptCommand, RecipientFacts
from courriel.smtp.replies import Reply
from courriel.store import Store

log = logging.getLogger("courriel.smtp")

QUARANTINE_FOLDER = "Spam"
REVERSE_LOOKUP_SECONDS = 5.0


class SmtpHandler:
    """aiosmtpd handler hooks for all three listeners (the listener is `server.listener`)."""

    def __init__(self, config: Config, db: Database, *, authenticator: logins_mod.Authenticator,
                 resolver: Resolver, limits: policy.SessionLimits):
        self.config = config
        self.db = db
        self.blobs = BlobStore(config.blob_dir, db)
        self.store = Store(db, self.blobs, config.run_dir)
        self.authenticator = authenticator
        self.resolver = resolver
        self.reconfigure(config, limits)

    def reconfigure(self, config: Config, limits: policy.SessionLimits) -> None:
        """The settings the hooks read (at start, and on SIGHUP for the commands that follow)."""
        self.config = config
        self.limits = limits
        self.hostname = config.hostname
        self.trusted_networks = tuple(config.get("smtp", "trusted_networks"))
        self.require_verified = bool(config.get("domains", "require_verification"))
        self.postmaster_domain = config.get("server", "default_domain") or self.hostname

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def account(session) -> Account | None:
        data = getattr(session, "auth_data", None)
        return data if session.authenticated and isinstance(data, Account) else None

    def trusted(self, server) -> bool:
        """Whether the client is in `smtp.trusted_networks` (computed once per connection)."""
        trusted = server.cached.get("trusted")
        if trusted is None:
            trusted = server.cached["trusted"] = policy.is_trusted(server.client_ip, self.trusted_networks)
        return trusted

    async def connection_name(self, server) -> str | None:
        """`verified_name` of the connection's client, looked up once per connection (a client sending
        twenty messages in one session costs one PTR and one A lookup, not twenty)."""
        if "verified_name" not in server.cached:
            server.cached["verified_name"] = await self.verified_name(server.client_ip)
        return server.cached["verified_name"]

    async def verified_name(self, client_ip: str | None) -> str | None:
        """The client's forward-confirmed reverse DNS name (PTR, then A/AAAA back to the address),
        for the Received field (RFC 5321 §4.4 TCP-info); None when there is none or DNS fails."""
        try:
            address = ipaddress.ip_address(client_ip or "")
            names = await asyncio.wait_for(self.resolver.ptr_async(str(address)), REVERSE_LOOKUP_SECONDS)
            for name in names[:3]:
                name = name.rstrip(".")
                lookup = self.resolver.aaaa_async if address.version == 6 else self.resolver.a_async
                found = await asyncio.wait_for(lookup(name), REVERSE_LOOKUP_SECONDS)
                if any(ipaddress.ip_address(a) == address for a in found):
                    return name
        except (DnsError, TimeoutError, ValueError):
            return None
        return None

    # ------------------------------------------------------------------ AUTH

    async def authenticate(self, server, address: str, password: str) -> tuple[Reply, Account | None]:
        """RFC 4954 §6: 235 on success, 535 5.7.8 on bad credentials, 454 4.7.0 while throttled."""
        result = await self.authenticator.authenticate(address, password, server.client_ip, "smtp")
        if result.ok and result.mailbox_id is not None:
            return replies.AUTH_OK, Account(result.mailbox_id, result.account or address)
        if result.status is logins_mod.LoginStatus.THROTTLED:
            return replies.AUTH_THROTTLED, None
        return replies.AUTH_FAILED, None

    # ------------------------------------------------------------------ MAIL

    def _sender_facts(self, sender: str, account: Account | None) -> tuple[bool, bool]:
        with self.db.read() as session:
            domain_is_local = bool(sender) and registry.is_local_domain(session, sender.rpartition("@")[2])
            owned = bool(sender) and account is not None and registry.owns_address(session, account.mailbox_id,
                                                                                   sender)
        return domain_is_local, owned

    async def handle_MAIL(self, server, session, envelope, command: MailCommand) -> Reply:
        account = self.account(session)
        domain_is_local, owned = await asyncio.to_thread(self._sender_facts, command.sender, account)
        reply = policy.sender_reply(listener=server.listener, authenticated=account is not None,
                                    trusted=self.trusted(server), sender=command.sender,
                                    sender_domain_is_local=domain_is_local, sender_owned=owned)
        if not reply.positive:
            log.info("sender refused", extra={"queue_id": "NOQUEUE", "listener": server.listener,
                                              "client": server.client_ip, "sender": command.sender,
                                              "status": str(reply)})
        return reply

    # ------------------------------------------------------------------ RCPT

    def _recipient_facts(self, address: str) -> tuple[RecipientFacts, registry.Resolution]:
        with self.db.read() as session:
            if address.lower() == f"postmaster@{self.postmaster_domain}" and not registry.is_local_domain(
                    session, self.postmaster_domain):
                # RFC 5321 §4.5.1: <Postmaster> and postmaster@<this host> reach the default domain's.
                default = session.scalar(select(Domain.name).where(Domain.is_default.is_(True)).limit(1))
                address = f"postmaster@{default}" if default else address
            found = registry.resolve(session, address, require_verified=self.require_verified)
        over_quota = False
        if found.accepted and found.mailbox_ids and not found.forwards:
            over_quota = all(self.store.quota_usage(mailbox_id, only_if_limited=True).over
                             for mailbox_id in found.mailbox_ids)
        facts = RecipientFacts(outcome=found.outcome.value, reason=found.reason.value if found.reason else None,
                               over_quota=over_quota)
        return facts, found

    async def handle_RCPT(self, server, session, envelope, command: RcptCommand) -> Reply:
        facts, found = await asyncio.to_thread(self._recipient_facts, command.address)
        relay_allowed = policy.may_relay(authenticated=self.account(session) is not None, trusted=self.trusted(server))
        reply = policy.recipient_reply(facts, accepted_so_far=len(envelope.recipients),
                                       max_recipients=self.limits.max_recipients, relay_allowed=relay_allowed)
        if not reply.positive:
            log.info("recipient refused", extra={"queue_id": "NOQUEUE", "listener": server.listener,
                                                 "client": server.client_ip, "recipient": command.address,
                                                 "status": str(reply), "detail": found.detail})
            return reply
        local = found.accepted
        # A remote address keeps its case (RFC 5321 §2.4); a local one is the registry's canonical form.
        address = found.address if local else command.address
        if any(r.address == address for r in envelope.recipients):
            return reply  # a repeated RCPT is accepted once
        single = found.mailbox_ids[0] if local and len(found.mailbox_ids) == 1 and not found.forwards else None
        envelope.recipients.append(PlannedRecipient(address=address, orcpt=command.orcpt, notify=command.notify,
                                                    mailbox_id=single, local=local))
        envelope.rcpt_tos.append(address)
        return reply

    # ------------------------------------------------------------------ end of data

    def _owns_all(self, mailbox_id: int, addresses: list[str]) -> bool:
        with self.db.read() as session:
            return all(registry.owns_address(session, mailbox_id, address) for address in addresses)

    async def handle_DATA(self, server, session, envelope) -> Reply:
        message: bytes = envelope.content
        account = self.account(session)
        helo = replies.printable(session.host_name or "", limit=255)  # client input bound for the spool row
        mail: MailCommand = envelope.mail
        now = dt.datetime.now(dt.UTC)
        details = envelope.details  # logged with the transaction's line by the protocol engine
        folder = None
        if account is not None:
            senders = received.from_addresses(message)
            if not senders or not await asyncio.to_thread(self._owns_all, account.mailbox_id, senders):
                details["header_from"] = ",".join(senders)
                return replies.FROM_NOT_OWNED
            if server.listener != policy.MX:
                message = received.submission_fields(message, hostname=self.hostname, now=now,
                                                     unique=f"{now:%Y%m%d%H%M%S}.{secrets.token_hex(8)}") + message
        else:
            verdict = await authentication.authenticate_async(
                message, client_ip=server.client_ip or "", helo=helo, mail_from=mail.sender,
                resolver=self.resolver, authserv_id=self.hostname)
            message = verdict.header_field + authentication.remove_forged_results(message, verdict.authserv_id)
            details.update(spf=verdict.spf.result, dkim=",".join(r.result for r in verdict.dkim) or "none",
                           dmarc=verdict.dmarc.result)
            metrics.message_verdict("spf", verdict.spf.result)
            for result in verdict.dkim or ():
                metrics.message_verdict("dkim", result.result)
            if not verdict.dkim:
                metrics.message_verdict("dkim", "none")  # RFC 8601 §2.7.1: an unsigned message
            metrics.message_verdict("dmarc", verdict.dmarc.result)
            action = policy.dmarc_action(verdict.dmarc.disposition, authenticated=False)
            if action == "reject":
                return replies.DMARC_REJECT
            if action == "quarantine":
                folder = QUARANTINE_FOLDER
                details["folder"] = folder
        tls_version, tls_cipher = server.tls_details()
        protocol = received.protocol_name(extended=bool(session.extended_smtp), tls=tls_version is not None,
                                          authenticated=account is not None, smtputf8=mail.smtputf8)
        trace = received.received_field(
            helo=helo, client_ip=server.client_ip or "unknown",
            client_name=await self.connection_name(server),
            by_host=self.hostname, protocol=protocol, tls_version=tls_version, tls_cipher=tls_cipher,
            recipient=envelope.recipients[0].address if len(envelope.recipients) == 1 else None,
            queue_id=None, now=now)
        data = trace + message
        spooled = spool.Envelope(
            sender=mail.sender,
            recipients=tuple(spool.EnvelopeRecipient(address=r.address, orcpt=r.orcpt, notify=r.notify,
                                                     mailbox_id=r.mailbox_id, folder=folder if r.local else None)
                             for r in envelope.recipients),
            source="submission" if account is not None else "mx",
            dsn_ret=mail.ret, dsn_envid=mail.envid, body_type=mail.body, smtputf8=mail.smtputf8,
            auth_user=account.address if account else None, client_address=server.client_ip,
            client_helo=helo or None,
        )
        queue_id = await asyncio.to_thread(spool.accept, self.db, self.blobs, spooled, data,
                                           run_dir=self.config.run_dir)
        server.counters.transactions.append(queue_id)
        envelope.queue_id = queue_id  # the protocol engine logs the transaction's line with it
        return replies.queued(queue_id)
