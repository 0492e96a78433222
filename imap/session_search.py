"""SEARCH, SORT and THREAD handlers of an IMAP session (a mixin of `courriel.imap.session.Session`).

Owns `do_search`, `do_sort` and `do_thread` (and their UID forms): the CHARSET check, the search
keys evaluated by `courriel.imap.search` (shared by all three), the loading of the cached facts
that SORT and THREAD compare (`load_facts`), sorting and threading them in the same thread hop
(no message file is read unless the store could not summarise a message), and the response
forms: `* SEARCH`, RFC 4731 / RFC 9051 ESEARCH, `* SORT`, RFC 5267 ESORT (`* ESEARCH` in sort
order) and `* THREAD`.

Standards: RFC 3501 §6.4.4 (SEARCH, CHARSET, BADCHARSET), RFC 9051 §6.4.4 (ESEARCH answer after
ENABLE IMAP4rev2), RFC 4731 (RETURN options), RFC 5182 (SEARCHRES SAVE), RFC 7162 §3.1.5 (MODSEQ
in SEARCH and SORT results), RFC 5256 §3 (SORT, THREAD, UID SORT, UID THREAD; CHARSET is
mandatory; an unknown algorithm is BAD), RFC 5957 (SORT=DISPLAY keys), RFC 5267 §3.2 (ESORT:
MIN and MAX are the first and last in sort order, ALL in sort order).
Security: every search key and charset comes from the client (validated by the parser and by
`courriel.imap.search`); the work is bounded by the size of the selected mailbox.
"""

from __future__ import annotations

from collections.abc import Iterable

from courriel import mime
from courriel.imap import search as search_mod
from courriel.imap.protocol import commands as cmd
from courriel.imap.protocol import encoder as enc
from courriel.imap.protocol.search import resolve as resolve_search_sets
from courriel.imap.sort import SortFacts, sort_messages
from courriel.imap.thread import ALGORITHMS, encode, thread
from courriel.store import Store, StoreError

SEARCH_CHARSETS = ("US-ASCII", "UTF-8")


def uses_modseq(key) -> bool:
    """Whether a search key tree contains the RFC 7162 MODSEQ key."""
    name = key[0]
    if name == "MODSEQ":
        return True
    if name == "NOT":
        return uses_modseq(key[1])
    if name == "OR":
        return uses_modseq(key[1]) or uses_modseq(key[2])
    if name == "AND":
        return any(uses_modseq(k) for k in key[1])
    return False


def load_facts(store: Store, folder_id: int, msns: dict[int, int]) -> list[SortFacts]:
    """The SORT/THREAD facts of the messages `msns` (UID -> sequence number) from the store's cache
    (runs in a thread). A message expunged meanwhile is left out."""
    uids = sorted(msns)
    infos = {m.uid: m for m in store.list_messages(folder_id, uids)}
    facts = []
    for summary in store.summaries(folder_id, uids):
        info = infos.get(summary.uid)
        if info is None:
            continue
        envelope_json, sent, message_id, parents = (summary.envelope, summary.sent_date, summary.message_id,
                                                    summary.reference_ids)
        if not envelope_json:  # the store could not summarise it at delivery: try again (mime docstring)
            try:
                with store.open_message(folder_id, summary.uid) as handle:
                    again = mime.summarize(handle.read())
                envelope_json, sent, message_id, parents = (again.envelope, again.sent_date, again.message_id,
                                                            again.reference_ids)
            except (OSError, StoreError):
                pass
        facts.append(SortFacts(msn=msns[summary.uid], uid=summary.uid, internaldate=info.internaldate,
                               size=info.size, sent=sent, envelope_json=envelope_json,
                               message_id=message_id or "", reference_ids=tuple((parents or "").split())))
    return facts


def sorted_facts(store: Store, folder_id: int, msns: dict[int, int], criteria) -> list[SortFacts]:
    """RFC 5256 §3 SORT of the messages `msns` (runs in a thread: the keys cost CPU on large mailboxes)."""
    return sort_messages(load_facts(store, folder_id, msns), criteria)


def thread_text(store: Store, folder_id: int, msns: dict[int, int], algorithm: str, uid: bool) -> str:
    """RFC 5256 §3 THREAD of the messages `msns`, encoded for the response (runs in a thread)."""
    return encode(thread(algorithm, load_facts(store, folder_id, msns)), uid=uid)


