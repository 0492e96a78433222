"""FETCH: message data items → response parts, with message bodies streamed from the blob file.

Owns the production of one `* n FETCH (...)` response (RFC 3501 §7.4.2) from the cached
summary (ENVELOPE, BODYSTRUCTURE, header columns) and, for body sections, byte ranges of the
stored message located with `courriel.mime.locate`. A section is sent as a literal whose
content is read from the blob file in chunks when the transport writes it: a large message
is never loaded into one string.

`prepare_batch` runs in a worker thread for a batch of messages: one query locates all their
files (`Store.open_messages`), then `prepare` returns, per message, (name, value) pairs for
`courriel.imap.protocol.encoder.fetch_response`. A body section is a `Literal` (size known
up front): a small one (at most `INLINE_LIMIT` bytes, within `BATCH_INLINE_BUDGET` per batch)
is read there and then, so that writing it needs no further file access; a larger one keeps
only where it is and opens the file when its `chunks()` are read (off the event loop).

Standards: RFC 3501 §6.4.5 (FETCH items, BODY.PEEK, partial `<origin.count>` and its
`<origin>` echo, \\Seen set by BODY[] and RFC822), §7.4.2 (FETCH response), §4.3 (no NUL in
literals: `mime.nul_free`); RFC 3516 §4 (BINARY[], BINARY.PEEK, BINARY.SIZE, literal8
`~{n}`, NO [UNKNOWN-CTE]); RFC 7162 §3.1.4 (MODSEQ item); RFC 9051 §7.5.2.
Security: section specifiers come from the client and are validated by
`courriel.mime.parse_section`; offsets are bounded by the stored part tree and file size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from courriel import mime
from courriel.imap.protocol.commands import FetchAttribute
from courriel.imap.protocol.encoder import Atom, Raw
from courriel.mime_structure import body_bytes
from courriel.store import MessageFile, MessageInfo, StoredSummary, StoreError

CHUNK = 64 * 1024
INLINE_LIMIT = 64 * 1024  # a body section up to this size is read while preparing
BATCH_INLINE_BUDGET = 2 * 1024 * 1024  # bytes read ahead for one `prepare_batch` (held until written)
WRITE_BYTES = 256 * 1024  # responses held in memory are written in pieces of about this size


class FetchError(ValueError):
    """A FETCH the server refuses: `code` is a response code (e.g. UNKNOWN-CTE) or None for BAD."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


@dataclass
class Literal:
    """A literal whose content is `size` bytes read from `source[start:end]` (then filtered,
    decoded or NUL-replaced), or given in `data` when small. `opener` opens `source` when the
    chunks are first read (nothing stays open while a batch waits to be written)."""

    size: int
    binary: bool = False  # RFC 3516 literal8: ~{n}
    data: bytes | None = None
    source: BinaryIO | None = None
    opener: Callable[[], BinaryIO] | None = None
    start: int = 0
    end: int = 0
    decoder: object | None = None  # mime.BinaryDecoder for BINARY, fed raw chunks
    skip: int = 0  # decoded bytes to drop before sending (BINARY partial)

    def chunks(self) -> Iterator[bytes]:
        """The content in pieces of at most CHUNK bytes (blocking file reads: call off-loop)."""
        if self.data is not None:
            for offset in range(0, len(self.data), CHUNK):
                yield self.data[offset:offset + CHUNK]
            return
        remaining = self.size
        skip = self.skip
        try:
            if self.source is None and self.opener is not None:
                self.source, self.opener = self.opener(), None
            for raw in _read_range(self.source, self.start, self.end):
                piece = raw if self.decoder is None else self.decoder.feed(raw)
                if skip:
                    cut = min(skip, len(piece))
                    piece, skip = piece[cut:], skip - cut
                if not self.binary:
                    piece = mime.nul_free(piece)
                piece = piece[:remaining]
                remaining -= len(piece)
                if piece:
                    yield piece
                if remaining <= 0:
                    return
            if self.decoder is not None and remaining > 0:
                tail = self.decoder.finish()
                if skip:
                    tail = tail[skip:]
                tail = tail[:remaining]
                remaining -= len(tail)
                if tail:
                    yield tail
            if remaining > 0:  # the file shrank: keep the literal's promised size
                yield b" " * remaining
        finally:
            self.close()

    def close(self) -> None:
        self.opener = None
        if self.source is not None:
            self.source.close()
            self.source = None


