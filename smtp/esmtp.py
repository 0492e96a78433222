"""The ESMTP protocol engine (ring 2): a thin subclass of aiosmtpd's `SMTP`.

Owns the wire protocol of one connection on top of aiosmtpd 1.4.6: the EHLO capabilities and
the commands that library lacks or gets wrong (see LIBRARIES.md). Decisions are the handler's
(`courriel.smtp.handler`) and the pure policy's (`courriel.smtp.policy`); this module parses,
keeps the per-connection state and enforces the limits.

What it adds to aiosmtpd:
- EHLO advertises PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, DSN,
  STARTTLS (before TLS) and AUTH (submission only; after TLS unless allowed in plain text);
- MAIL and RCPT take the RFC 3461 DSN parameters (RET, ENVID; NOTIFY, ORCPT) and the null
  reverse-path, and carry them to the envelope;
- BDAT (RFC 3030 CHUNKING);
- an enhanced status code in every reply (RFC 2034);
- implicit TLS (port 465) counts as TLS, so AUTH works there (aiosmtpd issues 274/281);
- `handle_exception` logs and answers `451 4.3.0`, never the exception text;
- the idle timer is reset while DATA or a BDAT chunk streams; the idle timeout, the session
  time limit, too many commands and too many errors answer `421` and disconnect;
- AUTH PLAIN and LOGIN verify through the handler off the event loop;
- BDAT text is held to the same rule as DATA text: no bare CR, no "." line between bare line
  endings (SMTP smuggling, RFC 5321 §2.3.8);
- one log line per mail transaction with its queue id ("NOQUEUE" when refused), like Postfix's,
  and the SMTP metrics (`courriel.metrics`: connections, transactions and bytes, refusals by
  stage and reason, AUTH failures).

Standards: RFC 5321 (§4.1.1 commands, §4.5.2 transparency, §4.5.3 limits), RFC 1869/5321
§4.1.1.1 (EHLO), RFC 2920 (PIPELINING), RFC 1870 (SIZE), RFC 6152 (8BITMIME), RFC 6531
(SMTPUTF8), RFC 2034 (ENHANCEDSTATUSCODES), RFC 3030 (CHUNKING, BDAT), RFC 3461 (DSN),
RFC 3207 (STARTTLS), RFC 8314 (implicit TLS), RFC 4954 (AUTH), RFC 4616 (PLAIN).
Security: every byte comes from an untrusted client; commands are length-bounded by aiosmtpd,
message data by SIZE; credentials are never logged.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import functools
import ipaddress
import logging
from base64 import b64decode
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, syntax

from courriel import metrics
from courriel.smtp import policy, replies
from courriel.smtp.policy import MailCommand, SessionLimits
from courriel.smtp.replies import Reply

log = logging.getLogger("courriel.smtp")

CHUNK_READ = 64 * 1024


def _drop_login_data_warning(record: logging.LogRecord) -> bool:
    return "login_data is deprecated" not in record.getMessage()


# aiosmtpd 1.4.6 warns on every successful AUTH because its own smtp_AUTH sets Session.login_data.
logging.getLogger("mail.log").addFilter(_drop_login_data_warning)
COMMAND_LINE_LIMIT = 1000  # MAIL/RCPT with SIZE, DSN and AUTH parameters (RFC 5321 §4.5.3.1.4 is a minimum)


def _hides_end_of_data(line: bytes) -> bool:
    """True for a DATA line (ending in CRLF) that another server could read as holding an end of data.

    RFC 5321 §2.3.8 allows CR and LF only as CRLF. Bare LF is still common from sloppy clients and is
    normalised on delivery, but a bare CR anywhere, or a "." alone between bare line endings
    (`<LF>.<LF>`, `<CR><LF>.<LF>`, `<LF>.<CR><LF>`), is how SMTP smuggling hides a second message
    for a downstream relay; such a message is refused whole.
    """
    if line.count(b"\r") == 1 and line.count(b"\n") == 1:
        return False  # the common case: one CRLF, at the end (readuntil guarantees it is there)
    if b"\r" in line[:-2]:
        return True
    parts = line.split(b"\n")[:-1]
    return len(parts) > 1 and any(part in (b".", b".\r") for part in parts)


def _hides_end_of_data_in(content: bytes) -> bool:
    """`_hides_end_of_data` for a whole message received with BDAT (RFC 3030: no dot-stuffing, no end
    of data in the text). The same text relayed onwards with DATA must not hide an end of data either,
    so the same rule applies: bare CR anywhere, or a "." line between bare line endings, is refused."""
    line_ends = content.count(b"\r\n")
    if content.count(b"\r") == line_ends == content.count(b"\n"):
        return False  # the common case: CR and LF only as CRLF
    if not content.endswith(b"\r\n"):
        content += b"\r\n"  # as a relay ends the text before its own CRLF.CRLF
    return any(_hides_end_of_data(line + b"\r\n") for line in content.split(b"\r\n")[:-1])


@dataclass(frozen=True)
class Account:
    """The mailbox a client authenticated as (session.auth_data)."""

    mailbox_id: int
    address: str


@dataclass
class PlannedRecipient:
    """One accepted RCPT: what the spool will receive for it."""

    address: str
    orcpt: str | None = None
    notify: str | None = None
    mailbox_id: int | None = None
    local: bool = False


class TransactionEnvelope(Envelope):
    """aiosmtpd's envelope plus the parameters and recipients of our MAIL/RCPT/BDAT."""

    def __init__(self) -> None:
        super().__init__()
        self.mail: MailCommand | None = None
        self.recipients: list[PlannedRecipient] = []
        self.rcpt_attempts = 0
        self.chunks: list[bytes] | None = None  # BDAT in progress (RFC 3030)
        self.chunk_bytes = 0
        self.chunk_error: Reply | None = None
        self.queue_id: str | None = None  # set by the handler once the spool accepted the message
        self.details: dict[str, object] = {}  # the handler's verdicts, for the transaction's log line


