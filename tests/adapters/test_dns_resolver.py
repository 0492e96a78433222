"""The resolver adapter against a real DNS server on loopback (tests/support/dns_test_server.py)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import spf
from dns_test_server import dns_server, query  # noqa: F401 - pytest fixture

from courriel import config as config_mod
from courriel.dns.resolver import (
    MailExchanger,
    NoData,
    NXDomain,
    Resolver,
    TemporaryFailure,
    parse_nameserver,
    point_pyspf_at,
    pyspf_lookups_through,
)


@pytest.fixture
def resolver(dns_server):  # noqa: F811
    return Resolver([dns_server.nameserver], timeout=0.5)


def test_the_test_server_answers_over_udp_and_tcp(dns_server):  # noqa: F811
    dns_server.add("example.org", "A", "192.0.2.1")
    for tcp in (False, True):
        reply = query(dns_server, "example.org", "A", tcp=tcp)
        assert str(reply.rr[0].rdata) == "192.0.2.1"
        assert reply.header.aa == 1
    assert ("example.org.", "A") in dns_server.queries


def test_nameserver_specs():
    assert parse_nameserver("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)
    assert parse_nameserver("::1") == ("::1", 53)
    with pytest.raises(ValueError, match="not an IP address"):
        parse_nameserver("dns.example:53")
    with pytest.raises(ValueError, match="bad port"):
        parse_nameserver("127.0.0.1:dns")
    with pytest.raises(ValueError):
        parse_nameserver("127.0.0.1:0")


def test_resolver_from_config_uses_the_configured_server(dns_server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("COURRIEL_DNS_NAMESERVERS", dns_server.nameserver)
    monkeypatch.setenv("COURRIEL_DNS_TIMEOUT", "0.5")
    resolver = Resolver.from_config(config_mod.load(tmp_path, dev=True))
    dns_server.add("configured.example", "A", "192.0.2.9")
    assert resolver.a("configured.example") == ["192.0.2.9"]
    assert resolver.timeout == 0.5


def test_mx_sorted_by_preference_random_among_equals(dns_server, resolver):  # noqa: F811
    dns_server.add("example.org", "MX", "20 backup.example.org")
    dns_server.add("example.org", "MX", "10 mx-a.example.org")
    dns_server.add("example.org", "MX", "10 mx-b.example.org")
    dns_server.add("example.org", "MX", "5 primary.example.org")
    orders = set()
    for seed in range(40):
        result = resolver.mx("example.org", rng=random.Random(seed))
        assert not result.implicit and not result.null
        assert [mx.preference for mx in result.hosts] == [5, 10, 10, 20]
        assert result.hosts[0] == MailExchanger(5, "primary.example.org")
        assert result.hosts[3] == MailExchanger(20, "backup.example.org")
        orders.add(tuple(mx.host for mx in result.hosts[1:3]))
    assert orders == {("mx-a.example.org", "mx-b.example.org"), ("mx-b.example.org", "mx-a.example.org")}


def test_implicit_mx_from_address_records(dns_server, resolver):  # noqa: F811
    dns_server.add("only-a.example", "AAAA", "2001:db8::25")
    result = resolver.mx("only-a.example")
    assert result.implicit
    assert result.hosts == (MailExchanger(0, "only-a.example"),)
    dns_server.add("nothing.example", "TXT", "v=spf1 -all")
    with pytest.raises(NoData):
        resolver.mx("nothing.example")


def test_null_mx(dns_server, resolver):  # noqa: F811
    dns_server.add("nomail.example", "MX", "0 .")
    dns_server.add("nomail.example", "A", "192.0.2.3")
    result = resolver.mx("nomail.example")
    assert result.null and result.hosts == ()


def test_nxdomain_nodata_servfail_timeout(dns_server, resolver):  # noqa: F811
    dns_server.add("host.example", "A", "192.0.2.4")
    dns_server.add("deep.sub.example", "A", "192.0.2.5")
    with pytest.raises(NXDomain):
        resolver.a("missing.example")
    with pytest.raises(NoData):
        resolver.aaaa("host.example")
    with pytest.raises(NoData):  # empty non-terminal (RFC 8020)
        resolver.a("sub.example")
    with pytest.raises(NXDomain):
        resolver.mx("missing.example")
    dns_server.fail("host.example", "servfail")
    with pytest.raises(TemporaryFailure):
        resolver.a("host.example")
    with pytest.raises(TemporaryFailure):
        resolver.mx("host.example")
    dns_server.fail("host.example", "timeout")
    started = time.monotonic()
    with pytest.raises(TemporaryFailure, match="timed out"):
        resolver.a("host.example")
    assert time.monotonic() - started < 3
    dns_server.fail("host.example", None)
    assert resolver.a("host.example") == ["192.0.2.4"]


def test_txt_strings_joined_per_record(dns_server, resolver):  # noqa: F811
    long_value = "v=DKIM1; k=rsa; p=" + "A" * 600
    dns_server.add("multi.example", "TXT", ["v=spf1 ", "ip4:192.0.2.0/24 ", "-all"])
    dns_server.add("multi.example", "TXT", "other record")
    dns_server.add("long.example", "TXT", long_value)
    assert sorted(resolver.txt("multi.example")) == ["other record", "v=spf1 ip4:192.0.2.0/24 -all"]
    assert resolver.txt("long.example") == [long_value]


def test_large_answer_falls_back_to_tcp(dns_server, resolver):  # noqa: F811
    values = [f"record {i} " + "x" * 200 for i in range(12)]
    for value in values:
        dns_server.add("big.example", "TXT", value)
    assert sorted(resolver.txt("big.example")) == sorted(values)


def test_srv_ptr_cname(dns_server, resolver):  # noqa: F811
    dns_server.add("_imaps._tcp.example.org", "SRV", "0 1 993 mail.example.net")
    dns_server.add("_imaps._tcp.example.org", "SRV", "10 1 993 backup.example.net")
    dns_server.add_ptr("192.0.2.7", "mail.example.net")
    dns_server.add("alias.example.org", "CNAME", "mail.example.net")
    dns_server.add("mail.example.net", "A", "192.0.2.7")
    records = resolver.srv("_imaps._tcp.example.org")
    assert [(r.priority, r.port, r.target) for r in records] == [(0, 993, "mail.example.net"),
                                                                 (10, 993, "backup.example.net")]
    assert resolver.ptr("192.0.2.7") == ["mail.example.net"]
    assert resolver.a("alias.example.org") == ["192.0.2.7"]


def test_zone_changes_are_seen_while_running(dns_server, resolver):  # noqa: F811
    dns_server.add("change.example", "A", "192.0.2.10")
    assert resolver.a("change.example") == ["192.0.2.10"]
    dns_server.remove("change.example", "A")
    with pytest.raises(NXDomain):
        resolver.a("change.example")
    dns_server.add("change.example", "A", "192.0.2.11")
    assert resolver.a("change.example") == ["192.0.2.11"]
    dns_server.clear()
    with pytest.raises(NXDomain):
        resolver.a("change.example")


def test_async_lookups(dns_server, resolver):  # noqa: F811
    dns_server.add("example.org", "MX", "10 mx.example.org")
    dns_server.add("example.org", "TXT", ["a", "b"])
    dns_server.add("implicit.example", "A", "192.0.2.8")
    dns_server.add("nomail.example", "MX", "0 .")

    async def run():
        mx = await resolver.mx_async("example.org")
        txt = await resolver.txt_async("example.org")
        implicit = await resolver.mx_async("implicit.example")
        null = await resolver.mx_async("nomail.example")
        with pytest.raises(NXDomain):
            await resolver.a_async("missing.example")
        dns_server.fail("example.org", "servfail")
        with pytest.raises(TemporaryFailure):
            await resolver.txt_async("example.org")
        return mx, txt, implicit, null

    mx, txt, implicit, null = asyncio.run(run())
    assert mx.hosts == (MailExchanger(10, "mx.example.org"),)
    assert txt == ["ab"]
    assert implicit.implicit and implicit.hosts[0].host == "implicit.example"
    assert null.null


def test_pyspf_lookups_go_through_the_resolver(dns_server, resolver):  # noqa: F811
    dns_server.add("sender.example", "TXT", ["v=spf1 ip4:192.0.2.0/24 ", "mx -all"])
    dns_server.add("sender.example", "MX", "10 mx.sender.example")
    dns_server.add("mx.sender.example", "A", "198.51.100.5")
    with pyspf_lookups_through(resolver):
        pass
    with pytest.raises(spf.TempError):
        # Outside the block, with no process default, pyspf gets no resolver: temperror, not the system's.
        spf.DNSLookup("sender.example", "TXT")
    with pyspf_lookups_through(resolver):
        assert spf.check2("192.0.2.44", "a@sender.example", "helo.example")[0] == "pass"
        assert spf.check2("198.51.100.5", "a@sender.example", "helo.example")[0] == "pass"
        assert spf.check2("203.0.113.1", "a@sender.example", "helo.example")[0] == "fail"
        dns_server.fail("sender.example", "servfail")
        assert spf.check2("192.0.2.44", "a@sender.example", "helo.example")[0] == "temperror"
    assert ("sender.example.", "TXT") in dns_server.queries
    point_pyspf_at(resolver)
    try:
        dns_server.fail("sender.example", None)
        assert spf.check2("192.0.2.44", "a@sender.example", "helo.example")[0] == "pass"
    finally:
        from courriel.dns import resolver as resolver_mod

        resolver_mod._pyspf_default.clear()
