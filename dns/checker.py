"""DNS checker: compares what a domain publishes with the records it needs (ring 2, over the resolver).

Owns the verdict on each expected record (`courriel.dns.records.expected`): `ok`, `missing`,
`wrong` (published, but not what this server needs) or `error` (a temporary DNS failure: no
verdict possible), with the values found and the value expected; and the forward-confirmed
reverse DNS of the server's public addresses. It reads DNS only; storing the result on the
domain is `courriel.admin.services.dns`'s job.

Standards: RFC 5321 §5.1 (MX), RFC 7505 (null MX), RFC 7208 §4.5 (more than one SPF record
is a permerror) and §5 (mechanisms), RFC 6376 §3.6.1 (DKIM key tags), RFC 8463 §4 (Ed25519
keys), RFC 7489 §6.3 and §6.6.3 (DMARC tags; several records mean no DMARC), RFC 6186 §3 /
RFC 8314 §5.1 (SRV), RFC 8461 §3.1 (MTA-STS TXT), RFC 8460 §3 (TLSRPT), RFC 8601 §3
(iprev: forward-confirmed reverse DNS).
Security: every TXT record found is untrusted text: it is parsed defensively and only shown
back (truncated) in the result, never evaluated beyond SPF through pyspf.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import spf

from courriel.dns.records import ExpectedRecord, merge_spf, to_a_label
from courriel.dns.resolver import DnsError, NoData, NXDomain, Resolver, TemporaryFailure, pyspf_lookups_through

OK = "ok"
MISSING = "missing"
WRONG = "wrong"
ERROR = "error"
STATUSES = (OK, MISSING, WRONG, ERROR)
SHOWN_MAX = 512  # characters of a found value kept in a result


@dataclass(frozen=True)
class RecordCheck:
    """The verdict on one expected record."""

    check: str  # ownership | mx | spf | dkim | dmarc | srv | cname | mta_sts | tlsrpt | ptr
    rtype: str
    name: str  # absolute, with the trailing dot
    purpose: str
    status: str  # ok | missing | wrong | error
    expected: str
    found: tuple[str, ...] = ()
    detail: str = ""

    def as_dict(self) -> dict:
        data = asdict(self)
        data["type"] = data.pop("rtype")
        data["found"] = list(self.found)
        return data


@dataclass(frozen=True)
class DomainCheck:
    domain: str
    records: tuple[RecordCheck, ...] = field(default=())

    @property
    def status(self) -> str:
        """ok when every record is ok; else error when only DNS failures stood in the way; else problems."""
        statuses = {r.status for r in self.records}
        if statuses <= {OK}:
            return OK
        if statuses <= {OK, ERROR}:
            return ERROR
        return "problems"

    def by_check(self, check: str) -> list[RecordCheck]:
        return [r for r in self.records if r.check == check]

    def as_dict(self) -> dict:
        return {"domain": self.domain, "status": self.status, "records": [r.as_dict() for r in self.records]}


def _shown(value: str) -> str:
    value = re.sub(r"[\x00-\x1f\x7f]", "?", value)
    return value if len(value) <= SHOWN_MAX else value[:SHOWN_MAX] + "..."


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _result(record: ExpectedRecord, check: str, status: str, found: Iterable[str] = (), detail: str = "",
            expected: str | None = None) -> RecordCheck:
    return RecordCheck(check, record.rtype, record.name, record.purpose, status,
                       record.value if expected is None else expected, tuple(_shown(f) for f in found), detail)


def _failed(record: ExpectedRecord, check: str, failure: tuple[str, str]) -> RecordCheck:
    return _result(record, check, failure[0], (), failure[1])


def _lookup(function: Callable, name: str):
    """(answer, None) or (None, (status, detail)) for a lookup that may fail."""
    try:
        return function(name), None
    except (NXDomain, NoData) as exc:
        return None, (MISSING, exc.kind)
    except TemporaryFailure as exc:
        return None, (ERROR, f"{exc.kind}{': ' + exc.detail if exc.detail else ''}")
    except DnsError as exc:
        return None, (ERROR, exc.kind)


# ---------------------------------------------------------------------- TXT-based records


def tag_list(value: str) -> dict[str, str] | None:
    """An RFC 6376 §3.2 tag=value list (DKIM, DMARC), or None when it does not parse."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        name, sep, tag_value = part.partition("=")
        name = name.strip().lower()
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in tags:
            return None
        tags[name] = re.sub(r"\s+", "", tag_value) if name == "p" else tag_value.strip()
    return tags