def _read_range(source: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    source.seek(start)
    position = start
    while position < end:
        chunk = source.read(min(CHUNK, end - position))
        if not chunk:
            return
        position += len(chunk)
        yield chunk


@dataclass
class FetchResult:
    """(name, value) pairs for `courriel.imap.protocol.encoder.fetch_response`."""

    items: list[tuple[str, object]] = field(default_factory=list)
    sets_seen: bool = False

    @property
    def streams(self) -> bool:
        """True when a literal reads from a file (write it off the event loop)."""
        return any(isinstance(v, Literal) and (v.source is not None or v.opener is not None) for _, v in self.items)

    def close(self) -> None:
        for _, item in self.items:
            if isinstance(item, Literal):
                item.close()


def _needs_body(items: list[FetchAttribute]) -> bool:
    return any(i.name in ("BODY[]", "BINARY[]", "BINARY.SIZE[]", "RFC822", "RFC822.HEADER", "RFC822.TEXT")
               for i in items)


def sets_seen(items: list[FetchAttribute]) -> bool:
    """RFC 3501 §6.4.5: BODY[...] (not .PEEK), RFC822 and RFC822.TEXT set \\Seen; RFC 3516 BINARY too."""
    return any((i.name in ("BODY[]", "BINARY[]") and not i.peek) or i.name in ("RFC822", "RFC822.TEXT")
               for i in items)


def _section_literal(open_blob, tree: dict, section: mime.Section, partial, size_limit: int,
                     budget: list[int] | None = None) -> Literal:
    where = mime.locate(tree, section)
    start, end = where.start, min(where.end, size_limit)
    if where.filtered:
        with open_blob() as handle:
            handle.seek(start)
            content = where.header_filter(handle.read(max(0, end - start)))
        content = mime.nul_free(mime.partial(content, *partial) if partial else content)
        return Literal(len(content), data=content)
    if partial:
        origin, count = partial
        start = min(start + origin, end)
        if count is not None:
            end = min(end, start + count)
    size = max(0, end - start)
    if budget is not None and size <= min(INLINE_LIMIT, budget[0]):
        budget[0] -= size
        with open_blob() as handle:
            handle.seek(start)
            content = handle.read(size)
        return Literal(size, data=mime.nul_free(content.ljust(size)))  # a shrunk file: keep the size
    return Literal(size, opener=open_blob, start=start, end=end)


def _binary_literal(open_blob, tree: dict, part: tuple[int, ...], partial, size_only: bool):
    where = mime.locate(tree, mime.Section(part=part))
    try:
        decoder = mime.BinaryDecoder(where.node, whole_message=not part)
    except mime.UnknownTransferEncoding as exc:
        raise FetchError(f"unknown content transfer encoding {exc}", "UNKNOWN-CTE") from None
    if decoder.encoding == "identity":
        total = max(0, where.end - where.start)
    else:  # the decoded size is known only after decoding: one counting pass over the part
        total = 0
        with open_blob() as handle:
            for raw in _read_range(handle, where.start, where.end):
                total += len(decoder.feed(raw))
            total += len(decoder.finish())
        decoder = mime.BinaryDecoder(where.node, whole_message=not part)
    if size_only:
        return total
    skip, size = 0, total
    if partial:
        origin, count = partial
        skip = min(origin, total)
        size = total - skip if count is None else min(count, total - skip)
    return Literal(size, binary=True, opener=open_blob, start=where.start, end=where.end,
                   decoder=decoder, skip=skip)


def _section_name(item: FetchAttribute) -> str:
    base = item.name[:-1] if item.name.endswith("[]") else item.name
    text = f"{base}{item.section}]"
    if item.partial is not None and item.name != "BINARY.SIZE[]":
        text += f"<{item.partial[0]}>"  # RFC 3501 §7.4.2: only the origin is echoed
    return text


def _parse_binary_part(section: str) -> tuple[int, ...]:
    if not section:
        return ()
    try:
        part = tuple(int(n) for n in section.split("."))
    except ValueError:
        raise FetchError(f"bad BINARY section {section!r}") from None
    if any(n < 1 for n in part):
        raise FetchError(f"bad BINARY section {section!r}")
    return part


def prepare_batch(store, folder_id: int, messages: list[MessageInfo], summaries: dict[int, StoredSummary],
                  items: list[FetchAttribute], flags_of: Callable[[int], tuple[str, ...]],
                  uid_requested: bool = False) -> list[tuple[MessageInfo, FetchResult]]:
    """`prepare` for many messages with one store query for their files (runs in a thread
    when any item reads a file). A message expunged meanwhile is left out (RFC 3501 §7.4.1)."""
    files: dict[int, MessageFile] | None = None
    if any(reads_file(items, summaries.get(m.uid)) for m in messages):
        files = store.open_messages(folder_id, [m.uid for m in messages])
    budget = [BATCH_INLINE_BUDGET]
    prepared: list[tuple[MessageInfo, FetchResult]] = []
    try:
        for message in messages:
            message_file = None
            if files is not None:
                message_file = files.get(message.uid)
                if message_file is None and reads_file(items, summaries.get(message.uid)):
                    continue
            try:
                result = prepare(store, folder_id, message, summaries.get(message.uid), items,
                                 flags_of(message.uid), uid_requested, message_file=message_file, budget=budget)
            except StoreError:
                continue  # its file is gone: expunged meanwhile
            prepared.append((message, result))
    except BaseException:
        for _, result in prepared:
            result.close()
        raise
    return prepared


def prepare(store, folder_id: int, message: MessageInfo, summary: StoredSummary | None, items: list[FetchAttribute],
            flags: tuple[str, ...], uid_requested: bool = False, *, message_file: MessageFile | None = None,
            budget: list[int] | None = None) -> FetchResult:
    """The parts of one FETCH response's data list (runs in a thread).

    `flags` is what to report for FLAGS (\\Seen included when this FETCH sets it, \\Recent
    when it applies). UID is always included when `uid_requested` (RFC 3501 §6.4.8).
    `message_file` saves the store query that finds the file; `budget` ([bytes]) lets small
    body sections be read now (see `prepare_batch`)."""
    result = FetchResult(sets_seen=sets_seen(items))
    tree: dict | None = None
    data_cache: list[bytes] = []

    def open_blob() -> BinaryIO:
        if message_file is not None:
            return message_file.open()
        return store.open_message(folder_id, message.uid)

    def part_tree() -> dict:
        nonlocal tree
        if tree is None:
            if summary is not None and summary.bodystructure:
                tree = json.loads(summary.bodystructure)
            else:  # the store could not summarise this message at delivery: parse the stored bytes
                if not data_cache:
                    with open_blob() as handle:
                        data_cache.append(handle.read())
                tree = mime.parse_structure(data_cache[0])
        return tree

    pairs: list[tuple[str, object]] = []
    names = [i.name for i in items]
    if uid_requested and "UID" not in names:
        items = [FetchAttribute("UID"), *items]
    try:
        for item in items:
            name = item.name
            if name == "UID":
                pairs.append(("UID", message.uid))
            elif name == "FLAGS":
                pairs.append(("FLAGS", [Atom(f) for f in flags]))
            elif name == "INTERNALDATE":
                pairs.append(("INTERNALDATE", message.internaldate))
            elif name == "RFC822.SIZE":
                pairs.append(("RFC822.SIZE", message.size))
            elif name == "MODSEQ":
                pairs.append(("MODSEQ", [message.modseq]))
            elif name == "ENVELOPE":
                if summary is not None and summary.envelope:
                    envelope = mime.envelope_wire(summary.envelope)
                else:
                    with open_blob() as handle:
                        envelope = mime.envelope_wire(mime.summarize(handle.read()).envelope)
                pairs.append(("ENVELOPE", Raw(envelope)))
            elif name in ("BODY", "BODYSTRUCTURE"):
                pairs.append((name, Raw(body_bytes(part_tree(), extensible=name == "BODYSTRUCTURE"))))
            elif name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                text = {"RFC822": None, "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}[name]
                pairs.append((name, _section_literal(open_blob, part_tree(), mime.Section(text=text), None,
                                                     message.size, budget)))
            elif name == "BODY[]":
                try:
                    section = mime.parse_section(item.section)
                except mime.SectionSyntaxError as exc:
                    raise FetchError(str(exc)) from None
                pairs.append((_section_name(item), _section_literal(open_blob, part_tree(), section, item.partial,
                                                                    message.size, budget)))
            elif name == "BINARY[]":
                part = _parse_binary_part(item.section)
                pairs.append((_section_name(item), _binary_literal(open_blob, part_tree(), part, item.partial,
                                                                   False)))
            elif name == "BINARY.SIZE[]":
                part = _parse_binary_part(item.section)
                pairs.append((_section_name(item), _binary_literal(open_blob, part_tree(), part, None, True)))
            else:
                raise FetchError(f"unknown FETCH item {name}")
    except BaseException:
        FetchResult(pairs).close()
        raise
    result.items = pairs
    return result


def reads_file(items: list[FetchAttribute], summary: StoredSummary | None) -> bool:
    """Whether `prepare` will open the message file (then it must run in a thread)."""
    if _needs_body(items):
        return True
    names = {i.name for i in items}
    if "ENVELOPE" in names and not (summary is not None and summary.envelope):
        return True
    return bool(names & {"BODY", "BODYSTRUCTURE"}) and not (summary is not None and summary.bodystructure)


def needs_summary(items: list[FetchAttribute]) -> bool:
    return any(i.name in ("ENVELOPE", "BODY", "BODYSTRUCTURE") for i in items) or _needs_body(items)
