"""Pure checks of the sync engine's defences against hostile servers and settings: uid-sets kept
as ranges (VANISHED, COPYUID, RFC 4315 §3), server text cleaned, loopback-only plain text,
discovery refusing plain text and flagging servers outside the user's domain (RFC 6186 §6)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from courriel.imapsync import accounts, discovery, plan


def test_huge_uid_range_stays_one_range():
    started = time.monotonic()
    ranges = plan.parse_uid_ranges(b"1:4294967295")
    assert ranges == [(1, plan.UID_MAX)]
    assert plan.uid_count(ranges) == plan.UID_MAX
    # Expansion is bounded by the UIDs we know, not by the server's claim.
    assert plan.uids_within(ranges, {5, 9, 12}) == {5, 9, 12}
    assert plan.uids_within(plan.parse_uid_ranges("2:6,10:11"), range(1, 14)) == {2, 3, 4, 5, 6, 10, 11}
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("text", ["", "0", "1:0", "4294967296", "1:*", "a:3", "1,,2", "1:2:3", "١"])
def test_bad_uid_sets_are_refused(text):
    with pytest.raises(plan.UidSetError):
        plan.parse_uid_ranges(text)


def test_copyuid_pairs_in_order_and_refuses_mismatches():
    assert plan.copyuid_pairs("4,2", "10:11", [2, 4]) == {4: 10, 2: 11}  # RFC 4315 §3: listed order
    assert plan.copyuid_pairs("1:3", "7", [1, 2, 3]) is None  # unequal sizes: never zipped
    assert plan.copyuid_pairs("1", "7:9", [1]) is None
    assert plan.copyuid_pairs("1:4294967295", "1:4294967295", [1]) is None  # more than we copied
    assert plan.copyuid_pairs("8", "20", [1]) is None  # a UID we did not copy
    assert plan.copyuid_pairs("1,1", "5:6", [1, 2]) is None  # repeated UID
    assert plan.copyuid_pairs("x", "1", [1]) is None


def test_printable_strips_controls_and_bounds():
    text = "NO \x1b[31mred\x1b[0m\r\nFAKE 2026 log line\x00\u202eevil\x85" + "x" * 5000
    cleaned = plan.printable(text, 300)
    assert len(cleaned) <= 300
    assert not any(ord(c) < 32 or 127 <= ord(c) < 160 or c == "\u202e" for c in cleaned)
    assert cleaned.startswith("NO [31mred [0m FAKE 2026 log line evil")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_plain_text_allowed_for_loopback(host):
    accounts.validate("imap", host, 143, "none", "plain")


@pytest.mark.parametrize("host", ["imap.example.net", "10.0.0.1", "192.168.1.2", "::2", "localhost.example.net",
                                  "128.0.0.1"])
def test_plain_text_refused_elsewhere(host):
    with pytest.raises(accounts.AccountError, match="loopback"):
        accounts.validate("imap", host, 143, "none", "plain")
    accounts.validate("imap", host, 993, "ssl", "plain")


def test_accounts_docstring_states_the_key_threat_model():
    doc = accounts.__doc__
    assert "sync.key" in doc and "database alone" in doc and "courriel backup" in doc


PLAIN_ONLY = """<clientConfig version="1.1"><emailProvider id="example.net">
  <incomingServer type="imap"><hostname>imap.example.net</hostname><port>143</port>
    <socketType>plain</socketType></incomingServer>
</emailProvider></clientConfig>"""


def test_autoconfig_plain_entries_are_never_selected():
    assert discovery.parse_autoconfig(PLAIN_ONLY, "jo@example.net") is None
    mixed = PLAIN_ONLY.replace("</emailProvider>", """<incomingServer type="pop3"><hostname>pop.example.net
      </hostname><port>995</port><socketType>SSL</socketType></incomingServer></emailProvider>""")
    found = discovery.parse_autoconfig(mixed, "jo@example.net")
    assert (found.protocol, found.security, found.confirm) == ("pop3", "ssl", "")


def test_autoconfig_server_outside_the_domain_needs_confirmation():
    text = PLAIN_ONLY.replace("imap.example.net", "mail.elsewhere.test").replace("plain", "SSL")
    found = discovery.parse_autoconfig(text, "jo@example.net")
    assert found.host == "mail.elsewhere.test" and "RFC 6186" in found.confirm
    assert discovery.within_domain("imap.Example.NET.", "example.net")
    assert discovery.within_domain("example.net", "example.net")
    assert not discovery.within_domain("badexample.net", "example.net")


@pytest.mark.parametrize("url", ["http://autoconfig.example.net/x", "file:///etc/passwd", "ftp://a.test/x"])
def test_autoconfig_redirect_to_another_scheme_is_refused(url):
    request = urllib.request.Request("https://autoconfig.example.net/mail/config-v1.1.xml")
    with pytest.raises(urllib.error.HTTPError, match="non-https"):
        discovery._HttpsOnlyRedirects().redirect_request(request, None, 302, "Found", {}, url)
    assert discovery.from_autoconfig("jo@example.net", url="http://127.0.0.1:1/x") is None  # never http


def test_provider_table_is_kept():
    assert discovery.from_table("jo@proton.me").security == "starttls"
    assert discovery.from_table("jo@gmail.com").confirm == ""
