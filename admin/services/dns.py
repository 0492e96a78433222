"""The domain wizard, a domain's expected DNS records, ownership verification and DNS checks.

The wizard is a list of steps that the web console and the CLI walk the same way:

    name → ownership → mx → spf → dkim → dmarc → autoconfig → mta_sts (optional)

`wizard(...)` reports each step's state from the registry and the last DNS check: `done`,
`todo` (records to publish, with the expected values) or `problem` (published but wrong).
`begin(...)` performs the steps that need no DNS: it validates the name (IDNA), adds the
domain and generates its first DKIM key. Ownership is proven by a TXT record
`courriel-verification=<token>` at the apex, checked through `courriel.dns`; until then the
registry refuses mail for the domain (`[domains] require_verification`).

`check(...)` runs the DNS checker and stores its result on the domain (`dns_status` JSON and
`dns_checked_at`) so the console can flag problems; `check_all(...)` is the periodic job.
The default domain (`[server] default_domain`, else the hostname's parent domain) needs no
wizard: `ensure_default_domain` creates it verified, so any user may get a mailbox there.

Standards: RFC 5891 (IDNA), RFC 1035 §5.1 (zone file), and those of `courriel.dns.records`
and `courriel.dns.checker`.
Security: domain names are validated before any lookup or write; DNS answers are untrusted
and only stored as the checker's bounded summaries.
Durability: each write is one database transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import secrets
from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from courriel.admin.services import dkim as dkim_service
from courriel.admin.services import lookups
from courriel.admin.services.domains import DomainInfo, add_domain, get_domain
from courriel.admin.services.errors import Duplicate, InvalidInput, ServiceError
from courriel.db import Database
from courriel.dns import checker, records
from courriel.dns.resolver import Resolver
from courriel.models import Domain
from courriel.registry import AddressError, validate_mail_domain

log = logging.getLogger("courriel.admin.dns")

STEPS = ("name", "ownership", "mx", "spf", "dkim", "dmarc", "autoconfig", "mta_sts")
# Which checker results belong to which step.
STEP_CHECKS = {
    "ownership": ("ownership",),
    "mx": ("mx",),
    "spf": ("spf",),
    "dkim": ("dkim",),
    "dmarc": ("dmarc",),
    "autoconfig": ("srv", "cname"),
    "mta_sts": ("mta_sts", "mta_sts_host", "tlsrpt"),
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def require_verification(config) -> bool:
    return bool(config.get("domains", "require_verification"))


# --------------------------------------------------------------------------- expected records


def mta_sts_id(config) -> str | None:
    """RFC 8461 §3.1: the policy id changes when the policy (our MX host name) changes."""
    if not config.get("domains", "mta_sts"):
        return None
    return hashlib.sha256(config.hostname.encode()).hexdigest()[:16]


def _dns_hostname(config) -> str:
    try:
        return records.to_a_label(config.hostname)
    except ValueError as exc:
        raise InvalidInput(f"[server] hostname {config.hostname!r} is not a public DNS name: {exc}",
                           "invalid_hostname") from None


def expected_records(db: Database, config, domain: str) -> list[records.ExpectedRecord]:
    """Every record `domain` must publish for this server (DKIM: pending, active and retiring keys)."""
    name = lookups.domain_name(domain)
    with db.read() as session:
        row = lookups.domain(session, name)
        token = row.verification_token
    try:
        return records.expected(
            config.hostname, name, token, dkim_service.published_keys(db, name),
            mta_sts_id=mta_sts_id(config),
            tlsrpt_rua=f"postmaster@{name}" if config.get("domains", "mta_sts") else None,
        )
    except ValueError as exc:  # e.g. a hostname that is not a DNS name ("localhost")
        raise InvalidInput(f"cannot compute DNS records: {exc}", "invalid_hostname") from None


def record_rows(expected: list[records.ExpectedRecord]) -> list[dict]:
    """The records as the CLI's and API's JSON: type, name, value, purpose."""
    return [{"type": r.rtype, "name": r.name, "value": r.value, "purpose": r.purpose} for r in expected]


# --------------------------------------------------------------------------- ownership and checks


@dataclass(frozen=True)
class Verification:
    domain: str
    verified: bool
    check: checker.RecordCheck

    def as_dict(self) -> dict:
        return {"domain": self.domain, "verified": self.verified, "check": self.check.as_dict()}


def _mark_verified(db: Database, name: str, now: dt.datetime) -> None:
    with lookups.writing(db) as session:
        row = lookups.domain(session, name)
        if row.verified_at is None:
            row.verified_at = now


def verify(db: Database, config, domain: str, *, resolver: Resolver | None = None,
           now: dt.datetime | None = None) -> Verification:
    """The ownership step: look for the verification TXT record; record the domain as verified."""
    name = lookups.domain_name(domain)
    ownership = next(r for r in expected_records(db, config, name) if checker.kind_of(r, name) == "ownership")
    result = checker.check_ownership(resolver or Resolver.from_config(config), ownership)
    if result.status == checker.OK:
        _mark_verified(db, name, now or _now())
    return Verification(name, get_domain(db, name).verified, result)


def public_addresses(config) -> list[str]:
    """`[server] public_addresses`, validated (their reverse DNS is checked)."""
    addresses = []
    for text in config.get("server", "public_addresses"):
        try:
            addresses.append(str(ipaddress.ip_address(text.strip())))
        except ValueError:
            raise InvalidInput(f"[server] public_addresses: {text!r} is not an IP address", "invalid_config") from None
    return addresses


def check(db: Database, config, domain: str, *, resolver: Resolver | None = None,
          now: dt.datetime | None = None) -> checker.DomainCheck:
    """Check every record of `domain`; store the result on the domain (and verify ownership if proven)."""
    name = lookups.domain_name(domain)
    expected = expected_records(db, config, name)
    resolver = resolver or Resolver.from_config(config)
    result = checker.check_domain(resolver, name, config.hostname, expected, addresses=public_addresses(config))
    now = now or _now()
    with lookups.writing(db) as session:
        row = lookups.domain(session, name)
        row.dns_status = json.dumps(result.as_dict(), ensure_ascii=False)
        row.dns_checked_at = now
        if row.verified_at is None and all(r.status == checker.OK for r in result.by_check("ownership")):
            row.verified_at = now
    return result


def check_all(db: Database, config, *, resolver: Resolver | None = None,
              now: dt.datetime | None = None) -> list[checker.DomainCheck]:
    """Check every domain (the admin role's periodic job); retire DKIM keys past their grace period."""
    resolver = resolver or Resolver.from_config(config)
    with db.read() as session:
        names = list(session.scalars(select(Domain.name).order_by(Domain.name)))
    results = []
    for name in names:
        try:
            results.append(check(db, config, name, resolver=resolver, now=now))
        except ServiceError as exc:  # one domain's bad state must not stop the others' checks
            log.warning("DNS check of %s not possible: %s", name, exc)
    dkim_service.retire_expired(db, config, now=now)
    return results


def last_check(db: Database, domain: str) -> tuple[dict | None, dt.datetime | None]:
    """The stored result of the last check (as `DomainCheck.as_dict`) and when it ran."""
    name = lookups.domain_name(domain)
    with db.read() as session:
        row = lookups.domain(session, name)
        status, checked_at = row.dns_status, row.dns_checked_at
    try:
        return (json.loads(status) if status else None), checked_at
    except ValueError:
        return None, checked_at


# --------------------------------------------------------------------------- the wizard


@dataclass(frozen=True)
class WizardStep:
    name: str
    state: str  # done | todo | problem | skipped
    records: tuple[dict, ...] = ()  # the expected records of the step (type, name, value, purpose)
    problems: tuple[dict, ...] = ()  # checker results that are not ok


@dataclass(frozen=True)
class WizardState:
    domain: str
    steps: tuple[WizardStep, ...] = field(default=())
    checked_at: dt.datetime | None = None

    @property
    def next_step(self) -> str | None:
        return next((s.name for s in self.steps if s.state in ("todo", "problem")), None)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["checked_at"] = self.checked_at.isoformat() if self.checked_at else None
        data["next_step"] = self.next_step
        return data


def wizard(db: Database, config, domain: str) -> WizardState:
    """Where the domain stands in the wizard, from the registry and the last DNS check."""
    name = lookups.domain_name(domain)
    info = get_domain(db, name)
    expected = expected_records(db, config, name)
    stored, checked_at = last_check(db, name)
    results = {(r["check"], r["name"]): r for r in (stored or {}).get("records", [])}
    keys = [k for k in dkim_service.list_keys(db, name) if k.state in (dkim_service.PENDING, dkim_service.ACTIVE)]
    steps = [WizardStep("name", "done")]
    for step in STEPS[1:]:
        mine = [r for r in expected if _step_of(checker.kind_of(r, name)) == step]
        if step == "mta_sts" and not mine:
            steps.append(WizardStep(step, "skipped"))
            continue
        found = [results.get((checker.kind_of(r, name), r.name)) for r in mine]
        problems = tuple(f for f in found if f and f["status"] != checker.OK)
        all_ok = bool(found) and all(f and f["status"] == checker.OK for f in found)
        if step == "ownership":
            state = "done" if info.verified or info.is_default else ("problem" if problems else "todo")
        elif step == "dkim" and not keys:
            state = "todo"
        elif step == "dkim":
            state = "done" if all_ok and any(k.state == dkim_service.ACTIVE for k in keys) else (
                "problem" if any(f and f["status"] == checker.WRONG for f in found) else "todo")
        else:
            state = "done" if all_ok else ("problem" if problems else "todo")
        steps.append(WizardStep(step, state, tuple(record_rows(mine)), problems))
    return WizardState(name, tuple(steps), checked_at)


def _step_of(kind: str) -> str | None:
    return next((step for step, kinds in STEP_CHECKS.items() if kind in kinds), None)


def begin(db: Database, config, domain: str, *, algorithm: str | None = None) -> WizardState:
    """The steps without DNS: validate the name, add the domain (if new), generate its first DKIM key."""
    name = lookups.domain_name(domain)
    # Refuse what would fail later before anything is written.
    dkim_service.algorithm_name(algorithm)
    _dns_hostname(config)
    with contextlib.suppress(Duplicate):
        add_domain(db, name)
    dkim_service.ensure_key(db, config, name, algorithm)
    return wizard(db, config, name)


# --------------------------------------------------------------------------- the default domain


def default_domain_name(config) -> str | None:
    """`[server] default_domain`, else the hostname's parent domain (mail.example.org → example.org)."""
    configured = (config.get("server", "default_domain") or "").strip()
    try:
        if configured:
            return validate_mail_domain(configured)
        labels = config.hostname.strip().rstrip(".").split(".")
        if len(labels) < 3:
            return None
        return validate_mail_domain(".".join(labels[1:]))
    except AddressError:
        return None


def ensure_default_domain(db: Database, config, *, now: dt.datetime | None = None) -> DomainInfo | None:
    """Create the default domain if missing: marked default and verified (the server's own domain)."""
    name = default_domain_name(config)
    if name is None:
        return None
    now = now or _now()
    with lookups.writing(db) as session:
        row = session.scalar(select(Domain).where(Domain.name == name))
        if row is None:
            has_default = session.scalar(select(Domain.id).where(Domain.is_default.is_(True)).limit(1))
            row = Domain(name=name, verification_token=secrets.token_hex(16), is_default=has_default is None,
                         verified_at=now)
            session.add(row)
        elif row.verified_at is None:
            row.verified_at = now
    return get_domain(db, name)
