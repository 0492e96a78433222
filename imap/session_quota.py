"""Quota commands of an IMAP session (a mixin of `courriel.imap.session.Session`).

Owns `do_getquota`, `do_getquotaroot` and `do_setquota`: every mailbox (an account with all its
folders) is one quota root. A user sees it as the empty root `""`. The administrator's own
mailbox (one whose owner is a console administrator) may also name any other mailbox's root by
its address, to read it with GETQUOTA or change it with SETQUOTA; the change goes through the
same service as the console (`courriel.admin.services.set_mailbox_quota`). The limits themselves
are the mailbox's `quota_bytes` and `quota_messages`; the store counts the usage and refuses
APPEND/COPY past them (`courriel.store.QuotaUsage`).

Standards: RFC 9208 §4.1.1 (GETQUOTA), §4.1.2 (GETQUOTAROOT), §4.1.3 (SETQUOTA: the listed limits
replace the root's limits; a resource left out becomes unlimited), §5.1 (STORAGE in units of
1024 octets), §5.2 (MESSAGE), §4.1 (only resources with a limit are listed); RFC 5530
(NONEXISTENT, NOPERM, LIMIT response codes).
Security: only an administrator's mailbox may name another mailbox's root or change a limit;
a user gets NO [NOPERM] and a root it may not see gets NO [NONEXISTENT], the same answer as a
root that does not exist, so addresses cannot be probed.
Durability: SETQUOTA is one registry transaction.
"""

from __future__ import annotations

from courriel.imap.protocol import commands as cmd
from courriel.imap.protocol import encoder as enc

OWN_ROOT = ""  # a user's one quota root, covering all of its folders
SETTABLE = frozenset({"STORAGE", "MESSAGE"})


class QuotaCommands:
    """RFC 9208 GETQUOTA, GETQUOTAROOT and SETQUOTA."""

    async def _administrator(self) -> str | None:
        from courriel.admin.services.mailboxes import administrator_of  # the console stack, only when asked

        return await self._call(administrator_of, self.store.db, self.mailbox_id)

    async def _root_mailbox(self, root: str) -> int | None:
        """The mailbox id a quota root names for this session, or None when it may not see it."""
        if root == OWN_ROOT:
            return self.mailbox_id
        if "@" not in root or await self._administrator() is None:
            return None
        from courriel.admin.services import NotFound, get_mailbox

        try:
            return (await self._call(get_mailbox, self.store.db, root)).id
        except (NotFound, ValueError):
            return None

    async def _quota_line(self, mailbox_id: int | None = None, root: str = OWN_ROOT) -> bytes | None:
        """RFC 9208 §5.1 `* QUOTA root (STORAGE used limit MESSAGE used limit)`, or None without a limit.

        RFC 9208 §4.1: only the resources that have a limit are listed; STORAGE in KiB (§5.1),
        MESSAGE in messages (§5.2)."""
        usage = await self._call(self.store.quota_usage, mailbox_id or self.mailbox_id, only_if_limited=True)
        if not usage.limited:
            return None
        resources: list = []
        if usage.limit_bytes:
            resources += [enc.Atom("STORAGE"), (usage.used_bytes + 1023) // 1024, usage.limit_bytes // 1024]
        if usage.limit_messages:
            resources += [enc.Atom("MESSAGE"), usage.messages, usage.limit_messages]
        return enc.untagged("QUOTA", enc.Raw(enc.quoted(root)), resources)

    async def do_getquota(self, command: cmd.GetQuota) -> None:
        mailbox_id = await self._root_mailbox(command.root)
        line = await self._quota_line(mailbox_id, command.root) if mailbox_id is not None else None
        if line is None:
            self.tagged(command.tag, "NO", "No such quota root", "NONEXISTENT")
            return
        self.send(line)
        await self._done(command)

    async def do_getquotaroot(self, command: cmd.GetQuotaRoot) -> None:
        folder = await self._call(self.store.get_folder, self.mailbox_id, command.mailbox)
        line = await self._quota_line()
        # RFC 9208 §5.2: a mailbox without a limit has no quota root.
        roots = [OWN_ROOT] if line is not None else []
        self.send(enc.untagged("QUOTAROOT", enc.Raw(enc.mailbox(folder.name, utf8=self.utf8)),
                               *(enc.Raw(enc.quoted(root)) for root in roots)))
        if line is not None:
            self.send(line)
        await self._done(command)

    async def do_setquota(self, command: cmd.SetQuota) -> None:
        # RFC 9208 §4.1.3: limits are set by the administrator, never by the user.
        if await self._administrator() is None:
            self.tagged(command.tag, "NO", "Quota limits are set by the administrator", "NOPERM")
            return
        mailbox_id = await self._root_mailbox(command.root)
        if mailbox_id is None:
            self.tagged(command.tag, "NO", "No such quota root", "NONEXISTENT")
            return
        limits = dict(command.limits)
        unknown = sorted(set(limits) - SETTABLE)
        if unknown or len(limits) != len(command.limits):
            self.tagged(command.tag, "NO", f"Cannot set a limit on {' '.join(unknown) or 'a resource twice'}",
                        "LIMIT")
            return
        from courriel.admin.services import InvalidInput, set_mailbox_quota

        address = command.root if command.root != OWN_ROOT else self.account
        try:
            await self._call(set_mailbox_quota, self.store.db, address,
                             quota_bytes=limits.get("STORAGE", 0) * 1024, quota_messages=limits.get("MESSAGE", 0))
        except InvalidInput as exc:
            self.tagged(command.tag, "NO", str(exc), "LIMIT")
            return
        line = await self._quota_line(mailbox_id, command.root)
        if line is not None:
            self.send(line)
        await self._done(command)
