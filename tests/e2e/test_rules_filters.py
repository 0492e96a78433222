"""Filters end to end through the real queue runner: spool.accept → runner → hooks → store.
A filter moves, tags, flags and marks read; delete discards; stop ends the evaluation; tags tag
by sender; preview and apply act on existing messages (permanent delete or Trash); the CLI
exports a Sieve script that sievelib parses and refuses bad input with exit 2."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from queue_harness import make_world
from rules_fixtures import add_mailbox, drain, folder_messages, message
from sievelib.parser import Parser
from sqlalchemy import select

from courriel import cli
from courriel import config as config_mod
from courriel.admin.services import rules as services
from courriel.admin.services.errors import InvalidInput, NotFound
from courriel.db import Database
from courriel.models import Mailbox, RuleFilter, RuleTag
from courriel.queue import spool
from courriel.queue.spool import EnvelopeRecipient
from courriel.rules import records
from courriel.rules.calendar import invitations_of

CORPUS = Path(__file__).parent.parent / "corpus" / "calendar"


@pytest.fixture
def world(data_dir, db_url, monkeypatch):
    """A queue world on each backend (SQLite and PostgreSQL)."""
    with make_world(data_dir, db_url, monkeypatch) as built:
        yield built


def subjects(entries) -> list[str]:
    return sorted(next(line for line in data.decode().splitlines() if line.startswith("Subject:"))[9:]
                  for data, _ in entries)


def test_a_filter_moves_tags_flags_and_marks_read(world):
    alice = add_mailbox(world, "alice@example.org")
    add_mailbox(world, "bob@example.net")
    services.add_tag(world.db, "alice@example.org", "Work", colour="#3366ff")
    services.add_tag(world.db, "alice@example.org", "Boss", senders=["boss@example.com"])
    services.add_filter(world.db, "alice@example.org", name="invoices",
                        conditions=["from matches *@example.net", "subject contains invoice"],
                        actions=["move Invoices", "tag Work", "flag", "read"], stop=True)
    services.add_filter(world.db, "alice@example.org", conditions=["from matches *@example.net"],
                        actions=["move Elsewhere"])  # after a stop: never reached for invoices
    services.add_filter(world.db, "alice@example.org", conditions=["header:List-Id contains announce"],
                        actions=["delete"])
    services.add_filter(world.db, "alice@example.org", conditions=["has-attachment"], actions=["tag Files"],
                        folders=["Spam"])  # Spam only: does not apply to INBOX deliveries
    world.submit("bob@example.net", ["alice@example.org"], message("bob@example.net", "alice@example.org",
                                                                   "Invoice 7"))
    world.submit("list@example.com", ["alice@example.org"], message(
        "list@example.com", "alice@example.org", "Big news", headers="List-Id: <announce.example.com>\r\n"))
    world.submit("boss@example.com", ["alice@example.org"], message("boss@example.com", "alice@example.org",
                                                                    "See me"))
    world.submit("bob@example.net", ["alice@example.org"], message("bob@example.net", "alice@example.org", "Hi"))
    attachment = ('Content-Type: multipart/mixed; boundary="b"\r\n', "--b\r\nContent-Type: text/plain\r\n\r\nsee\r\n"
                  "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n\r\n"
                  "JVBERi0=\r\n--b--\r\n")
    for folder in ("Spam", None):
        data = message("spammer@example.com", "alice@example.org", f"Files {folder}", headers=attachment[0],
                       body=attachment[1]).replace(b"Content-Type: text/plain; charset=utf-8\r\n\r\n", b"\r\n")
        world.submit("spammer@example.com", [EnvelopeRecipient(address="alice@example.org", folder=folder)], data)
    with world.running():
        drain(world)
    [(_, spam_flags)] = folder_messages(world, alice, "Spam")
    assert spam_flags == ("Files",)  # the Spam-only filter applied to the copy filed as spam
    [(_, flags)] = folder_messages(world, alice, "Invoices")
    assert set(flags) == {"\\Seen", "\\Flagged", "Work"}
    assert subjects(folder_messages(world, alice, "Invoices")) == ["Invoice 7"]
    assert subjects(folder_messages(world, alice, "Elsewhere")) == ["Hi"]
    inbox = folder_messages(world, alice, "INBOX")
    assert subjects(inbox) == ["Files None", "See me"]  # the list message was discarded
    flags_by_subject = {subjects([entry])[0]: entry[1] for entry in inbox}
    assert flags_by_subject == {"Files None": (), "See me": ("Boss",)}  # Spam-only filter: not in INBOX


def test_disabled_filter_and_broken_rule_never_block_delivery(world):
    alice = add_mailbox(world, "alice@example.org")
    added = services.add_filter(world.db, "alice@example.org", conditions=["subject contains x"], actions=["delete"])
    services.set_filter_enabled(world.db, "alice@example.org", added.id, False)
    with world.db.write() as session:  # a row damaged by hand is skipped, not fatal
        session.add(RuleFilter(mailbox_id=alice, position=9, conditions="not json", actions="[]", folders="INBOX"))
        session.add(RuleTag(mailbox_id=alice, name="Bad", keyword="bad keyword", senders="bob@example.net"))
    world.submit("bob@example.net", ["alice@example.org"], message("bob@example.net", "alice@example.org", "x"))
    with world.running():
        drain(world)
    [(_, flags)] = folder_messages(world, alice, "INBOX")
    assert flags == ()  # the damaged keyword was dropped, the message delivered at once
    assert subjects(folder_messages(world, alice, "INBOX")) == ["x"]


def test_preview_and_apply_to_existing_messages(world):
    alice = add_mailbox(world, "alice@example.org")
    for subject in ("Report 1", "Report 2", "Lunch", "Old junk"):
        world.submit("carol@example.net", ["alice@example.org"], message("carol@example.net", "alice@example.org",
                                                                         subject))
    with world.running():
        drain(world)
    store = world.store
    reports = services.add_filter(world.db, "alice@example.org", conditions=["subject matches Report*"],
                                  actions=["move Reports", "read"])
    preview = services.preview_filter(store, "alice@example.org", reports.id)
    assert sorted(m.subject for m in preview) == ["Report 1", "Report 2"]
    assert {m.folder for m in preview} == {"INBOX"}
    assert len(folder_messages(world, alice, "INBOX")) == 4  # a preview changes nothing

    outcome = services.evaluate_message(world.db, alice, message("alice@example.org", "x@example.net", "Report 3"),
                                        "INBOX")
    assert (outcome.folder, outcome.flags) == ("Reports", ("\\Seen",))
    assert services.evaluate_message(world.db, alice, message("a@example.org", "b@example.net", "Report 3")).matched \
        == ()  # the filter applies to INBOX only, not to Sent
    report = services.apply_filter(store, "alice@example.org", reports.id)
    assert (report.matched, report.moved, report.flagged) == (2, 2, 2)
    moved = folder_messages(world, alice, "Reports")
    assert subjects(moved) == ["Report 1", "Report 2"] and all("\\Seen" in f for _, f in moved)

    junk = services.add_filter(world.db, "alice@example.org", conditions=["subject contains junk"],
                               actions=["delete"])
    report = services.apply_filter(store, "alice@example.org", junk.id, trash_instead_of_delete=True)
    assert report.trashed == 1 and subjects(folder_messages(world, alice, "Trash")) == ["Old junk"]

    lunch = services.add_filter(world.db, "alice@example.org", conditions=["subject contains Lunch"],
                                actions=["delete"])
    report = services.apply_filter(store, "alice@example.org", lunch.id)
    assert report.deleted == 1
    assert folder_messages(world, alice, "INBOX") == []
    assert subjects(folder_messages(world, alice, "Trash")) == ["Old junk"]  # permanent: not in Trash


def test_order_and_refusals(world):
    add_mailbox(world, "alice@example.org")
    first = services.add_filter(world.db, "alice@example.org", conditions=["subject contains a"], actions=["flag"])
    second = services.add_filter(world.db, "alice@example.org", conditions=["subject contains b"], actions=["read"])
    third = services.add_filter(world.db, "alice@example.org", conditions=["subject contains c"], actions=["read"],
                                position=0)
    assert [f.id for f in services.list_filters(world.db, "alice@example.org")] == [third.id, first.id, second.id]
    services.move_filter(world.db, "alice@example.org", second.id, 0)
    assert [f.id for f in services.list_filters(world.db, "alice@example.org")] == [second.id, third.id, first.id]
    services.remove_filter(world.db, "alice@example.org", third.id)
    assert [(f.id, f.position) for f in services.list_filters(world.db, "alice@example.org")] == \
        [(second.id, 0), (first.id, 1)]
    for kwargs in (dict(conditions=["subject resembles x"], actions=["flag"]),
                   dict(conditions=["subject contains x"], actions=["explode"]),
                   dict(conditions=["subject contains x"], actions=["flag"], folders=["Drafts"]),
                   dict(conditions=[], actions=["flag"])):
        with pytest.raises(InvalidInput):
            services.add_filter(world.db, "alice@example.org", **kwargs)
    assert len(services.list_filters(world.db, "alice@example.org")) == 2
    with pytest.raises(NotFound, match="does not exist"):
        services.remove_filter(world.db, "alice@example.org", 9999)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys):
    """The `courriel` command line, in process (argparse, services and exit codes as installed)."""
    def invoke(*args) -> Result:
        capsys.readouterr()
        umask = os.umask(0o022)
        os.umask(umask)
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse refusals
            code = exc.code
        finally:
            os.umask(umask)  # main() sets the service umask for the process
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return invoke


def test_cli_filter_add_list_export_and_bad_input(tmp_path, run):
    data = tmp_path / "data"
    assert run("init", "--data", str(data), "--hostname", "mx.example.org").returncode == 0
    assert run("domain", "add", "example.org", "--data", str(data)).returncode == 0
    created = run("mailbox", "add", "alice@example.org", "--data", str(data), "--json")
    assert created.returncode == 0, created.stderr
    added = run("filter", "add", "alice@example.org", "--data", str(data), "--json", "--if",
                "from matches *@example.net", "--if", "header:List-Id contains dev", "--any", "--then", "move Lists",
                "--then", "read", "--stop")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["actions"] == [{"action": "move", "folder": "Lists"}, {"action": "read"}]
    exported = run("filter", "export", "alice@example.org", "--data", str(data))
    assert exported.returncode == 0
    parser = Parser()
    assert parser.parse(exported.stdout), parser.error
    for bad in (["filter", "add", "alice@example.org", "--if", "from resembles x", "--then", "read"],
                ["filter", "add", "alice@example.org", "--if", "from contains x", "--then", "move a*b"],
                ["filter", "add", "nobody@example.org", "--if", "from contains x", "--then", "read"],
                ["filter", "remove", "alice@example.org", "99"],
                ["vacation", "set", "alice@example.org", "--start", "2026-12-31", "--end", "2026-12-01"],
                ["contact", "add", "alice@example.org", "not an address"],
                ["calendar", "rsvp", "alice@example.org", "1", "yes"]):
        result = run(*bad, "--data", str(data))
        assert result.returncode == 2, (bad, result.stdout, result.stderr)
        assert "error" in result.stderr
    listed = json.loads(run("filter", "list", "alice@example.org", "--data", str(data), "--json").stdout)
    assert len(listed) == 1
    assert json.loads(run("vacation", "show", "alice@example.org", "--data", str(data), "--json").stdout)[
        "enabled"] is False
    assert json.loads(run("contact", "list", "alice@example.org", "--data", str(data), "--json").stdout) == []
    on = run("vacation", "set", "alice@example.org", "--data", str(data), "--json", "--subject", "Away",
             "--body", "Back soon", "--contacts-only")
    assert on.returncode == 0 and json.loads(on.stdout)["contacts_only"] is True
    off = run("vacation", "off", "alice@example.org", "--data", str(data), "--json")
    assert off.returncode == 0 and json.loads(off.stdout)["enabled"] is False

    assert run("contact", "add", "alice@example.org", "Bob@Example.net", "--name", "Bob", "--data", str(data)
               ).returncode == 0
    assert [c["address"] for c in json.loads(run("contact", "list", "alice@example.org", "--data", str(data),
                                                 "--json").stdout)] == ["bob@example.net"]
    assert run("contact", "remove", "alice@example.org", "bob@example.net", "--data", str(data)).returncode == 0
    assert run("contact", "remove", "alice@example.org", "bob@example.net", "--data", str(data)).returncode == 2

    config = config_mod.load(data)
    db = Database(config.database_url)
    try:
        with db.write() as session:
            mailbox_id = session.scalar(select(Mailbox.id).where(Mailbox.address == "alice@example.org"))
            [invitation] = invitations_of((CORPUS / "outlook_request.eml").read_bytes())
            records.store_invitation(session, mailbox_id, invitation)
    finally:
        db.dispose()
    [event] = json.loads(run("calendar", "list", "alice@example.org", "--data", str(data), "--json").stdout)
    assert event["summary"] == "Weekly sync"
    answered = run("calendar", "rsvp", "alice@example.org", str(event["id"]), "maybe", "--data", str(data), "--json")
    assert answered.returncode == 0 and json.loads(answered.stdout)["answer"] == "TENTATIVE"
    db = Database(config.database_url)
    try:  # the REPLY waits in the queue for the organizer, from alice
        queued = [(m.sender, r.address) for m in spool.list_entries(db) for r in m.recipients]
    finally:
        db.dispose()
    assert ("alice@example.org", "olivia@example.org") in queued
    assert run("calendar", "rsvp", "alice@example.org", str(event["id"]), "perhaps", "--data", str(data)
               ).returncode == 2
    url = json.loads(run("calendar", "feed-url", "alice@example.org", "--data", str(data), "--json").stdout)["url"]
    assert url.startswith("https://mx.example.org/calendar/feed/") and url.endswith(".ics")
    assert run("calendar", "feed-url", "alice@example.org", "--data", str(data)).returncode == 2
    assert run("calendar", "feed-url", "alice@example.org", "--rotate", "--data", str(data)).returncode == 0
