"""The IMAP and POP3 client adapters of the sync engine (ring 2: imapclient and poplib).

`ImapRemote` and `PopRemote` hide the libraries behind the few operations the runner needs;
errors from the server come out as `RemoteError` carrying the server's own text, so that it
can be shown per account.

Standards: RFC 3501 (IMAP4rev1: LIST, SELECT, UID FETCH/STORE/COPY/SEARCH, APPEND, EXPUNGE),
RFC 2177 (IDLE), RFC 4315 (UIDPLUS: UID EXPUNGE, COPYUID, APPENDUID), RFC 5161 (ENABLE),
RFC 7162 §3.1 (CONDSTORE: HIGHESTMODSEQ, CHANGEDSINCE), §3.2 (QRESYNC: VANISHED), RFC 6154 (LIST special-use
attributes), RFC 2195 (CRAM-MD5), RFC 4616 (PLAIN); RFC 1939 (POP3: USER/PASS, UIDL, RETR,
DELE), RFC 2595 §4 (STLS), RFC 8314 (implicit TLS).
Security: everything received is untrusted: message bytes go to the store as they are, flags
and names are filtered by `courriel.imapsync.plan`. TLS verifies the server certificate and
host name (ssl.create_default_context) unless security is "none" (loopback hosts only,
`courriel.imapsync.accounts.validate`). The password is passed to the library and never logged.
Bounds on what a server can make us hold: an IMAP literal larger than `max_message_size` is
read in chunks and thrown away (the message is refused, `FetchedMessage.refused`), one larger
than LITERAL_DRAIN_FACTOR times that ends the connection; a POP3 RETR is read by our own line
reader up to `max_message_size` (poplib's 2,048-octet line limit does not apply, RFC 1939
§3 lines in real mail are longer), the rest drained, `MessageTooLarge` raised; uid-sets
(VANISHED, COPYUID) are kept as ranges (`plan.parse_uid_ranges`), never expanded by the
server's say; server text in errors is stripped of control characters and bounded
(`plan.printable`) before it reaches a log line or the account record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import imaplib
import logging
import poplib
import re
import ssl
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import imapclient
from imapclient.exceptions import IMAPClientError
from imapclient.response_parser import parse_fetch_response

from courriel.imapsync import plan

TIMEOUT = 60.0
MAX_MESSAGE_SIZE = 35 * 1024 * 1024  # the default of config `[smtp] max_message_size`
LITERAL_DRAIN_FACTOR = 4  # a literal over max_message_size × this ends the connection instead of being drained
_DRAIN_CHUNK = 64 * 1024
ERROR_TEXT_LIMIT = 300
log = logging.getLogger("courriel.imapsync")
_COPYUID = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", re.IGNORECASE)
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)


class RemoteError(RuntimeError):
    """The remote server refused or failed; the text is the server's own message when it sent one."""


