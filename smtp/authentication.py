"""Inbound message authentication: SPF, DKIM, DMARC verdicts and the Authentication-Results field.

Owns the judgement of a received message: SPF for the client address and envelope (pyspf,
lookups through `courriel.dns.resolver`), every DKIM signature (`courriel.dkim`), and DMARC
(our own evaluation: LIBRARIES.md explains why not authheaders), summarised in a `Verdict` with
the DMARC disposition (none, quarantine, reject) and an Authentication-Results header field.
The SMTP handler decides what to do with the disposition; this module only judges.

Standards: RFC 7208 (SPF: §2.3 HELO, §2.4 MAIL FROM and the null reverse-path, §2.6 results,
§4.6.4 lookup time), RFC 6376 §6 (DKIM verification), RFC 7489 (DMARC: §3.1 identifier alignment,
§3.2 organizational domain, §6.3 tags, §6.6.1 From extraction, §6.6.2 authentication, §6.6.3
policy discovery, §6.6.4 pct sampling), RFC 8601 (Authentication-Results: §2.2 syntax,
§2.7 methods and results, §5 removal of forged fields), RFC 6008 (header.b).
Security: everything here is untrusted input (client address, HELO, envelope, message, DNS).
Values copied from the message into the header field are checked against strict patterns and
dropped when they do not match, so a crafted signature cannot inject results; DNS trouble
gives temperror, never an exception.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import email.utils
import ipaddress
import logging
import random
import re
import threading
from dataclasses import dataclass

import authres
import idna
import spf
from authres.dmarc import DMARCAuthenticationResult
from publicsuffixlist import PublicSuffixList

from courriel.dkim import DkimResult, verify_all
from courriel.dns.resolver import NoData, NXDomain, Resolver, TemporaryFailure, pyspf_lookups_through

log = logging.getLogger(__name__)

SPF_QUERY_TIME = 20.0  # RFC 7208 §4.6.4: at least 20 seconds for the whole evaluation
POLICIES = ("none", "quarantine", "reject")

_SAFE_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
_SAFE_SELECTOR = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
_SAFE_IDENTITY = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]*@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_SAFE_ALGORITHM = re.compile(r"^[a-z0-9-]+$")
_SAFE_B = re.compile(r"^[A-Za-z0-9+/=]{1,8}$")


# ---------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class SpfVerdict:
    result: str  # pass | fail | softfail | neutral | none | temperror | permerror (RFC 7208 §2.6)
    identity: str  # "mailfrom", or "helo" for the null reverse-path (RFC 7208 §2.4)
    domain: str  # the domain SPF evaluated ("" when none could be)
    explanation: str = ""


@dataclass(frozen=True)
class DmarcVerdict:
    result: str  # pass | fail | none | temperror | permerror (RFC 8601 §2.7.7 / RFC 7489 §11.2)
    from_domain: str  # RFC5322.From domain, A-label ("" when it could not be found)
    policy: str | None = None  # the policy that applies: p, or sp for a subdomain (RFC 7489 §6.3)
    disposition: str = "none"  # what the receiver should do after pct sampling: none|quarantine|reject
    record_domain: str | None = None  # where the DMARC record was found
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Verdict:
    authserv_id: str
    spf: SpfVerdict
    dkim: tuple[DkimResult, ...]
    dmarc: DmarcVerdict

    @property
    def header_value(self) -> str:
        return authentication_results_value(self)

    @property
    def header_field(self) -> bytes:
        """The `Authentication-Results:` field, folded, CRLF-terminated, ready to prepend."""
        return f"Authentication-Results: {self.header_value}\r\n".encode("ascii")


# ---------------------------------------------------------------------- domains
_psl: PublicSuffixList | None = None
_psl_lock = threading.Lock()


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (the domain itself if it is a suffix)."""
    global _psl
    if _psl is None:
        with _psl_lock:
            if _psl is None:
                _psl = PublicSuffixList()
    return _psl.privatesuffix(domain) or domain


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """RFC 7489 §3.1.1/§3.1.2: strict = identical; relaxed = same organizational domain."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not domain or not from_domain:
        return False
    if mode == "s":
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


def _a_label(domain: str) -> str | None:
    domain = domain.strip().rstrip(".").lower()
    if not domain:
        return None
    try:
        ascii_domain = domain if domain.isascii() else idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None
    ascii_domain = ascii_domain.lower()
    return ascii_domain if _SAFE_DOMAIN.match(ascii_domain) and "." in ascii_domain else None


# ---------------------------------------------------------------------- SPF
def check_spf(resolver: Resolver, client_ip: str, helo: str, mail_from: str) -> SpfVerdict:
    """RFC 7208 check_host() for MAIL FROM, or for postmaster@HELO when the reverse-path is null."""
    mail_from = mail_from.strip().removeprefix("<").removesuffix(">")
    if mail_from:
        identity = "mailfrom"
        local, _, domain_part = mail_from.rpartition("@")
        sender = f"{local or 'postmaster'}@{domain_part}"  # RFC 7208 §4.3: empty local-part
    else:
        identity = "helo"
        domain_part = helo
        sender = f"postmaster@{helo}"  # RFC 7208 §2.4
    domain = _a_label(domain_part)
    try:
        ipaddress.ip_address(client_ip)
    except ValueError:
        return SpfVerdict("permerror", identity, domain or "", "client address is not an IP address")
    if domain is None:
        # RFC 7208 §4.3: a malformed domain (or an address literal as HELO) gives "none".
        return SpfVerdict("none", identity, "", "no domain to check")
    sender = f"{sender.rpartition('@')[0]}@{domain}"
    try:
        with pyspf_lookups_through(resolver):
            result, explanation = spf.check2(i=client_ip, s=sender, h=helo or domain,
                                             timeout=resolver.timeout, querytime=SPF_QUERY_TIME)
    except Exception as exc:  # pyspf bugs on hostile input must not fail the SMTP session
        log.warning("SPF evaluation error for %s: %s", domain, type(exc).__name__)
        return SpfVerdict("temperror", identity, domain, "SPF evaluation error")
    return SpfVerdict(str(result).lower(), identity, domain, str(explanation or ""))


# ---------------------------------------------------------------------- DMARC
def from_domains(message: bytes) -> list[str | None]:
    """The domain of each RFC5322.From address (None for an address without a usable domain)."""
    end = re.search(rb"\r?\n\r?\n", message)
    head = message[: end.end()] if end else message
    # RFC 6532 §3.2: header fields of internationalised mail are UTF-8.
    parsed = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(head.decode("utf-8", "replace"))
    domains: list[str | None] = []
    for value in parsed.get_all("From") or []:
        text = str(value)
        for _name, address in email.utils.getaddresses([text]):
            if not address and not _name:
                continue
            domains.append(_a_label(address.rpartition("@")[2]) if "@" in address else None)
    return domains


def parse_dmarc_record(text: str) -> dict[str, str] | None:
    """RFC 7489 §6.3-§6.4: tag=value pairs of a record starting with v=DMARC1; None if not one."""
    parts = [p.strip() for p in text.split(";")]
    if not re.fullmatch(r"v\s*=\s*DMARC1", parts[0]):
        return None
    tags: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    return tags


def _discover_policy(resolver: Resolver, domain: str) -> dict[str, str] | None:
    """RFC 7489 §6.6.3 steps 1-4 for one name; raises TemporaryFailure."""
    try:
        texts = resolver.txt(f"_dmarc.{domain}")
    except (NXDomain, NoData):
        return None
    records = [tags for tags in map(parse_dmarc_record, texts) if tags is not None]
    if len(records) != 1:
        return None  # step 4: none, or several records: DMARC does not apply
    tags = records[0]
    if tags.get("p", "").lower() not in POLICIES:
        # Step 6: an invalid or missing p with a valid rua is p=none; otherwise no record.
        if tags.get("rua", "").lower().startswith("mailto:"):
            tags = {**tags, "p": "none"}
        else:
            return None
    return tags


def evaluate_dmarc(
    resolver: Resolver,
    message: bytes,
    spf_verdict: SpfVerdict,
    dkim_results: tuple[DkimResult, ...],
    rng: random.Random | None = None,
) -> DmarcVerdict:
    """RFC 7489 §6.6: find the policy of the From domain and check SPF/DKIM identifier alignment."""
    domains = from_domains(message)
    if not domains:
        return DmarcVerdict("permerror", "", reason="no From address")
    if None in domains or len(set(domains)) != 1:
        # §6.6.1: several or unusable From domains; the message cannot be evaluated.
        return DmarcVerdict("permerror", "", reason="From has several domains or none")
    from_domain = domains[0]
    org_domain = organizational_domain(from_domain)
    try:
        record_domain = from_domain
        tags = _discover_policy(resolver, from_domain)
        if tags is None and org_domain != from_domain:
            record_domain = org_domain  # §6.6.3 step 3: fall back to the organizational domain
            tags = _discover_policy(resolver, org_domain)
    except TemporaryFailure:
        return DmarcVerdict("temperror", from_domain, reason="policy lookup failed")
    if tags is None:
        return DmarcVerdict("none", from_domain, reason="no DMARC record")

    policy = tags["p"].lower()
    if record_domain != from_domain and tags.get("sp", "").lower() in POLICIES:
        policy = tags["sp"].lower()  # §6.3 sp: the policy for subdomains of the organizational domain
    adkim = "s" if tags.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if tags.get("aspf", "r").lower() == "s" else "r"
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100  # §6.3: a malformed pct is ignored

    # §3.1.2: the SPF-authenticated domain; for the null reverse-path that is the HELO domain SPF
    # checked (RFC 7208 §2.4), as the identity SPF actually authenticated.
    spf_aligned = spf_verdict.result == "pass" and aligned(spf_verdict.domain, from_domain, aspf)
    # §6.6.2 / LIBRARIES.md: DMARC passes if ANY aligned DKIM signature passes.
    dkim_aligned = any(r.result == "pass" and aligned(r.domain, from_domain, adkim) for r in dkim_results)
    common = {"from_domain": from_domain, "policy": policy, "record_domain": record_domain,
              "spf_aligned": spf_aligned, "dkim_aligned": dkim_aligned}
    if spf_aligned or dkim_aligned:
        return DmarcVerdict("pass", disposition="none", **common)
    temporary = (spf_verdict.result == "temperror" and aligned(spf_verdict.domain, from_domain, aspf)) or any(
        r.result == "temperror" and aligned(r.domain, from_domain, adkim) for r in dkim_results)
    if temporary:
        # An aligned identifier could not be checked: do not apply the policy on a DNS hiccup.
        return DmarcVerdict("temperror", disposition="none", reason="aligned check failed temporarily", **common)
    disposition = policy
    if policy != "none" and (rng or random).random() * 100 >= pct:
        # §6.6.4: outside the sample, apply the next less strict policy.
        disposition = "quarantine" if policy == "reject" else "none"
    return DmarcVerdict("fail", disposition=disposition, **common)


# ---------------------------------------------------------------------- Authentication-Results
def _safe(value: str, pattern: re.Pattern) -> str | None:
    return value if value and pattern.match(value) else None


def _reason(text: str) -> str | None:
    cleaned = re.sub(r"[^A-Za-z0-9 .,:_()-]", "", text).strip()[:100]
    return cleaned or None


def _spf_clause(verdict: SpfVerdict) -> authres.AuthenticationResult:
    domain = _safe(verdict.domain, _SAFE_DOMAIN)
    # RFC 8601 §2.7.2: smtp.mailfrom carries the domain part (or the address); smtp.helo the HELO name.
    if verdict.identity == "helo":
        return authres.SPFAuthenticationResult(result=verdict.result, smtp_helo=domain)
    return authres.SPFAuthenticationResult(result=verdict.result, smtp_mailfrom=domain)


def _dkim_clause(result: DkimResult) -> authres.AuthenticationResult:
    properties = []
    for name, value, pattern in (("d", result.domain, _SAFE_DOMAIN), ("i", result.identity, _SAFE_IDENTITY),
                                 ("s", result.selector, _SAFE_SELECTOR), ("a", result.algorithm, _SAFE_ALGORITHM),
                                 ("b", result.signature_prefix, _SAFE_B)):
        safe = _safe(value, pattern)
        if safe:
            properties.append(authres.AuthenticationResultProperty("header", name, safe))
    return authres.AuthenticationResult("dkim", result=result.result, reason=_reason(result.reason) if
                                        result.result != "pass" else None, properties=properties)


def _dmarc_clause(verdict: DmarcVerdict) -> authres.AuthenticationResult:
    comment = None
    if verdict.policy:
        comment = f"p={verdict.policy} dis={verdict.disposition}"
    return DMARCAuthenticationResult(result=verdict.result, result_comment=comment,
                                     header_from=_safe(verdict.from_domain, _SAFE_DOMAIN),
                                     reason=_reason(verdict.reason) if verdict.result != "pass" else None)


def authentication_results_value(verdict: Verdict) -> str:
    """RFC 8601 §2.2: authserv-id, then one resinfo per method, folded one per line."""
    clauses = [_spf_clause(verdict.spf)]
    if verdict.dkim:
        clauses += [_dkim_clause(r) for r in verdict.dkim]
    else:
        clauses.append(authres.AuthenticationResult("dkim", result="none"))  # RFC 8601 §2.7.1: unsigned
    clauses.append(_dmarc_clause(verdict.dmarc))
    return verdict.authserv_id + "".join(f";\r\n\t{clause}" for clause in clauses)


_FIELD = re.compile(rb"(?ms)^([^\s:]+)[ \t]*:(.*?)(?=\r?\n(?![ \t])|\Z)\r?\n?")


def remove_forged_results(message: bytes, authserv_id: str) -> bytes:
    """RFC 8601 §5: drop Authentication-Results fields that claim our authserv-id before adding ours."""
    end = re.search(rb"\r?\n\r?\n", message)
    head, body = (message[: end.start()] + b"\r\n", message[end.start():]) if end else (message, b"")
    body = body[2:] if body.startswith(b"\r\n") else body[1:] if body.startswith(b"\n") else body
    kept = []
    ours = authserv_id.lower().encode("ascii", "replace")
    for match in _FIELD.finditer(head):
        name, value = match.group(1), match.group(2)
        if name.lower() == b"authentication-results":
            unfolded = re.sub(rb"\r?\n[ \t]+", b" ", value)
            unfolded = re.sub(rb"\([^)]*\)", b" ", unfolded)  # CFWS before the authserv-id
            claimed = unfolded.strip().split(b";", 1)[0].strip().lower()
            if claimed == ours:
                continue
        kept.append(match.group(0))
    return b"".join(kept) + body if end else b"".join(kept)


# ---------------------------------------------------------------------- entry points
_SIGNATURE_FIELD = re.compile(rb"(?im)^dkim-signature[ \t]*:")


def _has_signature_field(message: bytes) -> bool:
    """Whether the header block holds a DKIM-Signature field (RFC 6376 §3.5)."""
    end = re.search(rb"\r?\n\r?\n", message)
    return _SIGNATURE_FIELD.search(message, 0, end.start() if end else len(message)) is not None


def authenticate(
    message: bytes,
    *,
    client_ip: str,
    helo: str,
    mail_from: str,
    resolver: Resolver,
    authserv_id: str,
    rng: random.Random | None = None,
) -> Verdict:
    """Judge one received message (blocking: DNS lookups and signature checks)."""
    spf_verdict = check_spf(resolver, client_ip, helo, mail_from)
    # An unsigned message has no DKIM result (RFC 8601 §2.7.1 "none"): skip parsing it whole for dkimpy.
    dkim_results = verify_all(message, resolver) if _has_signature_field(message) else ()
    dmarc_verdict = evaluate_dmarc(resolver, message, spf_verdict, dkim_results, rng)
    # RFC 8601 §2.5: the authserv-id is a domain name; published as an A-label so the field stays ASCII.
    authserv = _a_label(authserv_id) or authserv_id.encode("ascii", "replace").decode("ascii").lower()
    return Verdict(authserv, spf_verdict, dkim_results, dmarc_verdict)


async def authenticate_async(message: bytes, **kwargs) -> Verdict:
    """`authenticate` in a worker thread, for the SMTP event loop."""
    return await asyncio.to_thread(authenticate, message, **kwargs)
