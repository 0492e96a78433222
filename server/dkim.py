"""DKIM: key generation, signing and verification of every signature, over dkimpy (ring 2 adapter).

Owns the DKIM key files (generated here, private key mode 0600), the signing profile
(relaxed/relaxed, a fixed header list with From and the other originator fields over-signed),
the RSA private-key operation (done by `cryptography`, byte-identical to dkimpy's pure-Python
code and about ten times faster), and the verification of each DKIM-Signature of a message with
key lookups through `courriel.dns.resolver`.

Standards: RFC 6376 (DKIM: §3.4.2 relaxed canonicalization, §3.5 tags, §3.6.1 key records,
§5.4 header selection, §5.4.2 over-signing, §6.1 verification, §8.15 extra From fields),
RFC 8463 (Ed25519-SHA256), RFC 8017 §8.2 (RSASSA-PKCS1-v1_5, deterministic), RFC 8601 §2.7.1
(DKIM result names), RFC 6008 (header.b).
Security: verification parses untrusted messages and untrusted key records; every dkimpy error
becomes a permerror/fail result, DNS trouble a temperror, never an exception. Private keys are
never logged.
Durability: `generate_key` writes the private key with `courriel.durable.write_file` (mode 0600).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dkim as dkimpy
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.util import InvalidTagValueList, parse_tag_value

from courriel import durable
from courriel.dns.resolver import NoData, NXDomain, Resolver, TemporaryFailure

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
DEFAULT_RSA_BITS = 2048

# RFC 6376 §5.4.1: the originator and content fields recipients see. Each present field is signed;
# the ones below are over-signed (listed once more than present, §5.4.2) so none can be added later.
SIGNED_FIELDS = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding",
    "content-id", "content-description", "list-id", "list-unsubscribe", "list-unsubscribe-post",
)
OVERSIGNED_FIELDS = ("from", "reply-to", "subject", "date", "to", "cc", "message-id")

log = logging.getLogger(__name__)
# dkimpy logs every key problem at ERROR; the results below carry the reason instead.
_dkimpy_log = logging.getLogger("courriel.dkim.dkimpy")
_dkimpy_log.setLevel(logging.CRITICAL)


class DkimKeyError(ValueError):
    """A private key file is unreadable, of the wrong type, or does not match its algorithm."""


# ---------------------------------------------------------------------- fast RSA
# dkimpy computes RSASSA-PKCS1-v1_5 in pure Python (LIBRARIES.md: ~80 signatures/s). The same
# operation with `cryptography` gives the same bytes (PKCS#1 v1.5 signatures are deterministic,
# RFC 8017 §8.2.1) about ten times faster. dkimpy calls the function through its module
# namespace, so replacing that name changes nothing else in dkimpy.

_pure_rsa_sign = dkimpy.RSASSA_PKCS1_v1_5_sign
_HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}
_key_cache: dict[tuple[int, int], rsa.RSAPrivateKey] = {}
_key_cache_lock = threading.Lock()
_KEY_CACHE_MAX = 64


def _cryptography_rsa_key(numbers: dict) -> rsa.RSAPrivateKey:
    cache_key = (numbers["modulus"], numbers["privateExponent"])
    with _key_cache_lock:
        key = _key_cache.get(cache_key)
    if key is None:
        key = rsa.RSAPrivateNumbers(
            p=numbers["prime1"], q=numbers["prime2"], d=numbers["privateExponent"],
            dmp1=numbers["exponent1"], dmq1=numbers["exponent2"], iqmp=numbers["coefficient"],
            public_numbers=rsa.RSAPublicNumbers(numbers["publicExponent"], numbers["modulus"]),
        ).private_key()
        with _key_cache_lock:
            if len(_key_cache) >= _KEY_CACHE_MAX:
                _key_cache.clear()
            _key_cache[cache_key] = key
    return key


def rsa_sign_with_cryptography(hash_object, private_key: dict) -> bytes:
    """RSASSA-PKCS1-v1_5 over an already computed digest: dkimpy's signature, by `cryptography`."""
    algorithm = _HASHES.get(hash_object.name.lower())
    if algorithm is None:
        return _pure_rsa_sign(hash_object, private_key)
    key = _cryptography_rsa_key(private_key)
    return key.sign(hash_object.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm()))


