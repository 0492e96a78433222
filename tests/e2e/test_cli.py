"""`courriel domain|mailbox|alias|group|user` as a subprocess against a data directory made by
`courriel init`: every command works, and bad input exits 2 with the database unchanged."""

import json
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from courriel import passwords

COURRIEL = Path(sys.executable).parent / "courriel"
HASHER = passwords.PasswordHasher(memory_kib=1024, time_cost=1)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data"
    result = subprocess.run([COURRIEL, "init", "--data", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return path


def run(data, *args, stdin=None, status=0):
    result = subprocess.run([COURRIEL, *args, "--data", str(data)], input=stdin, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == status, (args, result.stdout, result.stderr)
    return result


def run_json(data, *args, stdin=None):
    return json.loads(run(data, *args, "--json", stdin=stdin).stdout)


def dump(data) -> dict:
    connection = sqlite3.connect(data / "courriel.db")
    try:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(map(repr, connection.execute(f'SELECT * FROM "{t}"'))) for t in tables}  # noqa: S608
    finally:
        connection.close()


def stored_hash(data, table, column, value):
    connection = sqlite3.connect(data / "courriel.db")
    try:
        return connection.execute(f"SELECT password_hash FROM {table} WHERE {column} = ?", (value,)).fetchone()[0]  # noqa: S608
    finally:
        connection.close()


def test_every_command(data):
    assert run_json(data, "domain", "add", "Example.COM", "--default")["name"] == "example.com"
    added = run_json(data, "domain", "add", "Bücher.example")
    assert added["name"] == "xn--bcher-kva.example" and added["unicode_name"] == "bücher.example"
    assert len(added["verification_token"]) == 32
    listed = run_json(data, "domain", "list")
    assert [(d["name"], d["is_default"]) for d in listed] == [("example.com", True), ("xn--bcher-kva.example", False)]
    assert "xn--bcher-kva.example" in run(data, "domain", "list").stdout

    user = run_json(data, "user", "add", "dana", "--email", "Dana@Elsewhere.org", "--display-name", "Dana Scully")
    assert user["email"] == "dana@elsewhere.org" and user["role"] == "user"
    assert HASHER.verify(user["password"], stored_hash(data, "users", "name", "dana"))
    run(data, "user", "add", "temp", "--role", "admin", "--password-stdin", stdin="Temporary pass 1\n")
    assert HASHER.verify("Temporary pass 1", stored_hash(data, "users", "name", "temp"))
    assert {u["name"]: u["role"] for u in run_json(data, "user", "list")} == {
        "admin": "admin", "dana": "user", "temp": "admin"}

    mailbox = run_json(data, "mailbox", "add", "Dana@Example.com", "--user", "dana", "--quota", "1G",
                       "--quota-messages", "1000")
    assert mailbox["address"] == "dana@example.com" and mailbox["display_name"] == "Dana Scully"
    assert (mailbox["quota_bytes"], mailbox["quota_messages"]) == (1024**3, 1000)
    assert HASHER.verify(mailbox["password"], stored_hash(data, "mailboxes", "address", "dana@example.com"))
    text = run(data, "mailbox", "add", "bob@bücher.example", "--password-stdin", stdin="Bob's password 1\n").stdout
    assert "bob@xn--bcher-kva.example" in text and "Password:" not in text
    assert [m["address"] for m in run_json(data, "mailbox", "list")] == [
        "bob@xn--bcher-kva.example", "dana@example.com"]
    assert [m["address"] for m in run_json(data, "mailbox", "list", "--user", "dana")] == ["dana@example.com"]

    run(data, "mailbox", "passwd", "bob@bücher.example", "--password-stdin", stdin="New secret pass 2\n")
    assert HASHER.verify("New secret pass 2", stored_hash(data, "mailboxes", "address", "bob@xn--bcher-kva.example"))
    generated = run_json(data, "mailbox", "passwd", "bob@xn--bcher-kva.example", "--generate")["password"]
    assert HASHER.verify(generated, stored_hash(data, "mailboxes", "address", "bob@xn--bcher-kva.example"))
    assert run_json(data, "mailbox", "disable", "dana@example.com")["enabled"] is False
    assert run_json(data, "mailbox", "enable", "dana@example.com")["enabled"] is True
    assert run_json(data, "mailbox", "quota", "dana@example.com", "500M")["quota_bytes"] == 500 * 1024**2
    quota = run_json(data, "mailbox", "quota", "dana@example.com", "--quota-messages", "50")
    assert (quota["quota_bytes"], quota["quota_messages"]) == (500 * 1024**2, 50)  # the size limit is kept
    assert "50 messages" in run(data, "mailbox", "quota", "dana@example.com", "0", "--quota-messages", "50").stdout
    assert {m["address"]: m["quota_messages"] for m in run_json(data, "mailbox", "list")}["dana@example.com"] == 50

    alias = run_json(data, "alias", "add", "team@example.com", "dana@example.com", "Ext@Partner.org")
    assert alias["targets"] == ["dana@example.com", "ext@partner.org"]
    assert [a["address"] for a in run_json(data, "alias", "list")] == ["team@example.com"]
    assert run_json(data, "domain", "catch-all", "example.com", "team@example.com")["catch_all"] == "team@example.com"
    run(data, "alias", "remove", "team@example.com")

    group = run_json(data, "group", "add", "staff@example.com", "dana@example.com")
    assert group["members"] == ["dana@example.com"] and group["members_can_send"] is True
    run(data, "group", "members", "add", "staff@example.com", "bob@bücher.example")
    assert run_json(data, "group", "members", "list", "staff@example.com") == [
        "bob@xn--bcher-kva.example", "dana@example.com"]
    assert run_json(data, "group", "members", "remove", "staff@example.com", "dana@example.com")["members"] == [
        "bob@xn--bcher-kva.example"]
    assert [g["address"] for g in run_json(data, "group", "list")] == ["staff@example.com"]
    run(data, "group", "remove", "staff@example.com")

    run(data, "mailbox", "remove", "bob@bücher.example")
    run(data, "domain", "remove", "bücher.example")
    run(data, "user", "remove", "temp")
    assert [d["name"] for d in run_json(data, "domain", "list")] == ["example.com"]
    assert [u["name"] for u in run_json(data, "user", "list")] == ["admin", "dana"]
    tables = dump(data)
    assert len(tables["mailboxes"]) == 1 and not tables["aliases"] and not tables["mail_groups"]
    assert len(tables["folders"]) == 5  # the remaining mailbox's default folders


BAD_INPUT = [
    (["domain", "add", "bad_domain.com"], "invalid_domain"),
    (["domain", "add", "trailing-.example.com"], "invalid_domain"),
    (["domain", "add", "EXAMPLE.com"], "duplicate"),
    (["domain", "remove", "nowhere.example"], "not_found"),
    (["domain", "remove", "example.com"], "in_use"),
    (["mailbox", "add", "not an address"], "invalid_address"),
    (["mailbox", "add", "Alice@example.com"], "duplicate"),
    (["mailbox", "add", "x@unknown.example"], "not_found"),
    (["mailbox", "add", "y@example.com", "--quota", "lots"], "invalid_quota"),
    (["mailbox", "add", "y@example.com", "--quota-messages", "-3"], "invalid_quota"),
    (["mailbox", "quota", "alice@example.com"], "invalid_quota"),
    (["mailbox", "add", "y@example.com", "--user", "nobody"], "not_found"),
    (["mailbox", "passwd", "ghost@example.com", "--generate"], "not_found"),
    (["mailbox", "disable", "ghost@example.com"], "not_found"),
    (["alias", "add", "a@example.com", "bad@@target"], "invalid_address"),
    (["alias", "add", "alice@example.com", "x@example.org"], "duplicate"),
    (["alias", "remove", "ghost@example.com"], "not_found"),
    (["group", "add", "g@example.com", "ghost@example.com"], "not_found"),
    (["group", "members", "add", "nogroup@example.com", "alice@example.com"], "not_found"),
    (["user", "add", "Bad Name!"], "invalid_name"),
    (["user", "remove", "admin"], "in_use"),
    (["user", "remove", "ghost"], "not_found"),
]


def test_bad_input_exits_2_and_changes_nothing(data):
    run(data, "domain", "add", "example.com")
    run(data, "mailbox", "add", "alice@example.com")
    before = dump(data)

    def attempt(case):
        args, _code = case
        return case, subprocess.run([COURRIEL, *args, "--data", str(data)], capture_output=True, text=True,
                                    timeout=60, stdin=subprocess.DEVNULL)

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(attempt, BAD_INPUT))
    for (args, code), result in outcomes:
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("courriel: error: ") and f"[{code}]" in result.stderr, (args, result.stderr)
        assert result.stdout == "", args

    # Passwords: too weak from stdin, or none at all without a terminal.
    weak = run(data, "mailbox", "passwd", "alice@example.com", "--password-stdin", stdin="short\n", status=2)
    assert "invalid_password" in weak.stderr and "short" not in weak.stderr.split("]")[-1]
    none = run(data, "mailbox", "passwd", "alice@example.com", stdin="", status=2)
    assert "--password-stdin" in none.stderr
    missing = subprocess.run([COURRIEL, "domain", "list", "--data", str(data / "missing")], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "courriel init" in missing.stderr
    assert dump(data) == before
