"""`courriel.tls`: the checks of a certificate and key pair, and the reload of a live server
context (new handshakes see the new certificate; a bad pair leaves the old one serving)."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
import trustme
from cryptography import x509

from courriel import tls


@pytest.fixture
def ca():
    return trustme.CA()


def write_pair(directory, cert: trustme.LeafCert, key_pem: bytes | None = None):
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_path.write_bytes(key_pem if key_pem is not None else cert.private_key_pem.bytes())
    return cert_path, key_path


def serial_of(cert: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number


def handshake_serial(server: ssl.SSLContext, ca: trustme.CA) -> int:
    """The serial of the certificate `server` presents to a new handshake (in memory, no socket)."""
    client = ssl.create_default_context()
    ca.configure_trust(client)
    pipes = [(ssl.MemoryBIO(), ssl.MemoryBIO()) for _ in range(2)]
    server_side = server.wrap_bio(pipes[0][0], pipes[0][1], server_side=True)
    client_side = client.wrap_bio(pipes[1][0], pipes[1][1], server_hostname="localhost")
    for _ in range(20):  # bounded: a TLS 1.3 handshake takes a few round trips
        done = 0
        for side in (client_side, server_side):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        pipes[0][0].write(pipes[1][1].read())
        pipes[1][0].write(pipes[0][1].read())
        if done == 2:
            return x509.load_der_x509_certificate(client_side.getpeercert(binary_form=True)).serial_number
    raise AssertionError("handshake did not finish")


def test_reload_serves_the_new_pair_to_new_handshakes(tmp_path, ca):
    first, second = ca.issue_cert("localhost", common_name="first"), ca.issue_cert("localhost", common_name="second")
    context = tls.server_context(*write_pair(tmp_path, first))
    assert handshake_serial(context, ca) == serial_of(first)
    summary = tls.reload_context(context, *write_pair(tmp_path, second))
    assert handshake_serial(context, ca) == serial_of(second)
    assert summary.serial == format(serial_of(second), "x") and "CN=second" in summary.subject


@pytest.mark.parametrize("damage", ["key of another certificate", "not PEM", "no key", "missing file"])
def test_a_bad_pair_is_refused_and_the_old_one_keeps_serving(tmp_path, ca, damage):
    first, second = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    context = tls.server_context(*write_pair(tmp_path, first))
    cert_path, key_path = write_pair(tmp_path, second)
    if damage == "key of another certificate":
        key_path.write_bytes(first.private_key_pem.bytes())
    elif damage == "not PEM":
        cert_path.write_bytes(b"garbage\n")
    elif damage == "no key":
        key_path.write_bytes(b"")
    else:
        key_path.unlink()
    with pytest.raises(tls.CertificateError):
        tls.reload_context(context, cert_path, key_path)
    assert handshake_serial(context, ca) == serial_of(first)


def test_check_pair_refuses_a_certificate_not_valid_now(ca):
    cert = ca.issue_cert("localhost")
    pem, key = cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes()
    assert tls.check_pair(pem, key).subject
    with pytest.raises(tls.CertificateError, match="not valid now"):
        tls.check_pair(pem, key, now=dt.datetime(3001, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(tls.CertificateError, match="not valid now"):
        tls.check_pair(pem, key, now=dt.datetime(1999, 1, 1, tzinfo=dt.UTC))