class SearchCommands:
    """SEARCH, SORT and THREAD for `Session` (which provides view, store, _call, tagged, send, _done)."""

    async def _search_uids(self, command) -> list[int] | None:
        """The UIDs (ascending) matching the command's search key, or None after answering NO/BAD."""
        charset = getattr(command, "charset", None)
        if charset and charset.upper() not in SEARCH_CHARSETS:
            # RFC 3501 §6.4.4, RFC 5256 §3: an unsupported charset is NO [BADCHARSET (list)].
            self.tagged(command.tag, "NO", "Unsupported charset", "BADCHARSET (" + " ".join(SEARCH_CHARSETS) + ")")
            return None
        view = self.view
        known = view.known_uids()
        saved = self._saved()
        key = resolve_search_sets(command.key, view.exists, known[-1] if known else 0,
                                  [view.msn_of(u) for u in saved], saved)
        try:
            return await self._call(search_mod.search, self.store, view.folder_id, key, view.known_uids(),
                                    set(view.recent), lambda ranges: view.resolve_msns(ranges, strict=False))
        except search_mod.SearchError as exc:
            self.tagged(command.tag, "BAD", str(exc))
            return None

    def _result_modseq(self, command, uids: Iterable[int]) -> int | None:
        if not uses_modseq(command.key):
            return None
        self.condstore = True  # RFC 7162 §3.1.5: the highest MODSEQ of the matches is returned
        return max((self.view.modseqs.get(u, 0) for u in uids), default=None)

    def _save_result(self, uids: list[int], options: tuple[str, ...], ordered: bool = False) -> tuple[str, ...]:
        """RFC 5182 §2.4: SAVE keeps the whole result (or only MIN/MAX when asked with them); returns the
        other options. `ordered`: `uids` are in sort order (ESORT), so MIN/MAX are the first/last."""
        if "SAVE" not in options:
            return options
        kept = sorted(uids)
        if uids and {"MIN", "MAX"} & set(options) and not {"ALL", "COUNT"} & set(options):
            first, last = (uids[0], uids[-1]) if ordered else (kept[0], kept[-1])
            kept = sorted({*([first] if "MIN" in options else []), *([last] if "MAX" in options else [])})
        self._saved_uids = kept
        return tuple(o for o in options if o != "SAVE")

    async def do_search(self, command: cmd.Search) -> None:
        uids = await self._search_uids(command)
        if uids is None:
            return
        view = self.view
        numbers = uids if command.uid else [view.msn_of(u) for u in uids]
        numbers = [n for n in numbers if n is not None]
        modseq = self._result_modseq(command, uids)
        if command.return_options is None and self.rev2:
            # RFC 9051 §6.4.4: SEARCH without RETURN answers ESEARCH with ALL.
            self.send(enc.esearch(command.tag, command.uid, all_numbers=numbers, modseq=modseq))
        elif command.return_options is None:
            self.send(enc.search_line(numbers, modseq))
        else:
            options = self._save_result(uids, command.return_options or ("ALL",))
            if options:
                self.send(enc.esearch(command.tag, command.uid,
                                      minimum=min(numbers) if numbers and "MIN" in options else None,
                                      maximum=max(numbers) if numbers and "MAX" in options else None,
                                      count=len(numbers) if "COUNT" in options else None,
                                      all_numbers=numbers if "ALL" in options else None, modseq=modseq))
        await self._done(command, expunge_allowed=command.uid)

    def _msns(self, uids: list[int]) -> dict[int, int]:
        """UID -> sequence number of the matches, read on the loop (the view changes only there)."""
        return {uid: msn for uid in uids if (msn := self.view.msn_of(uid)) is not None}

    async def do_sort(self, command: cmd.Sort) -> None:
        uids = await self._search_uids(command)
        if uids is None:
            return
        ordered = await self._call(sorted_facts, self.store, self.view.folder_id, self._msns(uids), command.criteria)
        numbers = [m.uid if command.uid else m.msn for m in ordered]
        modseq = self._result_modseq(command, uids)
        if command.return_options is None:
            self.send(enc.sort_line(numbers, modseq))
        else:
            # RFC 5267 §3.2: ESORT answers ESEARCH; MIN/MAX are the first and last in sort order.
            options = self._save_result([m.uid for m in ordered], command.return_options or ("ALL",), ordered=True)
            if options:
                self.send(enc.esearch(command.tag, command.uid,
                                      minimum=numbers[0] if numbers and "MIN" in options else None,
                                      maximum=numbers[-1] if numbers and "MAX" in options else None,
                                      count=len(numbers) if "COUNT" in options else None,
                                      all_numbers=enc.ordered_set(numbers) if "ALL" in options else None,
                                      modseq=modseq))
        await self._done(command, expunge_allowed=command.uid)

    async def do_thread(self, command: cmd.Thread) -> None:
        algorithm = command.algorithm.upper()
        if algorithm not in ALGORITHMS:
            self.tagged(command.tag, "BAD", f"Unsupported THREAD algorithm {algorithm[:40]}")
            return
        uids = await self._search_uids(command)
        if uids is None:
            return
        text = await self._call(thread_text, self.store, self.view.folder_id, self._msns(uids), algorithm, command.uid)
        self.send(enc.thread_line(text))
        await self._done(command, expunge_allowed=command.uid)
