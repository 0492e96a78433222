"""TLS material: the self-signed certificate made at init, server contexts, and their reload.

Owns certificate generation (cryptography), the stdlib `ssl` server context used by the
asyncio roles (TLS 1.2 minimum), the check of a certificate and key pair (`check_pair`: both
parse, the key is the certificate's, the certificate is valid now), and the reload of a live
context on SIGHUP (`reload_context`): the new pair is loaded into the same `ssl.SSLContext`,
so every handshake that follows uses it while connections already in TLS keep theirs. A bad
new pair raises before the live context is touched: the old certificate keeps serving.

Security: the private key file is created mode 0600 before any key byte is written. A reload
reads each file once and loads those bytes (through anonymous memory files, never a copy on
disk), so a file replaced between the check and the load cannot slip in unchecked. Key
material is never logged; the summary (subject, serial, expiry) is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from courriel import durable

SELF_SIGNED_DAYS = 825


def make_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    """Write a self-signed ECDSA P-256 certificate for `hostname`, localhost and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        alt_names.append(x509.DNSName("localhost"))
    alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    durable.write_file(key_path, key_pem, mode=0o600)
    durable.write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server-side context: TLS 1.2+, the data directory's certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_path), str(key_path))
    return context


class CertificateError(ValueError):
    """A certificate and key pair that must not be served (unreadable, mismatched, expired)."""


@dataclass(frozen=True)
class CertificateSummary:
    """What a log line says about a certificate: never key material."""

    subject: str
    serial: str
    not_after: str

    def log_fields(self) -> dict[str, str]:
        return {"subject": self.subject, "serial": self.serial, "not_after": self.not_after}


def check_pair(cert_pem: bytes, key_pem: bytes, now: dt.datetime | None = None) -> CertificateSummary:
    """The summary of the first certificate of `cert_pem`, or CertificateError when the PEM
    does not parse, the key is not the certificate's, or the certificate is not valid now."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"the certificate file holds no readable PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"the private key file holds no readable unencrypted PEM key ({exc})") from None
    leaf = chain[0]
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*public) != key.public_key().public_bytes(*public):
        raise CertificateError("the private key does not belong to the certificate")
    now = now or dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise CertificateError(f"the certificate is not valid now (valid from {leaf.not_valid_before_utc.isoformat()} "
                               f"to {leaf.not_valid_after_utc.isoformat()})")
    return CertificateSummary(subject=leaf.subject.rfc4514_string(), serial=format(leaf.serial_number, "x"),
                              not_after=leaf.not_valid_after_utc.isoformat())


def read_pair(cert_path: Path, key_path: Path) -> tuple[bytes, bytes]:
    """The bytes of the certificate and key files (each read once); raises CertificateError."""
    try:
        return Path(cert_path).read_bytes(), Path(key_path).read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {exc.filename}: {exc.strerror}") from None


@contextlib.contextmanager
def _memory_files(*contents: bytes) -> Iterator[list[str]]:
    """Paths that read as `contents` (Linux memfd_create(2) through /proc/self/fd): OpenSSL's
    file loaders get exactly the bytes that were checked, and the key never touches a disk."""
    fds = []
    try:
        for content in contents:
            fd = os.memfd_create("courriel-tls", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, content)
        yield [f"/proc/self/fd/{fd}" for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


def reload_context(context: ssl.SSLContext, cert_path: Path, key_path: Path) -> CertificateSummary:
    """Load a new certificate and key into the live `context`, for the handshakes that follow.

    The pair is checked (`check_pair`) and loaded into a scratch context first; only then into
    `context`, from the same bytes. On any error CertificateError is raised and `context` keeps
    its certificate and key (OpenSSL drops the old key as soon as a certificate with another
    key is set, so a failed load into the live context would leave it without a usable pair)."""
    cert_pem, key_pem = read_pair(cert_path, key_path)
    summary = check_pair(cert_pem, key_pem)
    try:
        with _memory_files(cert_pem, key_pem) as (cert_file, key_file):
            server_context(Path(cert_file), Path(key_file))
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise CertificateError(f"OpenSSL refused the certificate and key: {exc}") from None
    return summary