class MessageTooLarge(RemoteError):
    """One message is over the size limit; it was skipped and the connection is still usable."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"message of {size} octets is over the {limit}-octet limit")
        self.size = size
        self.limit = limit


class OversizeLiteral(bytes):
    """What an IMAP literal that was not kept reads as: empty bytes that remember the announced
    size (and report it as their length, which imapclient's parser checks against `{n}`).
    `deferred`: under the message limit but over what one FETCH may hold: fetched again alone."""

    size = 0
    deferred = False

    def __len__(self) -> int:
        return self.size


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    security: str  # ssl | starttls | none
    username: str
    auth: str = "plain"  # plain | cram-md5


@dataclass(frozen=True)
class SelectedFolder:
    uidvalidity: int
    uidnext: int
    highestmodseq: int | None  # None: CONDSTORE not offered
    exists: int


@dataclass(frozen=True)
class FetchedMessage:
    uid: int
    body: bytes
    flags: frozenset[str]
    internaldate: dt.datetime | None
    size: int
    message_id: str
    refused: str = ""  # non-empty: not imported, and why (over the size limit)


def _text(exc: BaseException) -> str:
    """The server's text of an error, safe to log and store (no control characters, bounded)."""
    text = str(exc)
    if text.startswith(("b'", 'b"')) and len(text) > 3:
        text = text[2:-1]
    return plan.printable(text, ERROR_TEXT_LIMIT) or exc.__class__.__name__


class _LiteralBudget:
    """Octets of literals one command may keep: `limit` (the message limit) unless a FETCH of
    bodies sets its batch size; `kept` restarts at each command."""

    def __init__(self, limit: int):
        self.limit = limit
        self.budget = limit
        self.kept = 0


def _bound_literals(imap: imaplib.IMAP4, limit: int) -> _LiteralBudget:
    """Make imaplib refuse literals over `limit` (it reads `{n}` octets whatever n the server says).

    imaplib reads every literal with `IMAP4.read(size)` (RFC 3501 §4.3). Over the limit, the
    octets are read in chunks and dropped, so the response stream stays in step and the other
    messages of the FETCH still arrive; the literal reads as an empty `OversizeLiteral`. Over
    LITERAL_DRAIN_FACTOR × the limit the connection is ended (IMAP4.abort): no point in
    reading gigabytes from a server that lies that much. With a budget (a FETCH batch planned
    from RFC822.SIZE, which the server may understate), a literal that would take the
    command past it is dropped too, marked `deferred` (the first literal is always kept): one
    command holds at most max(budget, limit) octets."""
    read = imap.read
    command = imap._command
    state = _LiteralBudget(limit)

    def counted_command(_imap, *args, **kwargs):
        state.kept = 0
        return command(*args, **kwargs)

    def bounded_read(size: int) -> bytes:
        if size <= limit:
            if state.kept == 0 or state.kept + size <= state.budget:
                state.kept += size
                return read(size)
        elif size > limit * LITERAL_DRAIN_FACTOR:
            raise imaplib.IMAP4.abort(f"the server sent a literal of {size} octets (limit {limit})")
        remaining = size
        while remaining > 0:
            chunk = read(min(_DRAIN_CHUNK, remaining))
            if not chunk:
                raise imaplib.IMAP4.abort("connection closed inside a literal")
            remaining -= len(chunk)
        marker = OversizeLiteral()
        marker.size = size
        marker.deferred = size <= limit
        return marker

    imap.read = bounded_read
    # A bound method, as imaplib compares `type(literal) is type(self._command)` (AUTHENTICATE).
    imap._command = types.MethodType(counted_command, imap)
    return state


def message_id_of(header: bytes) -> str:
    match = _MESSAGE_ID.search(header.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" "))
    return match.group(1).decode("utf-8", "replace")[:998] if match else ""


def _seconds(date) -> int:
    """An INTERNALDATE as whole Unix seconds (0 when missing), for comparing dates across servers."""
    if not isinstance(date, dt.datetime):
        return 0
    if date.tzinfo is None:
        date = date.replace(tzinfo=dt.UTC)
    return int(date.timestamp())


def _cram_md5(username: str, password: str):
    # RFC 2195 §2: the response is the user name, a space and HMAC-MD5(password, challenge) in hex.
    def respond(challenge: bytes) -> bytes:
        digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
        return f"{username} {digest}".encode()

    return respond


