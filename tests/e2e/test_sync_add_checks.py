"""`courriel sync add` refuses plain text to a host on the network, and a discovered server
outside the address's domain until the user names it with --host (RFC 6186 §6). DNS comes from
a test server on loopback; nothing here connects to a mail server."""

from __future__ import annotations

import io

import pytest
from dns_test_server import dns_server  # noqa: F401
from store_fixtures import make_mailbox

from courriel import config as config_mod
from courriel.cli import main as cli_main
from courriel.db import Database
from courriel.imapsync import accounts
from courriel.models import Mailbox


def _setup(tmp_path, monkeypatch, nameserver: str):
    monkeypatch.setenv("COURRIEL_DNS_NAMESERVERS", nameserver)
    data = tmp_path / "data"
    assert cli_main(["init", "--data", str(data)]) == 0
    db = Database(config_mod.load(data).database_url)
    mailbox_id = make_mailbox(db)
    with db.read() as session:
        address = session.get(Mailbox, mailbox_id).address
    return data, db, address


def _add(capsys, monkeypatch, *args):
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    capsys.readouterr()
    status = cli_main(["sync", "add", *args, "--password-stdin"])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_add_refuses_plain_text_off_loopback_and_unconfirmed_servers(tmp_path, monkeypatch, capsys,
                                                                     dns_server):  # noqa: F811
    data, db, address = _setup(tmp_path, monkeypatch, dns_server.nameserver)
    d = ["--data", str(data)]
    try:
        status, out = _add(capsys, monkeypatch, address, "jo@example.net", "--host", "imap.example.net",
                           "--security", "none", *d)
        assert status != 0 and "loopback" in out
        dns_server.add("_imaps._tcp.victim.test", "SRV", "0 1 993 mail.attacker.test")
        status, out = _add(capsys, monkeypatch, address, "jo@victim.test", *d)
        assert status != 0 and "not within victim.test" in out and "--host mail.attacker.test" in out
        assert accounts.list_accounts(db) == []  # nothing written
        # Naming the server is the confirmation.
        status, out = _add(capsys, monkeypatch, address, "jo@victim.test", "--host", "mail.attacker.test", *d)
        assert status == 0, out
        dns_server.add("_imaps._tcp.own.test", "SRV", "0 1 993 imap.own.test")
        status, out = _add(capsys, monkeypatch, address, "jo@own.test", *d)
        assert status == 0 and "from srv" in out
        assert [a.host for a in accounts.list_accounts(db)] == ["mail.attacker.test", "imap.own.test"]
    finally:
        db.dispose()


def test_an_old_plain_text_account_off_loopback_never_connects(tmp_path, monkeypatch, dns_server):  # noqa: F811
    from sqlalchemy import update

    from courriel.blobs import BlobStore
    from courriel.imapsync.runner import AccountSync
    from courriel.models import SyncAccount
    from courriel.store import Store

    data, db, address = _setup(tmp_path, monkeypatch, dns_server.nameserver)
    try:
        mailbox_id = accounts.find_mailbox(db, address)
        account = accounts.create(db, data, mailbox_id, "jo@example.net", "pw", protocol="imap", host="127.0.0.1",
                                  port=1, security="none")
        with db.write() as session:  # as written before the rule existed
            session.execute(update(SyncAccount).where(SyncAccount.id == account).values(host="imap.example.net"))
        config = config_mod.load(data)
        sync = AccountSync(db, Store(db, BlobStore(config.blob_dir, db)), data, account)
        with pytest.raises(accounts.AccountError, match="loopback"):
            sync.connect()
    finally:
        db.dispose()
