"""Console sign-in and sign-out.

Security: the login form is protected by a double-submit CSRF cookie (no session exists yet);
failures are throttled with SMTP and IMAP logins (`courriel.logins`); the answer does not say
whether the account exists. A new session token is issued at every sign-in (no fixation).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from courriel.admin import audit, auth
from courriel.admin.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)
Public = Annotated[auth.Principal | None, Depends(auth.public)]
Login = Annotated[auth.Principal, Depends(auth.require_login)]


def _home(principal: auth.Principal) -> str:
    return "/" if principal.is_admin else "/account"


def _login_page(request: Request, status: int = 200, error: str | None = None, username: str = "") -> HTMLResponse:
    token = request.cookies.get(auth.LOGIN_CSRF_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, status=status, login_csrf=token, error=error, username=username)
    response.set_cookie(auth.LOGIN_CSRF_COOKIE, token, max_age=3600, **auth.cookie_options(request.app.state.config))
    return response


@router.get("/login")
def login_form(request: Request, principal: Public) -> Response:
    if principal is not None and principal.via_cookie:
        return redirect(_home(principal))
    return _login_page(request)


@router.post("/login")
def login(request: Request, _: Public, username: Annotated[str, Form(max_length=320)] = "",
          password: Annotated[str, Form(max_length=1024)] = "",
          csrf_token: Annotated[str, Form(max_length=100)] = "") -> Response:
    auth.check_login_csrf(request, csrf_token)
    db = request.app.state.database
    client = auth.client_ip(request)
    try:
        principal = auth.login(db, request.app.state.hasher, username, password, client)
    except auth.Throttled as exc:
        response = _login_page(request, 429, f"Too many failed sign-ins. Try again in {exc.retry_after} seconds.",
                               username)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if principal is None:
        return _login_page(request, 401, "Wrong name or password.", username)
    token, principal = auth.start_session(db, principal, client)
    if principal.is_admin:
        audit.record(db, principal.actor(client), "console.login", principal.name)
    response = redirect(_home(principal))
    response.set_cookie(auth.SESSION_COOKIE, token, max_age=int(auth.SESSION_LIFETIME.total_seconds()),
                        **auth.cookie_options(request.app.state.config))
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request, principal: Login) -> Response:
    if principal.session_id:
        auth.end_session(request.app.state.database, principal.session_id)
    response = redirect("/login")
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response