def check_ownership(resolver: Resolver, record: ExpectedRecord) -> RecordCheck:
    found, failure = _lookup(resolver.txt, record.name)
    if failure:
        return _failed(record, "ownership", failure)
    ours = [t for t in found if t.strip().lower().startswith("courriel-verification=")]
    if record.value in (t.strip() for t in ours):
        return _result(record, "ownership", OK, ours)
    if ours:
        return _result(record, "ownership", WRONG, ours, "a verification record with another token")
    return _result(record, "ownership", MISSING, (), "no courriel-verification TXT record")


def _spf_covers_us(spf_record: str, domain: str, hostname: str, mx_hosts: list[str]) -> bool:
    """Whether the SPF terms name this server without evaluating includes (RFC 7208 §5)."""
    for term in spf_record.split()[1:]:
        qualifier = term[0] if term[0] in "+-~?" else "+"
        if qualifier != "+":
            continue
        mechanism = term.lstrip("+-~?").lower()
        name, _, target = mechanism.partition(":")
        target = _host(target.partition("/")[0])
        if name == "mx" and (not target or target == domain) and hostname in mx_hosts:
            return True
        if name == "a" and target == hostname:
            return True
    return False


def _spf_passes(resolver: Resolver, domain: str, hostname: str, addresses: tuple[str, ...]) -> bool:
    """RFC 7208 §4: check_host() passes for every public address of the server."""
    if not addresses:
        return False
    with pyspf_lookups_through(resolver):
        for address in addresses:
            result, _explanation = spf.check2(i=address, s=f"postmaster@{domain}", h=hostname)
            if result != "pass":
                return False
    return True


def check_spf(resolver: Resolver, record: ExpectedRecord, domain: str, hostname: str,
              addresses: tuple[str, ...] = ()) -> RecordCheck:
    found, failure = _lookup(resolver.txt, record.name)
    if failure:
        return _failed(record, "spf", failure)
    spf_records = [t for t in found if t.strip().lower() == "v=spf1" or t.strip().lower().startswith("v=spf1 ")]
    if not spf_records:
        return _result(record, "spf", MISSING, (), "no v=spf1 TXT record")
    if len(spf_records) > 1:
        # RFC 7208 §4.5: more than one record is a permerror for every receiver.
        return _result(record, "spf", WRONG, spf_records, "more than one SPF record: merge them into one")
    published = spf_records[0].strip()
    try:
        mx_hosts = [mx.host for mx in resolver.mx_records(domain)]
    except DnsError:
        mx_hosts = []
    if _spf_covers_us(published, domain, hostname, mx_hosts):
        return _result(record, "spf", OK, spf_records)
    try:
        if _spf_passes(resolver, domain, hostname, addresses):
            return _result(record, "spf", OK, spf_records)
    except spf.TempError as exc:
        return _result(record, "spf", ERROR, spf_records, f"SPF evaluation: {exc}")
    return _result(record, "spf", WRONG, spf_records, "the SPF record does not authorise this server",
                   expected=merge_spf(published))


def check_dkim(resolver: Resolver, record: ExpectedRecord) -> RecordCheck:
    """RFC 6376 §3.6.1: the published p= (and k=) must be the key this server signs with."""
    found, failure = _lookup(resolver.txt, record.name)
    if failure:
        return _failed(record, "dkim", failure)
    expected = tag_list(record.value) or {}
    for text in found:
        tags = tag_list(text)
        if tags is None or tags.get("v", "DKIM1") != "DKIM1":
            continue
        if tags.get("p") == expected.get("p") and tags.get("k", "rsa").lower() == expected.get("k", "rsa"):
            return _result(record, "dkim", OK, found)
    if any(t.strip().lower().startswith("v=dkim1") or "p=" in t for t in found):
        return _result(record, "dkim", WRONG, found, "the published key is not this server's key")
    return _result(record, "dkim", WRONG, found, "no DKIM key record at this name")


