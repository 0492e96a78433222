"""Recipient routing (ring 0, pure): each queued recipient goes to local mailboxes, to a remote
domain, or is rejected.

Owns the decision only. The caller (the runner) supplies what the registry knows about a local
address as a `Resolution` (mailbox ids and external forwarding targets); nothing here reads the
database or DNS.

Rules, in order:
1. A recipient whose mailbox was decided at RCPT time (`mailbox_id`) is local to that mailbox.
2. The address must be `local-part@domain` with a syntactically valid domain; an address
   literal (`[192.0.2.1]`) is refused (RFC 5321 §4.1.3 allows them; we do not relay to them).
3. A domain we host: the registry's resolution decides: mailboxes → local, external targets
   of an alias → forward, nothing → reject 5.1.1 (RFC 3463).
4. Any other domain → remote, grouped by the lower-case A-label form of the domain.

Standards: RFC 5321 §2.3.11 / §4.1.2 (mailbox syntax), RFC 5890 (IDNA A-labels), RFC 3463
(enhanced status codes in the reject reasons).
Security: addresses come from SMTP clients; malformed ones are rejected, never raise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class RouteKind(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"
    FORWARD = "forward"  # a local alias whose targets include external addresses
    REJECT = "reject"


@dataclass(frozen=True)
class Resolution:
    """What the registry says about one address of a local domain."""

    mailbox_ids: tuple[int, ...] = ()
    external: tuple[str, ...] = ()  # forwarding targets outside our domains


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    mailbox_ids: tuple[int, ...] = ()
    domain: str | None = None  # REMOTE: the destination domain (A-label, lower case)
    forward_to: tuple[str, ...] = ()  # FORWARD: external addresses (mailbox_ids may be set too)
    status: str | None = None  # REJECT: enhanced status code
    reason: str | None = None  # REJECT: text for the DSN


def reject(status: str, reason: str) -> Route:
    return Route(RouteKind.REJECT, status=status, reason=reason)


def destination_domain(address: str) -> str | None:
    """The A-label, lower-case domain of `address`, or None when it is not a valid mailbox."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return None
    domain = domain.rstrip(".")
    if domain.startswith("["):
        return None
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        return None
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or len(labels) < 1 or not all(_LABEL.match(label) for label in labels):
        return None
    return ascii_domain


def route(address: str, mailbox_id: int | None, local_domains: Iterable[str],
          resolution: Resolution | None) -> Route:
    """Where one recipient's copy goes (see the module documentation for the rules)."""
    if mailbox_id is not None:
        return Route(RouteKind.LOCAL, mailbox_ids=(mailbox_id,))
    if "@" in address and address.rpartition("@")[2].startswith("["):
        return reject("5.1.2", "address literals are not accepted as destinations")
    domain = destination_domain(address)
    if domain is None:
        return reject("5.1.3", "bad destination mailbox address syntax")
    if domain in {d.lower() for d in local_domains}:
        if resolution is None or (not resolution.mailbox_ids and not resolution.external):
            return reject("5.1.1", "no such mailbox here")
        mailbox_ids = tuple(dict.fromkeys(resolution.mailbox_ids))
        if resolution.external:
            forward_to = tuple(dict.fromkeys(resolution.external))
            return Route(RouteKind.FORWARD, mailbox_ids=mailbox_ids, forward_to=forward_to)
        return Route(RouteKind.LOCAL, mailbox_ids=mailbox_ids)
    return Route(RouteKind.REMOTE, domain=domain)
