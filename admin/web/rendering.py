"""Template rendering for the console: the Jinja2 environment, the common page context
(principal, CSRF token, one-shot flash message) and the HTML error page.

Security: autoescaping is on for every template; the flash message is text.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from courriel.admin import auth

TEMPLATE_DIRECTORY = Path(__file__).resolve().parent.parent / "templates"

STRENGTH = ("too guessable", "weak", "fair", "strong", "very strong")


@functools.cache
def templates():
    """The Jinja2 environment, made at the first page: the admin role serving only the API and
    /metrics never imports Jinja2 (README "Memory")."""
    from fastapi.templating import Jinja2Templates

    environment = Jinja2Templates(directory=str(TEMPLATE_DIRECTORY))
    environment.env.autoescape = True
    return environment


def render(request: Request, template: str, principal: auth.Principal | None, status: int = 200,
           **context) -> HTMLResponse:
    """Render a page (call from a sync route: it may clear the flash message in the database)."""
    flash = None
    if principal is not None and principal.flash:
        kind, _, text = principal.flash.partition(":")
        flash = {"kind": kind, "text": text}
        auth.clear_flash(request.app.state.database, principal.session_id)
    return templates().TemplateResponse(
        request, template,
        {"principal": principal, "csrf_token": principal.csrf_token if principal else None, "flash": flash,
         "strength": STRENGTH, **context},
        status_code=status,
    )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def flash(request: Request, principal: auth.Principal, message: str, ok: bool = True) -> None:
    auth.set_flash(request.app.state.database, principal.session_id, ("ok:" if ok else "error:") + message)


def html_error(request: Request, status: int, message: str) -> HTMLResponse:
    """The console's error page (no database access: it may be shown when the database is down)."""
    principal = getattr(request.state, "principal", None) or None
    return templates().TemplateResponse(
        request, "error.html",
        {"principal": principal, "csrf_token": None, "flash": None, "status": status, "message": message},
        status_code=status,
    )


__all__ = ["html_error", "redirect", "render", "run_in_threadpool"]