dkimpy.RSASSA_PKCS1_v1_5_sign = rsa_sign_with_cryptography


# ---------------------------------------------------------------------- keys
def generate_key(path: Path, algorithm: str = "rsa-sha256", bits: int = DEFAULT_RSA_BITS) -> str:
    """Create a private key file (mode 0600) and return the base64 public key for the p= tag.

    RSA: PKCS#1 PEM, p= is the SubjectPublicKeyInfo (RFC 6376 §3.6.1). Ed25519: PKCS#8 PEM,
    p= is the raw 32-byte key (RFC 8463 §4)."""
    if algorithm == "rsa-sha256":
        if bits < 1024 or bits > 8192:
            raise ValueError("RSA DKIM keys must be 1024 to 8192 bits (RFC 8301 §3.2: at least 1024)")
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    elif algorithm == "ed25519-sha256":
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    else:
        raise ValueError(f"unknown DKIM algorithm {algorithm!r}; use one of {ALGORITHMS}")
    durable.write_file(Path(path), pem, mode=0o600)
    return public_key_of(pem, algorithm)


def public_key_of(private_pem: bytes, algorithm: str) -> str:
    """The base64 p= value for a private key."""
    key = _load_private_key(private_pem, algorithm)
    if algorithm == "rsa-sha256":
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        der = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(der).decode("ascii")


def _load_private_key(private_pem: bytes, algorithm: str):
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"unreadable DKIM private key: {type(exc).__name__}") from None
    expected = rsa.RSAPrivateKey if algorithm == "rsa-sha256" else ed25519.Ed25519PrivateKey
    if algorithm not in ALGORITHMS or not isinstance(key, expected):
        raise DkimKeyError(f"the private key is not a {algorithm} key")
    return key


@dataclass(frozen=True, repr=False)
class SigningKey:
    """One active key of a domain: d=, s=, a= and the private key (never shown in repr)."""

    domain: str  # A-label
    selector: str
    algorithm: str
    private_pem: bytes

    def __repr__(self) -> str:
        return f"SigningKey({self.domain!r}, {self.selector!r}, {self.algorithm!r})"

    @classmethod
    def load(cls, path: Path, domain: str, selector: str, algorithm: str) -> SigningKey:
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise DkimKeyError(f"cannot read DKIM key {path}: {exc.strerror}") from None
        _load_private_key(pem, algorithm)
        return cls(domain.lower().rstrip("."), selector, algorithm, pem)

    def dkimpy_key(self) -> bytes:
        """The key in the form dkimpy takes: PEM for RSA, the base64 seed for Ed25519."""
        if self.algorithm == "rsa-sha256":
            return self.private_pem
        key = _load_private_key(self.private_pem, self.algorithm)
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        return base64.b64encode(raw)


# ---------------------------------------------------------------------- signing
def _signed_fields(signer: dkimpy.DKIM) -> list[bytes]:
    # RFC 6376 §5.4.2: every instance of a signed field, plus one more of the over-signed ones.
    present = [name.lower() for name, _ in signer.headers]
    fields = [name for name in present if name.decode("ascii", "replace") in SIGNED_FIELDS]
    fields += [name.encode() for name in OVERSIGNED_FIELDS]
    return fields


def signature_field(message: bytes, key: SigningKey) -> bytes:
    """The DKIM-Signature header field (name, value, CRLF) for `message` signed with `key`."""
    signer = dkimpy.DKIM(message, logger=_dkimpy_log)
    if not any(name.lower() == b"from" for name, _ in signer.headers):
        raise ValueError("RFC 6376 §5.4: a message without a From field cannot be signed")
    try:
        return signer.sign(
            key.selector.encode("ascii"), key.domain.encode("ascii"), key.dkimpy_key(),
            signature_algorithm=key.algorithm.encode("ascii"),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=_signed_fields(signer),
        )
    except dkimpy.DKIMException as exc:
        raise DkimKeyError(f"DKIM signing failed for {key.domain}/{key.selector}: {exc}") from None


