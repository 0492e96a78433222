"""The batched import (`Store.append_batch`, one transaction per batch with its UID map rows)
against a real Dovecot: kill -9 inside a batch transaction, before its commit, loses the
whole batch and nothing else; the next run imports exactly the rest (no duplicate, no gap)."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import func, select
from sync_fixtures import dovecot_pop, fill, remote_message_ids, sync_env  # noqa: F401

from courriel.imapsync import runner
from courriel.models import Blob, Message, SyncMessage


def _counts(env) -> tuple[int, int, int]:
    with env.db.read() as session:
        return (session.scalar(select(func.count()).select_from(Message)),
                session.scalar(select(func.count()).select_from(SyncMessage)),
                session.scalar(select(func.count()).select_from(Blob)))


def test_kill_inside_a_batch_transaction_then_resume(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 450)
    account = env.add_account()
    command = [sys.executable, "-c", "import sys; from courriel.cli import main; sys.exit(main())",
               "sync", "run", "--once", str(account), "--data", str(env.data)]
    environ = {**os.environ, "PYTHONSAFEPATH": "1"}
    # SIGKILL in the third batch, after its message rows were inserted and before the commit.
    crashed = subprocess.run(command, capture_output=True, timeout=120,
                             env={**environ, "COURRIEL_FAULT": "store.append_batch.after_insert:3"})
    assert crashed.returncode == -9, crashed.stderr
    batch = runner.FETCH_BATCH
    assert _counts(env) == (2 * batch, 2 * batch, 2 * batch)  # two whole batches, map rows with them
    uids = [m.uid for m in env.store.list_messages(env.folder_id("INBOX"))]
    assert uids == list(range(uids[0], uids[0] + 2 * batch))  # consecutive UIDs
    status = subprocess.run(command, capture_output=True, env=environ, timeout=120)
    assert status.returncode == 0, status.stderr
    local = env.local_message_ids("INBOX")
    assert len(local) == len(set(local)) == 450
    with env.imap() as imap:
        assert local == remote_message_ids(imap, "INBOX")
    assert _counts(env) == (450, 450, 450)
