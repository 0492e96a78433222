"""IMAP QUOTA (RFC 9208) and STATUS SIZE (RFC 8438) over a real socket to the IMAP role process.

A user with a 10 KiB limit sees its usage in GETQUOTA / GETQUOTAROOT, cannot APPEND or COPY past the
limit (NO [OVERQUOTA], nothing stored), can still MOVE (usage does not grow), and cannot SETQUOTA;
an administrator's mailbox can, on its own root and on other mailboxes' roots named by address.
A user without a limit has no quota root. A user with a MESSAGE limit (RFC 9208 §5.2) sees the count,
cannot APPEND or COPY past it, can still MOVE; with both limits GETQUOTA lists both resources.
"""

from __future__ import annotations

import re

import pytest
from imap_server import imap_server  # noqa: F401
from sqlalchemy import update
from store_fixtures import sample_message

from courriel.models import Mailbox, Role, User

pytestmark = pytest.mark.timeout(60)

LIMIT = 10 * 1024


MESSAGE_LIMIT = 2


def _empty_user(imap_server, local, **limits):  # noqa: F811
    imap_server.clear()
    mailbox_id = imap_server.extra_mailboxes.get(local) or imap_server.add_mailbox(local)
    for folder in imap_server.store.list_folders(mailbox_id):
        uids = [m.uid for m in imap_server.store.list_messages(folder.id)]
        if uids:
            imap_server.store.set_flags(folder.id, uids, "add", ["\\Deleted"])
            imap_server.store.expunge(folder.id)
    with imap_server.db.write() as session:
        session.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(**limits))
    return imap_server, mailbox_id, f"{local}@{imap_server.address.split('@', 1)[1]}"


@pytest.fixture
def quota_user(imap_server):  # noqa: F811
    return _empty_user(imap_server, "quota-user", quota_bytes=LIMIT, quota_messages=0)


@pytest.fixture
def message_quota_user(imap_server):  # noqa: F811
    return _empty_user(imap_server, "count-user", quota_bytes=0, quota_messages=MESSAGE_LIMIT)


def _login(server, address):
    client = server.client()
    client.login(address, server.password)
    return client


def test_quota_capability_and_unlimited_user(imap_server):  # noqa: F811
    imap_server.clear()
    client = imap_server.login()
    caps = client.capabilities
    assert "QUOTA" in caps and "QUOTA=RES-STORAGE" in caps and "QUOTA=RES-MESSAGE" in caps
    typ, _ = client._simple_command("GETQUOTAROOT", "INBOX")
    assert typ == "OK"
    assert client.untagged_responses.pop("QUOTAROOT") == [b"INBOX"]  # no limit: no quota root
    assert "QUOTA" not in client.untagged_responses
    typ, data = client._simple_command("GETQUOTA", '""')
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    client.logout()


def test_quota_usage_limits_and_status_size(quota_user):
    server, mailbox_id, address = quota_user
    message = sample_message(1, body=b"x" * 3000 + b"\r\n")
    server.store.deliver(mailbox_id, message)
    used = len(message)
    client = _login(server, address)
    typ, _ = client._simple_command("GETQUOTAROOT", "INBOX")
    assert typ == "OK"
    assert client.untagged_responses.pop("QUOTAROOT") == [b'INBOX ""']
    expected = f'"" (STORAGE {(used + 1023) // 1024} {LIMIT // 1024})'.encode()
    assert client.untagged_responses.pop("QUOTA") == [expected]
    typ, _ = client._simple_command("GETQUOTA", '""')
    assert typ == "OK" and client.untagged_responses.pop("QUOTA") == [expected]
    typ, data = client._simple_command("SETQUOTA", '""', f"(STORAGE {LIMIT})")
    assert typ == "NO" and b"[NOPERM]" in data[0]

    # RFC 8438: STATUS SIZE is the total octets of the folder.
    typ, data = client.status("INBOX", "(MESSAGES SIZE)")
    assert typ == "OK" and re.search(rb"SIZE (\d+)", data[0]).group(1) == str(used).encode()

    # APPEND past the limit: NO [OVERQUOTA], nothing stored.
    big = sample_message(2, body=b"y" * 8000 + b"\r\n")
    typ, data = client.append("INBOX", None, None, big)
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    assert len(server.store.list_messages(server.inbox_id(mailbox_id))) == 1
    small = sample_message(3, body=b"z" * 2000 + b"\r\n")
    assert client.append("INBOX", None, None, small)[0] == "OK"

    # COPY past the limit: NO [OVERQUOTA], nothing copied; MOVE does not grow usage and works.
    client.select("INBOX")
    typ, data = client.copy("1:*", "Trash")
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    trash = server.store.get_folder(mailbox_id, "Trash").id
    assert server.store.list_messages(trash) == []
    typ, _ = client._simple_command("MOVE", "1", "Trash")
    assert typ == "OK" and len(server.store.list_messages(trash)) == 1
    assert server.store.quota_usage(mailbox_id).used_bytes == used + len(small)
    typ, data = client.copy("1", "Trash")
    assert typ == "OK"  # a small copy still fits
    client.logout()


