"""DNS resolver adapter: the only module that uses dnspython (ARCHITECTURE §4, ring 2).

Owns the `Resolver` built from `[dns] nameservers` / `[dns] timeout`, its synchronous and
asynchronous lookups (MX with mail routing rules, A/AAAA, TXT, SRV, PTR), the typed outcomes
that separate "no such name" from "no such record" from "try again later", and the hook that
sends pyspf's lookups through a `Resolver` instead of dnspython's global default resolver.

Standards: RFC 1035 (messages, TXT character-strings), RFC 2308 §2.1/§2.2 (NXDOMAIN vs NODATA),
RFC 5321 §5.1 (MX ordering, implicit MX), RFC 7505 (null MX), RFC 2782 (SRV), RFC 7208 §4.4
(SPF: DNS errors are temperror; §3.3 TXT strings are concatenated without spaces).
Security: parses answers from the network through dnspython; returned names are lower-case text
without the trailing dot; nothing here trusts the content of TXT records.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import random
from collections.abc import Iterator
from dataclasses import dataclass

import spf

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename


class DnsError(Exception):
    """Base of the lookup outcomes other than an answer."""

    def __init__(self, name: str, rtype: str, detail: str = ""):
        self.name = name
        self.rtype = rtype
        self.detail = detail
        super().__init__(f"{rtype} {name}: {self.kind}{': ' + detail if detail else ''}")

    kind = "error"


class NXDomain(DnsError):
    """The name does not exist (RCODE 3, RFC 2308 §2.1)."""

    kind = "no such domain"


class NoData(DnsError):
    """The name exists but has no record of this type (RFC 2308 §2.2)."""

    kind = "no data"


class TemporaryFailure(DnsError):
    """SERVFAIL, REFUSED, timeout or unreachable servers: the answer may come later."""

    kind = "temporary failure"


@dataclass(frozen=True)
class MailExchanger:
    preference: int
    host: str


@dataclass(frozen=True)
class MailExchangers:
    """Where mail for a domain goes, in the order to try (RFC 5321 §5.1)."""

    domain: str
    hosts: tuple[MailExchanger, ...]
    implicit: bool = False  # no MX: the domain's own address records (RFC 5321 §5.1)
    null: bool = False  # "0 ." : the domain accepts no mail (RFC 7505 §3)


@dataclass(frozen=True)
class ServiceRecord:
    priority: int
    weight: int
    port: int
    target: str


def _text_name(name) -> str:
    return name.to_text(omit_final_dot=True).lower() if isinstance(name, dns.name.Name) else str(name).rstrip(".")


def parse_nameserver(spec: str) -> tuple[str, int]:
    """ "host", "host:port", "[v6]:port" or a bare IPv6 address → (address, port)."""
    spec = spec.strip()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif spec.count(":") == 1:
        host, _, port_text = spec.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"[dns] nameservers: bad port in {spec!r}")
        port = int(port_text)
    else:
        host, port = spec, 53
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"[dns] nameservers: {spec!r} is not an IP address with an optional :port") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad port in name server {spec!r}")
    return host, port


def order_exchangers(records: list[MailExchanger], rng: random.Random | None = None) -> tuple[MailExchanger, ...]:
    """RFC 5321 §5.1: lowest preference first; equal preferences in random order."""
    rng = rng or random
    shuffled = list(records)
    rng.shuffle(shuffled)
    return tuple(sorted(shuffled, key=lambda mx: mx.preference))


class Resolver:
    """Lookups against the configured name servers (or the system ones)."""

    def __init__(self, nameservers: list[str] | None = None, timeout: float = 5.0, cache_size: int = 0):
        self.timeout = float(timeout)
        self._sync = self._build(dns.resolver.Resolver, nameservers)
        self._async = self._build(dns.asyncresolver.Resolver, nameservers)
        if cache_size > 0:
            # dnspython's cache keeps each answer for its TTL (negative ones for the SOA minimum,
            # RFC 2308 §5); one cache for the sync and async lookups (it is thread-safe).
            self._sync.cache = self._async.cache = dns.resolver.LRUCache(cache_size)

    @classmethod
    def from_config(cls, config) -> Resolver:
        return cls(config.get("dns", "nameservers"), config.get("dns", "timeout"))

    def _build(self, factory, nameservers):
        if nameservers:
            resolver = factory(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(spec)) for spec in nameservers
            ]
        else:
            resolver = factory(configure=True)
        resolver.timeout = self.timeout
        resolver.lifetime = self.timeout
        resolver.use_edns(0, 0, 1232)
        return resolver

    # ------------------------------------------------------------------ raw queries
    def _outcome(self, exc: Exception, name: str, rtype: str) -> DnsError:
        if isinstance(exc, dns.resolver.NXDOMAIN):
            return NXDomain(name, rtype)
        if isinstance(exc, dns.resolver.NoAnswer):
            return NoData(name, rtype)
        if isinstance(exc, dns.exception.Timeout):
            return TemporaryFailure(name, rtype, "timed out")
        if isinstance(exc, dns.resolver.NoNameservers):
            return TemporaryFailure(name, rtype, "no server answered (SERVFAIL or REFUSED)")
        return TemporaryFailure(name, rtype, type(exc).__name__)

    def query(self, name: str, rtype: str) -> list:
        """The rdata of `name`/`rtype` (CNAMEs followed); raises NXDomain, NoData, TemporaryFailure."""
        try:
            return list(self._sync.resolve(name, rtype, search=False))
        except (dns.exception.DNSException, OSError) as exc:
            raise self._outcome(exc, name, rtype) from None

    async def query_async(self, name: str, rtype: str) -> list:
        try:
            return list(await self._async.resolve(name, rtype, search=False))
        except (dns.exception.DNSException, OSError) as exc:
            raise self._outcome(exc, name, rtype) from None

    # ------------------------------------------------------------------ typed lookups
    def a(self, name: str) -> list[str]:
        return [r.address for r in self.query(name, "A")]

    def aaaa(self, name: str) -> list[str]:
        return [r.address for r in self.query(name, "AAAA")]

    def txt(self, name: str) -> list[str]:
        """One string per TXT record: its character-strings concatenated (RFC 7208 §3.3)."""
        return [value.decode("utf-8", "replace") for value in self.txt_bytes(name)]

    def txt_bytes(self, name: str) -> list[bytes]:
        return [b"".join(r.strings) for r in self.query(name, "TXT")]

    def srv(self, name: str) -> list[ServiceRecord]:
        return _service_records(self.query(name, "SRV"))

    def ptr(self, address: str) -> list[str]:
        name = dns.reversename.from_address(address).to_text()
        return [_text_name(r.target) for r in self.query(name, "PTR")]

    def mx_records(self, domain: str) -> list[MailExchanger]:
        """The MX records as published, unordered (SPF's `mx` uses these)."""
        return [MailExchanger(r.preference, _text_name(r.exchange)) for r in self.query(domain, "MX")]

    def mx(self, domain: str, rng: random.Random | None = None) -> MailExchangers:
        """Where to deliver mail for `domain` (RFC 5321 §5.1, RFC 7505)."""
        try:
            records = self.mx_records(domain)
        except NoData:
            return self._implicit_mx(domain, self._has_address(domain))
        return _mail_exchangers(domain, records, rng)

    def _has_address(self, domain: str) -> bool:
        found = False
        failure: TemporaryFailure | None = None
        for rtype in ("A", "AAAA"):
            try:
                found = bool(self.query(domain, rtype)) or found
            except NoData:
                continue
            except TemporaryFailure as exc:
                failure = exc
        if not found and failure:
            raise failure
        return found

    # ------------------------------------------------------------------ async lookups
    async def a_async(self, name: str) -> list[str]:
        return [r.address for r in await self.query_async(name, "A")]

    async def aaaa_async(self, name: str) -> list[str]:
        return [r.address for r in await self.query_async(name, "AAAA")]

    async def txt_async(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in await self.query_async(name, "TXT")]

    async def srv_async(self, name: str) -> list[ServiceRecord]:
        return _service_records(await self.query_async(name, "SRV"))

    async def ptr_async(self, address: str) -> list[str]:
        name = dns.reversename.from_address(address).to_text()
        return [_text_name(r.target) for r in await self.query_async(name, "PTR")]

    async def mx_async(self, domain: str, rng: random.Random | None = None) -> MailExchangers:
        try:
            rdata = await self.query_async(domain, "MX")
        except NoData:
            found = False
            failure: TemporaryFailure | None = None
            for rtype in ("A", "AAAA"):
                try:
                    found = bool(await self.query_async(domain, rtype)) or found
                except NoData:
                    continue
                except TemporaryFailure as exc:
                    failure = exc
            if not found and failure:
                raise failure from None
            return self._implicit_mx(domain, found)
        records = [MailExchanger(r.preference, _text_name(r.exchange)) for r in rdata]
        return _mail_exchangers(domain, records, rng)

    @staticmethod
    def _implicit_mx(domain: str, has_address: bool) -> MailExchangers:
        # RFC 5321 §5.1: no MX but an address record → the domain itself, preference 0.
        if not has_address:
            raise NoData(domain, "MX", "no MX and no address records")
        return MailExchangers(domain, (MailExchanger(0, domain.rstrip(".").lower()),), implicit=True)


def _service_records(rdata) -> list[ServiceRecord]:
    # RFC 2782: lowest priority first; weight ordering is left to the caller.
    return sorted(
        (ServiceRecord(r.priority, r.weight, r.port, _text_name(r.target)) for r in rdata),
        key=lambda s: (s.priority, -s.weight),
    )


def _mail_exchangers(domain: str, records: list[MailExchanger], rng) -> MailExchangers:
    # RFC 7505 §3: a single MX of preference 0 with the root as exchange is a null MX.
    if any(mx.host in ("", ".") for mx in records):
        return MailExchangers(domain, (), null=True)
    return MailExchangers(domain, order_exchangers(records, rng))


# ---------------------------------------------------------------------- pyspf
# LIBRARIES.md: pyspf looks names up through dnspython's global default resolver. Replacing its
# module-level `DNSLookup` sends SPF lookups through a `Resolver` without changing the global
# resolver other code may use. The resolver is taken from a context variable (so threads started
# with `asyncio.to_thread` inherit the caller's), else from `point_pyspf_at`.

_pyspf_resolver: contextvars.ContextVar[Resolver | None] = contextvars.ContextVar("pyspf_resolver", default=None)
_pyspf_default: list[Resolver] = []


def _pyspf_lookup(name, qtype, strict=True, timeout=30):
    resolver = _pyspf_resolver.get() or (_pyspf_default[0] if _pyspf_default else None)
    if resolver is None:
        raise spf.TempError("DNS resolver not configured for SPF")
    qtype = str(qtype).upper()
    if qtype not in ("A", "AAAA", "MX", "PTR", "TXT"):
        return []  # pyspf only needs these (RFC 7208 §3.1: the SPF RR type is not used)
    try:
        rdata = resolver.query(str(name), qtype)
    except (NXDomain, NoData):
        return []  # RFC 7208 §4.3/§5: "no records"; pyspf tells void lookups apart itself
    except TemporaryFailure as exc:
        raise spf.TempError(f"DNS {exc}") from None  # RFC 7208 §4.4, §5: temperror
    key = (name, qtype)
    if qtype in ("A", "AAAA"):
        return [(key, r.address) for r in rdata]
    if qtype == "MX":
        return [(key, (r.preference, _text_name(r.exchange))) for r in rdata]
    if qtype == "PTR":
        return [(key, _text_name(r.target)) for r in rdata]
    return [(key, tuple(r.strings)) for r in rdata]


def point_pyspf_at(resolver: Resolver) -> None:
    """Make every pyspf lookup in this process go through `resolver` (unless overridden)."""
    spf.DNSLookup = _pyspf_lookup
    _pyspf_default[:] = [resolver]


@contextlib.contextmanager
def pyspf_lookups_through(resolver: Resolver) -> Iterator[None]:
    """Within this block (and threads started from it by `asyncio.to_thread`), pyspf uses `resolver`."""
    spf.DNSLookup = _pyspf_lookup
    token = _pyspf_resolver.set(resolver)
    try:
        yield
    finally:
        _pyspf_resolver.reset(token)
