"""The domain and address registry, read side: who receives mail for an address.

Owns address parsing and canonical forms, `resolve` (RCPT TO → local mailboxes, forwards
or a reason to reject), `is_local_domain`, and `addresses_owned_by` (the envelope senders an
authenticated mailbox may use). The registry tables are written only by
`courriel.admin.services` (ARCHITECTURE §4), which uses the parsers below.

Rules, in the order `resolve` applies them to `local@domain` on a local domain:
1. a mailbox with that address (disabled: reject);
2. an alias (address → one or more local or external targets, followed recursively);
3. a mail group (address → member mailboxes; disabled members are skipped);
4. sub-addressing: `user+tag@domain` is resolved as `user@domain` when no mailbox, alias or
   group has the full address (RFC 5233 describes the convention for Sieve);
5. the domain's catch-all address, if any;
6. otherwise unknown (reject).
Alias expansion is loop-safe: a target already on the expansion path is dropped, and so is
any target deeper than MAX_EXPANSION_DEPTH; a loop resolves to the non-looping targets.

Standards: RFC 5321 §4.1.2 (Mailbox, Local-part, Dot-string), §4.5.3.1 (size limits),
§2.4 (local parts are case-sensitive by the standard; like most servers we fold case);
RFC 6531 §3.3 (UTF-8 local parts with SMTPUTF8); RFC 5890/5891 IDNA2008 with UTS #46
mapping (domains are stored and compared as lower-case A-labels); RFC 3463 (enhanced
status codes suggested by `RejectReason.enhanced_status`).
Security: parses untrusted input (SMTP envelope addresses, login names): strict grammar,
length limits, no quoted local parts, no address literals, no control characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import idna
from sqlalchemy import select
from sqlalchemy.orm import Session

from courriel.models import Alias, AliasTarget, Domain, GroupMember, Mailbox, MailGroup

MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN_OCTETS = 253  # RFC 5321 §4.5.3.1.2 (255) less the root label
MAX_ADDRESS_OCTETS = 254  # RFC 5321 §4.5.3.1.3: a path is at most 256 octets with "<>"
MAX_EXPANSION_DEPTH = 8
SUBADDRESS_SEPARATOR = "+"
POSTMASTER = "postmaster"

# RFC 5322 §3.2.3 atext, the characters of a Dot-string atom besides letters and digits.
_ATEXT_SPECIALS = frozenset("!#$%&'*+-/=?^_`{|}~")


class AddressError(ValueError):
    """An address or domain that does not parse; the message says why."""


# --------------------------------------------------------------------------- parsing (pure)


def normalize_domain(text: str) -> str:
    """The canonical form of a domain: lower-case A-label, no trailing dot.

    Accepts U-labels and A-labels (RFC 5891 §5 with UTS #46 mapping); rejects address
    literals, underscores, empty labels, labels over 63 octets and all-numeric top labels."""
    if not isinstance(text, str) or not text:
        raise AddressError("empty domain")
    if text.startswith("["):
        raise AddressError("address literals are not accepted")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise AddressError("domain contains white space or control characters")
    candidate = text[:-1] if text.endswith(".") else text
    try:
        ascii_form = idna.encode(candidate, uts46=True, std3_rules=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise AddressError(f"invalid domain {text!r}: {exc}") from None
    if len(ascii_form) > MAX_DOMAIN_OCTETS:
        raise AddressError("domain is longer than 253 octets")
    labels = ascii_form.split(".")
    if any(not label or len(label) > 63 for label in labels):
        raise AddressError(f"invalid domain {text!r}: empty or over-long label")
    if labels[-1].isdigit():
        raise AddressError(f"invalid domain {text!r}: the top-level label is numeric")
    return ascii_form


def validate_mail_domain(text: str) -> str:
    """`normalize_domain` plus: at least two labels (a domain that can have MX records)."""
    name = normalize_domain(text)
    if "." not in name:
        raise AddressError(f"invalid domain {text!r}: a mail domain needs at least two labels")
    return name


def normalize_local_part(text: str) -> str:
    """A Dot-string local part (RFC 5321 §4.1.2), UTF-8 allowed (RFC 6531 §3.3), lower-cased."""
    if not text:
        raise AddressError("empty local part")
    if len(text.encode("utf-8")) > MAX_LOCAL_PART_OCTETS:
        raise AddressError("local part is longer than 64 octets")
    if text.startswith(".") or text.endswith(".") or ".." in text:
        raise AddressError("local part has a misplaced dot")
    for char in text:
        if char == "." or char in _ATEXT_SPECIALS or (char.isascii() and char.isalnum()):
            continue
        if not char.isascii() and char.isprintable() and not char.isspace():
            continue  # RFC 6531 §3.3: UTF8-non-ascii is atext
        if char == '"':
            raise AddressError("quoted local parts are not accepted")
        raise AddressError(f"local part contains a character that is not allowed: {char!r}")
    return text.lower()


@dataclass(frozen=True)
class Address:
    local: str  # lower-cased
    domain: str  # lower-case A-label

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def base(self) -> Address | None:
        """`user@domain` for a sub-address `user+tag@domain`, else None."""
        user, sep, _tag = self.local.partition(SUBADDRESS_SEPARATOR)
        if sep and user:
            return Address(user, self.domain)
        return None

    @property
    def needs_smtputf8(self) -> bool:
        """RFC 6531 §3.2: a non-ASCII local part may only be sent with SMTPUTF8."""
        return not self.local.isascii()

    @property
    def unicode_domain(self) -> str:
        try:
            return idna.decode(self.domain)
        except idna.IDNAError:
            return self.domain


def parse_address(text: str) -> Address:
    """Parse `local@domain` (optionally in angle brackets) into its canonical form."""
    if not isinstance(text, str):
        raise AddressError("address must be text")
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not text:
        raise AddressError("empty address")
    if "@" not in text:
        raise AddressError(f"{text!r} is not an address (no @)")
    local, _, domain = text.rpartition("@")
    address = Address(normalize_local_part(local), normalize_domain(domain))
    if len(str(address).encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise AddressError("address is longer than 254 octets")
    return address


def canonical_address(text: str) -> str:
    return str(parse_address(text))


# --------------------------------------------------------------------------- resolution


class RejectReason(StrEnum):
    """Why an address cannot receive mail. SMTP turns this into reply text."""

    INVALID_ADDRESS = "invalid_address"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    MAILBOX_DISABLED = "mailbox_disabled"
    ALIAS_LOOP = "alias_loop"
    DOMAIN_UNVERIFIED = "domain_unverified"

    @property
    def enhanced_status(self) -> str:
        """The RFC 3463 enhanced status code class that fits this reason."""
        return _ENHANCED_STATUS[self]


_ENHANCED_STATUS = {
    RejectReason.INVALID_ADDRESS: "5.1.3",  # bad destination mailbox address syntax
    RejectReason.UNKNOWN_RECIPIENT: "5.1.1",  # bad destination mailbox address
    RejectReason.MAILBOX_DISABLED: "5.2.1",  # mailbox disabled, not accepting messages
    RejectReason.ALIAS_LOOP: "5.4.6",  # routing loop detected
    RejectReason.DOMAIN_UNVERIFIED: "5.1.2",  # destination system not accepting mail (yet)
}


class Outcome(StrEnum):
    DELIVER = "deliver"  # local domain: deliver to `mailboxes` and forward to `forwards`
    REMOTE = "remote"  # not a local domain: relaying is the caller's policy decision
    REJECT = "reject"


@dataclass(frozen=True)
class LocalMailbox:
    mailbox_id: int
    address: str


@dataclass(frozen=True)
class Resolution:
    address: str  # canonical form of the address asked about (the input when it did not parse)
    outcome: Outcome
    mailboxes: tuple[LocalMailbox, ...] = ()
    forwards: tuple[str, ...] = ()  # external addresses, canonical
    reason: RejectReason | None = None
    detail: str = ""  # for logs and operators; never contains secrets

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.DELIVER

    @property
    def mailbox_ids(self) -> tuple[int, ...]:
        return tuple(m.mailbox_id for m in self.mailboxes)


@dataclass
class _Expansion:
    mailboxes: dict[int, LocalMailbox] = field(default_factory=dict)
    forwards: dict[str, None] = field(default_factory=dict)
    looped: bool = False
    disabled: bool = False
    unknown: bool = False


def is_local_domain(session: Session, domain: str) -> bool:
    """True when `domain` (U-label or A-label, any case) is one of ours."""
    try:
        name = normalize_domain(domain)
    except AddressError:
        return False
    return _domain(session, name) is not None


def _domain(session: Session, name: str) -> Domain | None:
    return session.scalar(select(Domain).where(Domain.name == name))


def accepts_mail(domain: Domain, require_verified: bool) -> bool:
    """A local domain receives mail once its ownership is verified (`[domains] require_verification`);
    the default domain is the server's own and needs no proof."""
    return not require_verified or domain.verified_at is not None or bool(domain.is_default)


def resolve(session: Session, address: str, *, require_verified: bool = False) -> Resolution:
    """Where mail for `address` goes (ARCHITECTURE §3 step 1).

    With `require_verified` (callers pass `[domains] require_verification`), a local domain whose
    ownership is not verified yet rejects every address (`RejectReason.DOMAIN_UNVERIFIED`)."""
    try:
        parsed = parse_address(address)
    except AddressError as exc:
        return Resolution(str(address), Outcome.REJECT, reason=RejectReason.INVALID_ADDRESS, detail=str(exc))
    canonical = str(parsed)
    own_domain = _domain(session, parsed.domain)
    if own_domain is None:
        return Resolution(canonical, Outcome.REMOTE, forwards=(canonical,), detail="not a local domain")
    if not accepts_mail(own_domain, require_verified):
        return Resolution(canonical, Outcome.REJECT, reason=RejectReason.DOMAIN_UNVERIFIED,
                          detail="the domain's ownership is not verified yet")
    result = _Expansion()
    local_domains: dict[str, Domain | None] = {}
    _expand(session, parsed, result, path=(), depth=0, local_domains=local_domains)
    if not (result.mailboxes or result.forwards or result.looped or result.disabled) and parsed.local == POSTMASTER:
        # RFC 5321 §4.5.1: every domain must accept "postmaster"; without one of its own,
        # a domain's postmaster is the default domain's.
        default = session.scalar(select(Domain.name).where(Domain.is_default.is_(True)).limit(1))
        if default and default != parsed.domain:
            _expand(session, Address(POSTMASTER, default), result, path=(), depth=0, local_domains=local_domains)
    if result.mailboxes or result.forwards:
        return Resolution(canonical, Outcome.DELIVER, tuple(result.mailboxes.values()), tuple(result.forwards))
    if result.looped:
        reason, detail = RejectReason.ALIAS_LOOP, "alias expansion loops without a final target"
    elif result.disabled:
        reason, detail = RejectReason.MAILBOX_DISABLED, "mailbox disabled"
    else:
        reason, detail = RejectReason.UNKNOWN_RECIPIENT, "no such mailbox, alias or group"
    return Resolution(canonical, Outcome.REJECT, reason=reason, detail=detail)


def _is_local(session: Session, domain: str, cache: dict[str, Domain | None]) -> Domain | None:
    if domain not in cache:
        cache[domain] = _domain(session, domain)
    return cache[domain]


def _expand(session, address: Address, result: _Expansion, path: tuple[str, ...], depth: int, local_domains,
            catch_all: bool = True) -> None:
    """Add the final targets of `address` (on a local domain) to `result`.

    `catch_all` is False while expanding a catch-all target: a catch-all that names an
    unknown address is unknown, not a loop through the catch-all again."""
    key = str(address)
    if key in path:
        result.looped = True
        return
    if depth > MAX_EXPANSION_DEPTH:
        result.looped = True
        return
    path = (*path, key)
    if _expand_exact(session, address, result, path, depth, local_domains):
        return
    base = address.base
    if base is not None and _expand_exact(session, base, result, path, depth, local_domains):
        return
    domain = _is_local(session, address.domain, local_domains)
    if catch_all and domain is not None and domain.catch_all:
        _expand_target(session, domain.catch_all, result, path, depth, local_domains, catch_all=False)
        return
    result.unknown = True


def _expand_exact(session, address: Address, result: _Expansion, path, depth: int, local_domains) -> bool:
    """Expand a mailbox, alias or group with exactly this address; False if none exists."""
    key = str(address)
    mailbox = session.scalar(select(Mailbox).where(Mailbox.address == key))
    if mailbox is not None:
        if mailbox.enabled:
            result.mailboxes.setdefault(mailbox.id, LocalMailbox(mailbox.id, mailbox.address))
        else:
            result.disabled = True
        return True
    alias = session.scalar(select(Alias).where(Alias.address == key))
    if alias is not None:
        for target in alias.targets:
            _expand_target(session, target.target, result, path, depth, local_domains)
        return True
    group = session.scalar(select(MailGroup).where(MailGroup.address == key))
    if group is not None:
        members = session.execute(
            select(Mailbox.id, Mailbox.address, Mailbox.enabled)
            .join(GroupMember, GroupMember.mailbox_id == Mailbox.id)
            .where(GroupMember.group_id == group.id)
            .order_by(GroupMember.id)
        ).all()
        for mailbox_id, mailbox_address, enabled in members:
            if enabled:
                result.mailboxes.setdefault(mailbox_id, LocalMailbox(mailbox_id, mailbox_address))
            else:
                result.disabled = True
        return True
    return False


def _expand_target(session, target: str, result: _Expansion, path, depth: int, local_domains,
                   catch_all: bool = True) -> None:
    try:
        parsed = parse_address(target)
    except AddressError:
        result.unknown = True  # a stored target that no longer parses is skipped
        return
    if _is_local(session, parsed.domain, local_domains) is None:
        result.forwards.setdefault(str(parsed), None)
        return
    _expand(session, parsed, result, path, depth + 1, local_domains, catch_all)


# --------------------------------------------------------------------------- sender ownership


def addresses_owned_by(session: Session, mailbox_id: int) -> set[str]:
    """The addresses an authenticated mailbox may use as envelope sender or From.

    Its own address, every alias that leads to it (directly or through other aliases,
    bounded by MAX_EXPANSION_DEPTH), and every group it belongs to whose members may send.
    Sub-addresses of these are accepted by `owns_address`."""
    mailbox = session.get(Mailbox, mailbox_id)
    if mailbox is None:
        return set()
    owned = {mailbox.address}
    frontier = {mailbox.address}
    for _ in range(MAX_EXPANSION_DEPTH):
        if not frontier:
            break
        rows = session.scalars(
            select(Alias.address).join(AliasTarget, AliasTarget.alias_id == Alias.id)
            .where(AliasTarget.target.in_(sorted(frontier)))
        ).all()
        frontier = set(rows) - owned
        owned |= frontier
    groups = session.scalars(
        select(MailGroup.address).join(GroupMember, GroupMember.group_id == MailGroup.id)
        .where(GroupMember.mailbox_id == mailbox_id, MailGroup.members_can_send.is_(True))
    ).all()
    owned.update(groups)
    return owned


def owns_address(session: Session, mailbox_id: int, address: str) -> bool:
    """True when `address` (or the base of a sub-address) is owned by the mailbox."""
    try:
        parsed = parse_address(address)
    except AddressError:
        return False
    owned = addresses_owned_by(session, mailbox_id)
    return str(parsed) in owned or (parsed.base is not None and str(parsed.base) in owned)