def test_message_limit_refuses_append_and_copy_allows_move(message_quota_user):
    server, mailbox_id, address = message_quota_user
    server.store.deliver(mailbox_id, sample_message(1))
    client = _login(server, address)
    typ, _ = client._simple_command("GETQUOTAROOT", "INBOX")
    assert typ == "OK" and client.untagged_responses.pop("QUOTAROOT") == [b'INBOX ""']
    # RFC 9208 §4.1: only the resources with a limit are listed; MESSAGE counts messages (§5.2).
    assert client.untagged_responses.pop("QUOTA") == [f'"" (MESSAGE 1 {MESSAGE_LIMIT})'.encode()]
    typ, data = client._simple_command("SETQUOTA", '""', "(MESSAGE 100)")
    assert typ == "NO" and b"[NOPERM]" in data[0]

    assert client.append("INBOX", None, None, sample_message(2))[0] == "OK"  # the limit is reached
    typ, data = client.append("INBOX", None, None, sample_message(3))
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    assert len(server.store.list_messages(server.inbox_id(mailbox_id))) == MESSAGE_LIMIT

    client.select("INBOX")
    typ, data = client.copy("1", "Trash")
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    trash = server.store.get_folder(mailbox_id, "Trash").id
    assert server.store.list_messages(trash) == []
    # RFC 9208 §5: MOVE within the quota root does not change usage, so it stays allowed.
    typ, _ = client._simple_command("MOVE", "1", "Trash")
    assert typ == "OK" and len(server.store.list_messages(trash)) == 1
    assert server.store.quota_usage(mailbox_id).messages == MESSAGE_LIMIT
    typ, data = client.status("INBOX", "(MESSAGES DELETED SIZE)")
    size = sum(m.size for m in server.store.list_messages(server.inbox_id(mailbox_id)))
    assert typ == "OK" and re.search(rb"MESSAGES 1 DELETED 0 SIZE (\d+)", data[0]).group(1) == str(size).encode()

    with server.db.write() as session:
        session.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(quota_bytes=LIMIT))
    used = server.store.quota_usage(mailbox_id).used_bytes
    typ, _ = client._simple_command("GETQUOTA", '""')
    expected = f'"" (STORAGE {(used + 1023) // 1024} {LIMIT // 1024} MESSAGE {MESSAGE_LIMIT} {MESSAGE_LIMIT})'
    assert typ == "OK" and client.untagged_responses.pop("QUOTA") == [expected.encode()]
    client.logout()


def test_administrator_mailbox_sets_and_reads_other_roots(quota_user):
    """RFC 9208 §4.1.3: SETQUOTA from a mailbox owned by a console administrator. The listed limits
    replace the root's limits (a resource left out becomes unlimited), the answer carries the new
    QUOTA; another mailbox's root is named by its address. A user's mailbox cannot name it."""
    server, user_id, user_address = quota_user
    _, admin_mailbox, admin_address = _empty_user(server, "postmaster-admin", quota_bytes=0, quota_messages=0)
    user_client = _login(server, user_address)
    typ, data = user_client._simple_command("GETQUOTA", f'"{admin_address}"')
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]  # a user cannot probe other roots
    with server.db.write() as session:
        owner = User(name="chief", role=Role.ADMIN)
        session.add(owner)
        session.flush()
        session.execute(update(Mailbox).where(Mailbox.id == admin_mailbox).values(user_id=owner.id))

    client = _login(server, admin_address)
    typ, _ = client._simple_command("SETQUOTA", f'"{user_address}"', "(STORAGE 64 MESSAGE 5)")
    expected = f'"{user_address}" (STORAGE 0 64 MESSAGE 0 5)'.encode()
    assert typ == "OK" and client.untagged_responses.pop("QUOTA") == [expected]
    with server.db.read() as session:
        row = session.get(Mailbox, user_id)
        assert (row.quota_bytes, row.quota_messages) == (64 * 1024, 5)
    typ, _ = client._simple_command("SETQUOTA", f'"{user_address}"', "(MESSAGE 7)")  # STORAGE dropped
    assert typ == "OK" and client.untagged_responses.pop("QUOTA") == [f'"{user_address}" (MESSAGE 0 7)'.encode()]
    typ, _ = client._simple_command("GETQUOTA", f'"{user_address}"')
    assert typ == "OK" and client.untagged_responses.pop("QUOTA") == [f'"{user_address}" (MESSAGE 0 7)'.encode()]
    typ, data = client._simple_command("SETQUOTA", f'"{user_address}"', "(MAILBOX 3)")
    assert typ == "NO" and b"[LIMIT]" in data[0]
    typ, data = client._simple_command("SETQUOTA", '"nobody@nowhere.test"', "(MESSAGE 3)")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    typ, _ = client._simple_command("SETQUOTA", '""', "(MESSAGE 9)")  # its own root
    assert typ == "OK" and client.untagged_responses.pop("QUOTA") == [b'"" (MESSAGE 0 9)']
    typ, _ = client._simple_command("SETQUOTA", f'"{user_address}"', "()")  # every limit removed
    assert typ == "OK" and "QUOTA" not in client.untagged_responses
    with server.db.read() as session:
        row = session.get(Mailbox, user_id)
        assert (row.quota_bytes, row.quota_messages) == (0, 0)
    client.logout()
    user_client.logout()
