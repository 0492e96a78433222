"""Message commands of an IMAP session (a mixin of `courriel.imap.session.Session`).

Owns `do_fetch`, `do_store`, `do_move` and `do_expunge` (and their UID forms): streaming FETCH
responses batch by batch (`courriel.imap.fetch` prepares them; message files are read off the loop),
\\Seen set by a FETCH of a body, STORE with its .SILENT and UNCHANGEDSINCE forms, MOVE with its
COPYUID, EXPUNGE and UID EXPUNGE, and the helpers COPY shares with MOVE (`_destination`, `_copyuid`).
APPEND and COPY stay in the session next to their quota checks.

Standards: RFC 3501 §6.4.3 (EXPUNGE), §6.4.5 (FETCH), §6.4.6 (STORE), §6.4.8 (UID), §7.4.1 (EXPUNGE
responses; FETCH data of a message expunged meanwhile may be omitted), §7.4.2 (FETCH response);
RFC 9051 §6.4.3, §6.4.5, §6.4.6, §6.4.8, §6.4.9; RFC 4315 §2.1 (UID EXPUNGE), §3 (COPYUID); RFC 6851
§3 and §4.3 (MOVE: COPYUID in an untagged OK before the expunges); RFC 7162 §3.1.3 (UNCHANGEDSINCE,
MODIFIED, MODSEQ after .SILENT), §3.1.4 (MODSEQ in FETCH, CHANGEDSINCE), §3.2.6 (UID FETCH
(CHANGEDSINCE n VANISHED)), §3.2.10 (VANISHED instead of EXPUNGE); RFC 5182 §2.1 (`$`); RFC 3516
(BINARY, in `courriel.imap.fetch`).
Security: sequence sets, flags and FETCH items come from the client (validated by the parser and
the selected view); FETCH never loads a large message whole into one response string.
"""

from __future__ import annotations

from courriel.imap import fetch as fetch_mod
from courriel.imap.protocol import commands as cmd
from courriel.imap.protocol import encoder as enc
from courriel.imap.protocol.sequence import SequenceSet
from courriel.imap.selected import SelectedMailbox
from courriel.store import NoSuchFolder, StoreError


