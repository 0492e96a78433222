"""DKIM signing and verification through a real loopback DNS server (keys published in its zone)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time

import dkim as dkimpy
import pytest
from dkim.crypto import parse_pem_private_key
from dns_test_server import dns_server  # noqa: F401 - pytest fixture

from courriel import dkim
from courriel.dns.records import DkimPublicKey, dkim_value, split_txt
from courriel.dns.resolver import Resolver

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: DKIM test\r\n"
    b"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
    b"Message-ID: <dkim-test@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Bob,\r\nthis message is signed.\r\n"
)


@pytest.fixture
def resolver(dns_server):  # noqa: F811
    return Resolver([dns_server.nameserver], timeout=0.5)


def make_key(tmp_path, dns_server, algorithm, selector, domain="example.org", bits=2048, publish=True):  # noqa: F811
    path = tmp_path / "keys" / f"{domain}.{selector}.pem"
    public_key = dkim.generate_key(path, algorithm, bits=bits)
    if publish:
        # Published as `records` splits it: several ≤255-octet strings in one TXT record.
        strings = split_txt(dkim_value(DkimPublicKey(selector, algorithm, public_key)))
        dns_server.add(f"{selector}._domainkey.{domain}", "TXT", list(strings))
    return dkim.SigningKey.load(path, domain, selector, algorithm)


def test_generated_key_file_is_private_and_matches_its_public_key(tmp_path):
    for algorithm in dkim.ALGORITHMS:
        path = tmp_path / "keys" / f"{algorithm}.pem"
        public_key = dkim.generate_key(path, algorithm)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert dkim.public_key_of(path.read_bytes(), algorithm) == public_key
        assert not list(path.parent.glob(".tmp-*"))
    assert len(dkim.public_key_of((tmp_path / "keys" / "ed25519-sha256.pem").read_bytes(), "ed25519-sha256")) == 44
    with pytest.raises(dkim.DkimKeyError):
        dkim.SigningKey.load(tmp_path / "keys" / "rsa-sha256.pem", "example.org", "s", "ed25519-sha256")
    with pytest.raises(ValueError):
        dkim.generate_key(tmp_path / "keys" / "x.pem", "dsa")
    assert "BEGIN" not in repr(dkim.SigningKey.load(tmp_path / "keys" / "rsa-sha256.pem", "example.org", "s",
                                                    "rsa-sha256"))


@pytest.mark.parametrize("algorithm", dkim.ALGORITHMS)
def test_sign_and_verify_through_loopback_dns(tmp_path, dns_server, resolver, algorithm):  # noqa: F811
    key = make_key(tmp_path, dns_server, algorithm, "s1")
    signed = dkim.sign(MESSAGE, [key])
    assert signed.endswith(MESSAGE)
    field = signed[: len(signed) - len(MESSAGE)]
    tags = dkimpy.util.parse_tag_value(field.split(b":", 1)[1])
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"a"] == algorithm.encode()
    signed_fields = [h.strip() for h in tags[b"h"].split(b":")]
    assert signed_fields.count(b"from") == 2  # over-signed (RFC 6376 §5.4.2)
    assert {b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"} <= set(signed_fields)

    [result] = dkim.verify_all(signed, resolver)
    assert (result.result, result.domain, result.selector, result.algorithm) == ("pass", "example.org", "s1",
                                                                                  algorithm)
    assert ("s1._domainkey.example.org.", "TXT") in dns_server.queries
    # dkimpy itself agrees, through the same server.
    assert dkimpy.DKIM(signed).verify(dnsfunc=lambda name, timeout=5: resolver.txt_bytes(name.decode())[0])

    tampered = signed.replace(b"this message is signed", b"this message is forged")
    assert dkim.verify_all(tampered, resolver)[0].result == "fail"
    extra_from = signed.replace(b"To: bob", b"From: mallory@example.org\r\nTo: bob")
    assert dkim.verify_all(extra_from, resolver)[0].result == "fail"


def test_cryptography_rsa_signature_is_byte_identical_to_dkimpy(tmp_path, dns_server, monkeypatch):  # noqa: F811
    key = make_key(tmp_path, dns_server, "rsa-sha256", "s1", publish=False)
    numbers = parse_pem_private_key(key.private_pem)
    for data in (b"", b"abc", MESSAGE):
        digest = dkimpy.HashThrough(hashlib.sha256())
        digest.update(data)
        assert dkim.rsa_sign_with_cryptography(digest, numbers) == dkim._pure_rsa_sign(digest, numbers)

    # Whole DKIM-Signature fields, signed within the same second (t=): identical bytes.
    for _ in range(5):
        fast = dkim.signature_field(MESSAGE, key)
        with monkeypatch.context() as patch:
            patch.setattr(dkimpy, "RSASSA_PKCS1_v1_5_sign", dkim._pure_rsa_sign)
            pure = dkim.signature_field(MESSAGE, key)
        if re.search(rb"t=(\d+)", fast).group(1) == re.search(rb"t=(\d+)", pure).group(1):
            break
    assert fast == pure
    assert dkimpy.RSASSA_PKCS1_v1_5_sign is dkim.rsa_sign_with_cryptography


def test_cryptography_rsa_is_faster(tmp_path, dns_server, monkeypatch):  # noqa: F811
    key = make_key(tmp_path, dns_server, "rsa-sha256", "s1", publish=False)
    dkim.signature_field(MESSAGE, key)  # warm the key cache

    def rate(count):
        started = time.perf_counter()
        for _ in range(count):
            dkim.signature_field(MESSAGE, key)
        return count / (time.perf_counter() - started)

    fast = rate(20)
    with monkeypatch.context() as patch:
        patch.setattr(dkimpy, "RSASSA_PKCS1_v1_5_sign", dkim._pure_rsa_sign)
        pure = rate(10)
    assert fast > 2 * pure, (fast, pure)


def test_every_signature_is_verified_and_only_the_second_passes(tmp_path, dns_server, resolver):  # noqa: F811
    good = make_key(tmp_path, dns_server, "rsa-sha256", "good")
    unpublished = make_key(tmp_path, dns_server, "ed25519-sha256", "gone", domain="example.net", publish=False)
    wrong = make_key(tmp_path, dns_server, "rsa-sha256", "wrong", domain="lists.example", publish=False)
    other = make_key(tmp_path, dns_server, "rsa-sha256", "other", domain="lists.example")
    dns_server.add("wrong._domainkey.lists.example", "TXT",
                   dkim_value(DkimPublicKey("wrong", "rsa-sha256", dkim.public_key_of(other.private_pem,
                                                                                       "rsa-sha256"))))
    signed = dkim.sign(MESSAGE, [good])
    signed = dkim.signature_field(signed, wrong) + signed  # topmost: the key in DNS does not match
    assert not dkimpy.DKIM(signed).verify(dnsfunc=lambda name, timeout=5: resolver.txt_bytes(name.decode())[0])
    results = dkim.verify_all(signed, resolver)
    assert [(r.result, r.domain) for r in results] == [("fail", "lists.example"), ("pass", "example.org")]

    signed = dkim.signature_field(signed, unpublished) + signed
    results = dkim.verify_all(signed, resolver)
    assert [r.result for r in results] == ["permerror", "fail", "pass"]
    assert "no key" in results[0].reason


def test_key_lookup_failures(tmp_path, dns_server, resolver):  # noqa: F811
    key = make_key(tmp_path, dns_server, "rsa-sha256", "s1")
    signed = dkim.sign(MESSAGE, [key])
    dns_server.fail("s1._domainkey.example.org", "servfail")
    [result] = dkim.verify_all(signed, resolver)
    assert result.result == "temperror"
    dns_server.fail("s1._domainkey.example.org", "timeout")
    assert dkim.verify_all(signed, resolver)[0].result == "temperror"
    dns_server.fail("s1._domainkey.example.org", None)
    dns_server.remove("s1._domainkey.example.org")
    dns_server.add("s1._domainkey.example.org", "TXT", "v=DKIM1; k=rsa; p=bm90IGEga2V5")
    assert dkim.verify_all(signed, resolver)[0].result == "permerror"


def test_unsigned_and_malformed_messages(dns_server, resolver):  # noqa: F811
    assert dkim.verify_all(MESSAGE, resolver) == ()
    broken = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; garbage\r\n" + MESSAGE
    [result] = dkim.verify_all(broken, resolver)
    assert result.result == "permerror"
    missing_tags = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; b=AAAA\r\n" + MESSAGE
    assert dkim.verify_all(missing_tags, resolver)[0].result == "permerror"
    with pytest.raises(ValueError):
        dkim.signature_field(b"Subject: no from\r\n\r\nbody\r\n", None)
    bad_header = b"DKIM-Signature: v=1; d=example.org\r\nno colon here\r\n" + MESSAGE
    assert [r.result for r in dkim.verify_all(bad_header, resolver)] == ["permerror"]
    assert dkim.verify_all(b" leading continuation\r\n" + MESSAGE, resolver) == ()
