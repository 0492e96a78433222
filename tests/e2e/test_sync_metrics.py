"""Sync metrics against a real Dovecot: a run's result and copied messages are counted
(`courriel_sync_runs_total`, `courriel_sync_messages_total`) and the import progress per
account is exported at scrape time (`courriel_sync_import_{done,total}_messages`)."""

from __future__ import annotations

import threading
import time

from prometheus_client.parser import text_string_to_metric_families
from sync_fixtures import dovecot_pop, fill, sync_env  # noqa: F401

from courriel import config as config_mod
from courriel import metrics
from courriel.imapsync.runner import AccountSync


def _samples(env) -> dict:
    config = config_mod.load(env.data)
    text = metrics.Exporter(config, env.db, environ={}).render()[0].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_sync_runs_messages_and_progress_are_exported(sync_env):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 7)
        fill(imap, "Work", 4)
    account = env.add_account()
    label = (("account", str(account)),)
    before = _samples(env)
    assert ("courriel_sync_import_total_messages", label) not in before  # nothing scanned yet
    stop = threading.Event()
    sync = AccountSync(env.db, env.store, env.data, account, poll_interval=600)
    thread = threading.Thread(target=sync.run, args=(stop, None), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            found = _samples(env)
            runs = ("courriel_sync_runs_total", (*label, ("result", "ok")))
            if found.get(runs, 0) > before.get(runs, 0):  # counters are per process: compare
                break
            time.sleep(0.1)  # poll interval, bounded by the deadline
        else:
            raise AssertionError("no successful run counted")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    assert found[("courriel_sync_messages_total", label)] - before.get(("courriel_sync_messages_total", label), 0) == 11
    assert found[("courriel_sync_import_done_messages", label)] == 11
    assert found[("courriel_sync_import_total_messages", label)] == 11
    assert found[("courriel_sync_last_success_timestamp_seconds", label)] > 0