@dataclass
class ConnectionCounters:
    commands: int = 0
    errors: int = 0
    auth_failures: int = 0
    transactions: list[str] = field(default_factory=list)


class ESMTP(SMTP):
    """One SMTP connection on the MX, submission or submissions listener."""

    def __init__(self, handler: Any, *, listener: str, hostname: str, max_message_size: int,
                 limits: SessionLimits, tls_context=None, implicit_tls: bool = False,
                 allow_plaintext_auth: bool = False, admit=None, on_close=None, loop=None):
        offers_auth = listener != policy.MX
        super().__init__(
            handler, data_size_limit=max_message_size, enable_SMTPUTF8=True, decode_data=False,
            hostname=hostname, ident="ESMTP", tls_context=None if implicit_tls else tls_context,
            timeout=limits.idle_seconds, auth_required=False, auth_require_tls=False,
            auth_exclude_mechanism=[] if offers_auth else ["PLAIN", "LOGIN"], loop=loop,
        )
        self.listener = listener
        self.limits = limits
        self.implicit_tls = implicit_tls
        self.offers_auth = offers_auth
        self.allow_plaintext_auth = allow_plaintext_auth
        self.counters = ConnectionCounters()
        self.busy = False  # True while a message is being accepted (shutdown waits for it)
        self.receiving = False  # True from DATA's 354 to the end of data (shutdown lets the client finish)
        self._raw_replies = False
        self._closing = False
        self._session_timer: asyncio.TimerHandle | None = None
        self._admit = admit  # admit(connection) -> bool, asked once the peer is known
        self._idle_deadline = 0.0  # loop time past which a silent client is disconnected
        self._received_at = 0.0  # loop time of the last bytes from the client
        self._idle_timer_armed = False
        self._client_ip: str | None = None  # the peer's address, parsed once per connection
        self.cached: dict[str, Any] = {}  # per-connection facts the handler computes once (reverse DNS...)
        self._on_close = on_close
        # aiosmtpd keeps these limits in a class-level dict that EHLO grows on every call.
        self.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit, {"MAIL": COMMAND_LINE_LIMIT, "RCPT": COMMAND_LINE_LIMIT})
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._counted(method)

    # ------------------------------------------------------------------ state

    def _create_envelope(self) -> TransactionEnvelope:
        return TransactionEnvelope()

    @property
    def tls_active(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def tls_details(self) -> tuple[str | None, str | None]:
        """(TLS version, cipher name) of the connection, or (None, None) in plain text."""
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport is not None else None
        if ssl_object is None:
            return None, None
        cipher = ssl_object.cipher()
        return ssl_object.version(), cipher[0] if cipher else None

    @property
    def client_ip(self) -> str | None:
        """The client's address; an IPv4-mapped IPv6 address (dual-stack listener) as IPv4."""
        if self._client_ip is not None:
            return self._client_ip
        peer = self.session.peer if self.session is not None else None
        if not isinstance(peer, tuple) or not peer:
            return None
        try:
            address = ipaddress.ip_address(peer[0])
        except ValueError:
            self._client_ip = str(peer[0])
            return self._client_ip
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        self._client_ip = str(address)  # the peer of a connection never changes (STARTTLS keeps it)
        return self._client_ip

    def connection_made(self, transport) -> None:
        starttls = self._original_transport is not None
        super().connection_made(transport)
        if not starttls:
            metrics.smtp_connection(self.listener)
            self._session_timer = self.loop.call_later(self.limits.session_seconds, self._session_expired)
            if self._admit is not None and not self._admit(self):
                metrics.smtp_rejection(self.listener, "connect", replies.reason(replies.TOO_MANY_CONNECTIONS))
                self.disconnect(replies.TOO_MANY_CONNECTIONS)
                return
        if self.implicit_tls and self.session is not None:
            # aiosmtpd only marks STARTTLS sessions as TLS; port 465 is TLS from the first byte.
            self.session.ssl = {"ssl_object": transport.get_extra_info("ssl_object")}

    def connection_lost(self, error) -> None:
        if self._session_timer is not None:
            self._session_timer.cancel()
        try:
            super().connection_lost(error)
        finally:
            if self._on_close is not None:
                self._on_close(self)

    # ------------------------------------------------------------------ replies and limits

    async def push(self, status) -> None:
        if isinstance(status, Reply):
            status = str(status)
        if isinstance(status, str) and not self._raw_replies:
            status = replies.with_enhanced_code(status)
        await super().push(status)
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if text[:1] in ("4", "5") and not text.startswith("421"):
            self.counters.errors += 1
            if self.counters.errors >= self.limits.max_errors:
                self.disconnect(replies.TOO_MANY_ERRORS)
        if text.startswith("535"):  # RFC 4954 §6: credentials refused; a guesser is cut off early
            self.counters.auth_failures += 1
            if self.counters.auth_failures >= self.limits.max_auth_failures:
                self.disconnect(replies.TOO_MANY_AUTH_FAILURES)

    def disconnect(self, reply: Reply) -> None:
        """Send a final 421 and close the connection (sync: usable from timers)."""
        transport = self.transport
        if self._closing or transport is None or transport.is_closing():
            return
        self._closing = True
        log.info("disconnecting client", extra={"listener": self.listener, "client": self.client_ip,
                                                 "reason": reply.text, "commands": self.counters.commands,
                                                 "queued": ",".join(self.counters.transactions) or "-"})
        try:
            transport.write(f"{reply}\r\n".encode("ascii"))
        except (AttributeError, OSError, RuntimeError):  # the peer or the TLS layer is already gone
            pass
        finally:
            transport.close()

    @property
    def chunking(self) -> bool:
        """True between the first BDAT chunk and BDAT LAST (or RSET): a server stop lets it finish."""
        return self.envelope is not None and self.envelope.chunks is not None

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Push the idle deadline back. Called for every command and every DATA line, so it only moves a
        number: the one armed timer, when it fires early, re-arms itself for the rest (aiosmtpd's version
        cancels and creates a timer each time, which filled the loop's heap with cancelled timers)."""
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if self._idle_timer_armed and handle is not None and handle.when() <= deadline:
            return
        if handle is not None:
            handle.cancel()
        self._timeout_handle = self.loop.call_at(deadline, self._idle_check)
        self._idle_timer_armed = True

    def data_received(self, data: bytes) -> None:
        """Bytes from the client are activity, even before the line they belong to is read: a
        busy event loop must not call a client idle that has sent its next line."""
        self._received_at = self.loop.time()
        super().data_received(data)

    def _idle_check(self) -> None:
        self._idle_timer_armed = False
        self._idle_deadline = max(self._idle_deadline, self._received_at + self._timeout_duration)
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
            self._idle_timer_armed = True
            return
        self._timeout_cb()

    def _timeout_cb(self) -> None:
        self.disconnect(replies.IDLE_TIMEOUT)

    def _session_expired(self) -> None:
        self.disconnect(replies.SESSION_TOO_LONG)

    def _counted(self, method):
        @functools.wraps(method)
        async def counted(arg):
            self.counters.commands += 1
            if self.counters.commands > self.limits.max_commands:
                self.disconnect(replies.TOO_MANY_COMMANDS)
                return
            await method(arg)

        return counted

    async def handle_exception(self, error: Exception) -> str:
        """Log the failure; the client gets a retryable 451 4.3.0, never the exception text."""
        log.error("SMTP session error", exc_info=error,
                  extra={"listener": self.listener, "client": self.client_ip})
        return str(replies.INTERNAL_ERROR)

    # ------------------------------------------------------------------ greeting and TLS

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str):
        self._raw_replies = True  # RFC 2034 §3: no enhanced code in the HELO reply
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._raw_replies = False

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str):
        if not hostname:
            await self.push(replies.syntax("EHLO hostname"))
            return
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname, "PIPELINING"]  # RFC 2920
        lines.append(f"SIZE {self.data_size_limit}" if self.data_size_limit else "SIZE")  # RFC 1870
        lines += ["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"]
        if self.tls_context and not self.tls_active:
            lines.append("STARTTLS")
        if self.offers_auth and (self.tls_active or self.allow_plaintext_auth):
            lines.append("AUTH " + " ".join(sorted(self._auth_methods)))
        self._raw_replies = True
        try:
            for index, line in enumerate(lines):
                await self.push(f"250{' ' if index == len(lines) - 1 else '-'}{line}")
        finally:
            self._raw_replies = False

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str):
        if self.tls_active:
            await self.push(replies.ALREADY_TLS)
            return
        if not self.tls_context:
            await self.push(replies.TLS_UNAVAILABLE)
            return
        await super().smtp_STARTTLS(arg)

    # ------------------------------------------------------------------ AUTH

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if not self.offers_auth:
            await self.push(replies.AUTH_UNAVAILABLE)
            return
        if not self.tls_active and not self.allow_plaintext_auth:
            await self.push(replies.TLS_REQUIRED_FOR_AUTH)
            return
        if self.session.authenticated:
            await self.push(replies.ALREADY_AUTHENTICATED)
            return
        if self.envelope.mail is not None:
            await self.push(replies.BAD_SEQUENCE)  # RFC 4954 §4: not during a mail transaction
            return
        await super().smtp_AUTH(arg)

    async def _verify(self, login: bytes, password: bytes) -> AuthResult:
        try:
            address, secret = login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            metrics.auth_failure("smtp")
            return AuthResult(success=False, handled=False, message=str(replies.AUTH_FAILED))
        reply, account = await self.event_handler.authenticate(self, address, secret)
        if account is None:
            metrics.auth_failure("smtp")  # wrong credentials, or throttled after too many of them
            return AuthResult(success=False, handled=False, message=str(reply))
        return AuthResult(success=True, handled=False, auth_data=account, message=str(reply))

    async def challenge_auth(self, challenge: str | bytes, encode_to_b64: bool = True,
                             log_client_response: bool = False) -> Any:
        """A 334 challenge and the client's answer. The answer is one line bounded like a command line
        (the reader's limit); a longer one is refused with 500 rather than failing the session.
        The answer is never logged (`log_client_response` is ignored)."""
        try:
            return await super().challenge_auth(challenge, encode_to_b64, log_client_response=False)
        except ValueError:  # asyncio.StreamReader.readline past its limit (the excess is discarded)
            await self.push(replies.LINE_TOO_LONG)
            return MISSING

    async def _decode_initial(self, args: list[str], challenge: str) -> bytes | None:
        """The client's response: inline (RFC 4954 §4 initial response) or after a 334 challenge."""
        if len(args) == 1:
            answer = await self.challenge_auth(challenge)  # pushes 501 itself on "*" or bad base64
            return None if answer is MISSING else answer
        if args[1] == "=":
            return b""
        try:
            return b64decode(args[1].encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            await self.push(replies.BAD_BASE64)
            return None

    async def auth_PLAIN(self, _, args: list[str]) -> AuthResult:
        """RFC 4616: [authzid] NUL authcid NUL passwd; a different authzid is refused."""
        blob = await self._decode_initial(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3 or (parts[0] and parts[0] != parts[1]):
            metrics.auth_failure("smtp")
            await self.push(replies.AUTH_FAILED)
            return AuthResult(success=False, handled=True)
        return await self._verify(parts[1], parts[2])

    async def auth_LOGIN(self, _, args: list[str]) -> AuthResult:
        login = await self._decode_initial(args, self.AuthLoginUsernameChallenge)
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._verify(login, password)

    # ------------------------------------------------------------------ transaction

    @syntax("MAIL FROM:<address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if self.envelope.mail is not None:
            await self.push(replies.NESTED_MAIL)
            return
        command = policy.parse_mail(arg, extended=self.session.extended_smtp, max_size=self.data_size_limit or 0)
        if isinstance(command, Reply):
            self._command_refused("mail", command)
            await self.push(command)
            return
        status = await self._call_handler_hook("MAIL", command)
        if status is MISSING:
            status = replies.SENDER_OK
        if str(status).startswith("250"):
            self.envelope.mail = command
            self.envelope.mail_from = command.sender
            self.envelope.smtp_utf8 = command.smtputf8
        else:
            self._command_refused("mail", status)
        await self.push(status)

    @syntax("RCPT TO:<address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if self.envelope.mail is None:
            await self.push(replies.NEED_MAIL)
            return
        if self.envelope.chunks is not None:
            await self.push(replies.BAD_SEQUENCE)
            return
        self.envelope.rcpt_attempts += 1
        command = policy.parse_rcpt(arg, extended=self.session.extended_smtp, smtputf8=self.envelope.mail.smtputf8,
                                    postmaster_domain=self.event_handler.postmaster_domain)
        if isinstance(command, Reply):
            self._command_refused("rcpt", command)
            await self.push(command)
            return
        status = await self._call_handler_hook("RCPT", command)
        if not str(status).startswith("250"):
            self._command_refused("rcpt", status)
        await self.push(status)

    async def _transaction_ready(self) -> Reply | None:
        """Why DATA/BDAT cannot start now, or None."""
        if self.envelope.mail is None:
            return replies.NEED_MAIL
        if not self.envelope.recipients:
            return replies.NO_VALID_RECIPIENTS if self.envelope.rcpt_attempts else replies.NEED_RCPT
        return None

    def _command_refused(self, stage: str, status: Reply | str) -> None:
        metrics.smtp_rejection(self.listener, stage, replies.reason(status))

    def _transaction_done(self, status: Reply | str, size: int) -> None:
        """The end of one mail transaction (a reply to the end of data): its metrics and its one log line,
        grep-able by queue id like Postfix's ("NOQUEUE" when nothing was queued). Envelope and verdicts
        only: never a password, never message text."""
        self.receiving = False
        envelope = self.envelope
        text = str(status)
        accepted = text.startswith("2") and envelope.queue_id is not None
        result = "accepted" if accepted else "failed" if text.startswith("4") else "rejected"
        metrics.smtp_transaction(self.listener, result, size if accepted else 0)
        if not accepted:
            metrics.smtp_rejection(self.listener, "data", replies.reason(status))
        mail = envelope.mail
        account = self.session.auth_data if self.session is not None and self.session.authenticated else None
        tls_version, _cipher = self.tls_details()
        log.info("message queued" if accepted else "message refused" if result == "rejected" else "message deferred",
                 extra={
                     "queue_id": envelope.queue_id if accepted else "NOQUEUE", "listener": self.listener,
                     "client": self.client_ip,
                     "helo": replies.printable(self.session.host_name or "", limit=255) if self.session else "",
                     "sender": (mail.sender if mail else "") or "<>", "recipients": len(envelope.recipients),
                     "to": ",".join(r.address for r in envelope.recipients), "size": size,
                     "auth": getattr(account, "address", None) or "-", "tls": tls_version or "-",
                     **envelope.details, "status": text})

    async def _deliver(self, content: bytes) -> None:
        """Hand the complete message to the handler and answer with its reply."""
        self.envelope.content = self.envelope.original_content = content
        self.busy = True
        try:
            status = await self._call_handler_hook("DATA")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            status = await self.handle_exception(error)
        finally:
            self.busy = False
        self._transaction_done(status, len(content))
        self._set_post_data_state()
        await self.push(status)

    async def _refuse_message(self, reply: Reply, size: int) -> None:
        """The end of data of a message refused before the handler saw it (size, line length, bare CR/LF)."""
        self._transaction_done(reply, size)
        self._set_post_data_state()
        await self.push(reply)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if arg:
            await self.push(replies.syntax("DATA"))
            return
        if self.envelope.chunks is not None:
            await self.push(replies.DATA_AFTER_BDAT)
            return
        refusal = await self._transaction_ready()
        if refusal is not None:
            if refusal is replies.NO_VALID_RECIPIENTS:
                self._command_refused("data", refusal)  # RFC 2920 §3.1: every RCPT was refused
            await self.push(refusal)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self.receiving = True  # until `_transaction_done`, or the connection is gone
        lines: list[bytes] = []
        size, too_long, too_big, fragment, bare = 0, False, False, False, False
        limit = self.data_size_limit
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as overrun:
                # A line past RFC 5321 §4.5.3.1.6: read on, answer after the final dot (§4.2.5).
                await self._reader.read(overrun.consumed)
                too_long, fragment, lines = True, True, []
                self._reset_timeout()
                continue
            except asyncio.IncompleteReadError:
                self.transport.close()
                return
            self._reset_timeout()  # a slow but steady upload is not idle
            if fragment:  # the tail of an over-long line, never the end of data
                fragment = False
                continue
            if line == b".\r\n":
                break
            size += len(line)
            if limit and size > limit:
                too_big, lines = True, []
            if _hides_end_of_data(line):
                bare, lines = True, []  # RFC 5321 §2.3.8; read on to the real end of data
            if too_big or too_long or bare:
                continue
            lines.append(line[1:] if line.startswith(b".") else line)  # RFC 5321 §4.5.2
        else:
            return
        if too_big or too_long or bare:
            await self._refuse_message(replies.MESSAGE_TOO_BIG if too_big else
                                       replies.LINE_TOO_LONG if too_long else replies.BARE_LINE_ENDING, size)
            return
        await self._deliver(b"".join(lines))

    @syntax("BDAT size [LAST]")
    async def smtp_BDAT(self, arg: str | None) -> None:
        """RFC 3030 §2: read exactly `size` octets; the last chunk ends the transaction."""
        words = (arg or "").split()
        if not words or len(words) > 2 or not words[0].isdigit() or len(words[0]) > 12 or (
                len(words) == 2 and words[1].upper() != "LAST"):
            # Without a valid size the chunk cannot be skipped: the connection cannot continue.
            await self.push(replies.syntax("BDAT size [LAST]"))
            self.disconnect(replies.BDAT_UNREADABLE)
            return
        size, last = int(words[0]), len(words) == 2
        envelope = self.envelope
        refusal = None
        if not self.session.host_name:
            refusal = replies.EHLO_FIRST
        if refusal is None:
            refusal = await self._transaction_ready()
        if refusal is None:
            if envelope.chunks is None:
                envelope.chunks = []
            limit = self.data_size_limit
            if envelope.chunk_error is None and limit and envelope.chunk_bytes + size > limit:
                envelope.chunk_error = replies.MESSAGE_TOO_BIG
                envelope.chunks = []
        keep = refusal is None and envelope.chunk_error is None
        remaining = size
        try:
            while remaining:
                piece = await self._reader.readexactly(min(remaining, CHUNK_READ))
                self._reset_timeout()
                remaining -= len(piece)
                if keep:
                    envelope.chunks.append(piece)
        except asyncio.IncompleteReadError:
            if self.transport is not None:
                self.transport.close()
            return
        if refusal is not None:
            if refusal is replies.NO_VALID_RECIPIENTS and last:
                self._command_refused("data", refusal)  # RFC 2920 §3.1: every RCPT was refused
            await self.push(refusal)
            return
        envelope.chunk_bytes += size
        if envelope.chunk_error is not None:
            error = envelope.chunk_error
            if last:
                await self._refuse_message(error, envelope.chunk_bytes)
            else:
                await self.push(error)
            return
        if not last:
            await self.push(replies.chunk_received(size))
            return
        content = b"".join(envelope.chunks)
        if _hides_end_of_data_in(content):
            # RFC 5321 §2.3.8, as for DATA: the text must not hide an end of data from a DATA relay.
            await self._refuse_message(replies.BARE_LINE_ENDING, envelope.chunk_bytes)
            return
        await self._deliver(content)
