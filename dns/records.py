"""Expected DNS records of a mail domain (ring 0: pure, no IO).

Owns what an administrator must publish for a domain served by this server: the ownership
proof, MX, SPF (merged into an existing record rather than a second one), DKIM keys, DMARC,
client autoconfiguration (RFC 6186 SRV, autoconfig/autodiscover names) and optionally MTA-STS
and TLS reporting; and their rendering as a zone-file snippet and as a plain-text table.

Standards: RFC 1035 §3.3.14 and §5.1 (TXT character-strings of at most 255 octets, zone file
quoting), RFC 5321 §5.1 (MX), RFC 7208 §3, §4.6, §5 (SPF syntax and one record per domain),
RFC 6376 §3.6.1-§3.6.2 (DKIM key records), RFC 8463 §4 (Ed25519 keys), RFC 7489 §6.3 (DMARC
tags), RFC 6186 §3 and RFC 8314 §5.1 (SRV for IMAP and submission), RFC 8461 §3.1 (MTA-STS TXT),
RFC 8460 §3 (TLSRPT), RFC 5891 (IDNA: names are published as A-labels).
Security: inputs come from the registry and the administrator; domain names and tokens are
validated here, so nothing outside their syntax reaches a zone file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import idna

TXT_STRING_MAX = 255  # RFC 1035 §3.3: one character-string is a length octet + at most 255 octets
DKIM_ALGORITHMS = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}
DEFAULT_SPF = "v=spf1 mx -all"
SPF_ALL = re.compile(r"^[+?~-]?all$", re.IGNORECASE)
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_TOKEN = re.compile(r"^[A-Za-z0-9_.~-]{8,128}$")

# RFC 6186 §3 / RFC 8314 §5.1: service label, port.
CLIENT_SERVICES = (
    ("_imaps._tcp", 993, "IMAP over TLS for mail clients (RFC 6186, RFC 8314)"),
    ("_submissions._tcp", 465, "Message submission over TLS for mail clients (RFC 8314)"),
    ("_submission._tcp", 587, "Message submission with STARTTLS for mail clients (RFC 6186)"),
)


@dataclass(frozen=True)
class DkimPublicKey:
    selector: str
    algorithm: str  # rsa-sha256 | ed25519-sha256
    public_key: str  # base64, the p= tag


@dataclass(frozen=True)
class ExpectedRecord:
    rtype: str
    name: str  # absolute A-label name, with the trailing dot
    value: str  # TXT: the logical value (the strings joined); others: the RDATA in zone syntax
    purpose: str
    strings: tuple[str, ...] = field(default=())  # TXT only: the ≤255-octet character-strings

    def relative_name(self, domain: str) -> str:
        """The name as DNS hosting panels want it: "@" for the domain itself, else the prefix."""
        apex = to_a_label(domain) + "."
        return "@" if self.name == apex else self.name.removesuffix("." + apex)

    @property
    def zone_value(self) -> str:
        if self.rtype == "TXT":
            return " ".join(quote_txt(s) for s in self.strings)
        return self.value


def to_a_label(domain: str) -> str:
    """The lower-case A-label form of a domain name (RFC 5891), without a trailing dot."""
    name = domain.strip().rstrip(".")
    if not name:
        raise ValueError("empty domain name")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"invalid domain name {domain!r}: {exc}") from None
    ascii_name = ascii_name.lower()
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"invalid domain name {domain!r}")
    return ascii_name


def split_txt(value: str) -> tuple[str, ...]:
    """Split a TXT value into character-strings of at most 255 octets (RFC 1035 §3.3.14),
    never inside a UTF-8 sequence. Joining them gives back `value` (RFC 7208 §3.3, RFC 6376 §3.6.2.2)."""
    data = value.encode("utf-8")
    pieces: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + TXT_STRING_MAX, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # continuation byte: back off
            end -= 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    return tuple(pieces) or ("",)


def quote_txt(string: str) -> str:
    """A zone-file quoted character-string (RFC 1035 §5.1: backslash escapes " and \\)."""
    return '"' + string.replace("\\", "\\\\").replace('"', '\\"') + '"'


def merge_spf(existing: str | None) -> str:
    """The SPF record to publish: ours, or `existing` with `mx` added (RFC 7208 §3.2: one record only).

    Keeps the existing mechanisms, modifiers and final `all` as they are; adds `mx` right after
    the version unless an `mx` mechanism for this domain is already there."""
    if not existing or not existing.strip().lower().startswith("v=spf1"):
        return DEFAULT_SPF
    terms = existing.split()
    if terms[0].lower() != "v=spf1":
        return DEFAULT_SPF
    mechanisms = [t.lstrip("+?~-").lower() for t in terms[1:]]
    if any(m == "mx" or m.startswith("mx/") for m in mechanisms):
        return " ".join(terms)
    return " ".join([terms[0], "mx", *terms[1:]])


def dkim_value(key: DkimPublicKey) -> str:
    """The DKIM key record (RFC 6376 §3.6.1; RFC 8463 §4 for k=ed25519)."""
    key_type = DKIM_ALGORITHMS.get(key.algorithm)
    if key_type is None:
        raise ValueError(f"unknown DKIM algorithm {key.algorithm!r}")
    if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", key.public_key):
        raise ValueError("DKIM public key must be base64")
    return f"v=DKIM1; k={key_type}; p={key.public_key}"


def dmarc_value(rua: str | None, policy: str = "quarantine") -> str:
    """RFC 7489 §6.3: v and p first; aggregate reports to `rua` when given."""
    value = f"v=DMARC1; p={policy}"
    if rua:
        if not re.fullmatch(r"[^\s;,!@]+@[^\s;,!@]+", rua):
            raise ValueError(f"invalid DMARC report address {rua!r}")
        value += f"; rua=mailto:{rua}"
    return value


def _txt(name: str, value: str, purpose: str) -> ExpectedRecord:
    return ExpectedRecord("TXT", name, value, purpose, split_txt(value))


def expected(
    hostname: str,
    domain: str,
    verification_token: str,
    dkim_keys: list[DkimPublicKey] | tuple[DkimPublicKey, ...] = (),
    existing_spf: str | None = None,
    dmarc_rua: str | None = None,
    mta_sts_id: str | None = None,
    tlsrpt_rua: str | None = None,
) -> list[ExpectedRecord]:
    """Every record `domain` needs to receive and send mail through `hostname`."""
    host = to_a_label(hostname) + "."
    zone = to_a_label(domain)
    apex = zone + "."
    if not _TOKEN.match(verification_token):
        raise ValueError("verification token must be 8-128 characters of [A-Za-z0-9_.~-]")
    records = [
        _txt(apex, f"courriel-verification={verification_token}", "Proves that you control the domain"),
        ExpectedRecord("MX", apex, f"10 {host}", "Delivers the domain's mail to this server (RFC 5321 §5.1)"),
        _txt(apex, merge_spf(existing_spf),
             "SPF: lets this server send for the domain (RFC 7208); merged with your existing record"
             if existing_spf and merge_spf(existing_spf) != DEFAULT_SPF
             else "SPF: only the domain's MX hosts send its mail (RFC 7208)"),
    ]
    for key in dkim_keys:
        if not _LABEL.match(key.selector.lower()):
            raise ValueError(f"invalid DKIM selector {key.selector!r}")
        records.append(_txt(f"{key.selector.lower()}._domainkey.{apex}", dkim_value(key),
                            f"DKIM {key.algorithm} public key, selector {key.selector} (RFC 6376)"))
    records.append(_txt(f"_dmarc.{apex}", dmarc_value(dmarc_rua),
                        "DMARC: receivers quarantine mail that fails SPF and DKIM alignment (RFC 7489)"))
    for service, port, purpose in CLIENT_SERVICES:
        records.append(ExpectedRecord("SRV", f"{service}.{apex}", f"0 1 {port} {host}", purpose))
    records.append(ExpectedRecord("CNAME", f"autoconfig.{apex}", host, "Thunderbird-style autoconfiguration"))
    records.append(ExpectedRecord("CNAME", f"autodiscover.{apex}", host, "Outlook-style autodiscovery"))
    if mta_sts_id:
        if not re.fullmatch(r"[A-Za-z0-9]{1,32}", mta_sts_id):
            raise ValueError("MTA-STS id must be 1-32 letters or digits (RFC 8461 §3.1)")
        records.append(_txt(f"_mta-sts.{apex}", f"v=STSv1; id={mta_sts_id}",
                            "MTA-STS: senders must use TLS to reach the MX (RFC 8461)"))
        records.append(ExpectedRecord("CNAME", f"mta-sts.{apex}", host, "Serves the MTA-STS policy over HTTPS"))
    if tlsrpt_rua:
        if not re.fullmatch(r"[^\s;,!@]+@[^\s;,!@]+", tlsrpt_rua):
            raise ValueError(f"invalid TLS report address {tlsrpt_rua!r}")
        records.append(_txt(f"_smtp._tls.{apex}", f"v=TLSRPTv1; rua=mailto:{tlsrpt_rua}",
                            "TLS reporting: where senders report TLS failures (RFC 8460)"))
    return records


def render_zone(records: list[ExpectedRecord], ttl: int = 3600) -> str:
    """A zone-file snippet (RFC 1035 §5.1) with absolute names, one record a line."""
    width = max((len(r.name) for r in records), default=0)
    lines = [f"{r.name:<{width}} {ttl} IN {r.rtype:<5} {r.zone_value}" for r in records]
    return "\n".join(lines) + "\n"


def render_table(records: list[ExpectedRecord]) -> str:
    """A plain-text table (type, name, value, purpose) for a console or an email to the DNS admin."""
    rows = [("Type", "Name", "Value", "Purpose")] + [(r.rtype, r.name, r.value, r.purpose) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{t:<{widths[0]}}  {n:<{widths[1]}}  {v:<{widths[2]}}  {p}".rstrip() for t, n, v, p in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * len("Purpose"))
    return "\n".join(lines) + "\n"