def sign(message: bytes, keys: Sequence[SigningKey]) -> bytes:
    """`message` with one DKIM-Signature per key prepended (e.g. RSA and Ed25519, RFC 8463 §1)."""
    fields = b"".join(signature_field(message, key) for key in keys)
    return fields + message


# ---------------------------------------------------------------------- verification
@dataclass(frozen=True)
class DkimResult:
    """The outcome of one DKIM-Signature (RFC 8601 §2.7.1 result names)."""

    result: str  # pass | fail | neutral | temperror | permerror
    domain: str  # d= (lower case), "" when unreadable
    selector: str
    algorithm: str
    identity: str  # i=
    signature_prefix: str  # start of b=, for header.b (RFC 6008 §4)
    reason: str = ""


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return parse_tag_value(value)
    except (InvalidTagValueList, ValueError, IndexError):
        return {}


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace").strip()


def verify_all(message: bytes, resolver: Resolver, minimum_rsa_bits: int = 1024) -> tuple[DkimResult, ...]:
    """Verify every DKIM-Signature of `message`, top to bottom (dkimpy's `verify` checks one only)."""
    try:
        verifier = dkimpy.DKIM(message, logger=_dkimpy_log, minkey=minimum_rsa_bits, timeout=resolver.timeout)
    except (dkimpy.DKIMException, IndexError, ValueError):
        # The header block itself is malformed: any signature in it cannot be evaluated.
        head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
        if re.search(rb"(?im)^dkim-signature[ \t]*:", head):
            return (DkimResult("permerror", "", "", "", "", "", "malformed message header"),)
        return ()
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    return tuple(_verify_one(verifier, idx, value, resolver) for idx, value in enumerate(signatures))


def _verify_one(verifier: dkimpy.DKIM, idx: int, value: bytes, resolver: Resolver) -> DkimResult:
    tags = _tags(value)
    b_value = re.sub(rb"\s+", b"", tags.get(b"b", b""))
    base = {
        "domain": _text(tags.get(b"d")).lower(),
        "selector": _text(tags.get(b"s")),
        "algorithm": _text(tags.get(b"a")).lower(),
        "identity": _text(tags.get(b"i")),
        "signature_prefix": _text(b_value[:8]),
    }
    key_problem: list[str] = []

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        # RFC 6376 §3.6.2.2: the key is the TXT record at <selector>._domainkey.<domain>.
        qname = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        try:
            records = resolver.txt_bytes(qname)
        except (NXDomain, NoData):
            key_problem.append("no key for signature")  # §6.1.2: PERMFAIL
            return None
        # TemporaryFailure propagates to the caller below: §6.1.2 TEMPFAIL.
        record = next((r for r in records if r.lstrip().startswith(b"v=DKIM1")), records[0] if records else None)
        try:
            dkimpy.evaluate_pk(name, record)
        except dkimpy.DKIMException as exc:
            key_problem.append(f"bad key record: {exc}")
        except (ValueError, TypeError):
            key_problem.append("bad key record")
        return record

    if not tags:
        return DkimResult("permerror", reason="unparseable DKIM-Signature", **base)
    try:
        verified = verifier.verify(idx=idx, dnsfunc=dnsfunc)
    except TemporaryFailure as exc:
        return DkimResult("temperror", reason=f"key lookup failed: {exc.kind}", **base)
    except dkimpy.ValidationError as exc:
        reason = str(exc)
        if "body hash mismatch" in reason:
            return DkimResult("fail", reason="body hash did not verify", **base)
        return DkimResult("permerror", reason=_short(reason), **base)
    except dkimpy.DKIMException as exc:
        return DkimResult("permerror", reason=_short(str(exc)), **base)
    except (ValueError, TypeError, IndexError, KeyError, UnicodeError) as exc:
        log.debug("DKIM signature %d unverifiable: %r", idx, exc)
        return DkimResult("permerror", reason="malformed signature", **base)
    if verified:
        return DkimResult("pass", **base)
    if key_problem:
        return DkimResult("permerror", reason=_short(key_problem[-1]), **base)
    return DkimResult("fail", reason="signature did not verify", **base)


def _short(reason: str) -> str:
    return re.sub(r"[^\x20-\x7e]", "?", reason)[:120]
