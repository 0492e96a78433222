"""The CAPABILITY list: what the server announces, given the connection's TLS and login state.

Owns the order and the conditions of each capability name; the session sends the result in
the greeting's [CAPABILITY ...] code, after LOGIN/AUTHENTICATE and for CAPABILITY.

Standards: RFC 3501 §6.1.1 (IMAP4rev1 first; STARTTLS, LOGINDISABLED, AUTH=), RFC 9051 §6.1.1
(IMAP4rev2), RFC 7888 (LITERAL+), RFC 4959 (SASL-IR), RFC 2971 (ID), RFC 5161 (ENABLE),
RFC 2177 (IDLE), RFC 2342 (NAMESPACE), RFC 4315 (UIDPLUS), RFC 6851 (MOVE), RFC 3691 (UNSELECT),
RFC 3348 (CHILDREN), RFC 5258 (LIST-EXTENDED), RFC 5819 (LIST-STATUS), RFC 6154 (SPECIAL-USE,
CREATE-SPECIAL-USE), RFC 3502 (MULTIAPPEND), RFC 3516 (BINARY), RFC 7889 (APPENDLIMIT),
RFC 4731 (ESEARCH), RFC 5182 (SEARCHRES), RFC 7162 (CONDSTORE, QRESYNC), RFC 6855 (UTF8=ACCEPT),
RFC 5256 (SORT, THREAD), RFC 5957 (SORT=DISPLAY), RFC 5267 (ESORT), RFC 9208 (QUOTA),
RFC 4978 (COMPRESS=DEFLATE), RFC 8437 (UNAUTHENTICATE), RFC 5464 (METADATA, which implies METADATA-SERVER).
Security: mechanisms that send passwords in clear are not announced before TLS unless the
configuration allows it (LOGINDISABLED is announced instead, RFC 3501 §6.2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CapabilityOptions", "capabilities"]


@dataclass(frozen=True)
class CapabilityOptions:
    """Configuration and implementation switches. Extensions whose session side is not written yet
    can be switched off here (SORT, THREAD, QUOTA, COMPRESS, UNAUTHENTICATE, UTF8=ACCEPT are off by default)."""

    plaintext_allowed: bool = False  # allow LOGIN / AUTH=PLAIN without TLS
    starttls_available: bool = True  # a certificate is configured for STARTTLS
    append_limit: int | None = None  # RFC 7889: bytes, announced as APPENDLIMIT=n
    mechanisms: tuple[str, ...] = ("PLAIN",)
    imap4rev2: bool = True
    esearch: bool = True
    searchres: bool = True
    condstore: bool = True
    qresync: bool = True
    binary: bool = True
    utf8_accept: bool = False
    sort: bool = False
    thread: bool = False
    quota: bool = False
    compress: bool = False
    unauthenticate: bool = False
    metadata: bool = False


def capabilities(*, tls_active: bool, authenticated: bool, options: CapabilityOptions | None = None) -> list[str]:
    """The capability names in announcement order (IMAP4rev1 first, RFC 3501 §7.2.1)."""
    options = options or CapabilityOptions()
    names = ["IMAP4rev1"]
    if options.imap4rev2:
        names.append("IMAP4rev2")
    names += ["LITERAL+", "SASL-IR"]
    if not authenticated:
        password_ok = tls_active or options.plaintext_allowed
        if not tls_active and options.starttls_available:
            names.append("STARTTLS")
        if password_ok:
            names += [f"AUTH={m}" for m in options.mechanisms]
        else:
            names.append("LOGINDISABLED")  # RFC 3501 §6.2.3
    names += ["ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "LIST-EXTENDED",
              "LIST-STATUS", "SPECIAL-USE", "CREATE-SPECIAL-USE", "MULTIAPPEND"]
    if options.binary:
        names.append("BINARY")
    if options.append_limit is not None:
        names.append(f"APPENDLIMIT={options.append_limit}")
    if options.esearch:
        names.append("ESEARCH")
    if options.searchres:
        names.append("SEARCHRES")
    if options.condstore:
        names.append("CONDSTORE")
    if options.qresync:
        names.append("QRESYNC")
    if options.utf8_accept:
        names.append("UTF8=ACCEPT")
    if options.sort:  # RFC 5256 §3, RFC 5957 §2 (DISPLAYFROM/DISPLAYTO), RFC 5267 §3.2 (SORT RETURN)
        names += ["SORT", "SORT=DISPLAY", "ESORT"]
    if options.thread:
        names += ["THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"]
    if options.quota:
        names.append("QUOTA")
    if options.metadata:  # RFC 5464 §1: METADATA (mailbox and server entries) implies METADATA-SERVER
        names.append("METADATA")
    if options.compress and authenticated:
        names.append("COMPRESS=DEFLATE")
    if options.unauthenticate:
        names.append("UNAUTHENTICATE")
    return names
