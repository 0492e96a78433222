"""Account settings discovery over a real DNS server on loopback (RFC 6186 SRV)."""

from __future__ import annotations

from dns_test_server import dns_server  # noqa: F401

from courriel.dns.resolver import Resolver
from courriel.imapsync import discovery


def test_srv_prefers_imaps_then_imap_then_pop3(dns_server):  # noqa: F811
    resolver = Resolver([dns_server.nameserver], timeout=1.0)
    dns_server.add("_imap._tcp.example.test", "SRV", "0 1 143 mail.example.test")
    dns_server.add("_pop3s._tcp.example.test", "SRV", "0 1 995 pop.example.test")
    found = discovery.discover("jo@example.test", resolver, autoconfig=False)
    assert found == discovery.ServerSettings("imap", "mail.example.test", 143, "starttls", "jo@example.test",
                                             source="srv")
    dns_server.add("_imaps._tcp.example.test", "SRV", "10 1 993 imap2.example.test")
    dns_server.add("_imaps._tcp.example.test", "SRV", "0 1 993 imap1.example.test")
    assert discovery.from_srv("jo@example.test", resolver).host == "imap1.example.test"


def test_srv_dot_target_means_not_offered(dns_server):  # noqa: F811
    resolver = Resolver([dns_server.nameserver], timeout=1.0)
    dns_server.add("_imaps._tcp.none.test", "SRV", "0 0 0 .")
    dns_server.add("_imap._tcp.none.test", "SRV", "0 0 0 .")
    dns_server.add("_pop3s._tcp.none.test", "SRV", "0 1 995 pop.none.test")
    found = discovery.from_srv("a@none.test", resolver)
    assert (found.protocol, found.host, found.security) == ("pop3", "pop.none.test", "ssl")
    assert discovery.from_srv("a@nothing.test", resolver) is None


def test_table_wins_before_dns(dns_server):  # noqa: F811
    resolver = Resolver([dns_server.nameserver], timeout=1.0)
    assert discovery.discover("x@gmail.com", resolver, autoconfig=False).source == "table"
    assert dns_server.queries == []


def test_srv_target_outside_the_domain_needs_confirmation(dns_server):  # noqa: F811
    # RFC 6186 §6: an SRV answer may point anywhere; inside the domain it is taken as is.
    resolver = Resolver([dns_server.nameserver], timeout=1.0)
    dns_server.add("_imaps._tcp.own.test", "SRV", "0 1 993 imap.own.test")
    assert discovery.from_srv("jo@own.test", resolver).confirm == ""
    dns_server.add("_imaps._tcp.elsewhere.test", "SRV", "0 1 993 mail.attacker.test")
    found = discovery.discover("jo@elsewhere.test", resolver, autoconfig=False)
    assert found.host == "mail.attacker.test" and "not within elsewhere.test" in found.confirm
