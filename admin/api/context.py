"""What a route needs from the application: the database, the password hasher and policy,
and the audit record of a change made by the signed-in principal.

Security: the client address recorded is the TCP peer (proxy headers are not trusted).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from courriel import passwords
from courriel.admin import audit, auth
from courriel.admin.services.notices import Notifier
from courriel.config import Config
from courriel.db import Database


@dataclass(frozen=True)
class Context:
    db: Database
    config: Config
    hasher: passwords.PasswordHasher
    policy: passwords.PasswordPolicy
    client_ip: str | None
    principal: auth.Principal | None

    @property
    def notifier(self) -> Notifier:
        """Mails the mailbox (and its owner) after a creation or a password change."""
        return Notifier(self.db, self.config)

    def audit(self, action: str, target: str = "", **detail) -> None:
        """Record a change that has just been committed."""
        if self.principal is not None:
            audit.record(self.db, self.principal.actor(self.client_ip), action, target, detail)


def context(request: Request, principal: auth.Principal | None) -> Context:
    state = request.app.state
    return Context(state.database, state.config, state.hasher, state.policy, auth.client_ip(request), principal)
