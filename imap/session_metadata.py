"""METADATA commands of an IMAP session (a mixin of `courriel.imap.session.Session`).

Owns `do_getmetadata` and `do_setmetadata`, the entries the server computes, and which entries a
user may write. Storage is the store's (`courriel.store_metadata`); the grammar, entry names and
DEPTH/MAXSIZE selection are the protocol core's (`courriel.imap.protocol.metadata`).

Choices (RFC 5464 §3.2 and §6 leave them to the server):
- Every mailbox is one user's, so /private and /shared entries are both stored per mailbox account:
  a /shared entry of a folder is visible to whoever can see the folder, that is the same user.
- Server entries (mailbox ""): /private/... is writable (a user's own server-wide notes, vendor
  entries); /shared/... is read-only for users, because it would be shared with every user of the
  server and a user must not write to others: /shared/admin is computed (a mailto: URI of the
  postmaster of the user's domain, which every domain has, RFC 5321 §4.5.1); other /shared server
  entries are absent. /shared/comment on the server is therefore read-only (NO [NOPERM]).
- Folder entries: /private/specialuse is computed from the folder's special use (RFC 6154 §4) and
  read-only (CREATE (USE ...) sets the use); every other /private/... and /shared/... entry,
  /shared/comment and /private/comment and vendor entries included, is writable.
- Limits: a value holds at most MAX_VALUE_SIZE octets (NO [METADATA MAXSIZE n]); a folder, or the
  server, holds at most `courriel.store_metadata.MAX_ENTRIES` entries per mailbox (NO [METADATA
  TOOMANY]); entry names at most 255 characters; at most 100 entries per command.
- [METADATA NOPRIVATE] is never sent: private entries are supported everywhere.
- No unsolicited METADATA responses: a change made by another session is seen on the next GETMETADATA.

Standards: RFC 5464 §4.2 (GETMETADATA, MAXSIZE, DEPTH, [METADATA LONGENTRIES n]), §4.3 (SETMETADATA,
NIL removes, all or nothing, [METADATA MAXSIZE n], [METADATA TOOMANY]), §4.4.1 (METADATA response),
§3.2.1.1 (/shared/admin, /shared/comment and /private/comment on the server), §3.2.1.2 (folder
comments); RFC 6154 §4 (/private/specialuse); RFC 5530 (NONEXISTENT, NOPERM).
Security: values are opaque bytes from the client, bounded above; computed entries cannot be written.
Durability: SETMETADATA is one store transaction.
"""

from __future__ import annotations

from courriel.imap.protocol import commands as cmd
from courriel.imap.protocol import encoder as enc
from courriel.imap.protocol.metadata import select_entries
from courriel.store import MetadataTooMany

MAX_VALUE_SIZE = 32 * 1024  # octets of one value (the parser takes literals up to 64 KiB)
SPECIAL_USE_ENTRY = "/private/specialuse"
ADMIN_ENTRY = "/shared/admin"


class MetadataCommands:
    """RFC 5464 GETMETADATA and SETMETADATA for `Session` (which provides store, mailbox_id, account,
    utf8, _call, send, tagged and _done)."""

    def _computed_entries(self, folder) -> dict[str, bytes]:
        if folder is None:
            domain = self.account.rpartition("@")[2]
            return {ADMIN_ENTRY: f"mailto:postmaster@{domain}".encode()} if domain else {}
        return {SPECIAL_USE_ENTRY: folder.special_use.encode()} if folder.special_use else {}

    def _read_only(self, mailbox: str, entry: str) -> str | None:
        """Why a user may not write `entry` of `mailbox` (None: it may)."""
        if mailbox == "" and entry.startswith("/shared/"):
            return "Shared server entries are set by the administrator"
        if mailbox != "" and entry == SPECIAL_USE_ENTRY:
            return "The special use is set by CREATE (USE ...)"
        return None

    async def do_getmetadata(self, command: cmd.GetMetadata) -> None:
        folder, stored = await self._call(self.store.metadata_entries, self.mailbox_id, command.mailbox)
        stored.update(self._computed_entries(folder))
        entries, longest = select_entries(stored, command.entries, command.depth, command.maxsize)
        name = folder.name if folder is not None else ""
        if entries:
            self.send(enc.metadata_line(name, entries, utf8=self.utf8))
        # RFC 5464 §4.2.1: the size of the longest value MAXSIZE left out.
        await self._done(command, code=None if longest is None else ("METADATA", "LONGENTRIES", longest))

    async def do_setmetadata(self, command: cmd.SetMetadata) -> None:
        for entry, value in command.changes:
            reason = self._read_only(command.mailbox, entry)
            if reason is not None:
                self.tagged(command.tag, "NO", reason, "NOPERM")
                return
            if value is not None and len(value) > MAX_VALUE_SIZE:
                self.tagged(command.tag, "NO", "Value too large", ("METADATA", "MAXSIZE", MAX_VALUE_SIZE))
                return
        try:
            await self._call(self.store.set_metadata, self.mailbox_id, command.mailbox, list(command.changes))
        except MetadataTooMany:
            self.tagged(command.tag, "NO", "Too many entries", ("METADATA", "TOOMANY"))
            return
        await self._done(command)
