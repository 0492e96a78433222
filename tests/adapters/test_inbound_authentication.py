"""SPF, DKIM and DMARC verdicts on messages signed by dkimpy, with the zone served on loopback DNS."""

from __future__ import annotations

import asyncio
import random
import re

import authres
import authres.dmarc
import pytest
from dns_test_server import dns_server  # noqa: F401 - pytest fixture

from courriel import dkim
from courriel.dns.records import DkimPublicKey, dkim_value
from courriel.dns.resolver import Resolver
from courriel.smtp.authentication import (
    aligned,
    authenticate,
    authenticate_async,
    organizational_domain,
    parse_dmarc_record,
    remove_forged_results,
)

AUTHSERV_ID = "mx.receiver.example"
CLIENT = "192.0.2.10"
OTHER_CLIENT = "203.0.113.66"


def message(from_address: str = "alice@example.org", body: bytes = b"Hello.\r\n") -> bytes:
    return (
        f"From: Alice <{from_address}>\r\n"
        "To: bob@receiver.example\r\n"
        "Subject: authentication test\r\n"
        "Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
        "Message-ID: <auth-test@example.org>\r\n"
        "\r\n"
    ).encode() + body


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Keys by (domain, selector): generated once, published by `publish` in each test's zone."""
    directory = tmp_path_factory.mktemp("keys")
    made = {}
    for domain, selector, algorithm in [
        ("example.org", "rsa1", "rsa-sha256"),
        ("example.org", "ed1", "ed25519-sha256"),
        ("mail.example.org", "sub", "rsa-sha256"),
        ("lists.example", "list", "rsa-sha256"),
        ("news.example.org", "news", "ed25519-sha256"),
    ]:
        path = directory / f"{domain}-{selector}.pem"
        public_key = dkim.generate_key(path, algorithm)
        made[(domain, selector)] = (dkim.SigningKey.load(path, domain, selector, algorithm), public_key)
    return made


@pytest.fixture
def zone(dns_server, keys):  # noqa: F811
    """The sender's zone: SPF allows CLIENT, DKIM keys published, DMARC p=quarantine."""
    for (domain, selector), (key, public_key) in keys.items():
        dns_server.add(f"{selector}._domainkey.{domain}", "TXT",
                       dkim_value(DkimPublicKey(selector, key.algorithm, public_key)))
    dns_server.add("example.org", "TXT", f"v=spf1 ip4:{CLIENT} -all")
    dns_server.add("bounces.example.org", "TXT", f"v=spf1 ip4:{CLIENT} -all")
    dns_server.add("_dmarc.example.org", "TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org")
    return dns_server


@pytest.fixture
def resolver(dns_server):  # noqa: F811
    return Resolver([dns_server.nameserver], timeout=0.5)


def judge(resolver, data, mail_from="alice@example.org", client=CLIENT, helo="out.example.org", rng=None):
    verdict = authenticate(data, client_ip=client, helo=helo, mail_from=mail_from, resolver=resolver,
                           authserv_id=AUTHSERV_ID, rng=rng)
    header = verdict.header_field.decode()
    parsed = parse_header(header)
    assert parsed.authserv_id == AUTHSERV_ID
    return verdict, header, parsed


def parse_header(field: str):
    unfolded = re.sub(r"\r\n[ \t]+", " ", field).rstrip("\r\n")
    return authres.FeatureContext(authres.dmarc).parse(unfolded)


def clause(parsed, method, index=0):
    return [r for r in parsed.results if r.method == method][index]


def signed(keys, data, *pairs):
    return dkim.sign(data, [keys[pair][0] for pair in pairs])


