"""Server settings of an external account from its e-mail address (ring 2).

Order: a built-in table of popular providers, then RFC 6186 SRV records (through
`courriel.dns.resolver`), then the Thunderbird autoconfig file at `autoconfig.<domain>`.
`parse_autoconfig` is pure and takes the XML text.

Standards: RFC 6186 §3.2-§3.4 (_imaps._tcp, _imap._tcp, _pop3s._tcp, _pop3._tcp; a target of
"." means the service is not offered); RFC 8314 §5.1 (implicit TLS preferred over STARTTLS).
Security: DNS answers and the autoconfig document are untrusted: host names are checked,
ports bounded, the XML parsed with entity expansion refused (no DTDs); the autoconfig fetch
is over HTTPS with certificate checks and a size limit, and a redirect is followed only to
another https:// URL (never downgraded to http://, nor to another scheme).
- Discovery never selects plain text: a setting found by SRV or autoconfig is "ssl" or
  "starttls"; autoconfig `socketType` PLAIN entries are ignored (`discover` checks again).
  Security "none" exists for hand-given loopback hosts only (`accounts.validate`).
- RFC 6186 §6: an SRV answer (without DNSSEC) may point anywhere. What is done: (1) the TLS
  certificate is always verified against the SRV *target* name (the host we connect to,
  `ssl.create_default_context` with check_hostname in `courriel.imapsync.client`), so a
  forged answer must also come with a certificate for its target; (2) a target outside the
  user's domain (neither the domain nor one of its subdomains) gives `ServerSettings.confirm`,
  a sentence the interface shows the user before the password is sent: `courriel sync add`
  refuses such a result and asks for the server to be given by hand (--host), which is the
  user's confirmation. The built-in provider table is trusted as is (it is our own data).
"""

from __future__ import annotations

import re
import ssl
import urllib.error
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
    # RFC 6186 §6: non-empty when the server found is outside the user's domain: ask the user
    # to confirm it before the password goes there.
    confirm: str = ""


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


def within_domain(host: str, domain: str) -> bool:
    """True when `host` is `domain` or one of its subdomains (RFC 6186 §6 "the user's domain")."""
    host, domain = host.lower().rstrip("."), domain.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


def _confirmation(host: str, domain: str, source: str) -> str:
    if within_domain(host, domain):
        return ""
    return (f"the server {host} found by {source} is not within {domain} (RFC 6186 §6): confirm that "
            f"{domain} mail is really served there before the password is sent")


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
                return ServerSettings(protocol, target.lower(), record.port, security, email.strip(), source="srv",
                                      confirm=_confirmation(target, domain, "SRV"))
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
        # PLAIN is never taken from a discovered document: no password in clear text.
        security = {"SSL": "ssl", "STARTTLS": "starttls"}.get(socket_type)
        username = (server.findtext("username") or "%EMAILADDRESS%").strip()
        username = (username.replace("%EMAILADDRESS%", email.strip()).replace("%EMAILLOCALPART%", local)
                    .replace("%EMAILDOMAIN%", domain))
        auths = {(a.text or "").strip().lower() for a in server.findall("authentication")}
        auth = "cram-md5" if auths == {"password-encrypted"} else "plain"
        if not security or not _HOST.match(host) or not 0 < port < 65536:
            continue
        rank = (protocol != "imap", security != "ssl")
        candidates.append((rank, ServerSettings(protocol, host.lower(), port, security, username, auth,
                                                source="autoconfig",
                                                confirm=_confirmation(host, domain, "autoconfig"))))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an https:// URL: a downgrade to http:// (or file:, ftp:...)
    would let anyone on the path answer with settings of their choosing."""

    max_redirections = 3

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() != "https":
            raise urllib.error.HTTPError(newurl, code, f"redirect to a non-https URL refused: {msg}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def autoconfig_opener(context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    """An opener for https:// only (certificate checked), redirects only to https://."""
    context = context or ssl.create_default_context()
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=context),
                    _HttpsOnlyRedirects(), urllib.request.HTTPErrorProcessor(),
                    urllib.request.HTTPDefaultErrorHandler()):
        opener.add_handler(handler)
    return opener


def from_autoconfig(email: str, timeout: float = 10.0, url: str | None = None,
                    context: ssl.SSLContext | None = None) -> ServerSettings | None:
    """The autoconfig document of the address's domain (`url` and `context`: for tests)."""
    _, domain = split_address(email)
    query = urllib.parse.urlencode({"emailaddress": email.strip()})
    url = url or f"https://autoconfig.{domain}/mail/config-v1.1.xml?{query}"
    if urllib.parse.urlsplit(url).scheme.lower() != "https":
        return None
    try:
        with autoconfig_opener(context).open(url, timeout=timeout) as response:
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
    if found is not None and found.source != "table" and found.security not in ("ssl", "starttls"):
        found = None  # a discovered setting is TLS or STARTTLS, never plain text
    if found is None:
        _, domain = split_address(email)
        raise DiscoveryError(f"no server settings found for {domain}; give --host, --port and --security")
    return found
