"""Mailbox commands of an IMAP session (a mixin of `courriel.imap.session.Session`).

Owns `do_create`, `do_delete`, `do_rename`, `do_subscribe`, `do_unsubscribe`, `do_list`, `do_lsub`,
`do_status` and `do_namespace`: the folder names and special uses a client may create, the folders
that may not be deleted or renamed (the default folders), LIST/LSUB pattern matching
(`_pattern_regex`), the LIST-EXTENDED selection and return options, and the STATUS items (also sent
by LIST-STATUS). SELECT and EXAMINE stay in the session (they change its state); the store owns the
folders themselves (`courriel.store_folders`).

Standards: RFC 3501 §6.3.3 (CREATE: a trailing delimiter is dropped), §6.3.4 (DELETE), §6.3.5
(RENAME), §6.3.6 / §6.3.7 (SUBSCRIBE, UNSUBSCRIBE), §6.3.8 (LIST: `*` and `%`, the reference, the
empty pattern answers the delimiter), §6.3.9 (LSUB), §6.3.10 (STATUS), §5.1 (INBOX in any case);
RFC 9051 §6.3.4-§6.3.11; RFC 2342 (NAMESPACE: one personal namespace); RFC 6154 §2 and §3
(SPECIAL-USE attributes in LIST, CREATE-SPECIAL-USE, USEATTR); RFC 3348 (CHILDREN); RFC 5258
(LIST-EXTENDED: SUBSCRIBED, SPECIAL-USE, RECURSIVEMATCH and CHILDINFO); RFC 5819 (LIST-STATUS);
RFC 8438 (STATUS SIZE); RFC 7889 (APPENDLIMIT in STATUS); RFC 7162 §3.1.6 (HIGHESTMODSEQ in
STATUS); RFC 6855 §3 (UTF-8 mailbox names after ENABLE UTF8=ACCEPT); RFC 5530 (ALREADYEXISTS,
NONEXISTENT, CANNOT, USEATTR response codes).
Security: every mailbox name and pattern comes from the client; names are validated by the store;
a pattern becomes a regular expression with every character but `*` and `%` escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from courriel.imap.protocol import commands as cmd
from courriel.imap.protocol import encoder as enc
from courriel.models import DEFAULT_FOLDERS, SpecialUse
from courriel.store import DELIMITER, INBOX, FolderExists, NoSuchFolder, StoreError

PROTECTED_FOLDERS = frozenset(name for name, _ in DEFAULT_FOLDERS)
SPECIAL_USE = frozenset(str(use) for use in SpecialUse)  # what the store can mark (RFC 6154 §3 USEATTR otherwise)


def _pattern_regex(reference: str, pattern: str) -> re.Pattern:
    """RFC 3501 §6.3.8: `*` matches anything, `%` anything but the delimiter; the reference is
    prefixed; INBOX matches in any case (§5.1)."""
    full = reference + pattern
    if full[:5].upper() == INBOX and full[5:6] in ("", DELIMITER):
        full = INBOX + full[5:]
    out = []
    for char in full:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


class MailboxCommands:
    """Mailbox commands for `Session` (which provides store, mailbox_id, view, utf8, context, _call,
    tagged, send, _done and _deselect)."""

    async def do_create(self, command: cmd.Create) -> None:
        name = command.mailbox.rstrip(DELIMITER)  # RFC 3501 §6.3.3: a trailing delimiter is dropped
        special = None
        if command.special_use:
            if len(command.special_use) > 1 or command.special_use[0] not in SPECIAL_USE:
                self.tagged(command.tag, "NO", "Unsupported special use", "USEATTR")
                return
            special = command.special_use[0]
        try:
            await self._call(self.store.create_folder, self.mailbox_id, name, special)
        except FolderExists:
            self.tagged(command.tag, "NO", "Mailbox exists", "ALREADYEXISTS")
            return
        await self._done(command)

    async def do_delete(self, command: cmd.Delete) -> None:
        if command.mailbox in PROTECTED_FOLDERS:
            self.tagged(command.tag, "NO", f"{command.mailbox} cannot be deleted", "CANNOT")
            return
        if self.view is not None and self.view.name == command.mailbox:
            self._deselect()
        await self._call(self.store.delete_folder, self.mailbox_id, command.mailbox)
        await self._done(command)

    async def do_rename(self, command: cmd.Rename) -> None:
        if command.mailbox in PROTECTED_FOLDERS:
            self.tagged(command.tag, "NO", f"{command.mailbox} cannot be renamed", "CANNOT")
            return
        try:
            await self._call(self.store.rename_folder, self.mailbox_id, command.mailbox, command.new_name)
        except FolderExists:
            self.tagged(command.tag, "NO", "Mailbox exists", "ALREADYEXISTS")
            return
        await self._done(command)

    async def do_subscribe(self, command: cmd.Subscribe) -> None:
        await self._call(self.store.subscribe, self.mailbox_id, command.mailbox, True)
        await self._done(command)

    async def do_unsubscribe(self, command: cmd.Unsubscribe) -> None:
        await self._call(self.store.subscribe, self.mailbox_id, command.mailbox, False)
        await self._done(command)

    async def _status_items(self, folder, items: Iterable[str]) -> dict[str, int]:
        return self._status_values(await self._call(self.store.status, folder.id), items)

    def _status_values(self, status, items: Iterable[str]) -> dict[str, int]:
        values = {"MESSAGES": status.messages, "RECENT": 0, "UIDNEXT": status.uidnext,
                  "UIDVALIDITY": status.uidvalidity, "UNSEEN": status.unseen, "SIZE": status.size,
                  "DELETED": status.deleted, "HIGHESTMODSEQ": status.highestmodseq,
                  "APPENDLIMIT": self.context.append_limit}
        return {item: values[item] for item in items if item in values}

    async def do_list(self, command: cmd.List) -> None:
        patterns = command.patterns
        if patterns == ("",) and not command.extended:
            # RFC 3501 §6.3.8: the hierarchy delimiter and root.
            self.send(enc.list_line(["\\Noselect"], DELIMITER, ""))
            await self._done(command)
            return
        folders = await self._call(self.store.list_folders, self.mailbox_id)
        regexes = [_pattern_regex(command.reference, p) for p in patterns]
        subscribed_only = "SUBSCRIBED" in command.selection
        special_only = "SPECIAL-USE" in command.selection
        want_subscribed = subscribed_only or "SUBSCRIBED" in command.return_options
        # RFC 5258 §3.5: with RECURSIVEMATCH, a folder that is not selected itself but has
        # selected descendants is listed with CHILDINFO ("SUBSCRIBED").
        recursive = "RECURSIVEMATCH" in command.selection and subscribed_only
        subscribed_names = [f.name for f in folders if f.subscribed]
        for folder in folders:
            if not any(r.fullmatch(folder.name) for r in regexes):
                continue
            extended = None
            if recursive and any(name.startswith(folder.name + DELIMITER) for name in subscribed_names):
                extended = {"CHILDINFO": ["SUBSCRIBED"]}
            if subscribed_only and not folder.subscribed and extended is None:
                continue
            if special_only and not folder.special_use:
                continue
            attributes = ["\\HasChildren" if folder.has_children else "\\HasNoChildren"]
            if want_subscribed and folder.subscribed:
                attributes.append("\\Subscribed")
            if folder.special_use:  # RFC 6154 §2: may be returned without RETURN (SPECIAL-USE)
                attributes.append(folder.special_use)
            self.send(enc.list_line(attributes, DELIMITER, folder.name, extended=extended,
                                        utf8=self.utf8))
            if command.status_items:  # RFC 5819 §2: STATUS right after the LIST line
                self.send(enc.status_line(folder.name, await self._status_items(folder, command.status_items),
                                                utf8=self.utf8))
        await self._done(command)

    async def do_lsub(self, command: cmd.Lsub) -> None:
        if command.pattern == "":
            self.send(enc.list_line(["\\Noselect"], DELIMITER, "", command="LSUB"))
            await self._done(command)
            return
        folders = await self._call(self.store.list_folders, self.mailbox_id)
        regex = _pattern_regex(command.reference, command.pattern)
        for folder in folders:
            if folder.subscribed and regex.fullmatch(folder.name):
                self.send(enc.list_line([], DELIMITER, folder.name, command="LSUB", utf8=self.utf8))
        await self._done(command)

    async def do_status(self, command: cmd.Status) -> None:
        try:  # one store transaction: clients poll STATUS
            folder, status = await self._call(self.store.status_by_name, self.mailbox_id, command.mailbox)
        except (NoSuchFolder, StoreError):
            self.tagged(command.tag, "NO", "No such mailbox", "NONEXISTENT")
            return
        self.send(enc.status_line(folder.name, self._status_values(status, command.items), utf8=self.utf8))
        await self._done(command)

    async def do_namespace(self, command: cmd.Namespace) -> None:
        self.send(enc.namespace_line([("", DELIMITER)]))
        await self._done(command)
