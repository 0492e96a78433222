"""Session routes of the JSON API: sign in for a Bearer token, sign out, who am I.

Security: sign-in goes through `courriel.admin.auth.login` (throttled with SMTP and IMAP
logins); the token is returned once and only its digest is stored.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from courriel.admin import auth
from courriel.admin.api import schemas
from courriel.admin.api.context import context

router = APIRouter(tags=["session"])
ERRORS = {401: {"model": schemas.Error}, 403: {"model": schemas.Error}, 422: {"model": schemas.Error}}


@router.post("/session", status_code=201, response_model=schemas.SessionCreated,
             responses={**ERRORS, 429: {"model": schemas.Error}})
def sign_in(body: schemas.LoginRequest, request: Request,
            _: Annotated[auth.Principal | None, Depends(auth.public)]) -> dict:
    """Sign in with a console user name or a mailbox address; returns a Bearer session token."""
    ctx = context(request, None)
    principal = auth.login(ctx.db, ctx.hasher, body.username, body.password, ctx.client_ip)
    if principal is None:
        raise auth.NotAuthenticated()
    token, principal = auth.start_session(ctx.db, principal, ctx.client_ip)
    return {"token": token, "name": principal.name, "role": principal.role, "kind": principal.kind}


@router.delete("/session", status_code=204, responses=ERRORS)
def sign_out(request: Request, principal: Annotated[auth.Principal, Depends(auth.require_login)]) -> Response:
    """End the session whose token authenticated this request (API keys are revoked instead)."""
    if principal.session_id:
        auth.end_session(request.app.state.database, principal.session_id)
    return Response(status_code=204)


@router.get("/me", response_model=schemas.Me, responses=ERRORS)
def me(request: Request, principal: Annotated[auth.Principal, Depends(auth.require_login)]) -> dict:
    db = request.app.state.database
    return {"name": principal.name, "role": principal.role, "kind": principal.kind,
            "mailboxes": auth.own_mailboxes(db, principal)}