def check_dmarc(resolver: Resolver, record: ExpectedRecord) -> RecordCheck:
    found, failure = _lookup(resolver.txt, record.name)
    if failure:
        return _failed(record, "dmarc", failure)
    dmarc = [t for t in found if t.strip().lower().startswith("v=dmarc1")]
    if not dmarc:
        return _result(record, "dmarc", MISSING, found, "no v=DMARC1 TXT record")
    if len(dmarc) > 1:
        # RFC 7489 §6.6.3: several DMARC records: receivers apply no policy at all.
        return _result(record, "dmarc", WRONG, dmarc, "more than one DMARC record")
    tags = tag_list(dmarc[0])
    # RFC 7489 §6.3: v first, then p (required) with none, quarantine or reject.
    if tags is None or next(iter(tags), "") != "v" or tags["v"] != "DMARC1":
        return _result(record, "dmarc", WRONG, dmarc, "the DMARC record does not parse")
    if tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
        return _result(record, "dmarc", WRONG, dmarc, "the DMARC record has no valid p= policy")
    return _result(record, "dmarc", OK, dmarc)


def check_tagged_txt(resolver: Resolver, record: ExpectedRecord, check: str, version: str) -> RecordCheck:
    """MTA-STS (RFC 8461 §3.1) and TLSRPT (RFC 8460 §3): one record with this version tag, as expected."""
    found, failure = _lookup(resolver.txt, record.name)
    if failure:
        return _failed(record, check, failure)
    ours = [t for t in found if t.strip().lower().startswith(version.lower())]
    if not ours:
        return _result(record, check, MISSING, found, f"no {version} TXT record")
    if len(ours) == 1 and tag_list(ours[0]) == tag_list(record.value):
        return _result(record, check, OK, ours)
    return _result(record, check, WRONG, ours, "the record differs from the expected one")


# ---------------------------------------------------------------------- MX, SRV, CNAME


def check_mx(resolver: Resolver, record: ExpectedRecord, hostname: str) -> RecordCheck:
    found, failure = _lookup(resolver.mx_records, record.name)
    if failure:
        return _failed(record, "mx", failure)
    shown = [f"{mx.preference} {mx.host or '.'}." for mx in sorted(found, key=lambda m: m.preference)]
    hosts = [mx.host for mx in found]
    if any(h in ("", ".") for h in hosts):
        return _result(record, "mx", WRONG, shown, "a null MX: the domain refuses all mail (RFC 7505)")
    if hostname in hosts:
        return _result(record, "mx", OK, shown)
    return _result(record, "mx", WRONG, shown, f"no MX points at {hostname}")


def check_srv(resolver: Resolver, record: ExpectedRecord, hostname: str) -> RecordCheck:
    found, failure = _lookup(resolver.srv, record.name)
    if failure:
        return _failed(record, "srv", failure)
    port = int(record.value.split()[2])
    shown = [f"{s.priority} {s.weight} {s.port} {s.target}." for s in found]
    if any(s.target == hostname and s.port == port for s in found):
        return _result(record, "srv", OK, shown)
    return _result(record, "srv", WRONG, shown, f"no SRV target {hostname} port {port}")


def _addresses(resolver: Resolver, name: str) -> set[str]:
    found: set[str] = set()
    for lookup in (resolver.a, resolver.aaaa):
        try:
            found.update(lookup(name))
        except (NXDomain, NoData):
            continue
    return found


def check_cname(resolver: Resolver, record: ExpectedRecord, hostname: str, check: str = "cname") -> RecordCheck:
    """A name that must lead to this server: a CNAME to the hostname, or the same addresses."""
    found, failure = _lookup(lambda name: resolver.query(name, "CNAME"), record.name)
    if not failure:
        targets = [_host(r.target.to_text()) for r in found]
        if hostname in targets:
            return _result(record, check, OK, [t + "." for t in targets])
        return _result(record, check, WRONG, [t + "." for t in targets], f"the CNAME does not point at {hostname}")
    if failure[0] == ERROR:
        return _failed(record, check, failure)
    try:
        ours = _addresses(resolver, hostname)
        theirs = _addresses(resolver, record.name)
    except DnsError as exc:
        return _result(record, check, ERROR, (), exc.kind)
    if theirs and theirs <= ours:
        return _result(record, check, OK, sorted(theirs))
    if theirs:
        return _result(record, check, WRONG, sorted(theirs), f"the addresses are not those of {hostname}")
    return _result(record, check, MISSING, (), failure[1])


