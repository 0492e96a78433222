"""Pure sync planning: flag merge (conflict rule), folder plans, re-matching, folder mapping,
autoconfig parsing, back-off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from courriel.imapsync import discovery, plan
from courriel.imapsync.client import message_id_of

F = frozenset
SEEN, FLAGGED, ANSWERED = "\\Seen", "\\Flagged", "\\Answered"


@pytest.mark.parametrize(("base", "local", "remote", "merged"), [
    (F(), F(), F(), F()),
    (F(), F({SEEN}), F(), F({SEEN})),  # local change wins over no change
    (F(), F(), F({SEEN}), F({SEEN})),  # remote change wins over no change
    (F({SEEN}), F(), F({SEEN}), F()),  # local clear
    (F({SEEN}), F({SEEN}), F(), F()),  # remote clear
    (F(), F({SEEN}), F({FLAGGED}), F({SEEN, FLAGGED})),  # different flags: both kept
    (F({SEEN}), F({FLAGGED}), F({SEEN, ANSWERED}), F({FLAGGED, ANSWERED})),
    (F({SEEN}), F(), F(), F()),  # both cleared: agree
])
def test_merge_flags_table(base, local, remote, merged):
    assert plan.merge_flags(base, local, remote) == merged


flag_sets = st.frozensets(st.sampled_from([SEEN, FLAGGED, ANSWERED, "$Label1"]))


@given(flag_sets, flag_sets, flag_sets)
def test_merge_keeps_every_one_sided_change(base, local, remote):
    merged = plan.merge_flags(base, local, remote)
    for flag in base | local | remote:
        if (flag in local) != (flag in base):
            assert (flag in merged) == (flag in local)
        elif (flag in remote) != (flag in base):
            assert (flag in merged) == (flag in remote)
        else:
            assert (flag in merged) == (flag in base)
    assert plan.merge_flags(base, base, base) == base


def test_normalise_flags_drops_recent_and_bad_keywords():
    assert plan.normalise_flags([b"\\SEEN", b"\\Recent", b"$Junk", "bad(kw", "", "\\Unknown"]) == F({SEEN, "$Junk"})


def _mapped(*rows):
    return [plan.MappedMessage(remote, local, F(f)) for remote, local, f in rows]


def test_plan_folder_imports_deletes_and_merges():
    mapped = _mapped((1, 11, ()), (2, 12, (SEEN,)), (3, 13, ()), (4, 14, ()), (5, 15, ()))
    remote_uids = [1, 2, 4, 5, 6, 7]  # 3 gone remotely; 6, 7 new
    present = {11, 12, 13, 15}  # 14 gone locally
    result = plan.plan_folder(mapped, remote_uids,
                              remote_flags={1: F({FLAGGED}), 4: F({SEEN})},  # 4's change loses to deletion
                              local_flags={12: F(), 13: F({SEEN}), 15: F({ANSWERED})},  # 13's change loses too
                              local_present=present)
    assert result.to_import == [6, 7]
    assert result.delete_local == [13]
    assert result.delete_remote == [4]
    assert result.set_local == {11: F({FLAGGED})}
    assert result.set_remote == {2: F(), 5: F({ANSWERED})}
    assert result.agreed == {1: F({FLAGGED}), 2: F(), 5: F({ANSWERED})}
    assert sorted(result.forget) == [3, 4]


def test_plan_folder_gone_on_both_sides_is_only_forgotten():
    result = plan.plan_folder(_mapped((1, 11, ())), [], {}, {}, set())
    assert result.forget == [1] and not result.delete_local and not result.delete_remote


def test_plan_folder_without_changes_is_empty():
    mapped = _mapped((1, 11, (SEEN,)))
    assert plan.plan_folder(mapped, [1], {1: F({SEEN})}, {}, {11}).empty


def test_rematch_by_message_id_and_size():
    old = [(100, "<a@x>", 10), (101, "<b@x>", 20), (102, "", 30), (103, "<gone@x>", 5)]
    remote = [(7, "<b@x>", 20), (8, "<a@x>", 10), (9, "", 30), (10, "<a@x>", 11), (11, "<b@x>", 20)]
    result = plan.rematch(old, remote)
    assert result.matched == {100: 8, 101: 7}
    assert result.unmatched_rows == [102, 103]  # no Message-ID: never matched
    assert result.to_import == [9, 10, 11]


def test_map_folders_special_use_then_names():
    folders = [
        plan.RemoteFolder("INBOX", ".", F()),
        plan.RemoteFolder("Sent Messages", ".", F()),
        plan.RemoteFolder("Envoyés", ".", F({"\\sent"})),
        plan.RemoteFolder("[Gmail].All Mail", ".", F({"\\all"})),
        plan.RemoteFolder("Spam", ".", F()),
        plan.RemoteFolder("Work.Projects", ".", F()),
        plan.RemoteFolder("Odd/Name", ".", F()),
    ]
    targets = {t.remote: (t.local, t.special_use) for t in plan.map_folders(folders)}
    assert targets["INBOX"] == ("INBOX", None)
    assert targets["Envoyés"] == (None, "\\Sent")  # the RFC 6154 attribute beats a name guess
    assert targets["Sent Messages"] == ("Sent Messages", None)
    assert targets["Spam"] == (None, "\\Junk")
    assert targets["Work.Projects"] == ("Work/Projects", None)
    assert targets["Odd/Name"] == ("Odd_Name", None)
    assert "[Gmail].All Mail" not in targets


def test_uid_ranges_and_parse():
    assert plan.uid_ranges([5, 1, 2, 3, 9, 12, 13]) == "1:3,5,9,12:13"
    assert plan.parse_uid_ranges(b"1:3,7") == [(1, 3), (7, 7)]
    assert plan.parse_uid_ranges("9:7") == [(7, 9)]


def test_message_id_header():
    assert message_id_of(b"Message-ID:\r\n <a@b>\r\n\r\n") == "<a@b>"
    assert message_id_of(b"Subject: x\r\n") == ""


def test_retry_delay_and_pause():
    assert plan.retry_delay(0) == 0
    assert plan.retry_delay(1) == plan.BACKOFF_BASE
    assert plan.retry_delay(2) == 2 * plan.BACKOFF_BASE
    assert plan.retry_delay(50) == plan.BACKOFF_MAX
    assert not plan.should_pause(plan.PAUSE_AFTER_FAILURES - 1)
    assert plan.should_pause(plan.PAUSE_AFTER_FAILURES)


def test_progress_rate_and_eta():
    p = plan.progress(done=500, total=1500, imported=500, elapsed=10.0)
    assert p.rate == 50.0 and p.eta_seconds == 20.0
    assert plan.progress(10, 10, 0, None).eta_seconds == 0.0


AUTOCONFIG = """<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="example.net">
  <incomingServer type="pop3"><hostname>pop.example.net</hostname><port>995</port>
    <socketType>SSL</socketType><username>%EMAILADDRESS%</username></incomingServer>
  <incomingServer type="imap"><hostname>imap.example.net</hostname><port>143</port>
    <socketType>STARTTLS</socketType><username>%EMAILLOCALPART%</username>
    <authentication>password-cleartext</authentication></incomingServer>
  <incomingServer type="imap"><hostname>imap.example.net</hostname><port>993</port>
    <socketType>SSL</socketType><username>%EMAILLOCALPART%</username>
    <authentication>password-encrypted</authentication></incomingServer>
