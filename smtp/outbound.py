"""Outbound SMTP client for the queue role (ring 2 adapter over aiosmtplib).

Owns one SMTP session to one mail exchanger address: connect, EHLO (HELO as a fallback),
opportunistic STARTTLS, then any number of mail transactions on the same connection, each
returning one reply per recipient, then QUIT. MX selection, retries and DSNs are the queue's.

Per transaction: the message's needs are checked against the peer's extensions before MAIL
(SMTPUTF8 required but not offered → 5.6.7, 8-bit content without 8BITMIME → 5.6.3, both
answered locally without sending); MAIL carries SIZE, BODY=8BITMIME, SMTPUTF8 and, when the
peer offers DSN, RET and ENVID; each RCPT carries NOTIFY and ORCPT when the peer offers DSN;
the content goes with BDAT (one LAST chunk) when CHUNKING is offered, else with DATA.
When the peer offers PIPELINING, MAIL and the RCPTs go in one write and their replies are read
in order by a small reader that takes the connection from aiosmtplib for that group (aiosmtplib
reads one reply per command and drops replies that arrive together); DATA/BDAT follows alone.

Standards: RFC 5321 §3.3 (transaction), §4.1.1.1 (EHLO, HELO fallback), §4.5.3.2 (timeouts),
§4.2.5 (a reply to DATA applies to every accepted recipient); RFC 3207 (STARTTLS; §4.2
extensions are learnt again after TLS); RFC 7435 (opportunistic TLS: no certificate check,
clear text when TLS cannot be set up); RFC 1870 (SIZE); RFC 6152 (8BITMIME); RFC 6531 §3.4
(SMTPUTF8); RFC 2920 (PIPELINING); RFC 3030 (CHUNKING/BDAT); RFC 3461 §4 (NOTIFY, ORCPT, RET,
ENVID; xtext); RFC 3463 (enhanced status codes).
Security: replies come from remote servers: codes are checked, texts are kept as data only.
Message bytes are sent as queued.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import ssl
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings

log = logging.getLogger("courriel.smtp.outbound")

DEFAULT_TIMEOUT = 60.0  # connecting and the greeting
# RFC 5321 §4.5.3.2: at least 5 minutes for MAIL and RCPT, 10 minutes for the reply to the content.
COMMAND_TIMEOUT = 300.0
CONTENT_TIMEOUT = 600.0
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


class ConnectFailed(Exception):
    """No SMTP session with this address: refused, timed out, or a greeting other than 220."""


class SessionLost(Exception):
    """The connection broke or timed out during a transaction; its outcome is unknown."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str
    local: bool = False  # made up here (a missing extension), not sent by the peer

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def enhanced_status(self) -> str:
        """The RFC 3463 code from the text, else one derived from the reply class."""
        match = _ENHANCED.match(self.text.strip())
        if match and match.group(1) == str(self.code)[0]:
            return ".".join(match.groups())
        return {2: "2.0.0", 4: "4.0.0", 5: "5.0.0"}.get(self.code // 100, "4.0.0")

    def line(self) -> str:
        """The reply as one line of text (multi-line replies joined with spaces)."""
        return f"{self.code} {' '.join(part.strip() for part in self.text.splitlines())}".strip()


@dataclass(frozen=True)
class OutboundRecipient:
    address: str
    notify: str | None = None  # RFC 3461 §4.1
    orcpt: str | None = None  # RFC 3461 §4.2, "rfc822;user@example.org"


@dataclass(frozen=True)
class OutboundMessage:
    sender: str  # "" for the null reverse-path
    recipients: tuple[OutboundRecipient, ...]
    data: bytes
    smtputf8: bool = False
    eight_bit: bool = False
    ret: str | None = None  # RFC 3461 §4.3
    envid: str | None = None  # RFC 3461 §4.4


@dataclass
class TransactionResult:
    replies: dict[str, Reply] = field(default_factory=dict)  # recipient address → final reply
    peer_dsn: bool = False  # the peer took the NOTIFY request along (no "relayed" notice needed)


def xtext(value: str) -> str:
    """RFC 3461 §4: "+" followed by two upper-case hex digits for '+', '=' and bytes outside 33..126."""
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def opportunistic_tls_context() -> ssl.SSLContext:
    """RFC 7435 §4: encrypt when possible, without authenticating the peer (no MTA-STS/DANE here)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _reply(response) -> Reply:
    return Reply(int(response.code), str(response.message))


def _command(verb_and_path: str, options: list[str], encoding: str) -> bytes:
    """One command line; raises ValueError for CR, LF or NUL (command injection) or a bad encoding."""
    line = " ".join([verb_and_path, *options])
    if any(c in line for c in "\r\n\0"):
        raise ValueError("control character in an SMTP command")
    return line.encode(encoding) + b"\r\n"


class _PipelinedReplies(asyncio.Protocol):
    """Collects the replies to a pipelined command group, in order (RFC 2920 §3.1)."""

    MAX_LINE = 4096

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._buffer = bytearray()
        self._lines: list[tuple[int, str]] = []
        self._replies: collections.deque[Reply] = collections.deque()
        self._waiter: asyncio.Future | None = None
        self.lost: BaseException | bool | None = None

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.MAX_LINE:
                    self._fail(aiosmtplib.SMTPResponseException(-1, "reply line too long"))
                return
            line = bytes(self._buffer[:end + 1])
            del self._buffer[:end + 1]
            try:
                code = int(line[:3])
            except ValueError:
                self._fail(aiosmtplib.SMTPResponseException(-1, f"malformed reply {line[:80]!r}"))
                return
            self._lines.append((code, line[4:].strip().decode("utf-8", "surrogateescape")))
            if line[3:4] != b"-":  # RFC 5321 §4.2.1: the last line has a space after the code
                self._replies.append(Reply(code, "\n".join(text for _, text in self._lines)))
                self._lines.clear()
                self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or True)

    def eof_received(self) -> bool:
        self._fail(True)
        return False

    def _fail(self, reason: BaseException | bool) -> None:
        if self.lost is None:
            self.lost = reason
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self, timeout: float) -> Reply:
        while not self._replies:
            if self.lost is not None:
                raise aiosmtplib.SMTPServerDisconnected(f"connection lost during pipelined commands: {self.lost}")
            self._waiter = self._loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except TimeoutError:
                raise aiosmtplib.SMTPTimeoutError("timed out waiting for pipelined replies") from None
        return self._replies.popleft()


class OutboundSession:
    """One SMTP connection to one address of a mail exchanger."""

    def __init__(self, client: aiosmtplib.SMTP, mx_host: str, address: str, port: int, tls_version: str | None):
        self._client = client
        self.mx_host = mx_host
        self.address = address
        self.port = port
        self.tls_version = tls_version  # e.g. "TLSv1.3", None for clear text
        self.transactions = 0

    @property
    def peer(self) -> str:
        return f"{self.mx_host}[{self.address}]:{self.port}"

    @property
    def tls_description(self) -> str:
        return f"TLS {self.tls_version}" if self.tls_version else "no TLS"

    def supports(self, extension: str) -> bool:
        return self._client.supports_extension(extension)

    @property
    def usable(self) -> bool:
        return self._client.is_connected

    @classmethod
    async def open(cls, mx_host: str, address: str, port: int, helo_name: str,
                   timeout: float = DEFAULT_TIMEOUT, starttls: bool = True) -> OutboundSession:
        """Connect, greet and (when offered) start TLS; falls back to clear text when TLS fails."""
        client = await cls._connect(address, port, helo_name, timeout)
        if not (starttls and client.supports_extension("starttls")):
            return cls(client, mx_host, address, port, None)
        try:
            response = await client.starttls(tls_context=opportunistic_tls_context(), server_hostname=mx_host,
                                             timeout=timeout)
            if response.code != 220:
                raise aiosmtplib.SMTPException(f"STARTTLS answered {response.code}")
            await cls._greet(client, helo_name, timeout)
            ssl_object = client.get_transport_info("ssl_object")
            version = ssl_object.version() if ssl_object is not None else None
            return cls(client, mx_host, address, port, version)
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError, TimeoutError) as exc:
            # RFC 7435 §4: without a policy that requires TLS, deliver in clear text.
            log.info("STARTTLS with %s[%s] failed (%s); retrying without TLS", mx_host, address, exc)
            client.close()
            client = await cls._connect(address, port, helo_name, timeout)
            return cls(client, mx_host, address, port, None)

    @staticmethod
    async def _connect(address: str, port: int, helo_name: str, timeout: float) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=address, port=port, local_hostname=helo_name, timeout=COMMAND_TIMEOUT,
                                 start_tls=False, use_tls=False, validate_certs=False)
        try:
            await client.connect(timeout=timeout)
            await OutboundSession._greet(client, helo_name, timeout)
        except aiosmtplib.SMTPConnectResponseError as exc:
            client.close()
            raise ConnectFailed(f"{address}:{port} greeted with {exc.code} {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise ConnectFailed(f"{address}:{port}: {exc}") from None
        return client

    @staticmethod
    async def _greet(client: aiosmtplib.SMTP, helo_name: str, timeout: float) -> None:
        # RFC 5321 §4.1.1.1: EHLO first; HELO when the server does not know EHLO.
        try:
            await client.ehlo(hostname=helo_name, timeout=timeout)
        except aiosmtplib.SMTPHeloError:
            await client.helo(hostname=helo_name, timeout=timeout)

    async def send(self, message: OutboundMessage) -> TransactionResult:
        """One mail transaction: a final reply per recipient. Raises SessionLost when the
        connection breaks before the peer's answer to the content is known."""
        result = TransactionResult()
        addresses = [r.address for r in message.recipients]
        missing = self._missing_extension(message)
        if missing is not None:
            result.replies = dict.fromkeys(addresses, missing)
            return result
        dsn = self.supports("dsn")
        encoding = "utf-8" if message.smtputf8 else "ascii"
        try:
            mail_options = []
            if self.supports("size"):
                mail_options.append(f"SIZE={len(message.data)}")  # RFC 1870 §6
            if message.eight_bit and self.supports("8bitmime"):
                mail_options.append("BODY=8BITMIME")
            if message.smtputf8:
                mail_options.append("SMTPUTF8")
            if dsn and message.ret:
                mail_options.append(f"RET={message.ret.upper()}")
            if dsn and message.envid:
                mail_options.append(f"ENVID={xtext(message.envid)}")
            commands = [_command(f"MAIL FROM:<{message.sender}>", mail_options, encoding)]
            for rcpt in message.recipients:
                options = []
                if dsn and rcpt.notify:
                    options.append(f"NOTIFY={rcpt.notify.upper()}")
                if dsn and rcpt.orcpt:
                    kind, _, original = rcpt.orcpt.partition(";")
                    options.append(f"ORCPT={kind.strip()};{xtext(original.strip())}")
                commands.append(_command(f"RCPT TO:<{rcpt.address}>", options, encoding))
            replies = await self._envelope(commands)
            if not replies[0].ok:
                await self._reset()
                result.replies = dict.fromkeys(addresses, replies[0])
                return result
            accepted = []
            for rcpt, reply in zip(message.recipients, replies[1:], strict=True):
                result.replies[rcpt.address] = reply
                if reply.ok:
                    accepted.append(rcpt.address)
            if not accepted:
                await self._reset()
                return result
            final = await self._content(message.data)
            for address in accepted:
                result.replies[address] = final  # RFC 5321 §4.2.5: one reply for all accepted recipients
            result.peer_dsn = dsn and final.ok
            self.transactions += 1
            return result
        except ValueError:
            # CR/LF inside an address, or a non-ASCII one without SMTPUTF8: nothing was sent.
            await self._reset()
            bad = Reply(501, "5.1.3 address not acceptable in an SMTP command", local=True)
            for address in addresses:
                result.replies.setdefault(address, bad)
            return result
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError, TimeoutError) as exc:
            self.close()
            raise SessionLost(f"{self.peer}: {exc}") from None

    async def _envelope(self, commands: list[bytes]) -> list[Reply]:
        """MAIL and the RCPTs: in one write when the peer offers PIPELINING (RFC 2920 §3.1), else
        one command at a time, stopping after a refused MAIL."""
        if not self.supports("pipelining"):
            replies = []
            for command in commands:
                replies.append(_reply(await self._client.execute_command(command[:-2])))
                if not replies[0].ok:
                    break
            return replies + [replies[0]] * (len(commands) - len(replies))
        transport = self._client.transport
        original = transport.get_protocol() if transport is not None else None
        if transport is None or original is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        # aiosmtplib reads one reply per command and drops replies that arrive together, so a
        # reader of our own takes the connection for the group, then hands it back.
        reader = _PipelinedReplies(asyncio.get_running_loop())
        transport.set_protocol(reader)
        try:
            transport.write(b"".join(commands))
            return [await reader.next(COMMAND_TIMEOUT) for _ in commands]
        finally:
            transport.set_protocol(original)
            if reader.lost is not None:
                original.connection_lost(reader.lost if isinstance(reader.lost, Exception) else None)

    def _missing_extension(self, message: OutboundMessage) -> Reply | None:
        if message.smtputf8 and not self.supports("smtputf8"):
            # RFC 6531 §3.4: a message that needs SMTPUTF8 cannot go to a server without it.
            return Reply(550, f"5.6.7 {self.mx_host} does not support SMTPUTF8, which this message needs", local=True)
        if message.eight_bit and not self.supports("8bitmime"):
            # RFC 6152 §3: no downgrade here; 8-bit content needs 8BITMIME.
            return Reply(554, f"5.6.3 {self.mx_host} does not support 8BITMIME, which this message needs", local=True)
        return None

    async def _content(self, data: bytes) -> Reply:
        data = normalize_message_line_endings(data)
        if self.supports("chunking"):
            # RFC 3030 §2: "BDAT <size> LAST" followed by exactly <size> octets, no dot-stuffing.
            protocol = self._client.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost")
            protocol.write(f"BDAT {len(data)} LAST\r\n".encode("ascii") + data)
            return _reply(await protocol.read_response(timeout=CONTENT_TIMEOUT))
        try:
            return _reply(await self._client.data(data, timeout=CONTENT_TIMEOUT))
        except aiosmtplib.SMTPDataError as exc:
            return Reply(exc.code, exc.message)

    async def _reset(self) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await self._client.rset()

    async def quit(self) -> None:
        """End the session politely (RFC 5321 §4.1.1.10); never raises."""
        try:
            if self._client.is_connected:
                await self._client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()