# ---------------------------------------------------------------------- SPF
@pytest.mark.parametrize(
    ("record", "client", "expected"),
    [
        (f"v=spf1 ip4:{CLIENT} -all", CLIENT, "pass"),
        (f"v=spf1 ip4:{CLIENT} -all", OTHER_CLIENT, "fail"),
        (f"v=spf1 ip4:{CLIENT} ~all", OTHER_CLIENT, "softfail"),
        (f"v=spf1 ip4:{CLIENT} ?all", OTHER_CLIENT, "neutral"),
        (None, CLIENT, "none"),
        ("v=spf1 ip4:not-an-address -all", CLIENT, "permerror"),
        ("servfail", CLIENT, "temperror"),
        ("timeout", CLIENT, "temperror"),
    ],
)
def test_spf_results(dns_server, resolver, record, client, expected):  # noqa: F811
    if record in ("servfail", "timeout"):
        dns_server.add("sender.example", "TXT", "v=spf1 -all")
        dns_server.fail("sender.example", record)
    elif record:
        dns_server.add("sender.example", "TXT", record)
    else:
        dns_server.add("sender.example", "A", "198.51.100.1")
    verdict, header, parsed = judge(resolver, message("alice@sender.example"), "alice@sender.example", client)
    assert verdict.spf.result == expected
    assert verdict.spf.identity == "mailfrom" and verdict.spf.domain == "sender.example"
    spf_clause = clause(parsed, "spf")
    assert spf_clause.result == expected
    assert spf_clause.smtp_mailfrom == "sender.example"
    assert f"spf={expected} smtp.mailfrom=sender.example" in header
    assert ("sender.example.", "TXT") in dns_server.queries


def test_spf_null_sender_checks_helo(zone, resolver):
    zone.add("out.example.org", "TXT", f"v=spf1 ip4:{CLIENT} -all")
    verdict, header, parsed = judge(resolver, message(), mail_from="", helo="out.example.org")
    assert (verdict.spf.result, verdict.spf.identity, verdict.spf.domain) == ("pass", "helo", "out.example.org")
    assert clause(parsed, "spf").smtp_helo == "out.example.org"
    assert "spf=pass smtp.helo=out.example.org" in header
    verdict, _, _ = judge(resolver, message(), mail_from="", helo="[192.0.2.10]")
    assert verdict.spf.result == "none"


# ---------------------------------------------------------------------- DKIM and DMARC
def test_dmarc_pass_with_spf_and_dkim(zone, resolver, keys):
    verdict, header, parsed = judge(resolver, signed(keys, message(), ("example.org", "rsa1"),
                                                     ("example.org", "ed1")))
    assert [r.result for r in verdict.dkim] == ["pass", "pass"]
    assert verdict.dmarc.result == "pass" and verdict.dmarc.disposition == "none"
    assert verdict.dmarc.spf_aligned and verdict.dmarc.dkim_aligned
    assert [clause(parsed, "dkim", i).header_d for i in range(2)] == ["example.org", "example.org"]
    assert {clause(parsed, "dkim", i).header_a for i in range(2)} == {"rsa-sha256", "ed25519-sha256"}
    assert clause(parsed, "dmarc").result == "pass"
    assert clause(parsed, "dmarc").header_from == "example.org"
    assert "dmarc=pass (p=quarantine dis=none) header.from=example.org" in header
    assert re.search(r"header\.b=\"?[A-Za-z0-9+/=]{8}", header)


def test_dmarc_pass_by_dkim_alone_when_spf_fails(zone, resolver, keys):
    verdict, header, _ = judge(resolver, signed(keys, message(), ("example.org", "rsa1")), client=OTHER_CLIENT)
    assert verdict.spf.result == "fail"
    assert verdict.dmarc.result == "pass" and verdict.dmarc.dkim_aligned and not verdict.dmarc.spf_aligned
    assert "spf=fail" in header and "dkim=pass" in header and "dmarc=pass" in header


def test_dmarc_fail_quarantine(zone, resolver, keys):
    verdict, header, parsed = judge(resolver, message(), client=OTHER_CLIENT)
    assert verdict.dkim == ()
    assert (verdict.dmarc.result, verdict.dmarc.policy, verdict.dmarc.disposition) == ("fail", "quarantine",
                                                                                       "quarantine")
    assert clause(parsed, "dkim").result == "none"
    assert "dmarc=fail (p=quarantine dis=quarantine) header.from=example.org" in header


