"""Connection settings a mail client needs for one mailbox (pure: from the configuration).

Standards: RFC 8314 §3.3 (implicit TLS preferred: IMAPS 993, submissions 465), RFC 6409
(message submission on 587 with STARTTLS), RFC 9051 (IMAP on 143 with STARTTLS).
Security: none (no input beyond an address already checked by the caller).
"""

from __future__ import annotations

from courriel.config import Config

INCOMING = (("imaps", "IMAP", "SSL/TLS"), ("imap", "IMAP", "STARTTLS"))
OUTGOING = (("submissions", "SMTP", "SSL/TLS"), ("submission", "SMTP", "STARTTLS"))


def connection_settings(config: Config, address: str) -> dict:
    """Server names, ports and security for IMAP and SMTP submission; the user name is the address."""

    def endpoints(roles) -> list[dict]:
        found = []
        for role, protocol, security in roles:
            listener = config.listener(role)
            if listener is not None:
                found.append({"protocol": protocol, "host": config.hostname, "port": listener[1],
                              "security": security})
        return found

    return {"address": address, "username": address, "incoming": endpoints(INCOMING),
            "outgoing": endpoints(OUTGOING)}
