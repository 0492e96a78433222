"""The web console: server-rendered pages (Jinja2) for admins and users, usable without
JavaScript. Routes validate the form, call the service layer, record admin changes in the
audit log, and render or redirect (POST, then 303 to a page that shows a one-line result).

Each route declares one access check of `courriel.admin.auth`; forms carry the session's CSRF
token. Pages: login; dashboard; domains (+ wizard, records, checks, DKIM keys); mailboxes
(create with a generated password, change password, delete with confirmation, connection
settings); aliases; groups; users; API keys; queue; audit log. A user (signed in with a mailbox
address, or a console account of role user) sees only their own mailboxes under /account.

Standards: HTML Living Standard forms; WCAG 2.1 (labels, keyboard, contrast).
Security: autoescaped templates; secrets (generated passwords, API key tokens) appear once in
the answer to the POST that created them and are never rendered again.
"""

from __future__ import annotations

from courriel.admin.web import pages, session
from courriel.admin.web.rendering import html_error

ROUTERS = (session.router, pages.router)


def include(app) -> None:
    for router in ROUTERS:
        app.include_router(router)


__all__ = ["html_error", "include"]