def test_dmarc_fail_reject_and_pct_sampling(zone, resolver, keys):
    zone.remove("_dmarc.example.org")
    zone.add("_dmarc.example.org", "TXT", "v=DMARC1; p=reject")
    forged = signed(keys, message(), ("lists.example", "list"))  # valid, but not aligned with From
    verdict, header, _ = judge(resolver, forged, client=OTHER_CLIENT)
    assert verdict.dkim[0].result == "pass"
    assert (verdict.dmarc.result, verdict.dmarc.disposition) == ("fail", "reject")
    assert "dmarc=fail (p=reject dis=reject)" in header
    zone.remove("_dmarc.example.org")
    zone.add("_dmarc.example.org", "TXT", "v=DMARC1; p=reject; pct=0")
    verdict, header, _ = judge(resolver, forged, client=OTHER_CLIENT, rng=random.Random(1))
    assert (verdict.dmarc.policy, verdict.dmarc.disposition) == ("reject", "quarantine")  # RFC 7489 §6.6.4
    assert "dmarc=fail (p=reject dis=quarantine)" in header


def test_any_aligned_signature_passes_dmarc(zone, resolver, keys):
    """A broken first signature (list footer) and a valid aligned second one: dmarc=pass."""
    inner = signed(keys, message(), ("example.org", "rsa1"))
    broken = dkim.signature_field(message(body=b"other body\r\n"), keys[("lists.example", "list")][0]) + inner
    verdict, header, parsed = judge(resolver, broken, client=OTHER_CLIENT)
    assert [(r.result, r.domain) for r in verdict.dkim] == [("fail", "lists.example"), ("pass", "example.org")]
    assert verdict.dmarc.result == "pass"
    assert clause(parsed, "dkim", 0).result == "fail" and clause(parsed, "dkim", 1).result == "pass"
    assert "dmarc=pass" in header


@pytest.mark.parametrize(("mode", "expected"), [("r", "pass"), ("s", "fail")])
def test_relaxed_and_strict_alignment(zone, resolver, keys, mode, expected):
    zone.remove("_dmarc.example.org")
    zone.add("_dmarc.example.org", "TXT", f"v=DMARC1; p=reject; adkim={mode}; aspf={mode}")
    data = signed(keys, message(), ("mail.example.org", "sub"))  # d=mail.example.org, From example.org
    verdict, header, _ = judge(resolver, data, mail_from="bounce@bounces.example.org")
    assert verdict.spf.result == "pass" and verdict.spf.domain == "bounces.example.org"
    assert verdict.dkim[0].result == "pass"
    assert verdict.dmarc.result == expected
    assert verdict.dmarc.spf_aligned == verdict.dmarc.dkim_aligned == (mode == "r")
    assert f"dmarc={expected}" in header


def test_organizational_domain_fallback_and_sp(zone, resolver, keys):
    data = message("news@news.example.org")
    verdict, header, _ = judge(resolver, data, mail_from="news@news.example.org", client=OTHER_CLIENT)
    assert verdict.dmarc.record_domain == "example.org"  # no _dmarc.news.example.org
    assert (verdict.dmarc.result, verdict.dmarc.policy) == ("fail", "quarantine")
    assert "header.from=news.example.org" in header
    zone.remove("_dmarc.example.org")
    zone.add("_dmarc.example.org", "TXT", "v=DMARC1; p=quarantine; sp=reject")
    verdict, header, _ = judge(resolver, data, mail_from="news@news.example.org", client=OTHER_CLIENT)
    assert (verdict.dmarc.policy, verdict.dmarc.disposition) == ("reject", "reject")
    assert "dmarc=fail (p=reject dis=reject)" in header
    passing = signed(keys, data, ("news.example.org", "news"))
    verdict, header, _ = judge(resolver, passing, mail_from="news@news.example.org", client=OTHER_CLIENT)
    assert verdict.dmarc.result == "pass" and "dmarc=pass" in header
    # A record at the From domain itself takes precedence, with its own p.
    zone.add("_dmarc.news.example.org", "TXT", "v=DMARC1; p=none")
    verdict, header, _ = judge(resolver, data, mail_from="news@news.example.org", client=OTHER_CLIENT)
    assert (verdict.dmarc.record_domain, verdict.dmarc.policy, verdict.dmarc.disposition) == (
        "news.example.org", "none", "none")


