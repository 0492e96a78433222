"""Import and export of a mailbox as Maildir++ or mbox (`courriel import|export`).

Owns the translation between the store and the two formats other mail software uses:
- Maildir++ (the layout of Dovecot and Courier): the root's `cur/`, `new/`, `tmp/` hold
  INBOX; a folder `A/B` is the directory `.A.B`. Flags travel in the file name's info
  suffix `:2,` + letters (D Draft, F Flagged, R Replied = \\Answered, S Seen, T Trashed =
  \\Deleted); a message's internal date is its file's modification time.
- mbox in the mboxrd variant: each message starts with a `From SENDER DATE` line (the date
  in asctime form, read as UTC, becomes the internal date); body lines matching `>*From `
  carry one more `>` than in the message, and a blank line ends each message.

Everything goes through the store (`Store.append`, `Store.open_message`), one message at a
time and streamed: a message is never held whole in memory here, so mailboxes of any size
import and export in constant memory.

Line endings: the store keeps CRLF (RFC 5322 §2.1). Files on disk use the Unix convention,
LF (as Dovecot, mutt and procmail write them): an import makes LF into CRLF (the store does),
an export makes CRLF into LF unless `line_endings="crlf"`. A Maildir or mbox whose lines end
in LF therefore survives import then export byte for byte.

Not carried: IMAP keywords (Dovecot keeps them in a separate `dovecot-keywords` file), flags
in mbox `Status:` headers (left in the message as they are), the Maildir's UIDs.

Standards: Maildir (D. J. Bernstein, "Using maildir format"), Maildir++ folders (Courier),
mboxrd (RFC 4155 §2 and its "From " quoting), RFC 3501 §2.3.2 (system flags).
Security: the files read are operator-supplied but untrusted content: stored as data, never
interpreted; file names are never used as paths outside the source tree; export names are
made here. An unreadable or malformed source is refused before anything is written.
Durability: an export writes each file in `tmp/` (or a temporary file next to the mbox) and
renames it into place (`courriel.durable`); imports are durable through the store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.parser
import email.policy
import email.utils
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from courriel import durable, registry
from courriel.db import Database
from courriel.models import Mailbox
from courriel.store import INBOX, FolderExists, Store

# Maildir info letters (Bernstein's "Using maildir format"), in the ASCII order the spec requires.
FLAG_LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
LETTER_OF_FLAG = {flag: letter for letter, flag in FLAG_LETTERS.items()}
_FROM_QUOTED = re.compile(rb"^>+From ")
_FROM_TO_QUOTE = re.compile(rb"^>*From ")
MBOX_DATE = "%a %b %d %H:%M:%S %Y"  # asctime, as in "From MAILER-DAEMON Thu Nov  5 21:05:37 2026"
CHUNK = 64 * 1024


class TransferError(ValueError):
    """The source or destination is unusable; nothing was written."""


@dataclass
class TransferReport:
    messages: int = 0
    bytes: int = 0
    folders: dict[str, int] = field(default_factory=dict)

    def count(self, folder: str, size: int) -> None:
        self.messages += 1
        self.bytes += size
        self.folders[folder] = self.folders.get(folder, 0) + 1


def mailbox_id(db: Database, address: str) -> int:
    """The id of the local mailbox with this address; TransferError if there is none."""
    try:
        key = registry.canonical_address(address)
    except registry.AddressError as exc:
        raise TransferError(f"invalid address {address!r}: {exc}") from None
    with db.read() as session:
        found = session.scalar(select(Mailbox.id).where(Mailbox.address == key))
    if found is None:
        raise TransferError(f"no mailbox {key}")
    return found


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _ensure_folder(store: Store, mailbox: int, name: str) -> None:
    if name == INBOX:
        return
    with contextlib.suppress(FolderExists):
        store.create_folder(mailbox, name)


def _require_empty(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TransferError(f"{path} exists and is not an empty directory")


# --------------------------------------------------------------------------- line endings


def lf_lines(handle: BinaryIO) -> Iterator[bytes]:
    """The stored message's lines with CRLF made LF (a lone CR stays as it is)."""
    for line in handle:
        yield line[:-2] + b"\n" if line.endswith(b"\r\n") else line


def _stored_lines(handle: BinaryIO, line_endings: str) -> Iterator[bytes]:
    if line_endings == "crlf":
        yield from handle
    else:
        yield from lf_lines(handle)