# ---------------------------------------------------------------------- reverse DNS


def check_reverse_dns(resolver: Resolver, address: str, hostname: str) -> RecordCheck:
    """RFC 8601 §3 iprev: the PTR of `address` names `hostname`, and `hostname` resolves back to `address`."""
    ip = ipaddress.ip_address(address)
    name = ip.reverse_pointer + "."
    record = ExpectedRecord("PTR", name, hostname + ".", f"Reverse DNS of the server address {address}")
    found, failure = _lookup(resolver.ptr, address)
    if failure:
        return _failed(record, "ptr", failure)
    shown = [f + "." for f in found]
    if hostname not in found:
        return _result(record, "ptr", WRONG, shown, f"the PTR record does not name {hostname}")
    try:
        forward = {str(ipaddress.ip_address(a)) for a in _addresses(resolver, hostname)}
    except DnsError as exc:
        return _result(record, "ptr", ERROR, shown, f"forward lookup of {hostname}: {exc.kind}")
    if str(ip) not in forward:
        return _result(record, "ptr", WRONG, shown, f"{hostname} does not resolve back to {address}")
    return _result(record, "ptr", OK, shown)


# ---------------------------------------------------------------------- a whole domain


def kind_of(record: ExpectedRecord, domain: str) -> str:
    """Which check applies to an expected record (see `records.expected`)."""
    apex = domain + "."
    if record.rtype == "MX":
        return "mx"
    if record.rtype == "SRV":
        return "srv"
    if record.rtype == "CNAME":
        return "mta_sts_host" if record.name.startswith("mta-sts.") else "cname"
    if record.name == apex:
        return "ownership" if record.value.startswith("courriel-verification=") else "spf"
    if "._domainkey." in record.name:
        return "dkim"
    if record.name.startswith("_dmarc."):
        return "dmarc"
    if record.name.startswith("_mta-sts."):
        return "mta_sts"
    if record.name.startswith("_smtp._tls."):
        return "tlsrpt"
    return "other"


def check_record(resolver: Resolver, record: ExpectedRecord, domain: str, hostname: str,
                 addresses: tuple[str, ...] = ()) -> RecordCheck:
    kind = kind_of(record, domain)
    if kind == "ownership":
        return check_ownership(resolver, record)
    if kind == "spf":
        return check_spf(resolver, record, domain, hostname, addresses)
    if kind == "mx":
        return check_mx(resolver, record, hostname)
    if kind == "dkim":
        return check_dkim(resolver, record)
    if kind == "dmarc":
        return check_dmarc(resolver, record)
    if kind == "srv":
        return check_srv(resolver, record, hostname)
    if kind in ("cname", "mta_sts_host"):
        return check_cname(resolver, record, hostname, kind)
    if kind == "mta_sts":
        return check_tagged_txt(resolver, record, kind, "v=STSv1")
    if kind == "tlsrpt":
        return check_tagged_txt(resolver, record, kind, "v=TLSRPTv1")
    raise ValueError(f"no check for {record.rtype} {record.name}")


def check_domain(resolver: Resolver, domain: str, hostname: str, records: list[ExpectedRecord],
                 addresses: Iterable[str] = ()) -> DomainCheck:
    """Check every expected record of `domain`, then the reverse DNS of each server address."""
    zone = to_a_label(domain)
    host = to_a_label(hostname)
    addresses = tuple(str(ipaddress.ip_address(a)) for a in addresses)
    results = [check_record(resolver, record, zone, host, addresses) for record in records]
    results += [check_reverse_dns(resolver, address, host) for address in addresses]
    return DomainCheck(zone, tuple(results))