</emailProvider></clientConfig>"""


def test_parse_autoconfig_prefers_imap_over_tls():
    found = discovery.parse_autoconfig(AUTOCONFIG, "jo@example.net")
    assert found == discovery.ServerSettings("imap", "imap.example.net", 993, "ssl", "jo", "cram-md5", "autoconfig")


@pytest.mark.parametrize("text", ["<not xml", '<!DOCTYPE x [<!ENTITY a "b">]><clientConfig/>',
                                  "<clientConfig><incomingServer type='imap'><hostname>bad host</hostname>"
                                  "<port>993</port><socketType>SSL</socketType></incomingServer></clientConfig>"])
def test_parse_autoconfig_refuses_bad_documents(text):
    assert discovery.parse_autoconfig(text, "jo@example.net") is None


def test_provider_table_and_bad_address():
    assert discovery.from_table("Someone@GMAIL.com").host == "imap.gmail.com"
    assert discovery.from_table("a@unknown.example") is None
    with pytest.raises(discovery.DiscoveryError):
        discovery.split_address("no-at-sign")


def test_size_batches_bound_count_and_bytes():
    sized = [(1, 10), (2, 10), (3, 10), (4, 100), (5, 1), (6, 1)]
    assert plan.size_batches(sized, count=2, limit=1000) == [[1, 2], [3, 4], [5, 6]]
    assert plan.size_batches(sized, count=10, limit=25) == [[1, 2], [3], [4], [5, 6]]  # a large one alone
    assert plan.size_batches([], count=10, limit=25) == []


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=60), st.integers(1, 8), st.integers(1, 80))
def test_size_batches_keep_every_uid_in_order(sizes, count, limit):
    sized = list(enumerate(sizes, start=1))
    result = plan.size_batches(sized, count, limit)
    assert [uid for batch in result for uid in batch] == [uid for uid, _ in sized]
    for batch in result:
        assert len(batch) <= count
        assert len(batch) == 1 or sum(sizes[uid - 1] for uid in batch) <= limit