def _check_line_endings(line_endings: str) -> None:
    if line_endings not in ("lf", "crlf"):
        raise TransferError(f"line endings must be lf or crlf, not {line_endings!r}")


# --------------------------------------------------------------------------- Maildir


def maildir_folders(root: Path) -> list[tuple[str, Path]]:
    """(folder name, directory) of a Maildir++ tree: the root is INBOX, `.A.B` is `A/B`."""
    if not root.is_dir() or (not (root / "cur").is_dir() and not (root / "new").is_dir()):
        raise TransferError(f"{root} is not a Maildir (no cur/ or new/ directory)")
    found = [(INBOX, root)]
    for entry in sorted(root.iterdir()):
        # Security: a symlinked folder or message could pull files from outside the tree (keys, other
        # mailboxes) into the mailbox; the source may be an unpacked user archive, so links are skipped.
        if entry.name.startswith(".") and entry.name not in (".", "..") and not entry.is_symlink() and entry.is_dir() \
                and ((entry / "cur").is_dir() or (entry / "new").is_dir()):
            name = entry.name[1:].replace(".", "/")
            if name and name.upper() != INBOX:
                found.append((name, entry))
    return found


def maildir_flags(filename: str, in_new: bool) -> list[str]:
    if in_new or ":2," not in filename:
        return []
    letters = filename.rpartition(":2,")[2]
    return [FLAG_LETTERS[c] for c in sorted(set(letters)) if c in FLAG_LETTERS]


def _maildir_messages(directory: Path) -> list[tuple[Path, bool]]:
    files = []
    for sub in ("new", "cur"):
        if (directory / sub).is_dir():
            if (directory / sub).is_symlink():
                continue
            files += [(p, sub == "new") for p in (directory / sub).iterdir()
                      if not p.is_symlink() and p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda item: item[0].name)


def import_maildir(store: Store, mailbox: int, root: Path | str) -> TransferReport:
    """Append every message of a Maildir++ tree to the mailbox, folder by folder."""
    root = Path(root)
    folders = maildir_folders(root)
    report = TransferReport()
    for name, directory in folders:
        messages = _maildir_messages(directory)
        if not messages and name != INBOX:
            _ensure_folder(store, mailbox, name)
            continue
        _ensure_folder(store, mailbox, name)
        for path, in_new in messages:
            # O_NOFOLLOW: a file swapped for a symlink after the listing is refused, not followed.
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
                stat = os.fstat(handle.fileno())
                store.append(mailbox, name, handle, flags=maildir_flags(path.name, in_new),
                             internaldate=dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC))
            report.count(name, stat.st_size)
    return report


def _folder_directory(dest: Path, name: str) -> Path:
    if name.upper() == INBOX:
        return dest
    return dest / ("." + name.replace("/", "."))


def export_maildir(store: Store, mailbox: int, dest: Path | str, line_endings: str = "lf") -> TransferReport:
    """Write every folder of the mailbox as a Maildir++ tree under `dest` (absent or empty)."""
    _check_line_endings(line_endings)
    dest = Path(dest)
    _require_empty(dest)
    report = TransferReport()
    folders = sorted(store.list_folders(mailbox), key=lambda f: (f.name.upper() != INBOX, f.name))
    for folder in folders:
        directory = _folder_directory(dest, folder.name)
        for sub in ("tmp", "new", "cur"):
            durable.make_dirs(directory / sub, mode=0o700)
        for info in store.list_messages(folder.id):
            letters = "".join(sorted(LETTER_OF_FLAG[f] for f in info.flags if f in LETTER_OF_FLAG))
            moment = _utc(info.internaldate)
            name = f"{int(moment.timestamp())}.M{info.uid:010d}.courriel:2,{letters}"
            handle, temp = durable.open_temp(directory / "tmp", mode=0o600)
            size = 0
            try:
                with handle, store.open_message(folder.id, info.uid) as source:
                    for line in _stored_lines(source, line_endings):
                        handle.write(line)
                        size += len(line)
                    durable.sync_file(handle)
                os.utime(temp, (moment.timestamp(), moment.timestamp()))
                durable.commit_temp(temp, directory / "cur" / name)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            report.count(folder.name, size)
    return report


# --------------------------------------------------------------------------- mbox


