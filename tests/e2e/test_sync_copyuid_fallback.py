"""A local move replayed on a real Dovecot when the COPYUID answer cannot be trusted (RFC 4315
§3: source and destination sets of different sizes): the copy is found by Message-ID and size
instead, so the message is neither uploaded nor downloaded again, and nothing is duplicated."""

from __future__ import annotations

from sqlalchemy import func, select
from sync_fixtures import dovecot_pop, fill, remote_message_ids, sync_env  # noqa: F401

from courriel.imapsync import plan
from courriel.imapsync.runner import AccountSync
from courriel.models import Blob


def test_untrusted_copyuid_falls_back_to_message_id(sync_env, monkeypatch):  # noqa: F811
    env = sync_env
    with env.imap() as imap:
        fill(imap, "INBOX", 4)
        imap.create('"Archive"')
    account = env.add_account()
    sync = AccountSync(env.db, env.store, env.data, account)
    refused = []

    def untrusted(source, dest, sent):
        refused.append((source, dest))
        return None  # as for "[COPYUID v 1 9:11]"

    try:
        sync.cycle()
        moved = "<INBOX.2@example.net>"
        inbox, archive = env.folder_id("INBOX"), env.folder_id("Archive")
        [info] = [s for s in env.store.summaries(inbox) if s.message_id == moved]
        env.store.move(inbox, [info.uid], archive)
        with env.db.read() as session:
            blobs_before = session.scalar(select(func.count()).select_from(Blob))
        monkeypatch.setattr(plan, "copyuid_pairs", untrusted)
        sync.cycle()
        sync.cycle()  # a second pass changes nothing more
    finally:
        sync.close()
    assert refused  # the replay did go through the refused COPYUID
    assert env.local_message_ids("Archive") == [moved]
    with env.imap() as imap:
        assert remote_message_ids(imap, "Archive") == [moved]  # one copy: not uploaded again
        assert moved not in remote_message_ids(imap, "INBOX")
    with env.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Blob)) == blobs_before  # not downloaded again
