"""The DNS checker against a real authoritative server on loopback: a correct zone is all ok, and
each record missing or wrong (or its server failing) is reported with what was found."""

from __future__ import annotations

import pytest
from dns_test_server import dns_server  # noqa: F401  (pytest fixture)

from courriel.dns import checker
from courriel.dns.records import DkimPublicKey, ExpectedRecord, expected
from courriel.dns.resolver import Resolver

HOST = "mail.example.net"
DOMAIN = "example.org"
SERVER_IP = "192.0.2.25"
TOKEN = "0123456789abcdef"
DKIM_KEY = DkimPublicKey("c2026a", "ed25519-sha256", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")


def expected_records(mta_sts: bool = True) -> list[ExpectedRecord]:
    return expected(HOST, DOMAIN, TOKEN, [DKIM_KEY], mta_sts_id="abc123" if mta_sts else None,
                    tlsrpt_rua=f"postmaster@{DOMAIN}" if mta_sts else None)


def publish(server, records: list[ExpectedRecord]) -> None:
    for record in records:
        if record.rtype == "TXT":
            server.add(record.name, "TXT", list(record.strings))
        else:
            server.add(record.name, record.rtype, record.value)
    server.add(HOST, "A", SERVER_IP)
    server.add_ptr(SERVER_IP, HOST)


def run_check(server) -> checker.DomainCheck:
    resolver = Resolver([server.nameserver], timeout=1.0)
    return checker.check_domain(resolver, DOMAIN, HOST, expected_records(), addresses=[SERVER_IP])


def statuses(result: checker.DomainCheck) -> dict[tuple[str, str], str]:
    return {(r.check, r.name): r.status for r in result.records}


def the(result: checker.DomainCheck, check: str, name_prefix: str = "") -> checker.RecordCheck:
    found = [r for r in result.records if r.check == check and r.name.startswith(name_prefix)]
    assert len(found) == 1, found
    return found[0]


def test_correct_zone_is_all_ok(dns_server):  # noqa: F811
    publish(dns_server, expected_records())
    result = run_check(dns_server)
    assert result.status == "ok", [r for r in result.records if r.status != "ok"]
    checks = {r.check for r in result.records}
    assert checks == {"ownership", "mx", "spf", "dkim", "dmarc", "srv", "cname", "mta_sts", "mta_sts_host",
                      "tlsrpt", "ptr"}
    assert the(result, "mx").found == ("10 mail.example.net.",)
    assert the(result, "ptr").found == ("mail.example.net.",)
    payload = result.as_dict()
    assert payload["status"] == "ok"
    assert {"type", "name", "purpose", "status", "expected", "found", "detail"} <= set(payload["records"][0])


def test_address_records_instead_of_cname_are_ok(dns_server):  # noqa: F811
    publish(dns_server, [r for r in expected_records() if r.rtype != "CNAME"])
    dns_server.add(f"autoconfig.{DOMAIN}", "A", SERVER_IP)
    result = run_check(dns_server)
    assert the(result, "cname", "autoconfig.").status == "ok"
    assert the(result, "cname", "autodiscover.").status == "missing"


# (what to change, which check, expected status, text in detail)
def _drop(name: str, rtype: str, prefix: str = ""):
    def change(server):
        for rtype_, value, _ttl in list(server._records.get(name, [])):
            text = "".join(value) if isinstance(value, list) else str(value)
            if rtype_ == rtype and text.startswith(prefix):
                server.remove(name, rtype, value)
    return change


def _replace(name: str, rtype: str, prefix: str, new):
    drop = _drop(name, rtype, prefix)

    def change(server):
        drop(server)
        server.add(name, rtype, new)
    return change


def _add(name: str, rtype: str, value):
    return lambda server: server.add(name, rtype, value)


APEX = DOMAIN + "."
DKIM_NAME = f"c2026a._domainkey.{DOMAIN}."
CASES = {
    "ownership missing": (_drop(APEX, "TXT", "courriel-verification="), "ownership", "missing"),
    "ownership other token": (_replace(APEX, "TXT", "courriel-verification=", "courriel-verification=deadbeef00"),
                              "ownership", "wrong"),
    # SPF's "mx" follows the MX records: without ours, SPF no longer covers this server either.
    "mx missing": (_drop(APEX, "MX"), "mx", "missing", {"spf"}),
    "mx elsewhere": (_replace(APEX, "MX", "", "10 mx.other.example"), "mx", "wrong", {"spf"}),
    "null mx": (_replace(APEX, "MX", "", "0 ."), "mx", "wrong", {"spf"}),
    "spf missing": (_drop(APEX, "TXT", "v=spf1"), "spf", "missing"),
    "two spf records": (_add(APEX, "TXT", "v=spf1 a -all"), "spf", "wrong"),
    "spf without us": (_replace(APEX, "TXT", "v=spf1", "v=spf1 ip4:198.51.100.1 -all"), "spf", "wrong"),
    "dkim missing": (_drop(DKIM_NAME, "TXT"), "dkim", "missing"),
    "dkim other key": (_replace(DKIM_NAME, "TXT", "", "v=DKIM1; k=ed25519; p=" + "A" * 43 + "="),
                       "dkim", "wrong"),
    "dmarc missing": (_drop(f"_dmarc.{DOMAIN}.", "TXT"), "dmarc", "missing"),
    "dmarc unparseable": (_replace(f"_dmarc.{DOMAIN}.", "TXT", "", "v=DMARC1 p=reject"), "dmarc", "wrong"),
    "dmarc without policy": (_replace(f"_dmarc.{DOMAIN}.", "TXT", "", "v=DMARC1; p=maybe"), "dmarc", "wrong"),
    "two dmarc records": (_add(f"_dmarc.{DOMAIN}.", "TXT", "v=DMARC1; p=none"), "dmarc", "wrong"),
    "srv missing": (_drop(f"_imaps._tcp.{DOMAIN}.", "SRV"), "srv", "missing"),
    "srv wrong port": (_replace(f"_imaps._tcp.{DOMAIN}.", "SRV", "", f"0 1 143 {HOST}"), "srv", "wrong"),
    "autoconfig elsewhere": (_replace(f"autoconfig.{DOMAIN}.", "CNAME", "", "web.other.example"), "cname", "wrong"),
    "mta-sts other id": (_replace(f"_mta-sts.{DOMAIN}.", "TXT", "", "v=STSv1; id=old1"), "mta_sts", "wrong"),
    "tlsrpt missing": (_drop(f"_smtp._tls.{DOMAIN}.", "TXT"), "tlsrpt", "missing"),
    "ptr missing": (_drop("25.2.0.192.in-addr.arpa.", "PTR"), "ptr", "missing"),
    "ptr elsewhere": (_replace("25.2.0.192.in-addr.arpa.", "PTR", "", "host.isp.example"), "ptr", "wrong"),
    "ptr not forward-confirmed": (_replace(HOST + ".", "A", "", "192.0.2.99"), "ptr", "wrong"),
    "apex server failure": (lambda s: s.fail(DOMAIN, "servfail"), "spf", "error", {"ownership", "mx"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_problem_is_reported(dns_server, case):  # noqa: F811
    change, check, status, *also = CASES[case]
    also = also[0] if also else set()
    publish(dns_server, expected_records())
    change(dns_server)
    result = run_check(dns_server)
    problems = {key: value for key, value in statuses(result).items() if value != "ok"}
    mine = {key: value for key, value in problems.items() if key[0] == check}
    assert list(mine.values()) == [status], problems
    record = next(r for r in result.records if r.check == check and r.status == status)
    assert record.detail
    assert result.status == ("error" if status == "error" else "problems")
    if status == "wrong":
        assert record.found, record
    if status == "missing":
        assert record.found == () or check in ("dmarc",)
    # Other checks are not disturbed.
    assert {key[0] for key in problems} == {check} | also, problems


def test_spf_include_is_evaluated_with_the_server_address(dns_server):  # noqa: F811
    publish(dns_server, expected_records())
    _replace(APEX, "TXT", "v=spf1", "v=spf1 include:_spf.provider.example -all")(dns_server)
    dns_server.add("_spf.provider.example", "TXT", f"v=spf1 ip4:{SERVER_IP}/32 -all")
    assert the(run_check(dns_server), "spf").status == "ok"
    dns_server.remove("_spf.provider.example")
    dns_server.add("_spf.provider.example", "TXT", "v=spf1 ip4:198.51.100.0/24 -all")
    result = the(run_check(dns_server), "spf")
    assert result.status == "wrong"
    assert result.expected == "v=spf1 mx include:_spf.provider.example -all"


def test_long_dkim_key_split_in_strings_matches(dns_server):  # noqa: F811
    rsa_key = DkimPublicKey("c2026r", "rsa-sha256", "A" * 390 + "==")
    records = expected(HOST, DOMAIN, TOKEN, [rsa_key])
    dkim_record = next(r for r in records if "_domainkey" in r.name)
    assert len(dkim_record.strings) == 2
    publish(dns_server, records)
    resolver = Resolver([dns_server.nameserver], timeout=1.0)
    assert checker.check_dkim(resolver, dkim_record).status == "ok"
