"""`courriel domain wizard|records|verify|check`, `courriel dkim ...` and `courriel mailbox settings`
against a data directory made by `courriel init` and a real DNS server on loopback: the
ownership step blocks mail until the TXT record exists, checks are stored, bad input exits 2
having written nothing, and no private key is ever printed."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import pytest
from dns_test_server import dns_server  # noqa: F401  (pytest fixture)
from queue_harness import make_world, poll

from courriel import config as config_mod
from courriel import passwords, registry
from courriel.admin import services
from courriel.admin.services import dns as domain_dns
from courriel.cli import main as cli_main
from courriel.db import Database
from courriel.models import Domain

HOST = "mail.example.net"
SERVER_IP = "192.0.2.25"
DOMAIN = "example.org"


@pytest.fixture
def installed(tmp_path, monkeypatch, dns_server):  # noqa: F811
    for name in list(os.environ):
        if name.startswith("COURRIEL_") and not name.startswith("COURRIEL_PASSWORDS_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    assert cli_main(["init", "--data", str(data), "--hostname", HOST]) == 0
    monkeypatch.setenv("COURRIEL_DNS_NAMESERVERS", dns_server.nameserver)
    monkeypatch.setenv("COURRIEL_DNS_TIMEOUT", "1.0")
    monkeypatch.setenv("COURRIEL_SERVER_PUBLIC_ADDRESSES", SERVER_IP)
    config = config_mod.load(data)
    assert config.get("domains", "require_verification") is True  # the production default
    db = Database(config.database_url)
    yield data, db
    db.dispose()


def cli(capsys, data, *args) -> tuple[int, object, str]:
    capsys.readouterr()
    status = cli_main([*args, "--data", str(data)])
    captured = capsys.readouterr()
    assert "PRIVATE KEY" not in captured.out + captured.err
    payload = json.loads(captured.out) if "--json" in args and captured.out.strip() else captured.out
    return status, payload, captured.err


def publish(server, rows: list[dict]) -> None:
    for row in rows:
        server.add(row["name"], row["type"], row["value"])
    server.add(HOST, "A", SERVER_IP)
    server.add_ptr(SERVER_IP, HOST)


def resolve(db, address: str) -> registry.Resolution:
    with db.read() as session:
        return registry.resolve(session, address, require_verified=True)


def dump(data) -> dict:
    connection = sqlite3.connect(data / "courriel.db")
    try:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(map(repr, connection.execute(f'SELECT * FROM "{t}"'))) for t in tables}  # noqa: S608
    finally:
        connection.close()


def files(data) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file() and "courriel.db" not in p.name)


def test_wizard_records_verify_check(installed, dns_server, capsys):  # noqa: F811
    data, db = installed
    status, state, _ = cli(capsys, data, "domain", "wizard", "Example.ORG", "--json")
    assert status == 0
    assert [s["name"] for s in state["steps"]] == ["name", "ownership", "mx", "spf", "dkim", "dmarc",
                                                  "autoconfig", "mta_sts"]
    assert state["next_step"] == "ownership"
    assert state["steps"][-1]["state"] == "skipped"
    assert cli(capsys, data, "domain", "add", "alias.example")[0] == 0
    assert cli(capsys, data, "mailbox", "add", f"alice@{DOMAIN}")[0] == 0

    status, rows, _ = cli(capsys, data, "domain", "records", DOMAIN, "--json")
    assert status == 0
    assert all(set(row) == {"type", "name", "value", "purpose"} for row in rows)
    types = {(row["type"], row["name"].split(".")[0]) for row in rows}
    assert {("TXT", "example"), ("MX", "example"), ("TXT", "_dmarc"), ("SRV", "_imaps"),
            ("CNAME", "autoconfig")} <= types
    dkim_rows = [row for row in rows if "._domainkey." in row["name"]]
    assert len(dkim_rows) == 1 and dkim_rows[0]["value"].startswith("v=DKIM1; k=rsa; p=")
    status, text, _ = cli(capsys, data, "domain", "records", DOMAIN)
    assert " IN MX    10 mail.example.net." in text and "Purpose" in text

    # The ownership step: no mail until the TXT record is there.
    assert resolve(db, f"alice@{DOMAIN}").reason is registry.RejectReason.DOMAIN_UNVERIFIED
    status, result, _ = cli(capsys, data, "domain", "verify", DOMAIN, "--json")
    assert status == 1 and result["verified"] is False and result["check"]["status"] == "missing"
    assert resolve(db, f"alice@{DOMAIN}").reason is registry.RejectReason.DOMAIN_UNVERIFIED

    publish(dns_server, rows)
    status, result, _ = cli(capsys, data, "domain", "verify", DOMAIN, "--json")
    assert status == 0 and result["verified"] is True
    assert resolve(db, f"alice@{DOMAIN}").accepted

    status, result, _ = cli(capsys, data, "domain", "check", DOMAIN, "--json")
    assert status == 0, result
    assert result["status"] == "ok" and {r["check"] for r in result["records"]} >= {"ptr", "dkim", "spf"}
    with db.read() as session:
        row = session.query(Domain).filter_by(name=DOMAIN).one()
        assert json.loads(row.dns_status)["status"] == "ok" and row.dns_checked_at is not None

    # The wizard, walked again, reads the stored check: only the DKIM activation is left.
    status, state, _ = cli(capsys, data, "domain", "wizard", DOMAIN, "--json")
    assert {s["name"]: s["state"] for s in state["steps"]} == {
        "name": "done", "ownership": "done", "mx": "done", "spf": "done", "dkim": "todo", "dmarc": "done",
        "autoconfig": "done", "mta_sts": "skipped"}
    selector = dkim_rows[0]["name"].split(".")[0]
    assert cli(capsys, data, "dkim", "activate", DOMAIN, selector)[0] == 0
    status, state, _ = cli(capsys, data, "domain", "wizard", DOMAIN, "--json")
    assert state["next_step"] is None and len(cli(capsys, data, "dkim", "list", "--json")[1]) == 1

    dns_server.remove(DOMAIN, "MX")
    status, results, _ = cli(capsys, data, "domain", "check", "--all", "--json")
    assert status == 1
    by_domain = {r["domain"]: r for r in results}
    assert set(by_domain) == {DOMAIN, "alias.example"}
    mx = next(r for r in by_domain[DOMAIN]["records"] if r["check"] == "mx")
    assert mx["status"] == "missing" and mx["expected"] == f"10 {HOST}."
    with db.read() as session:
        assert json.loads(session.query(Domain).filter_by(name=DOMAIN).one().dns_status)["status"] == "problems"
    status, text, _ = cli(capsys, data, "domain", "check", DOMAIN)
    assert status == 1 and "MISSING" in text and f"publish MX {DOMAIN}." in text


def test_default_domain_needs_no_wizard(installed, capsys):
    data, db = installed
    status, info, _ = cli(capsys, data, "mailbox", "add", "bob@example.net", "--json")
    assert status == 0 and info["domain"] == "example.net"
    with db.read() as session:
        row = session.query(Domain).filter_by(name="example.net").one()
        assert row.is_default and row.verified_at is not None
    assert resolve(db, "bob@example.net").accepted


def test_dkim_commands(installed, dns_server, capsys):  # noqa: F811
    data, _db = installed
    assert cli(capsys, data, "domain", "wizard", DOMAIN, "--algorithm", "ed25519")[0] == 0
    status, keys, _ = cli(capsys, data, "dkim", "list", DOMAIN, "--json")
    assert status == 0 and [(k["algorithm"], k["state"]) for k in keys] == [("ed25519-sha256", "pending")]
    first = keys[0]["selector"]
    (key_file,) = (data / "keys" / DOMAIN).glob(f"{first}-*.pem")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    status, _, err = cli(capsys, data, "dkim", "activate", DOMAIN, first)
    assert status == 2 and "not_published" in err
    assert cli(capsys, data, "dkim", "list", DOMAIN, "--json")[1][0]["state"] == "pending"

    status, rows, _ = cli(capsys, data, "domain", "records", DOMAIN, "--json")
    publish(dns_server, rows)
    assert cli(capsys, data, "dkim", "activate", DOMAIN, first)[0] == 0

    status, rotated, _ = cli(capsys, data, "dkim", "rotate", DOMAIN, "--json")
    assert status == 0 and rotated["state"] == "pending" and rotated["algorithm"] == "ed25519-sha256"
    second = rotated["selector"]
    dns_server.add(rotated["record"]["name"], "TXT", rotated["record"]["value"])
    status, _, err = cli(capsys, data, "dkim", "retire", DOMAIN, first)
    assert status == 2 and "invalid_state" in err  # still the active key
    assert cli(capsys, data, "dkim", "activate", DOMAIN, second)[0] == 0
    states = {k["selector"]: k["state"] for k in cli(capsys, data, "dkim", "list", "--json")[1]}
    assert states == {first: "retiring", second: "active"}
    status, _, err = cli(capsys, data, "dkim", "retire", DOMAIN, first)
    assert status == 2 and "grace_period" in err and key_file.exists()
    assert cli(capsys, data, "dkim", "retire", DOMAIN, first, "--force")[0] == 0
    assert not key_file.exists()
    status, text, _ = cli(capsys, data, "dkim", "list")
    assert "retired" in text and "active" in text


def test_mailbox_settings(installed, capsys):
    data, _db = installed
    assert cli(capsys, data, "domain", "add", DOMAIN)[0] == 0
    assert cli(capsys, data, "mailbox", "add", f"alice@{DOMAIN}")[0] == 0
    status, settings, _ = cli(capsys, data, "mailbox", "settings", f"Alice@{DOMAIN}", "--json")
    assert status == 0
    assert [(s["host"], s["port"], s["security"]) for s in settings["incoming"]] == [
        (HOST, 993, "SSL/TLS"), (HOST, 143, "STARTTLS")]
    assert [(s["port"], s["security"], s["username"]) for s in settings["outgoing"]] == [
        (465, "SSL/TLS", f"alice@{DOMAIN}"), (587, "STARTTLS", f"alice@{DOMAIN}")]
    status, text, _ = cli(capsys, data, "mailbox", "settings", f"alice@{DOMAIN}")
    assert f"server {HOST}  port 993  security SSL/TLS" in text


def test_bad_input_exits_2_and_writes_nothing(installed, monkeypatch, capsys):
    data, _db = installed
    assert cli(capsys, data, "domain", "wizard", DOMAIN)[0] == 0
    selector = cli(capsys, data, "dkim", "list", "--json")[1][0]["selector"]
    before, before_files = dump(data), files(data)
    bad = [
        ("domain", "wizard", "not a domain"),
        ("domain", "wizard", "bad_name.example"),
        ("domain", "records", "nosuch.example"),
        ("domain", "records", "bad..name"),
        ("domain", "verify", "nosuch.example"),
        ("domain", "check"),
        ("domain", "check", DOMAIN, "--all"),
        ("domain", "check", "nosuch.example"),
        ("dkim", "list", "nosuch.example"),
        ("dkim", "rotate", "nosuch.example"),
        ("dkim", "activate", DOMAIN, "nosuch"),
        ("dkim", "activate", DOMAIN, "Bad Selector"),
        ("dkim", "retire", DOMAIN, selector),
        ("dkim", "retire", DOMAIN, "nosuch"),
        ("mailbox", "settings", "nobody@example.org"),
        ("mailbox", "settings", "not an address"),
    ]
    for args in bad:
        status, _, err = cli(capsys, data, *args)
        assert status == 2, (args, err)
        assert err.startswith("courriel: error: "), (args, err)
    for args in (("domain", "wizard", "x.example", "--algorithm", "dsa"), ("dkim", "rotate")):
        with pytest.raises(SystemExit) as usage:
            cli(capsys, data, *args)
        assert usage.value.code == 2
    monkeypatch.setenv("COURRIEL_SERVER_PUBLIC_ADDRESSES", "not-an-ip")
    status, _, err = cli(capsys, data, "domain", "check", DOMAIN)
    assert status == 2 and "invalid_config" in err
    assert dump(data) == before
    assert files(data) == before_files


def test_optional_mta_sts_step(installed, monkeypatch, capsys):
    data, _db = installed
    monkeypatch.setenv("COURRIEL_DOMAINS_MTA_STS", "true")
    status, text, _ = cli(capsys, data, "domain", "wizard", DOMAIN)
    assert status == 0 and "Next step: ownership" in text and f"TXT {DOMAIN}. courriel-verification=" in text
    rows = cli(capsys, data, "domain", "records", DOMAIN, "--json")[1]
    names = {(row["type"], row["name"]) for row in rows}
    assert {("TXT", f"_mta-sts.{DOMAIN}."), ("CNAME", f"mta-sts.{DOMAIN}."), ("TXT", f"_smtp._tls.{DOMAIN}.")} <= names
    tlsrpt = next(row for row in rows if row["name"].startswith("_smtp._tls."))
    assert tlsrpt["value"] == f"v=TLSRPTv1; rua=mailto:postmaster@{DOMAIN}"
    state = cli(capsys, data, "domain", "wizard", DOMAIN, "--json")[1]
    assert {s["name"]: s["state"] for s in state["steps"]}["mta_sts"] == "todo"


def test_queue_delivery_waits_for_ownership(data_dir, monkeypatch):
    """Through the queue runner: mail for an unverified domain bounces (5.1.2), mail after
    `verify` found the TXT record is delivered."""
    hasher = passwords.PasswordHasher(memory_kib=1024, time_cost=1)
    policy = passwords.PasswordPolicy(min_length=10, min_classes=2)
    message = b"From: bob@example.net\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    monkeypatch.setenv("COURRIEL_DOMAINS_REQUIRE_VERIFICATION", "true")
    with make_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch) as world:
        assert world.config.get("domains", "require_verification") is True
        services.add_domain(world.db, "example.net", is_default=True)
        token = services.add_domain(world.db, DOMAIN).verification_token
        bob, _ = services.add_mailbox(world.db, hasher, policy, "bob@example.net", password="Correct-Horse-9")
        alice, _ = services.add_mailbox(world.db, hasher, policy, f"alice@{DOMAIN}", password="Correct-Horse-9")
        world.submit("bob@example.net", [f"alice@{DOMAIN}"], message)
        with world.running():
            poll(lambda: world.inbox_or_empty(bob.id), "bounce delivered to the sender")
            bounce = world.inbox(bob.id)[0]
            assert b"5.1.2" in bounce and b"alice@example.org" in bounce
            assert world.inbox_or_empty(alice.id) == []

            world.dns.add(DOMAIN, "TXT", f"courriel-verification={token}")
            assert domain_dns.verify(world.db, world.config, DOMAIN).verified
            world.submit("bob@example.net", [f"alice@{DOMAIN}"], message)
            poll(lambda: world.inbox_or_empty(alice.id), "delivered once verified")
        assert b"hello" in world.inbox(alice.id)[0]
