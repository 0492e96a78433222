"""One IMAP session: the `do_<command>` handlers between the protocol core and the store.

Owns the per-connection state machine (not authenticated → authenticated → selected →
logout, checked against the protocol's state table), login and SASL PLAIN, SELECT and EXAMINE,
the mailbox commands (`courriel.imap.session_mailboxes`, a mixin), the selected view
(`courriel.imap.selected`), SEARCH, SORT and THREAD (`courriel.imap.session_search`, a mixin),
FETCH, STORE, MOVE and EXPUNGE (`courriel.imap.session_messages`, a mixin; FETCH data from
`courriel.imap.fetch`), APPEND and COPY (with their quota checks), quota (`courriel.imap.session_quota`,
a mixin), METADATA (`courriel.imap.session_metadata`, a mixin), IDLE, the IMAP metrics
(`courriel.metrics`: sessions, commands by name with completion and latency, IDLE sessions, failed
logins), and the `ServerContext` shared by the sessions of one
process (store, logins, notify fan-out, \\Recent claims, per-user connection counts).

Commands run one at a time in arrival order (pipelined commands wait their turn; their
literals are acknowledged as they arrive). Every store call runs in a thread
(`asyncio.to_thread`); nothing blocks the loop. Before each tagged response the session
reads `store.changes_since` and sends the untagged updates RFC 3501 allows at that point.

Standards: RFC 3501 §3 (states), §5.4 (autologout, see transport), §6 (commands), §7
(responses), §6.2.1 (STARTTLS: plaintext after the command is discarded), §6.2.3 / §11.2
(LOGINDISABLED: no password before TLS unless configured); RFC 4959 (SASL-IR), RFC 4616
(PLAIN), RFC 2177 (IDLE), RFC 4315 (UIDPLUS: APPENDUID, COPYUID, UID EXPUNGE), RFC 6851
(MOVE), RFC 6154 (SPECIAL-USE, CREATE-SPECIAL-USE), RFC 2342 (NAMESPACE), RFC 2971 (ID),
RFC 5161 (ENABLE), RFC 7888 (LITERAL+), RFC 3691 (UNSELECT), RFC 3348 (CHILDREN), RFC 5258
(LIST-EXTENDED), RFC 5819 (LIST-STATUS), RFC 7889 (APPENDLIMIT), RFC 3502 (MULTIAPPEND),
RFC 3516 (BINARY), RFC 4731 (ESEARCH result form), RFC 5182 (SEARCHRES), RFC 5530 (response codes), RFC 7162 §3.1
(CONDSTORE: HIGHESTMODSEQ, MODSEQ in FETCH, CHANGEDSINCE, UNCHANGEDSINCE and MODIFIED, SEARCH
MODSEQ), RFC 7162 §3.2 (QRESYNC: ENABLE QRESYNC, SELECT/EXAMINE (QRESYNC ...), VANISHED, UID FETCH
(CHANGEDSINCE n VANISHED), [CLOSED]), RFC 5032 (OLDER/YOUNGER search keys), RFC 9208 (QUOTA: one
quota root "" per user with the STORAGE (KiB) and MESSAGE (count) resources that have a limit; SETQUOTA
is refused; APPEND and COPY past the limit answer NO [OVERQUOTA]; MOVE stays inside the user's quota root
and never grows it, so it is allowed even over quota, which lets a user move mail to Trash), RFC 8438
(STATUS SIZE), RFC 4978 (COMPRESS=DEFLATE; the streams live in the transport), RFC 9051 (IMAP4rev2 advertised next to
IMAP4rev1; after ENABLE IMAP4rev2: no \\Recent and no RECENT, SEARCH answers in the ESEARCH form, SELECT
sends the mailbox's LIST line, [CLOSED] on reselect), RFC 8437 (UNAUTHENTICATE), RFC 6855 (UTF8=ACCEPT:
after ENABLE UTF8=ACCEPT mailbox names are UTF-8 both ways instead of modified UTF-7), RFC 5464 (METADATA: see
`courriel.imap.session_metadata` for the entries a user may write and the limits).
QRESYNC and the expunge log: VANISHED (EARLIER) is answered from the store's Expunge rows, which are
kept for as long as the folder exists (nothing prunes them yet; they go with DELETE of the folder or the
mailbox). The log is therefore complete and the seq-match parameter of SELECT (QRESYNC ...) is not needed.
Security: every command comes from an untrusted client; mailbox names and flags are
validated by the store; passwords never reach a log, and the client's user name is logged only
printable and bounded (`loggable`); failed logins are throttled by `courriel.logins`, and after
`[imap] max_login_failures` failed LOGIN/AUTHENTICATE in one connection the session answers BYE
and closes (like Dovecot's and Cyrus's per-connection limits); LOGIN/AUTHENTICATE before TLS are
refused on the STARTTLS port unless `tls.allow_plaintext_auth`. Before login the parser takes
only small literals (`authenticated=False`, switched on login and back on UNAUTHENTICATE) and the
transport's short login timeout applies (`set_authenticated`); after login an APPEND literal is
held to the APPENDLIMIT and spooled to a temporary file past `Limits.spool_threshold`
(`courriel.imap.append_spool`), never buffered whole in memory while it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterable

from courriel import metrics, notify
from courriel.imap.append_spool import SpooledLiteral, spool_directory
from courriel.imap.protocol import commands as cmd
from courriel.imap.protocol import encoder as enc
from courriel.imap.protocol.capabilities import CapabilityOptions, capabilities
from courriel.imap.protocol.parser import Limits, Parser
from courriel.imap.protocol.sequence import SequenceSet
from courriel.imap.protocol.states import State, refusal
from courriel.imap.selected import (
    ExistsUpdate,
    ExpungeUpdate,
    FlagsUpdate,
    RecentClaims,
    RecentUpdate,
    SelectedMailbox,
    SequenceError,
)
from courriel.imap.session_mailboxes import MailboxCommands
from courriel.imap.session_messages import MessageCommands
from courriel.imap.session_metadata import MetadataCommands
from courriel.imap.session_quota import QuotaCommands
from courriel.imap.session_search import SearchCommands
from courriel.logins import LoginStatus
from courriel.store import DELIMITER, NoSuchFolder, StoreError

log = logging.getLogger("courriel.imap")

NOT_AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT = (State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED,
                                                      State.LOGOUT)
RECHECK_SECONDS = 5.0  # hints can be lost: idle sessions also look on this timer
INPUT_HIGH_WATER = 1024 * 1024  # unparsed client bytes before the transport stops reading
LOGIN_INPUT_HIGH_WATER = 128 * 1024  # the same before login: one longest line (64 KiB) fits
PERMANENT_SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
LOGGED_NAME_LENGTH = 128  # characters of a client-supplied user name that reach a log line
_UNPRINTABLE = re.compile(r"[^\x21-\x7e\u00a1-\uffff]|[\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def loggable(text: str, limit: int = LOGGED_NAME_LENGTH) -> str:
    """A client-supplied name made safe for a log line: control characters, spaces, line and
    bidirectional separators become "?", and at most `limit` characters are kept ("..." marks a cut)."""
    cut = text[:limit]
    return _UNPRINTABLE.sub("?", cut) + ("..." if len(text) > limit else "")


class ServerContext:
    """What the sessions of one IMAP process share."""

    def __init__(self, config, store, authenticator):
        self.config = config
        self.store = store
        self.authenticator = authenticator
        self.recent = RecentClaims()
        self.by_mailbox: dict[int, set[Session]] = {}
        self.spool_dir = spool_directory(config.data_dir)
        self._recheck: asyncio.Task | None = None
        self.reconfigure(config)

    def reconfigure(self, config) -> None:
        """The settings sessions read (at start, and on SIGHUP: sessions opened afterwards and
        commands run afterwards see the new values)."""
        self.config = config
        self.allow_plaintext_auth = bool(config.get("tls", "allow_plaintext_auth"))
        self.max_per_user = int(config.get("imap", "max_connections_per_user"))
        self.append_limit = int(config.get("smtp", "max_message_size"))
        self.max_login_failures = int(config.get("imap", "max_login_failures"))

    def start(self, loop) -> None:
        self._recheck = loop.create_task(self._periodic())

    def stop(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            for sessions in list(self.by_mailbox.values()):
                for session in list(sessions):
                    session.poke()

    def on_hints(self, hints: Iterable[notify.Hint]) -> None:
        """A `mailbox` hint: wake the sessions of that mailbox (IDLE pushes at once)."""
        for hint in hints:
            with contextlib.suppress(ValueError):
                for session in list(self.by_mailbox.get(int(hint.payload), ())):
                    session.poke()

    def register(self, session: Session, mailbox_id: int) -> bool:
        sessions = self.by_mailbox.setdefault(mailbox_id, set())
        if self.max_per_user and len(sessions) >= self.max_per_user:
            return False
        sessions.add(session)
        return True

    def unregister(self, session: Session) -> None:
        sessions = self.by_mailbox.get(session.mailbox_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.by_mailbox[session.mailbox_id]


class Session(MailboxCommands, MessageCommands, SearchCommands, QuotaCommands, MetadataCommands):
    """The protocol state of one connection; the transport calls `start`, `data_received`, `connection_lost`."""

    def __init__(self, context: ServerContext, connection, implicit_tls: bool = False):
        self.context = context
        self.store = context.store
        self.connection = connection
        self.implicit_tls = implicit_tls
        # Small literals only until login (`_set_authenticated`); large APPEND literals go to a file.
        self.parser = Parser(Limits(max_message_size=context.append_limit), authenticated=False,
                             spool=self._spool)
        self._failed_logins = 0
        self.state = NOT_AUTHENTICATED
        self.mailbox_id: int | None = None
        self.account = ""
        self.view: SelectedMailbox | None = None
        self._input = asyncio.Event()
        self._released = False
        self._reading_paused = False
        self._runner: asyncio.Task | None = None
        self._poked = asyncio.Event()
        self.condstore = False  # RFC 7162 §3.1: MODSEQ in FETCH responses once enabled
        self.qresync = False  # RFC 7162 §3.2.3: VANISHED instead of EXPUNGE once enabled
        self.rev2 = False  # RFC 9051 semantics after ENABLE IMAP4rev2
        self.utf8 = False  # RFC 6855 §3: UTF-8 mailbox names after ENABLE UTF8=ACCEPT
        self._saved_uids: list[int] = []  # RFC 5182 SEARCHRES `$`
        self._status = "OK"  # the last tagged status sent (`tagged`), for the command metrics
        self._running: str | None = None  # the command being run (a server stop lets it finish)
        self._stopping = False

    # ------------------------------------------------------------------ transport side

    @property
    def tls_active(self) -> bool:
        return bool(getattr(self.connection, "tls_active", self.implicit_tls))

    def start(self) -> None:
        self.send(enc.untagged_status("OK", "Courriel IMAP ready", ("CAPABILITY", *self.capabilities())))
        self._runner = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self.parser.receive(data)
        self._input.set()
        high_water = INPUT_HIGH_WATER if self.parser.authenticated else LOGIN_INPUT_HIGH_WATER
        if self.parser.buffered > high_water and not self._reading_paused:
            # The client sends faster than commands run: stop reading instead of buffering.
            self._reading_paused = True
            self.connection.pause_reading()

    def _release(self) -> None:
        """Give back this session's slot in the per-user connection count (once)."""
        if self.mailbox_id is not None and not self._released:
            self._released = True
            self.context.unregister(self)

    def connection_lost(self) -> None:
        self.state = LOGOUT
        self._release()
        if self._runner is not None:
            self._runner.cancel()

    def shutdown(self) -> bool:
        """Server stop: BYE and close now when no command runs (IDLE waits for the client, so it
        counts as none), else right after the running command's tagged response. RFC 9051 §7.1.5.
        A command still arriving (an APPEND literal being sent) counts as running: it is read,
        run and answered, then BYE. True when a command is still running or arriving."""
        self._stopping = True
        if self._running == "IDLE" or (self._running is None and not self.parser.mid_command):
            self._say_bye()
            return False
        return True

    def _say_bye(self) -> None:
        if not self.connection.closed:
            self.send(enc.untagged_status("BYE", "Server shutting down"))
            self.connection.close()

    def poke(self) -> None:
        """Something may have changed in this user's mailbox (hint or timer)."""
        self._poked.set()

    # ------------------------------------------------------------------ output

    def send(self, data: bytes) -> None:
        self.connection.write(data)

    def tagged(self, tag: str, status: str, text: str, code=None) -> None:
        self._status = status  # the completion of the command being run, for its metric
        self.send(enc.tagged(tag, status, text, code))

    def capabilities(self) -> list[str]:
        options = CapabilityOptions(plaintext_allowed=self.context.allow_plaintext_auth,
                                    append_limit=self.context.append_limit, imap4rev2=True, searchres=True,
                                    condstore=True, qresync=True, quota=True,
                                    compress=hasattr(self.connection, "start_compression"), unauthenticate=True,
                                    utf8_accept=True, sort=True, thread=True, metadata=True)
        names = capabilities(tls_active=self.tls_active, authenticated=self.state != NOT_AUTHENTICATED,
                             options=options)
        if "QUOTA" in names:  # RFC 9208 §3.1: the resources this server reports
            at = names.index("QUOTA") + 1
            names[at:at] = ["QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"]
        return names

    def _spool(self, size: int) -> SpooledLiteral:
        return SpooledLiteral(self.context.spool_dir)

    def _set_authenticated(self, authenticated: bool) -> None:
        """Switch the parser's literal limits and the transport's idle timeout (login ↔ logout)."""
        self.parser.authenticated = authenticated
        switch = getattr(self.connection, "set_authenticated", None)
        if switch is not None:
            switch(authenticated)

    def auth_allowed(self) -> bool:
        return self.tls_active or self.context.allow_plaintext_auth

    # ------------------------------------------------------------------ command loop

    async def _next_event(self):
        """The parser's next event, waiting for bytes from the client when it needs more."""
        while True:
            event = self.parser.next_event()
            if event is not None:
                return event
            if self._reading_paused:
                self._reading_paused = False
                self.connection.resume_reading()
            self._input.clear()
            await self._input.wait()

    async def _run(self) -> None:
        try:
            with metrics.imap_session():
                while self.state != LOGOUT and not self.connection.closed:
                    event = await self._next_event()
                    if isinstance(event, cmd.ContinuationRequest):
                        self.send(enc.continuation(event.text))
                    elif isinstance(event, cmd.CommandError):
                        self.tagged(event.tag, event.status, event.text, event.code)
                        metrics.imap_command(event.command or "OTHER", event.status, 0.0)
                        if event.close:
                            self.connection.close()
                            return
                    elif isinstance(event, cmd.Command):
                        await self._dispatch(event)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("imap session failed")
            self.send(enc.untagged_status("BYE", "Internal server error"))
            self.connection.close()

    async def _dispatch(self, command: cmd.Command) -> None:
        """Run one command and record its completion and latency (`courriel.metrics.imap_command`)."""
        started = time.monotonic()
        self._status = "BAD"  # what is recorded when the handler fails without a tagged answer
        self._running = command.name
        try:
            await self._dispatch_command(command)
        finally:
            self._running = None
            if self._stopping:
                self._say_bye()
            uid = getattr(command, "uid", False) or getattr(command, "uids", None) is not None
            metrics.imap_command(("UID " if uid else "") + command.name, self._status,
                                 time.monotonic() - started)

    async def _dispatch_command(self, command: cmd.Command) -> None:
        name = command.name
        refused = refusal(name, self.state, tls_active=self.tls_active,
                          plaintext_allowed=self.context.allow_plaintext_auth,
                          mechanism=getattr(command, "mechanism", None))
        if refused is not None:
            self.tagged(command.tag, refused.status, refused.text, refused.code)
            return
        handler = getattr(self, "do_" + name.lower().replace(" ", "_"), None)
        if handler is None:
            self.tagged(command.tag, "BAD", f"{name} is not supported")
            return
        try:
            await handler(command)
        except SequenceError as exc:
            self.tagged(command.tag, "BAD", str(exc))
        except NoSuchFolder:
            self.tagged(command.tag, "NO", "No such mailbox", "NONEXISTENT")
        except StoreError as exc:
            self.tagged(command.tag, "NO", str(exc), "CANNOT")

    async def _call(self, function, *args, **kwargs):
        return await asyncio.to_thread(function, *args, **kwargs)

    async def _refresh(self, expunge_allowed: bool) -> None:
        """Read changes since the view's MODSEQ and send what RFC 3501 §7.4.1 allows now."""
        view = self.view
        if view is None or self.state != SELECTED:
            return
        try:
            changes = await self._call(self.store.changes_since, view.folder_id, view.modseq)
        except NoSuchFolder:  # deleted by another session: RFC 3501 §7.1.5 BYE is harsh; act as empty
            changes = None
        if changes is not None:
            view.apply(changes)
            new = view.new_uids()
            if new and not view.readonly and not self.rev2:  # RFC 9051 has no \\Recent
                view.mark_recent(self.context.recent.claim(view.folder_id, view.uidvalidity, new))
        self._send_updates(view.updates(expunge_allowed))

    def _send_updates(self, updates) -> None:
        vanished = [u.uid for u in updates if isinstance(u, ExpungeUpdate)] if self.qresync else []
        if vanished:  # RFC 7162 §3.2.10: one VANISHED replaces the EXPUNGE responses
            self.send(enc.vanished(SequenceSet.from_numbers(sorted(vanished))))
        for update in updates:
            if isinstance(update, ExpungeUpdate):
                if not self.qresync:
                    self.send(enc.expunge(update.msn))
            elif isinstance(update, ExistsUpdate):
                self.send(enc.exists(update.count))
            elif isinstance(update, RecentUpdate):
                self.send(enc.recent(update.count))
            elif isinstance(update, FlagsUpdate):
                self._send_flags(update.msn, update.uid, update.flags, update.modseq)

    def _send_flags(self, msn: int, uid: int | None, flags, modseq: int | None = None) -> None:
        items = ([("UID", uid)] if uid is not None else []) + [("FLAGS", [enc.Atom(f) for f in flags])]
        if self.condstore and modseq is not None:  # RFC 7162 §3.1.4: FLAGS come with MODSEQ
            items.append(("MODSEQ", [modseq]))
        self.send(b"".join(enc.fetch_response(msn, items)))

    async def _done(self, command: cmd.Command, text: str = "completed", code: str | None = None,
                    expunge_allowed: bool = True) -> None:
        await self._refresh(expunge_allowed)
        self.tagged(command.tag, "OK", f"{command.name} {text}", code)

    # ------------------------------------------------------------------ any state

    async def do_capability(self, command: cmd.Capability) -> None:
        self.send(enc.capability_line(self.capabilities()))
        await self._done(command)

    async def do_noop(self, command: cmd.Noop) -> None:
        await self._done(command)

    async def do_logout(self, command: cmd.Logout) -> None:
        self.send(enc.untagged_status("BYE", "Logging out"))
        self.tagged(command.tag, "OK", "LOGOUT completed")
        self.state = LOGOUT
        self._release()
        self.connection.close()

    async def do_id(self, command: cmd.Id) -> None:
        # RFC 2971 §3.3: the server's own fields.
        self.send(enc.id_line({"name": "Courriel"}))
        await self._done(command)

    # ------------------------------------------------------------------ not authenticated

    async def do_starttls(self, command: cmd.StartTls) -> None:
        if self.tls_active:
            self.tagged(command.tag, "BAD", "TLS is already active")
            return
        # RFC 3501 §6.2.1: bytes pipelined in plaintext after STARTTLS are dropped, never run
        # inside TLS. Nothing awaits between here and the switch, so nothing can slip in.
        self.parser.discard_buffered()
        self.tagged(command.tag, "OK", "Begin TLS negotiation now")
        self.connection.start_tls()

    async def _login(self, command: cmd.Command, username: str, password: str) -> None:
        if not self.auth_allowed():
            self.tagged(command.tag, "NO", "Use STARTTLS first", "PRIVACYREQUIRED")
            return
        result = await self.context.authenticator.authenticate(username, password, self.connection.peer_ip, "imap")
        log.info("imap login", extra={"account": loggable(username), "client": self.connection.peer_ip,
                                      "result": str(result.status)})
        if not result.ok:
            metrics.auth_failure("imap")
            self._failed_logins += 1
        if result.status is LoginStatus.THROTTLED:
            self.tagged(command.tag, "NO", "Too many failed logins; try again later", "UNAVAILABLE")
        elif not result.ok:
            self.tagged(command.tag, "NO", "Authentication failed", "AUTHENTICATIONFAILED")
        if not result.ok:
            limit = self.context.max_login_failures
            if limit and self._failed_logins >= limit:
                # One connection may not go on guessing: BYE after the tagged NO (RFC 9051 §7.1.5).
                self.send(enc.untagged_status("BYE", "Too many failed logins"))
                self.state = LOGOUT
                self.connection.close()
            return
        self.mailbox_id = result.mailbox_id
        if not self.context.register(self, result.mailbox_id):
            self.mailbox_id = None
            self.tagged(command.tag, "NO", "Too many connections for this user", "LIMIT")
            return
        self.account = result.account or username
        self.state = AUTHENTICATED
        self._set_authenticated(True)
        self.tagged(command.tag, "OK", "Logged in", ("CAPABILITY", *self.capabilities()))

    async def do_login(self, command: cmd.Login) -> None:
        await self._login(command, command.username, command.password)

    async def do_authenticate(self, command: cmd.Authenticate) -> None:
        if command.mechanism != "PLAIN":
            self.tagged(command.tag, "NO", "Unsupported mechanism", "CANNOT")
            return
        if not self.auth_allowed():
            self.tagged(command.tag, "NO", "Use STARTTLS first", "PRIVACYREQUIRED")
            return
        response = command.initial_response
        if response is None:
            self.parser.expect_authenticate_response(command.tag)
            self.send(enc.sasl_challenge(b""))
            event = await self._next_event()
            self.parser.expect_command()
            if isinstance(event, cmd.CommandError):
                self.tagged(event.tag if event.tag != "*" else command.tag, event.status, event.text, event.code)
                return
            if not isinstance(event, cmd.AuthenticateResponse) or event.cancelled:
                self.tagged(command.tag, "BAD", "Authentication cancelled")
                return
            response = event.data
        # RFC 4616 §2: [authzid] NUL authcid NUL passwd
        parts = response.split(b"\0")
        if len(parts) != 3:
            self.tagged(command.tag, "BAD", "Malformed PLAIN response")
            return
        try:
            authzid, authcid, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            self.tagged(command.tag, "BAD", "Malformed PLAIN response")
            return
        if authzid and authzid.lower() != authcid.lower():
            self.tagged(command.tag, "NO", "Proxy authorisation is not allowed", "AUTHORIZATIONFAILED")
            return
        await self._login(command, authcid, password)

    # ------------------------------------------------------------------ authenticated: folders

    def _deselect(self) -> None:
        self.view = None
        self._saved_uids = []  # RFC 5182 §2.1: the saved result does not survive the mailbox
        if self.state == SELECTED:
            self.state = AUTHENTICATED

    async def do_select(self, command: cmd.Select) -> None:
        if command.qresync is not None and not self.qresync:
            self.tagged(command.tag, "BAD", "ENABLE QRESYNC first")  # RFC 7162 §3.2.5
            return
        if (self.qresync or self.rev2) and self.view is not None:
            # RFC 7162 §3.2.11: the previous mailbox is closed before the new one's responses.
            self.send(enc.untagged_status("OK", "Previous mailbox is now closed", "CLOSED"))
        self._deselect()
        try:
            folder = await self._call(self.store.get_folder, self.mailbox_id, command.mailbox)
        except (NoSuchFolder, StoreError):
            self.tagged(command.tag, "NO", "No such mailbox", "NONEXISTENT")
            return
        messages = await self._call(self.store.list_messages, folder.id)
        view = SelectedMailbox(folder_id=folder.id, name=folder.name, uidvalidity=folder.uidvalidity,
                               readonly=command.read_only)
        self.context.recent.first_claim(folder.id, folder.uidvalidity, folder.uidnext)
        recent = set() if command.read_only or self.rev2 else self.context.recent.claim(
            folder.id, folder.uidvalidity, [m.uid for m in messages])
        view.load(messages, folder.uidnext, folder.highestmodseq, recent)
        keywords = sorted({k for m in messages for k in m.keywords}, key=str.lower)
        flags = [*PERMANENT_SYSTEM_FLAGS, *keywords]
        # RFC 3501 §6.3.1: the untagged data a SELECT must send.
        self.send(enc.flags_line(flags))
        self.send(enc.exists(view.exists))
        if self.rev2:  # RFC 9051 §6.3.2: the LIST response of the mailbox instead of RECENT
            self.send(enc.list_line([], DELIMITER, folder.name, utf8=self.utf8))
        else:
            self.send(enc.recent(len(view.recent)))
        unseen = view.first_unseen()
        if unseen is not None:
            self.send(enc.untagged_status("OK", "First unseen", ("UNSEEN", unseen)))
        permanent = [] if command.read_only else [enc.Atom(f) for f in (*flags, "\\*")]
        self.send(enc.untagged_status("OK", "Flags permitted", ("PERMANENTFLAGS", permanent)))
        self.send(enc.untagged_status("OK", "UIDs valid", ("UIDVALIDITY", folder.uidvalidity)))
        self.send(enc.untagged_status("OK", "Predicted next UID", ("UIDNEXT", folder.uidnext)))
        self.send(enc.untagged_status("OK", "Highest", ("HIGHESTMODSEQ", folder.highestmodseq)))
        if command.condstore:
            self.condstore = True  # RFC 7162 §3.1.8: SELECT (CONDSTORE) enables CONDSTORE
        if command.qresync is not None and command.qresync.uidvalidity == folder.uidvalidity:
            await self._resync(view, command.qresync)
        self.view = view
        self.state = SELECTED
        mode = "READ-ONLY" if command.read_only else "READ-WRITE"
        self.tagged(command.tag, "OK", f"{command.name} completed", mode)

    do_examine = do_select

    async def _resync(self, view: SelectedMailbox, known: cmd.QresyncParameters) -> None:
        """RFC 7162 §3.2.5.2: what changed since the client's MODSEQ, as VANISHED (EARLIER) and then
        FETCH (UID FLAGS MODSEQ). VANISHED is limited to the known UIDs when the client sent them."""
        changes = await self._call(self.store.changes_since, view.folder_id, known.modseq)
        vanished = changes.vanished
        if known.known_uids is not None:
            highest = max(vanished, default=0)
            vanished = [u for u in vanished if known.known_uids.contains(u, highest)]
        if vanished:
            self.send(enc.vanished(SequenceSet.from_numbers(vanished), earlier=True))
        for message in changes.messages:
            msn = view.msn_of(message.uid)
            if msn is not None:
                self._send_flags(msn, message.uid, view.flags_of(message.uid), view.modseqs.get(message.uid))

    async def do_append(self, command: cmd.Append) -> None:
        spooled = [m.message for m in command.messages if isinstance(m.message, SpooledLiteral)]
        cancelled = False
        try:
            await self._append(command)
        except asyncio.CancelledError:
            cancelled = True  # the store's thread may still read the files: they close when it lets go
            raise
        finally:
            if not cancelled:
                for spool in spooled:
                    spool.close()

    async def _append(self, command: cmd.Append) -> None:
        try:
            folder = await self._call(self.store.get_folder, self.mailbox_id, command.mailbox)
        except (NoSuchFolder, StoreError):
            self.tagged(command.tag, "NO", "No such mailbox", "TRYCREATE")
            return
        total = sum(len(m.message) for m in command.messages)
        if any(len(m.message) > self.context.append_limit for m in command.messages):
            self.tagged(command.tag, "NO", "Message too large", "TOOBIG")
            return
        usage = await self._call(self.store.quota_usage, self.mailbox_id, only_if_limited=True)
        if usage.would_exceed(total, len(command.messages)):
            self.tagged(command.tag, "NO", "Mailbox is over quota", "OVERQUOTA")
            return
        try:
            # RFC 3502 §6.3.11: MULTIAPPEND is all or nothing: one store transaction (one commit)
            # for every message; each file is durable before it, the commit before the OK.
            contents = [m.message.rewind() if isinstance(m.message, SpooledLiteral) else m.message
                        for m in command.messages]
            delivered = await self._call(self.store.append_batch, self.mailbox_id, folder.name,
                                         [(content, m.flags, m.internaldate)
                                          for content, m in zip(contents, command.messages, strict=True)])
        except StoreError as exc:
            self.tagged(command.tag, "NO", str(exc), "CANNOT")
            return
        uids = [d.uid for d in delivered]
        uidvalidity = delivered[0].uidvalidity if delivered else folder.uidvalidity
        await self._done(command, code=("APPENDUID", uidvalidity, SequenceSet.from_numbers(uids)))

    async def do_enable(self, command: cmd.Enable) -> None:
        # RFC 5161 §3.1: only what the server supports and enables now is listed.
        enabled = []
        if "CONDSTORE" in command.capabilities:
            self.condstore = True
            enabled.append("CONDSTORE")
        if "IMAP4REV2" in (c.upper() for c in command.capabilities):
            self.rev2 = True
            enabled.append("IMAP4rev2")
        if "UTF8=ACCEPT" in (c.upper() for c in command.capabilities):
            self.utf8 = self.parser.utf8 = True  # RFC 6855 §3: from the next command on
            enabled.append("UTF8=ACCEPT")
        if "QRESYNC" in command.capabilities:
            self.condstore = self.qresync = True  # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
            enabled.append("QRESYNC")
        self.send(enc.enabled_line(enabled))
        await self._done(command)

    async def do_unauthenticate(self, command: cmd.Unauthenticate) -> None:
        # RFC 8437 §3: back to not authenticated; everything enabled or selected is forgotten.
        self._deselect()
        self._release()
        self._released = False
        self.mailbox_id = None
        self.account = ""
        self.condstore = self.qresync = self.rev2 = self.utf8 = self.parser.utf8 = False
        self.state = NOT_AUTHENTICATED
        self._set_authenticated(False)
        self.tagged(command.tag, "OK", "UNAUTHENTICATE completed")

    async def do_compress(self, command: cmd.Compress) -> None:
        if command.mechanism.upper() != "DEFLATE":
            self.tagged(command.tag, "BAD", "Unsupported compression mechanism")
            return
        if getattr(self.connection, "compression_active", False):
            self.tagged(command.tag, "NO", "Compression is already active", "COMPRESSIONACTIVE")  # RFC 4978 §3
            return
        # RFC 4978 §3: uncompressed bytes pipelined after COMPRESS are dropped (the client waits for
        # the OK); nothing awaits between here and the switch.
        self.parser.discard_buffered()
        self.tagged(command.tag, "OK", "DEFLATE active")
        self.connection.start_compression()

    async def do_idle(self, command: cmd.Idle) -> None:
        # RFC 2177 §3: updates are sent as they happen until DONE.
        self.parser.expect_idle_done(command.tag)
        self.send(enc.continuation("idling"))
        ended = None
        with metrics.imap_idle():
            while ended is None and not self.connection.closed:
                self._poked.clear()
                await self._refresh(expunge_allowed=True)
                event = self.parser.next_event()
                if event is not None:
                    ended = event
                    break
                self._input.clear()
                waiters = [asyncio.ensure_future(self._input.wait()), asyncio.ensure_future(self._poked.wait())]
                try:
                    await asyncio.wait(waiters, timeout=RECHECK_SECONDS * 6, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        self.parser.expect_command()
        if isinstance(ended, cmd.CommandError):
            self.tagged(command.tag, "BAD", ended.text, ended.code)
            return
        await self._done(command)

    # ------------------------------------------------------------------ selected

    async def do_check(self, command: cmd.Check) -> None:
        await self._done(command)

    async def do_close(self, command: cmd.Close) -> None:
        view = self.view
        if view is not None and not view.readonly:
            # RFC 3501 §6.4.2: expunge silently.
            await self._call(self.store.expunge, view.folder_id)
        self._deselect()
        self.tagged(command.tag, "OK", "CLOSE completed")

    async def do_unselect(self, command: cmd.Unselect) -> None:
        self._deselect()
        self.tagged(command.tag, "OK", "UNSELECT completed")

    def _uid_ranges(self, sequence) -> list[tuple[int, int]]:
        if sequence.saved:  # RFC 5182 §2.1: `$` is the saved result
            return [(uid, uid) for uid in self._saved()]
        known = self.view.known_uids()
        return sequence.resolve(known[-1] if known else 0)

    def _saved(self) -> list[int]:
        """RFC 5182 §2.1: the saved UIDs still in the mailbox (expunged ones drop out)."""
        return [uid for uid in self._saved_uids if self.view.live(uid)]

    def _targets(self, sequence, uid: bool) -> list[int]:
        if sequence.saved:
            return self._saved()
        if uid:
            return self.view.resolve_uids(self._uid_ranges(sequence))
        return self.view.resolve_msns(sequence.resolve(self.view.exists))

    async def do_copy(self, command: cmd.Copy) -> None:
        view = self.view
        uids = [u for u in self._targets(command.sequence, command.uid) if view.live(u)]
        dest = await self._destination(command)
        if dest is None:
            return
        usage = await self._call(self.store.quota_usage, self.mailbox_id, only_if_limited=True)
        if usage.limited:
            # RFC 9208 §5.1, §5.2: a COPY that would pass a limit fails and copies nothing.
            copied = await self._call(self.store.list_messages, view.folder_id, uids)
            if usage.would_exceed(sum(m.size for m in copied), len(copied)):
                self.tagged(command.tag, "NO", "Mailbox is over quota", "OVERQUOTA")
                return
        result = await self._call(self.store.copy, view.folder_id, uids, dest.id)
        await self._done(command, code=self._copyuid(result), expunge_allowed=command.uid)
