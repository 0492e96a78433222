"""Maildir++ and mbox import/export through the store (courriel.maildir): a Maildir or an mboxrd
file with LF line endings survives import then export byte for byte, with flags, folders and
dates; the store holds CRLF; bad sources change nothing."""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path

import pytest
from store_fixtures import make_mailbox

from courriel import maildir
from courriel.blobs import BlobStore
from courriel.store import Store

DATE = dt.datetime(2024, 3, 5, 10, 20, 30, tzinfo=dt.UTC)


def message(i: int, extra: bytes = b"") -> bytes:
    return (f"Return-Path: <s{i}@example.net>\nFrom: s{i}@example.net\nSubject: {i}\n\n".encode()
            + b"body line\n" * (i + 1) + extra)


# The awkward cases of mboxrd: From_ lines in the body, quoted ones, blank lines at the end.
BODIES = [
    message(0),
    message(1, b"From here on it looks like a separator\n>From already quoted\n>>From twice\n"),
    message(2, b"\n\n"),
    message(3, bytes(range(128, 256)) + b"\n"),
    message(4, b"x" * 200_000 + b"\n"),
]


def write_maildir(root: Path) -> dict[str, dict[bytes, str]]:
    """A Maildir++ tree; returns folder -> {content: flag letters}."""
    layout = {
        "INBOX": [(BODIES[0], "new", ""), (BODIES[1], "cur", "S"), (BODIES[2], "cur", "FRS")],
        "Sent": [(BODIES[3], "cur", "S")],
        "Lists/Python": [(BODIES[4], "cur", "DT")],
    }
    expected: dict[str, dict[bytes, str]] = {}
    for folder, messages in layout.items():
        directory = root if folder == "INBOX" else root / ("." + folder.replace("/", "."))
        for sub in ("cur", "new", "tmp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        for n, (content, sub, letters) in enumerate(messages):
            name = f"{1700000000 + n}.M{n}P1.host" + (f":2,{letters}" if sub == "cur" else "")
            (directory / sub / name).write_bytes(content)
            os.utime(directory / sub / name, (DATE.timestamp() + n, DATE.timestamp() + n))
            expected.setdefault(folder, {})[content] = letters
    (root / "tmp" / "partial-delivery").write_bytes(b"never imported")
    return expected


def read_maildir(root: Path) -> dict[str, dict[bytes, tuple[str, float]]]:
    found: dict[str, dict[bytes, tuple[str, float]]] = {}
    for name, directory in maildir.maildir_folders(root):
        for sub in ("cur", "new"):
            for path in (directory / sub).iterdir():
                letters = path.name.rpartition(":2,")[2] if ":2," in path.name else ""
                found.setdefault(name, {})[path.read_bytes()] = (letters, path.stat().st_mtime)
    return found


@pytest.fixture
def store(db, data_dir) -> Store:
    return Store(db, BlobStore(data_dir / "blobs", db), data_dir / "run")


def test_maildir_import_then_export_is_byte_identical(store, db, tmp_path):
    source = tmp_path / "source"
    expected = write_maildir(source)
    mailbox = make_mailbox(db, "box")
    assert maildir.mailbox_id(db, "Box@Example.org") == mailbox

    report = maildir.import_maildir(store, mailbox, source)
    assert report.messages == 5 and report.folders == {"INBOX": 3, "Sent": 1, "Lists/Python": 1}
    inbox = store.get_folder(mailbox, "INBOX")
    stored = store.list_messages(inbox.id)
    assert [set(m.flags) for m in stored] == [set(), {"\\Seen"}, {"\\Seen", "\\Answered", "\\Flagged"}]
    with store.open_message(inbox.id, stored[1].uid) as handle:
        assert handle.read() == BODIES[1].replace(b"\n", b"\r\n")  # the store keeps CRLF
    assert stored[0].internaldate.replace(tzinfo=dt.UTC) == DATE

    exported = tmp_path / "exported"
    report = maildir.export_maildir(store, mailbox, exported)
    assert report.messages == 5
    found = read_maildir(exported)
    for folder, contents in expected.items():
        assert {content: letters for content, (letters, _mtime) in found[folder].items()} == contents, folder
    assert {folder: len(c) for folder, c in found.items() if c} == {"INBOX": 3, "Sent": 1, "Lists/Python": 1}
    assert found["INBOX"][BODIES[0]][1] == DATE.timestamp()  # internal date -> mtime
    assert sorted(p.name for p in exported.iterdir()) == [
        ".Drafts", ".Lists", ".Lists.Python", ".Sent", ".Spam", ".Trash", "cur", "new", "tmp"]
    # CRLF on request: the stored bytes exactly.
    crlf = tmp_path / "crlf"
    maildir.export_maildir(store, mailbox, crlf, line_endings="crlf")
    assert BODIES[3].replace(b"\n", b"\r\n") in read_maildir(crlf)["Sent"]


def test_mbox_import_then_export_is_byte_identical(store, db, tmp_path):
    mailbox = make_mailbox(db, "box")
    lines = []
    for n, content in enumerate(BODIES):
        date = maildir.asctime(DATE + dt.timedelta(days=n))
        quoted = b"".join(b">" + line if line.lstrip(b">").startswith(b"From ") else line
                          for line in content.splitlines(keepends=True))
        lines.append(f"From s{n}@example.net {date}\n".encode() + quoted + b"\n")
    source = tmp_path / "source.mbox"
    source.write_bytes(b"".join(lines))

    report = maildir.import_mbox(store, mailbox, source)
    assert report.messages == 5
    inbox = store.get_folder(mailbox, "INBOX")
    stored = store.list_messages(inbox.id)
    assert [m.internaldate.replace(tzinfo=dt.UTC) for m in stored] == [DATE + dt.timedelta(days=n) for n in range(5)]
    for info, content in zip(stored, BODIES, strict=True):
        with store.open_message(inbox.id, info.uid) as handle:
            assert handle.read() == content.replace(b"\n", b"\r\n")  # unquoted, separator dropped

    exported = tmp_path / "exported.mbox"
    maildir.export_mbox(store, mailbox, exported)
    assert exported.read_bytes() == source.read_bytes()

    # mbox -> store -> Maildir -> another mailbox -> mbox: still the same bytes.
    tree = tmp_path / "tree"
    maildir.export_maildir(store, mailbox, tree)
    other = make_mailbox(db, "other")
    maildir.import_maildir(store, other, tree)
    again = tmp_path / "again.mbox"
    maildir.export_mbox(store, other, again)
    assert again.read_bytes() == source.read_bytes()


def test_bad_sources_and_targets_change_nothing(store, db, tmp_path):
    mailbox = make_mailbox(db, "box")
    inbox = store.get_folder(mailbox, "INBOX")
    not_mbox = tmp_path / "plain.txt"
    not_mbox.write_bytes(b"Subject: not an mbox\n\nbody\n")
    with pytest.raises(maildir.TransferError, match="not an mbox"):
        maildir.import_mbox(store, mailbox, not_mbox)
    with pytest.raises(maildir.TransferError, match="not a Maildir"):
        maildir.import_maildir(store, mailbox, tmp_path)
    with pytest.raises(maildir.TransferError, match="no mailbox"):
        maildir.mailbox_id(db, "nobody@example.org")
    assert store.list_messages(inbox.id) == []
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    with pytest.raises(maildir.TransferError, match="not an empty directory"):
        maildir.export_maildir(store, mailbox, occupied)
    with pytest.raises(maildir.TransferError, match="already exists"):
        maildir.export_mbox(store, mailbox, occupied / "x")
    assert (occupied / "x").read_text() == "x"


def test_cli_import_export_and_healthcheck(config, db, tmp_path, capsys, monkeypatch):
    from courriel import datadir
    from courriel.cli import main

    datadir.initialise(config.data_dir)
    make_mailbox(db, "box")
    data = ["--data", str(config.data_dir)]
    source = tmp_path / "in.mbox"
    quoted = b"".join(b">" + line if line.lstrip(b">").startswith(b"From ") else line
                      for line in BODIES[1].splitlines(keepends=True))
    source.write_bytes(b"From s1@example.net Tue Mar  5 10:20:30 2024\n" + quoted + b"\n")
    assert main(["import", "mbox", str(source), "--mailbox", "nobody@example.org", *data]) == 2
    assert "no mailbox nobody@example.org" in capsys.readouterr().err
    assert main(["import", "mbox", str(source), "--mailbox", "box@example.org", "--json", *data]) == 0
    assert '"messages": 1' in capsys.readouterr().out
    assert main(["export", "--mailbox", "box@example.org", "--format", "mbox", str(tmp_path / "out.mbox"), *data]) == 0
    assert (tmp_path / "out.mbox").read_bytes() == source.read_bytes()
    assert main(["export", "--mailbox", "box@example.org", str(tmp_path / "tree"), *data]) == 0
    assert len(list((tmp_path / "tree" / "cur").iterdir())) == 1
    # Nothing listens on the admin port of this data directory: unhealthy, status 1.
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    with port:
        address = f"127.0.0.1:{port.getsockname()[1]}"
    monkeypatch.setenv("COURRIEL_LISTENERS_ADMIN", address)
    assert main(["healthcheck", "--dev", "--timeout", "1", *data]) == 1
    assert f"unhealthy: http://{address}/healthz" in capsys.readouterr().out


def test_maildir_import_follows_no_symlink(store, db, tmp_path):
    """A hostile Maildir (an unpacked user archive) cannot pull files from outside it: a symlinked
    message file (here to a secret key) or a symlinked folder is skipped, not imported."""
    secret = tmp_path / "dkim-private.pem"
    secret.write_bytes(b"-----BEGIN PRIVATE KEY-----\nsecret\n")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "cur").mkdir(parents=True)
    (elsewhere / "cur" / "1:2,S").write_bytes(message(9))
    source = tmp_path / "source"
    for sub in ("cur", "new", "tmp"):
        (source / sub).mkdir(parents=True)
    (source / "cur" / "1:2,S").write_bytes(message(0))
    (source / "cur" / "2:2,S").symlink_to(secret)
    (source / ".Linked").symlink_to(elsewhere, target_is_directory=True)
    mailbox = make_mailbox(db, "box")
    report = maildir.import_maildir(store, mailbox, source)
    assert report.messages == 1 and report.folders == {"INBOX": 1}
    inbox = store.get_folder(mailbox, "INBOX")
    stored, = store.list_messages(inbox.id)
    with store.open_message(inbox.id, stored.uid) as handle:
        assert b"PRIVATE KEY" not in handle.read()
