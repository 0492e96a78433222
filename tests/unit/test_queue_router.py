"""Recipient routing as a table (pure code)."""

from __future__ import annotations

import pytest

from courriel.queue.router import Resolution, RouteKind, destination_domain, route

LOCAL = ("example.org", "example.net")


@pytest.mark.parametrize(("address", "mailbox_id", "resolution", "kind", "detail"), [
    ("alice@example.org", 7, None, RouteKind.LOCAL, (7,)),  # decided at RCPT time
    ("alice@example.org", None, Resolution(mailbox_ids=(3, 4, 3)), RouteKind.LOCAL, (3, 4)),
    ("team@example.org", None, Resolution((3,), ("x@remote.test",)), RouteKind.FORWARD, ("x@remote.test",)),
    ("nobody@example.org", None, None, RouteKind.REJECT, "5.1.1"),
    ("nobody@EXAMPLE.net", None, Resolution(), RouteKind.REJECT, "5.1.1"),
    ("bob@remote.test", None, None, RouteKind.REMOTE, "remote.test"),
    ("bob@Remote.TEST.", None, None, RouteKind.REMOTE, "remote.test"),
    ("bob@bücher.example", None, None, RouteKind.REMOTE, "xn--bcher-kva.example"),
    ("bob@[192.0.2.1]", None, None, RouteKind.REJECT, "5.1.2"),
    ("no-at-sign", None, None, RouteKind.REJECT, "5.1.3"),
    ("@remote.test", None, None, RouteKind.REJECT, "5.1.3"),
    ("bob@bad_domain.test", None, None, RouteKind.REJECT, "5.1.3"),
    ("bob@-x.test", None, None, RouteKind.REJECT, "5.1.3"),
])
def test_route_table(address, mailbox_id, resolution, kind, detail):
    decided = route(address, mailbox_id, LOCAL, resolution)
    assert decided.kind is kind
    if kind is RouteKind.LOCAL:
        assert decided.mailbox_ids == detail
    elif kind is RouteKind.FORWARD:
        assert decided.forward_to == detail and decided.mailbox_ids == (3,)
    elif kind is RouteKind.REMOTE:
        assert decided.domain == detail
    else:
        assert decided.status == detail and decided.reason


@pytest.mark.parametrize(("address", "domain"), [
    ("a@b.example", "b.example"), ("a@b@c.example", "c.example"), ("a@", None), ("a@x..y", None),
])
def test_destination_domain(address, domain):
    assert destination_domain(address) == domain
