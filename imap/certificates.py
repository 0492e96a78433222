"""The IMAP listeners' TLS settings, replaced as a whole on SIGHUP (ring 2).

Owns `ReloadableTLS`: what the IMAP role hands its listeners as their TLS settings (the
implicit-TLS listener's `TLSMemoryBIOFactory` and every STARTTLS). It is a Twisted
`IOpenSSLServerConnectionCreator` that makes each new TLS connection from the current
`CertificateOptions` (`courriel.imap.transport.tls_options`); `reload` builds new options from
the files and swaps them in only once their OpenSSL context is built, so a connection already
in TLS keeps its own (its `SSL.Connection` holds its context) and only the handshakes that
follow see the new certificate. A bad new pair raises and the current options stay.

Standards: RFC 8314 §3.3 (993), RFC 3501 §6.2.1 (STARTTLS on 143).
Security: reads the TLS private key (mode 0600); never logs key material. The pair is
checked (`courriel.tls.check_pair`: parses, key matches, valid now) before it is loaded.
"""

from __future__ import annotations

from pathlib import Path

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from courriel import tls
from courriel.imap.transport import tls_options


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """The current server TLS options of the IMAP listeners; `reload` replaces them."""

    def __init__(self, cert_path: Path, key_path: Path):
        self.options = self._build(cert_path, key_path)

    @staticmethod
    def _build(cert_path: Path, key_path: Path) -> ssl.CertificateOptions:
        options = tls_options(cert_path, key_path)
        options.getContext()  # built now: a key that is not the certificate's raises here, not at a handshake
        return options

    def reload(self, cert_path: Path, key_path: Path) -> tls.CertificateSummary:
        """Serve the pair in these files from the next handshake on; raises
        `courriel.tls.CertificateError` (the current pair stays) when it cannot be served."""
        summary = tls.check_pair(*tls.read_pair(cert_path, key_path))
        try:
            options = self._build(cert_path, key_path)
        except (OSError, ValueError, IndexError, SSL.Error, crypto.Error) as exc:
            raise tls.CertificateError(f"OpenSSL refused the certificate and key: {exc}") from None
        self.options = options
        return summary

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        return self.options.serverConnectionForTLS(protocol)
