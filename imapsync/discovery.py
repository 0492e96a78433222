"""Server settings of an external account from its e-mail address (ring 2).

Order: a built-in table of popular providers, then RFC 6186 SRV records (through
`courriel.dns.resolver`), then the Thunderbird autoconfig file at `autoconfig.<domain>`.
`parse_autoconfig` is pure and takes the XML text.

Standards: RFC 6186 §3.2-§3.4 (_imaps._tcp, _imap._tcp, _pop3s._tcp, _pop3._tcp; a target of
"." means the service is not offered); RFC 8314 §5.1 (implicit TLS preferred over STARTTLS).
Security: DNS answers and the autoconfig document are untrusted: host names are checked,
ports bounded, the XML parsed with entity expansion refused (no DTDs); the autoconfig fetch
is over HTTPS with certificate checks and a size limit.
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from xml.etree import ElementTree

from courriel.dns import resolver as dns_resolver

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
AUTOCONFIG_LIMIT = 64 * 1024


@dataclass(frozen=True)
class ServerSettings:
    protocol: str  # imap | pop3
    host: str
    port: int
    security: str  # ssl | starttls | none
    username: str
    auth: str = "plain"  # plain | cram-md5
    source: str = "manual"  # table | srv | autoconfig | manual


# Popular providers: domain → (protocol, host, port, security). Users are the full address.
PROVIDERS: dict[str, tuple[str, str, int, str]] = {
    "gmail.com": ("imap", "imap.gmail.com", 993, "ssl"),
    "googlemail.com": ("imap", "imap.gmail.com", 993, "ssl"),
    "outlook.com": ("imap", "outlook.office365.com", 993, "ssl"),
    "hotmail.com": ("imap", "outlook.office365.com", 993, "ssl"),
    "live.com": ("imap", "outlook.office365.com", 993, "ssl"),
    "msn.com": ("imap", "outlook.office365.com", 993, "ssl"),
    "yahoo.com": ("imap", "imap.mail.yahoo.com", 993, "ssl"),
    "ymail.com": ("imap", "imap.mail.yahoo.com", 993, "ssl"),
    "aol.com": ("imap", "imap.aol.com", 993, "ssl"),
    "icloud.com": ("imap", "imap.mail.me.com", 993, "ssl"),
    "me.com": ("imap", "imap.mail.me.com", 993, "ssl"),
    "mac.com": ("imap", "imap.mail.me.com", 993, "ssl"),
    "fastmail.com": ("imap", "imap.fastmail.com", 993, "ssl"),
    "fastmail.fm": ("imap", "imap.fastmail.com", 993, "ssl"),
    "gmx.com": ("imap", "imap.gmx.com", 993, "ssl"),
    "gmx.net": ("imap", "imap.gmx.net", 993, "ssl"),
    "gmx.de": ("imap", "imap.gmx.net", 993, "ssl"),
    "web.de": ("imap", "imap.web.de", 993, "ssl"),
    "mail.ru": ("imap", "imap.mail.ru", 993, "ssl"),
    "yandex.com": ("imap", "imap.yandex.com", 993, "ssl"),
    "yandex.ru": ("imap", "imap.yandex.com", 993, "ssl"),
    "zoho.com": ("imap", "imap.zoho.com", 993, "ssl"),
    "orange.fr": ("imap", "imap.orange.fr", 993, "ssl"),
    "free.fr": ("imap", "imap.free.fr", 993, "ssl"),
    "laposte.net": ("imap", "imap.laposte.net", 993, "ssl"),
    "posteo.de": ("imap", "posteo.de", 993, "ssl"),
    "mailbox.org": ("imap", "imap.mailbox.org", 993, "ssl"),
    "proton.me": ("imap", "127.0.0.1", 1143, "starttls"),  # through Proton Mail Bridge
}

# RFC 6186 §3.4 order: IMAP before POP3, implicit TLS (RFC 8314) before STARTTLS.
_SRV_SERVICES = (("_imaps._tcp", "imap", "ssl"), ("_imap._tcp", "imap", "starttls"),
                 ("_pop3s._tcp", "pop3", "ssl"), ("_pop3._tcp", "pop3", "starttls"))


class DiscoveryError(LookupError):
    """No settings found for the address: give them by hand."""


def split_address(email: str) -> tuple[str, str]:
    local, at, domain = email.strip().rpartition("@")
    if not at or not local or not domain or not _HOST.match(domain.rstrip(".")):
        raise DiscoveryError(f"{email!r} is not an e-mail address")
    return local, domain.rstrip(".").lower()


def from_table(email: str) -> ServerSettings | None:
    _, domain = split_address(email)
    entry = PROVIDERS.get(domain)
    if entry is None:
        return None
    protocol, host, port, security = entry
    return ServerSettings(protocol, host, port, security, email.strip(), source="table")


def from_srv(email: str, resolver: dns_resolver.Resolver) -> ServerSettings | None:
    """RFC 6186 §3: the first offered service by our preference, its best record (§3.4)."""
    _, domain = split_address(email)
    for service, protocol, security in _SRV_SERVICES:
        try:
            records = resolver.srv(f"{service}.{domain}")
        except dns_resolver.DnsError:
            continue
        records = sorted(records, key=lambda r: (r.priority, -r.weight))
        for record in records:
            target = record.target.rstrip(".")
            if not target:  # RFC 6186 §3.3 / RFC 2782: "." means not offered
                break
            if _HOST.match(target) and 0 < record.port < 65536:
                return ServerSettings(protocol, target.lower(), record.port, security, email.strip(), source="srv")
    return None


def parse_autoconfig(text: str | bytes, email: str) -> ServerSettings | None:
    """The best incoming server of a Thunderbird autoconfig document (clientConfig v1.1)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return None  # no DTDs: refuses entity expansion attacks
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 (no DTD, checked above)
    except ElementTree.ParseError:
        return None
    local, domain = split_address(email)
    candidates = []
    for server in root.iter("incomingServer"):
        protocol = (server.get("type") or "").lower()
        if protocol not in ("imap", "pop3"):
            continue
        host = (server.findtext("hostname") or "").strip()
        try:
            port = int((server.findtext("port") or "").strip())
        except ValueError:
            continue
        socket_type = (server.findtext("socketType") or "").strip().upper()
        security = {"SSL": "ssl", "STARTTLS": "starttls", "PLAIN": "none"}.get(socket_type)
        username = (server.findtext("username") or "%EMAILADDRESS%").strip()
        username = (username.replace("%EMAILADDRESS%", email.strip()).replace("%EMAILLOCALPART%", local)
                    .replace("%EMAILDOMAIN%", domain))
        auths = {(a.text or "").strip().lower() for a in server.findall("authentication")}
        auth = "cram-md5" if auths == {"password-encrypted"} else "plain"
        if not security or not _HOST.match(host) or not 0 < port < 65536:
            continue
        rank = (protocol != "imap", security == "none", security != "ssl")
        candidates.append((rank, ServerSettings(protocol, host.lower(), port, security, username, auth,
                                                source="autoconfig")))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


def from_autoconfig(email: str, timeout: float = 10.0) -> ServerSettings | None:
    _, domain = split_address(email)
    query = urllib.parse.urlencode({"emailaddress": email.strip()})
    url = f"https://autoconfig.{domain}/mail/config-v1.1.xml?{query}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(AUTOCONFIG_LIMIT + 1)
    except (OSError, ValueError):
        return None
    if len(body) > AUTOCONFIG_LIMIT:
        return None
    return parse_autoconfig(body, email)


def discover(email: str, resolver: dns_resolver.Resolver | None = None, autoconfig: bool = True) -> ServerSettings:
    """Settings for `email` from the table, SRV, then autoconfig; DiscoveryError if none."""
    found = from_table(email)
    if found is None and resolver is not None:
        found = from_srv(email, resolver)
    if found is None and autoconfig:
        found = from_autoconfig(email)
    if found is None:
        _, domain = split_address(email)
        raise DiscoveryError(f"no server settings found for {domain}; give --host, --port and --security")
    return found
