"""DKIM key lifecycle on both database backends, verified through a real loopback DNS server:
pending → published → active → retiring → retired, and mail signed before, during and after a
rotation keeps verifying."""

from __future__ import annotations

import datetime as dt
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from dns_test_server import dns_server  # noqa: F401  (pytest fixture)

from courriel import dkim
from courriel.admin import services
from courriel.admin.services import dkim as keys
from courriel.admin.services import dns as domain_dns
from courriel.dns.resolver import Resolver

DOMAIN = "example.org"
HOST = "mail.example.net"


@pytest.fixture
def setup(db, config, dns_server):  # noqa: F811
    config.values[("server", "hostname")] = HOST
    config.values[("dns", "nameservers")] = [dns_server.nameserver]
    config.values[("dns", "timeout")] = 1.0
    services.add_domain(db, DOMAIN)
    return db, config, dns_server, Resolver([dns_server.nameserver], timeout=1.0)


def publish(server, info: keys.DkimKeyInfo) -> None:
    record = keys.dns_record(info)
    server.add(record.name, "TXT", list(record.strings))


def message(subject: str) -> bytes:
    return (f"From: a@{DOMAIN}\r\nTo: b@example.com\r\nSubject: {subject}\r\n"
            f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@{DOMAIN}>\r\n\r\nHello\r\n").encode()


def signed(db, config, subject: str) -> bytes:
    signing = keys.signing_keys(db, config, DOMAIN)
    assert signing, "no active key"
    return dkim.sign(message(subject), signing)


def results(data: bytes, resolver) -> list[tuple[str, str]]:
    return [(r.result, r.selector) for r in dkim.verify_all(data, resolver)]


def test_rotation_end_to_end(setup):
    db, config, server, resolver = setup
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    first = keys.create_key(db, config, DOMAIN, now=t0)
    assert first.state == "pending" and first.algorithm == "rsa-sha256"
    path = keys.key_file(db, config, DOMAIN, first.selector)
    assert path.parent == config.data_dir / "keys" / DOMAIN and path.name.startswith(first.selector + "-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "PRIVATE" not in repr(first.as_dict()) and "PRIVATE" not in repr(keys.list_keys(db, DOMAIN))
    assert keys.signing_keys(db, config, DOMAIN) == []  # a pending key does not sign

    # Not published yet: activation refused, nothing changes.
    with pytest.raises(services.ServiceError) as refused:
        keys.activate(db, config, DOMAIN, first.selector, resolver=resolver, now=t0)
    assert refused.value.code == "not_published"
    assert [k.state for k in keys.list_keys(db, DOMAIN)] == ["pending"]

    publish(server, first)
    keys.activate(db, config, DOMAIN, first.selector, resolver=resolver, now=t0)
    before = signed(db, config, "before")
    assert results(before, resolver) == [("pass", first.selector)]

    # Rotation starts: the new key is pending and published in the expected records, the old one still signs.
    t1 = t0 + dt.timedelta(days=30)
    second = keys.rotate(db, config, DOMAIN, now=t1)
    assert second.selector != first.selector and second.algorithm == first.algorithm
    assert {k.selector for k in keys.published_keys(db, DOMAIN)} == {first.selector, second.selector}
    during = signed(db, config, "during")
    assert results(during, resolver) == [("pass", first.selector)]
    with pytest.raises(services.ServiceError):
        keys.activate(db, config, DOMAIN, second.selector, resolver=resolver, now=t1)
    assert [(k.selector, k.state) for k in keys.list_keys(db, DOMAIN)] == [
        (first.selector, "active"), (second.selector, "pending")]

    publish(server, second)
    keys.activate(db, config, DOMAIN, second.selector, resolver=resolver, now=t1)
    states = {k.selector: k.state for k in keys.list_keys(db, DOMAIN)}
    assert states == {first.selector: "retiring", second.selector: "active"}
    assert [k.selector for k in keys.signing_keys(db, config, DOMAIN)] == [second.selector]
    after = signed(db, config, "after")

    # Every message verifies: the retiring key stays published.
    for data, selector in ((before, first.selector), (during, first.selector), (after, second.selector)):
        assert results(data, resolver) == [("pass", selector)]
    assert {k.selector for k in keys.published_keys(db, DOMAIN)} == {first.selector, second.selector}

    # Retiring before the grace period is refused; after it, the key leaves DNS and its file is deleted.
    with pytest.raises(services.ServiceError) as early:
        keys.retire(db, config, DOMAIN, first.selector, now=t1 + dt.timedelta(days=1))
    assert early.value.code == "grace_period"
    assert path.exists()
    assert keys.retire_expired(db, config, now=t1 + dt.timedelta(days=2)) == []
    retired = keys.retire_expired(db, config, now=t1 + dt.timedelta(days=8))
    assert [k.selector for k in retired] == [first.selector]
    assert not path.exists()
    assert {k.selector for k in keys.published_keys(db, DOMAIN)} == {second.selector}
    zone = [r.name for r in domain_dns.expected_records(db, config, DOMAIN)]
    assert f"{second.selector}._domainkey.{DOMAIN}." in zone
    assert f"{first.selector}._domainkey.{DOMAIN}." not in zone


def test_refusals_change_nothing(setup):
    db, config, _server, resolver = setup
    first = keys.create_key(db, config, DOMAIN, "ed25519")
    assert first.algorithm == "ed25519-sha256"
    keys.activate(db, config, DOMAIN, first.selector, force=True)
    snapshot = keys.list_keys(db, DOMAIN)
    files = sorted(p.name for p in (config.data_dir / "keys").rglob("*") if p.is_file())
    attempts = [
        ("invalid_algorithm", lambda: keys.create_key(db, config, DOMAIN, "dsa")),
        ("invalid_selector", lambda: keys.create_key(db, config, DOMAIN, selector="bad selector")),
        ("duplicate", lambda: keys.create_key(db, config, DOMAIN, selector=first.selector)),
        ("not_found", lambda: keys.create_key(db, config, "other.example")),
        ("invalid_domain", lambda: keys.rotate(db, config, "not a domain")),
        ("invalid_state", lambda: keys.activate(db, config, DOMAIN, first.selector, resolver=resolver)),
        ("invalid_state", lambda: keys.retire(db, config, DOMAIN, first.selector)),
        ("not_found", lambda: keys.retire(db, config, DOMAIN, "nosuch")),
    ]
    for code, attempt in attempts:
        with pytest.raises(services.ServiceError) as refused:
            attempt()
        assert refused.value.code == code
    assert keys.list_keys(db, DOMAIN) == snapshot
    assert sorted(p.name for p in (config.data_dir / "keys").rglob("*") if p.is_file()) == files


def test_two_algorithms_sign_together(setup):
    db, config, server, resolver = setup
    rsa_key = keys.create_key(db, config, DOMAIN, "rsa")
    ed_key = keys.create_key(db, config, DOMAIN, "ed25519")
    for info in (rsa_key, ed_key):
        publish(server, info)
        keys.activate(db, config, DOMAIN, info.selector, resolver=resolver)
    data = signed(db, config, "both")
    assert sorted(results(data, resolver)) == sorted([("pass", rsa_key.selector), ("pass", ed_key.selector)])
    # Rotating the Ed25519 key leaves the RSA key active.
    newer = keys.rotate(db, config, DOMAIN, "ed25519")
    publish(server, newer)
    keys.activate(db, config, DOMAIN, newer.selector, resolver=resolver)
    assert sorted(k.selector for k in keys.signing_keys(db, config, DOMAIN)) == sorted(
        [rsa_key.selector, newer.selector])


def test_concurrent_creation_of_one_selector_leaves_one_key_and_one_file(setup):
    db, config, _server, _resolver = setup
    start = threading.Barrier(2, timeout=10)

    def create():
        start.wait()
        try:
            return keys.create_key(db, config, DOMAIN, "ed25519", selector="same")
        except services.ServiceError as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _i: create(), range(2)))
    created = [o for o in outcomes if isinstance(o, keys.DkimKeyInfo)]
    refused = [o for o in outcomes if isinstance(o, services.ServiceError)]
    assert len(created) == 1 and len(refused) == 1 and refused[0].code == "duplicate"
    key_files = list((config.data_dir / "keys" / DOMAIN).glob("same-*.pem"))
    assert key_files == [keys.key_file(db, config, DOMAIN, "same")]
    assert dkim.public_key_of(key_files[0].read_bytes(), "ed25519-sha256") == created[0].public_key