class _MboxReader:
    """Reads an mboxrd file one message at a time, each message as a stream of lines."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.pending: bytes | None = handle.readline()
        if self.pending and not self.pending.startswith(b"From "):
            raise TransferError("not an mbox file: the first line is not a 'From ' line")

    def next_from_line(self) -> bytes | None:
        line, self.pending = self.pending, None
        return line or None

    def body(self) -> Iterator[bytes]:
        """The current message's lines, unquoted; stops before the next From_ line."""
        held = None  # a blank line that may be the separator before the next From_ line
        for line in iter(self.handle.readline, b""):
            if line.startswith(b"From "):
                self.pending = line
                return  # the held blank line was the separator
            if held is not None:
                yield held
                held = None
            if line in (b"\n", b"\r\n"):
                held = line
                continue
            yield line[1:] if _FROM_QUOTED.match(line) else line
        # end of file: a held blank line is the last message's separator


def asctime(moment: dt.datetime) -> str:
    """C asctime() form, day padded with a space ("Thu Nov  5 21:05:37 2026"), as mbox writers use it."""
    moment = _utc(moment).astimezone(dt.UTC)
    return f"{moment:%a %b} {moment.day:2d} {moment:%H:%M:%S %Y}"


def mbox_date(from_line: bytes) -> dt.datetime | None:
    """The asctime date at the end of a From_ line, as UTC (None when absent or malformed)."""
    words = from_line.decode("ascii", "replace").split()
    if len(words) < 7:
        return None
    try:
        return dt.datetime.strptime(" ".join(words[-5:]), MBOX_DATE).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def import_mbox(store: Store, mailbox: int, path: Path | str, folder: str = INBOX) -> TransferReport:
    """Append every message of an mboxrd file to one folder of the mailbox."""
    path = Path(path)
    if not path.is_file():
        raise TransferError(f"{path} is not a file")
    report = TransferReport()
    _ensure_folder(store, mailbox, folder)
    with open(path, "rb") as handle:
        reader = _MboxReader(handle)
        while (from_line := reader.next_from_line()) is not None:
            size = 0

            def counted(lines: Iterator[bytes]) -> Iterator[bytes]:
                nonlocal size
                for line in lines:
                    size += len(line)
                    yield line

            store.append(mailbox, folder, counted(reader.body()), internaldate=mbox_date(from_line))
            report.count(folder, size)
    return report


def envelope_sender(handle: BinaryIO) -> str:
    """The Return-Path address of a stored message, else MAILER-DAEMON (the mbox convention)."""
    header = bytearray()
    for line in handle:
        if line in (b"\r\n", b"\n") or len(header) > 256 * 1024:
            break
        header += line
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(bytes(header))
    address = email.utils.parseaddr(str(parsed.get("Return-Path", "")))[1]
    return address if address and not any(c.isspace() for c in address) else "MAILER-DAEMON"


def export_mbox(store: Store, mailbox: int, dest: Path | str, folder: str = INBOX,
                line_endings: str = "lf") -> TransferReport:
    """Write one folder of the mailbox as an mboxrd file at `dest` (which must not exist)."""
    _check_line_endings(line_endings)
    dest = Path(dest)
    if dest.exists():
        raise TransferError(f"{dest} already exists")
    if not dest.parent.is_dir():
        raise TransferError(f"{dest.parent} is not a directory")
    info_folder = store.get_folder(mailbox, folder)
    newline = b"\r\n" if line_endings == "crlf" else b"\n"
    report = TransferReport()
    handle, temp = durable.open_temp(dest.parent, mode=0o600)
    try:
        with handle:
            for info in store.list_messages(info_folder.id):
                with store.open_message(info_folder.id, info.uid) as source:
                    sender = envelope_sender(source)
                    source.seek(0)
                    date = asctime(info.internaldate)
                    handle.write(f"From {sender} {date}".encode("ascii", "replace") + newline)
                    size = 0
                    last = b""
                    for line in _stored_lines(source, line_endings):
                        size += len(line)
                        # mboxrd: every line that looks like a From_ line, quoted or not, gets one more ">".
                        handle.write(b">" + line if _FROM_TO_QUOTE.match(line) else line)
                        last = line
                    if last and not last.endswith(b"\n"):
                        handle.write(newline)
                    handle.write(newline)
                report.count(info_folder.name, size)
            durable.sync_file(handle)
        durable.commit_temp(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return report