class ImapRemote:
    """One logged-in IMAP connection."""

    def __init__(self, endpoint: Endpoint, password: str, timeout: float = TIMEOUT,
                 max_message_size: int = MAX_MESSAGE_SIZE):
        self.endpoint = endpoint
        self.max_message_size = max_message_size
        try:
            context = ssl.create_default_context() if endpoint.security != "none" else None
            self.client = imapclient.IMAPClient(endpoint.host, port=endpoint.port, ssl=endpoint.security == "ssl",
                                                ssl_context=context, timeout=timeout, use_uid=True)
            self.literals = _bound_literals(self.client._imap, max_message_size)
            self.client.normalise_times = False
            if endpoint.security == "starttls":
                self.client.starttls(context)
            if endpoint.auth == "cram-md5":
                self.client.sasl_login("CRAM-MD5", _cram_md5(endpoint.username, password))
            else:
                self.client.login(endpoint.username, password)
            self.capabilities = {c.decode().upper() if isinstance(c, bytes) else c.upper()
                                 for c in self.client.capabilities()}
            self.condstore = "CONDSTORE" in self.capabilities or "QRESYNC" in self.capabilities
            # RFC 7162 §3.2: a QRESYNC server also gives expunges a MODSEQ, so an unchanged
            # HIGHESTMODSEQ means nothing at all changed in the mailbox.
            self.qresync = False
            if self.condstore:
                # RFC 5161 / RFC 7162 §3.1, §3.2.3: enable QRESYNC (which implies CONDSTORE) when
                # offered, else CONDSTORE, so that SELECT reports HIGHESTMODSEQ.
                wanted = ["QRESYNC"] if "QRESYNC" in self.capabilities else ["CONDSTORE"]
                with contextlib.suppress(IMAPClientError):
                    enabled = {e.decode().upper() if isinstance(e, bytes) else str(e).upper()
                               for e in self.client.enable(*wanted)}
                    self.qresync = "QRESYNC" in enabled
        except (IMAPClientError, imaplib.IMAP4.error, OSError, ssl.SSLError) as exc:
            raise RemoteError(_text(exc)) from exc
        # What this connection asked for, for the tests and the logs: UID SEARCH ALL commands,
        # FLAGS items received, message bodies fetched.
        self.counts = {"search_all": 0, "flags_received": 0, "bodies": 0}

    @property
    def idle_supported(self) -> bool:
        return "IDLE" in self.capabilities

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (IMAPClientError, imaplib.IMAP4.error, OSError, ssl.SSLError) as exc:
            raise RemoteError(_text(exc)) from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.logout()
        with contextlib.suppress(Exception):
            self.client.shutdown()

    # ------------------------------------------------------------- folders

    def folders(self) -> list[plan.RemoteFolder]:
        with self._errors():
            listed = self.client.list_folders()
        result = []
        for flags, delimiter, name in listed:
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            if isinstance(delimiter, bytes):
                delimiter = delimiter.decode("ascii", "replace")
            attrs = frozenset((f.decode() if isinstance(f, bytes) else f).lower() for f in flags)
            result.append(plan.RemoteFolder(name=name, delimiter=delimiter, attributes=attrs))
        return result

    def select(self, name: str) -> SelectedFolder:
        with self._errors():
            info = self.client.select_folder(name)
        modseq = info.get(b"HIGHESTMODSEQ")
        return SelectedFolder(uidvalidity=int(info[b"UIDVALIDITY"]), uidnext=int(info.get(b"UIDNEXT", 0)),
                              highestmodseq=int(modseq) if modseq is not None and self.condstore else None,
                              exists=int(info.get(b"EXISTS", 0)))

    # ------------------------------------------------------------- reading

    def uids(self) -> list[int]:
        self.counts["search_all"] += 1
        with self._errors():
            return sorted(int(u) for u in self.client.search(["ALL"]))

    def changes_since(self, modseq: int) -> tuple[dict[int, frozenset[str]], list[tuple[int, int]] | None]:
        """RFC 7162 §3.2.6 (QRESYNC enabled): `UID FETCH 1:* (FLAGS) (CHANGEDSINCE m VANISHED)`.

        Returns (flags of the messages changed or added since `modseq`, UID ranges expunged
        since, or None when a VANISHED response was malformed: the caller diffs UIDs instead).
        VANISHED (EARLIER) may name UIDs that never existed or were reported before (§3.2.10):
        the ranges are never expanded; callers intersect them with the UIDs they know
        (`plan.uids_within`)."""
        imap = self.client._imap
        with self._errors():
            imap.untagged_responses.pop("VANISHED", None)
            imap.untagged_responses.pop("FETCH", None)
            tag = imap._command("UID", "FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {int(modseq)} VANISHED)")
            typ, data = imap._command_complete("FETCH", tag)
            if typ != "OK":
                raise RemoteError(_text(Exception(data[-1] if data else typ)))
            fetched = imap.untagged_responses.pop("FETCH", [])
            vanished_lines = imap.untagged_responses.pop("VANISHED", [])
            parsed = parse_fetch_response(fetched, False, True) if fetched else {}
        flags = {int(uid): plan.normalise_flags(item.get(b"FLAGS", ())) for uid, item in parsed.items()}
        self.counts["flags_received"] += len(flags)
        vanished: list[tuple[int, int]] = []
        for line in vanished_lines:
            text = line.decode("ascii", "replace") if isinstance(line, bytes) else str(line)
            text = re.sub(r"^\s*\(EARLIER\)\s*", "", text, flags=re.IGNORECASE).strip()
            if text:
                try:
                    vanished.extend(plan.parse_uid_ranges(text))
                except plan.UidSetError as exc:
                    log.warning("%s: malformed VANISHED response ignored: %s", self.endpoint.host, exc)
                    return flags, None
        return flags, vanished

    def sizes(self, uids: list[int]) -> dict[int, int]:
        """RFC822.SIZE of messages (to cut imports into batches of bounded memory)."""
        result: dict[int, int] = {}
        for batch in plan.batches(sorted(uids), 2000):
            with self._errors():
                answer = self.client.fetch(batch, ["RFC822.SIZE"])
            result.update({int(uid): int(data.get(b"RFC822.SIZE", 0)) for uid, data in answer.items()})
        return result

    def identities(self, uids: list[int]) -> dict[int, tuple[str, int, int]]:
        """UID → (Message-ID, size, INTERNALDATE as Unix seconds): what an upload is recognised by."""
        result: dict[int, tuple[str, int, int]] = {}
        for batch in plan.batches(sorted(uids), 500):
            with self._errors():
                answer = self.client.fetch(batch, ["RFC822.SIZE", "INTERNALDATE",
                                                   "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            for uid, data in answer.items():
                header = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"") or b""
                result[int(uid)] = (message_id_of(header), int(data.get(b"RFC822.SIZE", 0)),
                                    _seconds(data.get(b"INTERNALDATE")))
        return result

    def search_message_id(self, message_id: str) -> list[int]:
        """UIDs whose Message-ID header contains `message_id` (RFC 3501 §6.4.4 HEADER)."""
        with self._errors():
            return sorted(int(u) for u in self.client.search(["HEADER", "Message-ID", message_id]))

    def status(self, names: list[str]) -> dict[str, tuple[int | None, int, int]]:
        """RFC 3501 §6.3.10 STATUS of folders (not the selected one): name → (HIGHESTMODSEQ
        (RFC 7162 §3.1.2.3; None without CONDSTORE), UIDNEXT, MESSAGES). Folders that cannot
        be read are left out."""
        items = ["MESSAGES", "UIDNEXT"] + (["HIGHESTMODSEQ"] if self.condstore else [])
        result = {}
        for name in names:
            try:
                with self._errors():
                    answer = self.client.folder_status(name, items)
            except RemoteError:
                continue
            modseq = answer.get(b"HIGHESTMODSEQ")
            result[name] = (int(modseq) if modseq is not None else None, int(answer.get(b"UIDNEXT", 0)),
                            int(answer.get(b"MESSAGES", 0)))
        return result

    def flags(self, uids: list[int], changed_since: int | None = None) -> dict[int, frozenset[str]]:
        """Flags of messages, or (RFC 7162 §3.1.4.1 CHANGEDSINCE) of those changed since a MODSEQ."""
        modifiers = [f"CHANGEDSINCE {changed_since}"] if changed_since is not None else None
        result: dict[int, frozenset[str]] = {}
        for batch in plan.batches(sorted(uids), 2000):
            with self._errors():
                answer = self.client.fetch(batch, ["FLAGS"], modifiers=modifiers)
            result.update({int(uid): plan.normalise_flags(data.get(b"FLAGS", ())) for uid, data in answer.items()})
        self.counts["flags_received"] += len(result)
        return result

    def headers(self, uids: Iterable[int]) -> list[tuple[int, str, int, frozenset[str]]]:
        """(UID, Message-ID, size, flags) of messages, for matching moved messages and after a
        UIDVALIDITY change without downloading them."""
        uids = list(uids)
        result = []
        for batch in plan.batches(uids, 500):
            with self._errors():
                answer = self.client.fetch(batch, ["RFC822.SIZE", "FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            for uid, data in answer.items():
                header = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"") or b""
                result.append((int(uid), message_id_of(header), int(data.get(b"RFC822.SIZE", 0)),
                               plan.normalise_flags(data.get(b"FLAGS", ()))))
        return result

    def fetch(self, uids: list[int], budget: int = 0, alone: bool = False) -> list[FetchedMessage]:
        """Bodies with flags and INTERNALDATE; BODY.PEEK[] does not set \\Seen (RFC 3501 §6.4.5).

        `budget`: octets this FETCH may hold (the batch's planned size; at least the message
        limit). Bodies past it (the server understated RFC822.SIZE) are fetched again one at a
        time (`alone`), so memory stays bounded by max(budget, limit) per command."""
        self.literals.budget = max(budget, self.max_message_size)
        try:
            with self._errors():
                answer = self.client.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE", "RFC822.SIZE"])
        finally:
            self.literals.budget = self.max_message_size
        self.counts["bodies"] += len(answer)
        deferred = []
        result = []
        for uid in sorted(answer):
            data = answer[uid]
            body = data.get(b"BODY[]")
            if body is None:
                continue  # expunged meanwhile
            if isinstance(body, OversizeLiteral) and body.deferred and not alone:
                deferred.append(int(uid))
                continue
            if isinstance(body, OversizeLiteral) or len(body) > self.max_message_size:
                size = body.size if isinstance(body, OversizeLiteral) else len(body)
                result.append(FetchedMessage(uid=int(uid), body=b"", flags=frozenset(), internaldate=None, size=size,
                                             message_id="", refused=f"{size} octets, over the "
                                                                   f"{self.max_message_size}-octet limit"))
                continue
            date = data.get(b"INTERNALDATE")
            if isinstance(date, dt.datetime) and date.tzinfo is None:
                date = date.replace(tzinfo=dt.UTC)
            header = body[:body.find(b"\r\n\r\n") + 2] if b"\r\n\r\n" in body else body[:65536]
            result.append(FetchedMessage(uid=int(uid), body=body, flags=plan.normalise_flags(data.get(b"FLAGS", ())),
                                         internaldate=date, size=int(data.get(b"RFC822.SIZE", len(body))),
                                         message_id=message_id_of(header)))
        for uid in deferred:
            result.extend(self.fetch([uid], alone=True))
        return sorted(result, key=lambda m: m.uid)

    # ------------------------------------------------------------- writing

    def set_flags(self, changes: dict[int, frozenset[str]]) -> None:
        """Replace the flags of messages (grouped: one UID STORE per distinct flag set)."""
        groups: dict[frozenset[str], list[int]] = {}
        for uid, flags in changes.items():
            groups.setdefault(flags, []).append(uid)
        with self._errors():
            for flags, uids in groups.items():
                self.client.set_flags(uids, sorted(flags), silent=True)

    def delete(self, uids: list[int]) -> None:
        """\\Deleted then UID EXPUNGE (RFC 4315 §2.1) when offered, else EXPUNGE."""
        if not uids:
            return
        with self._errors():
            self.client.add_flags(uids, [imapclient.DELETED], silent=True)
            if "UIDPLUS" in self.capabilities:
                self.client.uid_expunge(uids)
            else:
                self.client.expunge()

    def copy(self, uids: list[int], folder: str) -> dict[int, int]:
        """COPY; returns source UID → destination UID from COPYUID (RFC 4315 §3), {} without it
        or when it cannot be trusted (`plan.copyuid_pairs`: sets of unequal sizes, UIDs we did
        not copy); the caller then looks the copy up by Message-ID."""
        with self._errors():
            # imapclient drops the tagged response text where COPYUID is: ask imaplib directly.
            imap = self.client._imap
            tag = imap._command("UID", "COPY", plan.uid_ranges(uids), self.client._normalise_folder(folder))
            typ, data = imap._command_complete("COPY", tag)
            if typ != "OK":
                raise RemoteError(_text(Exception(data[-1] if data else typ)))
        answer = b" ".join(d for d in data if isinstance(d, bytes))
        match = _COPYUID.search(answer)
        if not match:
            return {}
        pairs = plan.copyuid_pairs(match.group(2), match.group(3), uids)
        if pairs is None:
            log.warning("%s: COPYUID %s ignored (RFC 4315 §3: sets must match what was copied)", self.endpoint.host,
                        plan.printable(match.group(0).decode("ascii", "replace"), 120))
            return {}
        return pairs

    def append(self, folder: str, body: bytes, flags: Iterable[str],
               internaldate: dt.datetime | None) -> tuple[int, int] | None:
        """APPEND (RFC 3501 §6.3.11) with flags and internal date; (UIDVALIDITY, UID) from
        APPENDUID (RFC 4315 §3) when the server sends it, else None."""
        with self._errors():
            answer = self.client.append(folder, body, flags=sorted(flags), msg_time=internaldate)
        match = _APPENDUID.search(answer if isinstance(answer, bytes) else str(answer).encode())
        return (int(match.group(1)), int(match.group(2))) if match else None

    # ------------------------------------------------------------- IDLE

    def idle_start(self) -> None:
        with self._errors():
            self.client.idle()

    def idle_wait(self, timeout: float) -> bool:
        """True when the server reported a change (EXISTS, EXPUNGE, FETCH) within `timeout`."""
        with self._errors():
            responses = self.client.idle_check(timeout=timeout)
        return any((len(r) > 1 and r[1] in (b"EXISTS", b"EXPUNGE", b"FETCH", b"RECENT")) or
                   (r and r[0] == b"VANISHED") for r in responses)

    def idle_stop(self) -> None:
        with self._errors():
            self.client.idle_done()

    def noop(self) -> None:
        with self._errors():
            self.client.noop()


class PopRemote:
    """One logged-in POP3 connection (RFC 1939)."""

    def __init__(self, endpoint: Endpoint, password: str, timeout: float = TIMEOUT,
                 max_message_size: int = MAX_MESSAGE_SIZE):
        self.endpoint = endpoint
        self.max_message_size = max_message_size
        try:
            context = ssl.create_default_context() if endpoint.security != "none" else None
            if endpoint.security == "ssl":
                self.client = poplib.POP3_SSL(endpoint.host, endpoint.port, timeout=timeout, context=context)
            else:
                self.client = poplib.POP3(endpoint.host, endpoint.port, timeout=timeout)
                if endpoint.security == "starttls":
                    self.client.stls(context)  # RFC 2595 §4
            self.client.user(endpoint.username)
            self.client.pass_(password)
        except (TimeoutError, poplib.error_proto, OSError, ssl.SSLError) as exc:
            raise RemoteError(_text(exc)) from exc

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (poplib.error_proto, OSError, ssl.SSLError) as exc:
            raise RemoteError(_text(exc)) from exc

    def uidls(self) -> dict[str, int]:
        """RFC 1939 §7 UIDL: unique id → message number of this session."""
        with self._errors():
            _, lines, _ = self.client.uidl()
        result = {}
        for line in lines:
            number, _, uidl = line.decode("ascii", "replace").partition(" ")
            if uidl and number.isdigit():
                result[uidl.strip()] = int(number)
        return result

    def sizes(self) -> dict[int, int]:
        """RFC 1939 §5 LIST: message number → size in octets, as the server states it."""
        with self._errors():
            _, lines, _ = self.client.list()
        result = {}
        for line in lines:
            number, _, size = line.decode("ascii", "replace").partition(" ")
            size = size.strip().split(" ")[0]
            if number.isdigit() and size.isdigit():
                result[int(number)] = int(size)
        return result

    def retrieve(self, number: int) -> bytes:
        """RETR with our own bounded reader (not poplib's: its 2,048-octet line limit fails on
        real mail, and it holds any number of lines).

        RFC 1939 §3: the answer is byte-stuffed lines ending with "." alone on a line; the
        stuffing is removed and line ends become CRLF. At most `max_message_size` octets are
        kept; past it the rest is read and dropped up to the final "." (so the session stays
        usable) and `MessageTooLarge` is raised."""
        limit = self.max_message_size
        with self._errors():
            self.client._putcmd(f"RETR {int(number)}")
            self.client._getresp()  # -ERR raises poplib.error_proto
            handle = self.client.file
            parts: list[bytes] = []
            kept = 0
            received = 0
            at_line_start = True
            while True:
                chunk = handle.readline(_DRAIN_CHUNK)
                if not chunk:
                    raise RemoteError("connection closed during RETR")
                received += len(chunk)
                if received > limit * LITERAL_DRAIN_FACTOR + _DRAIN_CHUNK:
                    raise RemoteError(f"RETR answer over {limit * LITERAL_DRAIN_FACTOR} octets: connection dropped")
                complete = chunk.endswith(b"\n")
                if at_line_start:
                    if chunk in (b".\r\n", b".\n"):
                        break
                    if chunk.startswith(b"."):
                        chunk = chunk[1:]  # RFC 1939 §3 byte-stuffing
                if complete:
                    chunk = chunk[:-2] + b"\r\n" if chunk.endswith(b"\r\n") else chunk[:-1] + b"\r\n"
                at_line_start = complete
                if kept + len(chunk) <= limit:
                    parts.append(chunk)
                kept += len(chunk)
        if kept > limit:
            raise MessageTooLarge(kept, limit)
        return b"".join(parts)

    def delete(self, number: int) -> None:
        with self._errors():
            self.client.dele(number)

    def quit(self) -> None:
        """QUIT: the UPDATE state (RFC 1939 §6) removes messages marked with DELE."""
        with self._errors():
            self.client.quit()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
