"""`courriel queue ...` against a real data directory: list/show/hold/release/retry/flush/delete, --json."""

from __future__ import annotations

import json
import os

import pytest

from courriel import config as config_mod
from courriel.blobs import BlobStore
from courriel.cli import main as cli_main
from courriel.db import Database
from courriel.queue import spool, stats
from courriel.queue.spool import Envelope, EnvelopeRecipient

MESSAGE = b"From: a@example.org\r\nSubject: q\r\n\r\nbody\r\n"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("COURRIEL_") and not name.startswith("COURRIEL_PASSWORDS_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    assert cli_main(["init", "--data", str(data)]) == 0
    config = config_mod.load(data)
    db = Database(config.database_url)
    yield data, db, BlobStore(config.blob_dir, db)
    db.dispose()


def _cli(capsys, *args) -> tuple[int, object]:
    capsys.readouterr()
    status = cli_main(list(args))
    out = capsys.readouterr().out
    return status, (json.loads(out) if "--json" in args and status == 0 else out)


def test_queue_commands(installed, capsys):
    data, db, blobs = installed
    d = ["--data", str(data)]
    first = spool.accept(db, blobs, Envelope("a@example.org", (EnvelopeRecipient("b@remote.test", notify="NEVER"),),
                                             source="submission"), MESSAGE)
    second = spool.accept(db, blobs, Envelope("", ("c@remote.test",), source="dsn"), MESSAGE)

    status, listing = _cli(capsys, "queue", "list", "--json", *d)
    assert status == 0
    assert sorted(m["id"] for m in listing["messages"]) == sorted([first, second])
    assert listing["counts"]["incoming"] == 2
    status, text = _cli(capsys, "queue", "list", *d)
    assert first in text and "<>" in text

    status, shown = _cli(capsys, "queue", "show", first.lower(), "--json", *d)
    assert shown["recipients"][0] == {"address": "b@remote.test", "state": "pending", "attempts": 0,
                                      "last_reply": None, "notify": "NEVER", "orcpt": None, "mailbox_id": None}

    assert _cli(capsys, "queue", "hold", first, "--json", *d)[1] == {"id": first, "state": "hold"}
    assert spool.get(db, first).state == "hold"
    assert stats.size_by_state(db)["hold"] == 1
    assert _cli(capsys, "queue", "release", first, *d)[0] == 0
    assert spool.get(db, first).state == "deferred"
    assert _cli(capsys, "queue", "release", first, *d)[0] == 2  # not on hold any more

    assert _cli(capsys, "queue", "retry", first, "--json", *d)[1]["due"] == "now"
    assert _cli(capsys, "queue", "flush", "--json", *d)[1] == {"flushed": 1}

    assert _cli(capsys, "queue", "delete", second, "--json", *d)[1] == {"id": second, "deleted": True}
    assert spool.get(db, second) is None
    assert _cli(capsys, "queue", "show", second, *d)[0] == 2
    assert stats.oldest_age_seconds(db) >= 0
    ages = stats.oldest_age_by_state(db)
    assert set(ages) == {"incoming", "active", "deferred", "hold", "corrupt"}
    assert ages["deferred"] > 0 and ages["incoming"] == 0.0


@pytest.mark.parametrize("bad", ["../etc", "XYZ!", ""])
def test_bad_queue_ids_change_nothing(installed, capsys, bad):
    data, db, blobs = installed
    queue_id = spool.accept(db, blobs, Envelope("a@example.org", ("b@remote.test",), source="submission"), MESSAGE)
    assert cli_main(["queue", "delete", bad, "--data", str(data)]) == 2
    assert "not a queue id" in capsys.readouterr().err
    assert spool.get(db, queue_id) is not None
