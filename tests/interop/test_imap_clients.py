"""Third-party IMAP clients from Debian against the IMAP role, run the way users run them:
mbsync (isync) syncing a mailbox both ways, curl's IMAP URLs, mutt in batch mode saving its
sent copy into the IMAP Sent folder. Each test asserts on the store and on the client's output.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from imap_server import imap_server  # noqa: F401
from store_fixtures import sample_message

pytestmark = pytest.mark.timeout(120)
RUN_TIMEOUT = 60


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (Makefile TEST_DEBIAN_PACKAGES)")
    return path


@pytest.fixture
def server(imap_server):  # noqa: F811
    imap_server.clear()
    return imap_server


def maildir_files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") if (folder / sub).is_dir() for p in (folder / sub).iterdir())


def test_mbsync_syncs_both_ways(server, tmp_path):
    mbsync = need("mbsync")
    server.store.deliver(server.mailbox_id, sample_message(1, subject="from the server one"))
    server.store.deliver(server.mailbox_id, sample_message(2, subject="from the server two"))
    local = tmp_path / "mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(f"""\
IMAPAccount courriel
Host 127.0.0.1
Port {server.imaps_port}
User {server.address}
Pass "{server.password}"
SSLType IMAPS
CertificateFile {server.cert}

IMAPStore remote
Account courriel

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Work
Create Both
Expunge Both
Sync All
SyncState *
""")
    command = [mbsync, "-c", str(config), "-a"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    files = maildir_files(local / "INBOX")
    assert len(files) == 2
    assert {b"Subject: from the server one" in f.read_bytes() for f in files} == {True, False}

    # Local changes go up: a new message in a new folder, and a message marked seen.
    work = local / "Work"
    for sub in ("cur", "new", "tmp"):
        (work / sub).mkdir(parents=True)
    (work / "new" / "1700000000.1.localhost").write_bytes(sample_message(3, subject="written locally"))
    seen = files[0]
    seen.rename(seen.parent.parent / "cur" / (seen.name.split(":")[0] + ":2,S"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = server.store.get_folder(server.mailbox_id, "Work")
    [summary] = server.store.summaries(folder.id)
    assert summary.subject == "written locally"
    inbox = server.store.list_messages(server.inbox_id())
    assert sorted("\\Seen" in m.flags for m in inbox) == [False, True]

    # A server-side delivery and a server-side expunge come down on the next run.
    server.store.deliver(server.mailbox_id, sample_message(4, subject="later"))
    first = inbox[0]
    server.store.set_flags(server.inbox_id(), [first.uid], "add", ["\\Deleted"])
    server.store.expunge(server.inbox_id())
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    # mbsync stores local files with LF line endings.
    subjects = sorted(next(line.rstrip(b"\r") for line in f.read_bytes().split(b"\n") if line.startswith(b"Subject:"))
                      for f in maildir_files(local / "INBOX"))
    assert len(subjects) == 2 and b"Subject: later" in subjects


def test_curl_lists_and_fetches(server):
    curl = need("curl")
    server.store.deliver(server.mailbox_id, sample_message(1, subject="curl me", body=b"curl body\r\n"))
    base = f"imaps://127.0.0.1:{server.imaps_port}"
    common = [curl, "--silent", "--show-error", "--cacert", str(server.cert), "--user",
              f"{server.address}:{server.password}", "--max-time", "30"]
    listing = subprocess.run([*common, f"{base}/"], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert any(line.startswith("* LIST") and line.endswith(" INBOX") for line in lines), listing.stdout
    assert any("\\Trash" in line and line.endswith(" Trash") for line in lines), listing.stdout
    fetched = subprocess.run([*common, f"{base}/INBOX;MAILINDEX=1"], capture_output=True, timeout=RUN_TIMEOUT)
    assert fetched.returncode == 0, fetched.stderr
    assert b"Subject: curl me" in fetched.stdout and fetched.stdout.endswith(b"curl body\r\n")
    # A custom command through STARTTLS on the plain port.
    searched = subprocess.run([*common, "--ssl-reqd", "--request", "SEARCH SUBJECT curl",
                               f"imap://127.0.0.1:{server.imap_port}/INBOX"],
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert searched.returncode == 0, searched.stderr
    assert "* SEARCH 1" in searched.stdout
    wrong = subprocess.run([curl, "--silent", "--cacert", str(server.cert), "--user", f"{server.address}:nope",
                            f"{base}/"], capture_output=True, timeout=RUN_TIMEOUT)
    assert wrong.returncode == 67  # CURLE_LOGIN_DENIED


def test_mutt_batch_mode_saves_sent_copy_over_imap(server, tmp_path):
    mutt = need("mutt")
    sent_log = tmp_path / "sendmail.out"
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f"#!/bin/sh\ncat > {sent_log}\n")
    sendmail.chmod(0o755)
    certificates = tmp_path / "certificates"
    certificates.write_bytes(server.cert.read_bytes())
    folder = f"imaps://{server.address.replace('@', '%40')}@127.0.0.1:{server.imaps_port}"
    muttrc = tmp_path / "muttrc"
    muttrc.write_text(f"""\
set imap_pass="{server.password}"
set folder="{folder}"
set record="=Sent"
set copy=yes
set sendmail="{sendmail}"
set certificate_file="{certificates}"
set ssl_verify_host=no
set from="{server.address}"
set use_from=yes
set header_cache=""
set message_cachedir=""
""")
    home = tmp_path / "home"
    home.mkdir()
    environ = {"HOME": str(home), "PATH": "/usr/bin:/bin", "TERM": "dumb", "LANG": "C.UTF-8"}
    result = subprocess.run([mutt, "-n", "-F", str(muttrc), "-s", "batch from mutt", "friend@example.net"],
                            input="Sent with mutt in batch mode.\n", capture_output=True, text=True,
                            env=environ, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"Subject: batch from mutt" in sent_log.read_bytes()
    sent = server.store.get_folder(server.mailbox_id, "Sent")
    summaries = server.store.summaries(sent.id)
    assert [s.subject for s in summaries] == ["batch from mutt"]
    with server.store.open_message(sent.id, summaries[0].uid) as handle:
        assert b"Sent with mutt in batch mode." in handle.read()