class MessageCommands:
    """Message commands for `Session` (which provides store, mailbox_id, view, condstore, qresync, connection,
    _call, tagged, send, _done, _targets, _uid_ranges, _saved_uids, _send_flags and _send_updates)."""

    async def do_expunge(self, command: cmd.Expunge) -> None:
        view = self.view
        if view.readonly:
            self.tagged(command.tag, "NO", "Mailbox is read-only", "READ-ONLY")
            return
        uids = view.resolve_uids(self._uid_ranges(command.uids)) if command.uids is not None else None
        expunged = await self._call(self.store.expunge, view.folder_id, uids)
        self._send_expunged(view, expunged)
        await self._done(command)

    def _send_expunged(self, view: SelectedMailbox, uids: list[int]) -> None:
        """This session expunged `uids`: EXPUNGE per message, or one VANISHED after ENABLE QRESYNC."""
        self._send_updates(view.take_expunged(uids))

    async def do_fetch(self, command: cmd.Fetch) -> None:
        view = self.view
        uids = [u for u in self._targets(command.sequence, command.uid) if view.live(u)]
        items = list(command.items)
        names = {i.name for i in items}
        if command.changedsince is not None or "MODSEQ" in names:
            self.condstore = True  # RFC 7162 §3.1: a CONDSTORE enabling command
        if command.vanished:
            if not self.qresync:
                self.tagged(command.tag, "BAD", "ENABLE QRESYNC first")  # RFC 7162 §3.2.6
                return
            await self._send_vanished_earlier(command)
        sets_seen = fetch_mod.sets_seen(items) and not view.readonly
        if sets_seen:
            unseen = [u for u in uids if "\\Seen" not in view.flags.get(u, ())]
            if unseen:
                update = await self._call(self.store.set_flags, view.folder_id, unseen, "add", ["\\Seen"])
                for message in update.changed:
                    view.note_flags(message.uid, message.all_flags, message.modseq)
                if "FLAGS" not in {i.name for i in items}:
                    items.append(cmd.FetchAttribute("FLAGS"))
        names = {i.name for i in items}
        if self.condstore and "MODSEQ" not in names and (command.changedsince is not None or "FLAGS" in names):
            items.append(cmd.FetchAttribute("MODSEQ"))  # RFC 7162 §3.1.4.1, §3.1.3
        need_summary = fetch_mod.needs_summary(items)
        for start in range(0, len(uids), 200):
            batch = uids[start:start + 200]
            messages = await self._call(self.store.list_messages, view.folder_id, batch)
            summaries = {}
            if need_summary:
                summaries = {s.uid: s for s in await self._call(self.store.summaries, view.folder_id, batch)}
            wanted = [m for m in messages if view.msn_of(m.uid) is not None
                      and (command.changedsince is None or m.modseq > command.changedsince)]
            arguments = (self.store, view.folder_id, wanted, summaries, items, view.flags_of, command.uid)
            try:
                if any(fetch_mod.reads_file(items, summaries.get(m.uid)) for m in wanted):
                    prepared = await self._call(fetch_mod.prepare_batch, *arguments)  # one thread hop, one query
                else:  # flags, sizes and cached structures only: no IO, no thread hop
                    prepared = fetch_mod.prepare_batch(*arguments)
            except fetch_mod.FetchError as exc:
                self.tagged(command.tag, "NO" if exc.code else "BAD", str(exc), exc.code)
                return
            # A message expunged meanwhile is left out: RFC 3501 §7.4.1 lets the data be omitted.
            # Responses held in memory go out together, one write per WRITE_BYTES.
            buffered, size = [], 0
            for index, (message, result) in enumerate(prepared):
                msn = view.msn_of(message.uid)
                try:
                    if not result.streams:
                        buffered.append(b"".join(enc.fetch_response(msn, result.items)))
                        size += len(buffered[-1])
                        if size < fetch_mod.WRITE_BYTES and index + 1 < len(prepared):
                            continue
                    if buffered:
                        self.send(b"".join(buffered))
                        buffered, size = [], 0
                        await self.connection.drain()
                    if result.streams:
                        await self._write_fetch(msn, result)
                except BaseException:
                    for _, rest in prepared[index + 1:]:
                        rest.close()
                    raise
        await self._done(command, expunge_allowed=command.uid)

    async def _send_vanished_earlier(self, command: cmd.Fetch) -> None:
        """RFC 7162 §3.2.6: UIDs in the requested set expunged after CHANGEDSINCE, before the FETCH data."""
        changes = await self._call(self.store.changes_since, self.view.folder_id, command.changedsince)
        if command.sequence.saved:
            wanted = set(self._saved_uids)
            vanished = [u for u in changes.vanished if u in wanted]
        else:
            highest = max(self.view.uidnext - 1, max(changes.vanished, default=0))
            vanished = [u for u in changes.vanished if command.sequence.contains(u, highest)]
        if vanished:
            self.send(enc.vanished(SequenceSet.from_numbers(vanished), earlier=True))

    async def _write_fetch(self, msn: int, result: fetch_mod.FetchResult) -> None:
        try:
            chunks = enc.fetch_response(msn, result.items)
            if result.streams:
                await self.connection.write_chunks(chunks)  # file reads happen off the loop
            else:
                self.send(b"".join(chunks))
        finally:
            result.close()
        await self.connection.drain()

    async def do_store(self, command: cmd.Store) -> None:
        view = self.view
        if view.readonly:
            self.tagged(command.tag, "NO", "Mailbox is read-only", "READ-ONLY")
            return
        uids = [u for u in self._targets(command.sequence, command.uid) if view.live(u)]
        if command.unchangedsince is not None:
            self.condstore = True
        mode = {"+": "add", "-": "remove", "": "replace"}[command.mode]
        update = await self._call(self.store.set_flags, view.folder_id, uids, mode, command.flags,
                                  command.unchangedsince)
        for message in update.changed:
            view.note_flags(message.uid, message.all_flags, message.modseq)
        if not command.silent:
            failed = set(update.failed)  # RFC 7162 §3.1.3: reported in MODIFIED, not as FETCH
            for uid in uids:
                msn = view.msn_of(uid)
                if msn is None or not view.live(uid) or uid in failed:
                    continue
                self._send_flags(msn, uid if command.uid else None, view.flags_of(uid), view.modseqs.get(uid))
        elif self.condstore:
            # RFC 7162 §3.1.3: with .SILENT the new MODSEQ of each changed message is still sent.
            for message in update.changed:
                msn = view.msn_of(message.uid)
                if msn is not None:
                    items = ([("UID", message.uid)] if command.uid else []) + [("MODSEQ", [message.modseq])]
                    self.send(b"".join(enc.fetch_response(msn, items)))
        code = None
        if update.failed:  # RFC 7162 §3.1.3
            failed = update.failed if command.uid else [view.msn_of(u) for u in update.failed]
            code = ("MODIFIED", SequenceSet.from_numbers(n for n in failed if n))
        await self._done(command, code=code, expunge_allowed=command.uid)

    async def _destination(self, command) -> object | None:
        try:
            return await self._call(self.store.get_folder, self.mailbox_id, command.mailbox)
        except (NoSuchFolder, StoreError):
            self.tagged(command.tag, "NO", "No such mailbox", "TRYCREATE")
            return None

    @staticmethod
    def _copyuid(result):
        """RFC 4315 §3 COPYUID: the two sets list the UIDs in corresponding order."""
        if not result.pairs:
            return None
        sources = ",".join(str(source) for source, _ in result.pairs)
        targets = ",".join(str(target) for _, target in result.pairs)
        return ("COPYUID", result.uidvalidity, enc.Atom(sources), enc.Atom(targets))

    async def do_move(self, command: cmd.Move) -> None:
        view = self.view
        if view.readonly:
            self.tagged(command.tag, "NO", "Mailbox is read-only", "READ-ONLY")
            return
        uids = [u for u in self._targets(command.sequence, command.uid) if view.live(u)]
        dest = await self._destination(command)
        if dest is None:
            return
        if dest.id == view.folder_id:
            self.tagged(command.tag, "NO", "Source and destination are the same mailbox", "CANNOT")
            return
        result = await self._call(self.store.move, view.folder_id, uids, dest.id)
        code = self._copyuid(result)
        if code:
            # RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs.
            self.send(enc.untagged_status("OK", "Moved", code))
        self._send_expunged(view, [source for source, _ in result.pairs])
        await self._done(command)