def test_dmarc_none_and_temperror(zone, resolver, keys):
    zone.add("nodmarc.example", "TXT", f"v=spf1 ip4:{CLIENT} -all")
    verdict, header, _ = judge(resolver, message("a@nodmarc.example"), mail_from="a@nodmarc.example")
    assert verdict.dmarc.result == "none" and "dmarc=none" in header
    zone.fail("_dmarc.example.org", "servfail")
    verdict, header, _ = judge(resolver, message(), client=OTHER_CLIENT)
    assert (verdict.dmarc.result, verdict.dmarc.disposition) == ("temperror", "none")
    assert "dmarc=temperror" in header
    zone.fail("_dmarc.example.org", None)
    zone.fail("rsa1._domainkey.example.org", "timeout")
    verdict, header, _ = judge(resolver, signed(keys, message(), ("example.org", "rsa1")), client=OTHER_CLIENT)
    assert verdict.dkim[0].result == "temperror" and "dkim=temperror" in header
    assert verdict.dmarc.result == "temperror" and verdict.dmarc.disposition == "none"


def test_unusable_from_is_permerror(zone, resolver):
    two_froms = b"From: a@example.org\r\nFrom: b@other.example\r\n" + message()
    verdict, header, _ = judge(resolver, two_froms)
    assert verdict.dmarc.result == "permerror" and "dmarc=permerror" in header
    no_from = b"Subject: x\r\n\r\nbody\r\n"
    verdict, _, _ = judge(resolver, no_from)
    assert verdict.dmarc.result == "permerror"


def test_hostile_signature_values_do_not_reach_the_header(zone, resolver):
    hostile = (b'DKIM-Signature: v=1; a=rsa-sha256; d=example.org" dkim=pass (x; s=a b;'
               b" i=x y@evil dkim=pass; h=from; bh=AAAA; b=AAAA\r\n" + message())
    verdict, header, parsed = judge(resolver, hostile)
    assert len(verdict.dkim) == 1 and verdict.dkim[0].result == "permerror"
    assert [r.method for r in parsed.results] == ["spf", "dkim", "dmarc"]
    assert clause(parsed, "dkim").result == "permerror"
    assert clause(parsed, "dkim").header_d is None and clause(parsed, "dkim").header_i is None
    assert header.count("dkim=") == 1 and "@evil" not in header


def test_idna_from_domain(zone, resolver, keys):
    zone.add("_dmarc.xn--bcher-kva.example", "TXT", "v=DMARC1; p=reject")
    verdict, header, _ = judge(resolver, message("autor@bücher.example"), mail_from="autor@bücher.example")
    assert verdict.dmarc.from_domain == "xn--bcher-kva.example"
    assert verdict.dmarc.result == "fail" and "header.from=xn--bcher-kva.example" in header


def test_async_entry_point(zone, resolver, keys):
    data = signed(keys, message(), ("example.org", "ed1"))
    verdict = asyncio.run(authenticate_async(data, client_ip=CLIENT, helo="out.example.org",
                                             mail_from="alice@example.org", resolver=resolver,
                                             authserv_id=AUTHSERV_ID))
    assert verdict.spf.result == "pass" and verdict.dkim[0].result == "pass" and verdict.dmarc.result == "pass"


# ---------------------------------------------------------------------- pure parts
def test_alignment_and_organizational_domain():
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("example.org") == "example.org"
    assert aligned("mail.example.org", "example.org", "r")
    assert not aligned("mail.example.org", "example.org", "s")
    assert aligned("Example.ORG.", "example.org", "s")
    assert not aligned("example.co.uk", "other.co.uk", "r")


def test_dmarc_record_parsing():
    assert parse_dmarc_record("v=DMARC1; p=reject; pct=50")["pct"] == "50"
    assert parse_dmarc_record("v = DMARC1 ;p=none")["p"] == "none"
    assert parse_dmarc_record("p=reject; v=DMARC1") is None
    assert parse_dmarc_record("v=spf1 -all") is None


def test_forged_results_with_our_id_are_removed():
    data = (
        b"Authentication-Results: MX.receiver.example; dkim=pass header.d=bank.example\r\n"
        b"Authentication-Results: (comment) mx.receiver.example;\r\n\tspf=pass\r\n"
        b"Authentication-Results: upstream.example; spf=fail\r\n"
        + message()
    )
    cleaned = remove_forged_results(data, AUTHSERV_ID)
    assert cleaned.count(b"Authentication-Results") == 1
    assert b"upstream.example; spf=fail" in cleaned
    assert cleaned.endswith(message())
