"""DKIM keys of the local domains: creation and the rotation state machine.

States of a key (the `dkim_keys.state` column):

    pending ──activate──▶ active ──(a newer key of the same algorithm is activated)──▶ retiring ──retire──▶ retired

- `create_key` / `rotate`: a new selector and private key (RSA-2048 by default, Ed25519 on request)
  in state `pending`. Its public key is part of the domain's expected DNS records from now on;
  it does not sign yet.
- `activate`: only once the DNS checker finds the pending key published (RFC 6376 §3.6.2: a
  verifier fetches it by selector), unless forced. In the same transaction the previously active
  key of the same algorithm becomes `retiring`: until that commit it kept signing, after it the
  new key signs. Only `active` keys sign (`courriel.queue.runner` signs with them).
- `retiring` keys no longer sign but stay published, so mail signed just before the switch still
  verifies while it is in transit; `retire` (after `[domains] dkim_grace_days`, or forced)
  removes them from the expected records and deletes the private key file. `retire_expired`
  does this for every key whose grace period is over (the admin role calls it periodically).
- `retired_at` is the moment a key stopped signing (state retiring), kept when it is retired.

Standards: RFC 6376 §3.1 (selectors), §3.6.1 (key records), RFC 8301 §3.2 (RSA keys of at
least 1024 bits; 2048 here), RFC 8463 (Ed25519-SHA256), RFC 6376 §6.1.2 (keys must stay
published while signed mail may still be verified).
Security: private keys are written mode 0600 under DATA/keys (directory 0700), never returned,
printed or logged; only the public key and the file's relative path are stored in the database.
Durability: the key file is written durably before the row that refers to it is committed; a
failed commit removes the file. Retiring deletes the file after the commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select

from courriel import dkim, durable
from courriel.admin.services import lookups
from courriel.admin.services.errors import Conflict, InvalidInput, NotFound
from courriel.db import Database
from courriel.dns import checker, records
from courriel.dns.resolver import Resolver
from courriel.models import DkimKey, Domain

log = logging.getLogger(__name__)

PENDING = "pending"
ACTIVE = "active"
RETIRING = "retiring"
RETIRED = "retired"
PUBLISHED_STATES = (PENDING, ACTIVE, RETIRING)
ALGORITHM_NAMES = {"rsa": "rsa-sha256", "rsa-sha256": "rsa-sha256", "ed25519": "ed25519-sha256",
                   "ed25519-sha256": "ed25519-sha256"}
DEFAULT_ALGORITHM = "rsa-sha256"
DEFAULT_GRACE = dt.timedelta(days=7)
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class DkimKeyInfo:
    domain: str
    selector: str
    algorithm: str
    state: str
    public_key: str  # base64 p= value (public)
    created_at: dt.datetime
    activated_at: dt.datetime | None
    retired_at: dt.datetime | None

    def as_dict(self) -> dict:
        data = asdict(self)
        for key in ("created_at", "activated_at", "retired_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    @property
    def public(self) -> records.DkimPublicKey:
        return records.DkimPublicKey(self.selector, self.algorithm, self.public_key)


def _info(domain: str, row: DkimKey) -> DkimKeyInfo:
    return DkimKeyInfo(domain, row.selector, row.algorithm, row.state, row.public_key, row.created_at,
                       row.activated_at, row.retired_at)


def algorithm_name(text: str | None) -> str:
    name = ALGORITHM_NAMES.get((text or DEFAULT_ALGORITHM).strip().lower())
    if name is None:
        raise InvalidInput(f"unknown DKIM algorithm {text!r}: use rsa or ed25519", "invalid_algorithm")
    return name


def _selector(text: str) -> str:
    selector = (text or "").strip().lower()
    if not _SELECTOR.match(selector):
        raise InvalidInput(f"invalid DKIM selector {text!r}: letters, digits and inner hyphens, at most 63",
                           "invalid_selector")
    return selector


def grace_period(config) -> dt.timedelta:
    return dt.timedelta(days=int(config.get("domains", "dkim_grace_days")))


def _new_selector(session, domain_id: int, algorithm: str, now: dt.datetime) -> str:
    # c + year-month + r/e (algorithm) + a counter: unique per domain, readable in DNS.
    taken = set(session.scalars(select(DkimKey.selector).where(DkimKey.domain_id == domain_id)))
    stem = f"c{now:%Y%m}{'e' if algorithm.startswith('ed25519') else 'r'}"
    for counter in range(1, 1000):
        candidate = f"{stem}{counter}"
        if candidate not in taken:
            return candidate
    raise Conflict("too many DKIM keys this month", "limit_reached")


def new_key_path(domain: str, selector: str) -> Path:
    """A fresh file name for a key, relative to the data directory. The random part keeps two
    concurrent creations of one selector from writing the same file (the loser removes its own)."""
    return Path("keys") / domain / f"{selector}-{secrets.token_hex(4)}.pem"


def key_file(db: Database, config, domain: str, selector: str) -> Path:
    """The private key file of a key (for operators and tests; the key itself is never read here)."""
    name = lookups.domain_name(domain)
    with db.read() as session:
        _domain, key = _key(session, name, _selector(selector))
        return config.data_dir / key.key_file


def create_key(db: Database, config, domain: str, algorithm: str | None = None, selector: str | None = None,
               *, now: dt.datetime | None = None) -> DkimKeyInfo:
    """A new pending key: private file (0600) under DATA/keys, public key in the database."""
    name = lookups.domain_name(domain)
    algorithm = algorithm_name(algorithm)
    chosen = _selector(selector) if selector is not None else None
    now = now or _now()
    with db.read() as session:
        row = lookups.domain(session, name)
        if chosen is None:
            chosen = _new_selector(session, row.id, algorithm, now)
        elif session.scalar(select(DkimKey.id).where(DkimKey.domain_id == row.id, DkimKey.selector == chosen)):
            raise Conflict(f"selector {chosen} is already used on {name}", "duplicate")
    relative = new_key_path(name, chosen)
    absolute = config.data_dir / relative
    durable.make_dirs(absolute.parent, mode=0o700)
    public_key = dkim.generate_key(absolute, algorithm)
    try:
        with lookups.writing(db) as session:
            row = lookups.domain(session, name)
            key = DkimKey(domain_id=row.id, selector=chosen, algorithm=algorithm, key_file=str(relative),
                          public_key=public_key, state=PENDING, created_at=now)
            session.add(key)
            session.flush()
            return _info(name, key)
    except BaseException:
        absolute.unlink(missing_ok=True)
        raise


def rotate(db: Database, config, domain: str, algorithm: str | None = None, *,
           now: dt.datetime | None = None) -> DkimKeyInfo:
    """Start a rotation: a new pending key of the algorithm (default: the active key's, else RSA)."""
    name = lookups.domain_name(domain)
    with db.read() as session:
        row = lookups.domain(session, name)
        current = session.scalar(select(DkimKey).where(DkimKey.domain_id == row.id, DkimKey.state == ACTIVE)
                                 .order_by(DkimKey.id.desc()).limit(1))
    if algorithm is None:
        algorithm = current.algorithm if current is not None else DEFAULT_ALGORITHM
    return create_key(db, config, name, algorithm, now=now)


def ensure_key(db: Database, config, domain: str, algorithm: str | None = None) -> DkimKeyInfo:
    """The wizard's DKIM step: the domain's newest published key, created when it has none."""
    keys = [k for k in list_keys(db, domain) if k.state in (PENDING, ACTIVE)]
    if keys:
        return keys[-1]
    return create_key(db, config, domain, algorithm)


def list_keys(db: Database, domain: str | None = None, *, include_retired: bool = True) -> list[DkimKeyInfo]:
    with db.read() as session:
        query = select(Domain.name, DkimKey).join(Domain, Domain.id == DkimKey.domain_id)
        if domain is not None:
            query = query.where(DkimKey.domain_id == lookups.domain(session, lookups.domain_name(domain)).id)
        if not include_retired:
            query = query.where(DkimKey.state != RETIRED)
        return [_info(name, key) for name, key in session.execute(query.order_by(Domain.name, DkimKey.id))]


def published_keys(db: Database, domain: str) -> list[records.DkimPublicKey]:
    """The keys the domain's DNS must publish: pending, active and retiring."""
    return [k.public for k in list_keys(db, domain) if k.state in PUBLISHED_STATES]


def _key(session, name: str, selector: str) -> tuple[Domain, DkimKey]:
    domain = lookups.domain(session, name)
    key = session.scalar(select(DkimKey).where(DkimKey.domain_id == domain.id, DkimKey.selector == selector))
    if key is None:
        raise NotFound(f"no DKIM key with selector {selector} on {name}")
    return domain, key


def dns_record(info: DkimKeyInfo) -> records.ExpectedRecord:
    """The TXT record that publishes a key (RFC 6376 §3.6.2.1: <selector>._domainkey.<domain>)."""
    value = records.dkim_value(info.public)
    return records.ExpectedRecord("TXT", f"{info.selector}._domainkey.{info.domain}.", value,
                                  f"DKIM {info.algorithm} public key, selector {info.selector} (RFC 6376)",
                                  records.split_txt(value))


def check_published(resolver: Resolver, info: DkimKeyInfo) -> checker.RecordCheck:
    """The DNS checker's verdict on one key's record."""
    return checker.check_dkim(resolver, dns_record(info))


def activate(db: Database, config, domain: str, selector: str, *, resolver: Resolver | None = None,
             force: bool = False, now: dt.datetime | None = None) -> DkimKeyInfo:
    """Make a pending key the signing key once DNS publishes it; the previous active key of the
    same algorithm becomes retiring in the same transaction."""
    name = lookups.domain_name(domain)
    chosen = _selector(selector)
    with db.read() as session:
        _domain, key = _key(session, name, chosen)
        info = _info(name, key)
    if info.state != PENDING:
        raise Conflict(f"key {chosen} is {info.state}; only a pending key can be activated", "invalid_state")
    if not force:
        result = check_published(resolver or Resolver.from_config(config), info)
        if result.status != checker.OK:
            raise Conflict(f"the DNS record of selector {chosen} is {result.status}"
                           f"{': ' + result.detail if result.detail else ''}; publish it first (or force)",
                           "not_published")
    now = now or _now()
    with lookups.writing(db) as session:
        row, key = _key(session, name, chosen)
        if key.state != PENDING:
            raise Conflict(f"key {chosen} is {key.state}; only a pending key can be activated", "invalid_state")
        for previous in session.scalars(select(DkimKey).where(
                DkimKey.domain_id == row.id, DkimKey.state == ACTIVE, DkimKey.algorithm == key.algorithm)):
            previous.state = RETIRING
            previous.retired_at = now
        key.state = ACTIVE
        key.activated_at = now
        session.flush()
        return _info(name, key)


def retire(db: Database, config, domain: str, selector: str, *, force: bool = False,
           now: dt.datetime | None = None, grace: dt.timedelta | None = None) -> DkimKeyInfo:
    """Retire a key: it leaves the expected DNS records and its private key file is deleted.

    A retiring key must have been out of use for the grace period; an active or pending key
    can only be retired with `force` (an active one would leave its algorithm unsigned)."""
    name = lookups.domain_name(domain)
    chosen = _selector(selector)
    now = now or _now()
    grace = grace_period(config) if grace is None else grace
    with lookups.writing(db) as session:
        _domain, key = _key(session, name, chosen)
        if key.state == RETIRED:
            raise Conflict(f"key {chosen} is already retired", "invalid_state")
        if key.state in (PENDING, ACTIVE) and not force:
            raise Conflict(f"key {chosen} is {key.state}; rotate first, or force", "invalid_state")
        if key.state == RETIRING and not force and key.retired_at and now - key.retired_at < grace:
            left = grace - (now - key.retired_at)
            raise Conflict(f"key {chosen} stopped signing {key.retired_at:%Y-%m-%d %H:%M} UTC; mail signed "
                           f"with it may still be verified for {left.days} day(s) {left.seconds // 3600} hour(s) "
                           "(or force)", "grace_period")
        if key.retired_at is None:
            key.retired_at = now
        key.state = RETIRED
        key_file = key.key_file
        session.flush()
        info = _info(name, key)
    (config.data_dir / key_file).unlink(missing_ok=True)
    return info


def retire_expired(db: Database, config, *, now: dt.datetime | None = None) -> list[DkimKeyInfo]:
    """Retire every retiring key whose grace period is over (called periodically)."""
    now = now or _now()
    grace = grace_period(config)
    done = []
    for info in list_keys(db, include_retired=False):
        if info.state == RETIRING and info.retired_at is not None and now - info.retired_at >= grace:
            done.append(retire(db, config, info.domain, info.selector, now=now, grace=grace))
    return done


def signing_keys(db: Database, config, domain: str) -> list[dkim.SigningKey]:
    """The keys that sign mail from `domain` now: its active keys."""
    name = lookups.domain_name(domain)
    with db.read() as session:
        row = lookups.domain(session, name)
        rows = list(session.scalars(select(DkimKey).where(DkimKey.domain_id == row.id, DkimKey.state == ACTIVE)
                                    .order_by(DkimKey.id)))
    return [dkim.SigningKey.load(config.data_dir / key.key_file, name, key.selector, key.algorithm) for key in rows]
