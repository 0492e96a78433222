"""Registry routes of the JSON API: domains, mailboxes (+ passwords and connection settings),
aliases, groups, users and password tools.

Every change calls one service function (`courriel.admin.services`) and is then recorded in
the audit log. Users (role user) reach only their own mailboxes: list, read, connection
settings, change password with the old one.
Security: all input is untrusted; generated passwords are returned once, never logged or
audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from courriel import passwords
from courriel.admin import auth, services
from courriel.admin.api import schemas
from courriel.admin.api.context import context
from courriel.admin.services import notices

router = APIRouter()

ERRORS = {
    401: {"model": schemas.Error}, 403: {"model": schemas.Error}, 404: {"model": schemas.Error},
    409: {"model": schemas.Error}, 422: {"model": schemas.Error},
}
Admin = Annotated[auth.Principal, Depends(auth.require_admin)]
Login = Annotated[auth.Principal, Depends(auth.require_login)]
DomainName = Annotated[str, Path(max_length=253)]
AddressPath = Annotated[str, Path(max_length=320)]
UserName = Annotated[str, Path(max_length=64)]
DomainFilter = Annotated[str | None, Query(max_length=253)]


# --------------------------------------------------------------------------- domains


@router.get("/domains", tags=["domains"], response_model=list[schemas.Domain], responses=ERRORS)
def list_domains(request: Request, principal: Admin) -> list[dict]:
    return [d.as_dict() for d in services.list_domains(context(request, principal).db)]


@router.post("/domains", tags=["domains"], status_code=201, response_model=schemas.Domain, responses=ERRORS)
def add_domain(body: schemas.DomainCreate, request: Request, principal: Admin) -> dict:
    ctx = context(request, principal)
    info = services.add_domain(ctx.db, body.name, is_default=body.is_default, catch_all=body.catch_all)
    ctx.audit("domain.add", info.name, is_default=info.is_default, catch_all=info.catch_all)
    return info.as_dict()


@router.get("/domains/{name}", tags=["domains"], response_model=schemas.Domain, responses=ERRORS)
def get_domain(name: DomainName, request: Request, principal: Admin) -> dict:
    return services.get_domain(context(request, principal).db, name).as_dict()


@router.patch("/domains/{name}", tags=["domains"], response_model=schemas.Domain, responses=ERRORS)
def update_domain(name: DomainName, body: schemas.DomainUpdate, request: Request, principal: Admin) -> dict:
    ctx = context(request, principal)
    info = services.get_domain(ctx.db, name)
    if body.is_default:
        info = services.set_default_domain(ctx.db, name)
        ctx.audit("domain.default", info.name)
    if "catch_all" in body.model_fields_set:
        info = services.set_catch_all(ctx.db, name, body.catch_all or None)
        ctx.audit("domain.catch_all", info.name, catch_all=info.catch_all)
    return info.as_dict()


@router.delete("/domains/{name}", tags=["domains"], status_code=204, responses=ERRORS)
def remove_domain(name: DomainName, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    key = services.get_domain(ctx.db, name).name
    services.remove_domain(ctx.db, name)
    ctx.audit("domain.remove", key)
    return Response(status_code=204)


# --------------------------------------------------------------------------- mailboxes


@router.get("/mailboxes", tags=["mailboxes"], response_model=list[schemas.Mailbox], responses=ERRORS)
def list_mailboxes(request: Request, principal: Login, domain: DomainFilter = None,
                   user: Annotated[str | None, Query(max_length=64)] = None) -> list[dict]:
    """Every mailbox for an admin (filters: domain, user); a user's own mailboxes otherwise."""
    ctx = context(request, principal)
    if principal.is_admin:
        return [m.as_dict() for m in services.list_mailboxes(ctx.db, domain=domain or None, user=user or None)]
    return [services.get_mailbox(ctx.db, a).as_dict() for a in auth.own_mailboxes(ctx.db, principal)]


@router.post("/mailboxes", tags=["mailboxes"], status_code=201, response_model=schemas.MailboxCreated,
             responses=ERRORS)
def add_mailbox(body: schemas.MailboxCreate, request: Request, principal: Admin) -> dict:
    """Create a mailbox; without `password` one is generated and returned this once."""
    ctx = context(request, principal)
    info, generated = services.add_mailbox(
        ctx.db, ctx.hasher, ctx.policy, body.address, user=body.user or None, password=body.password,
        quota_bytes=body.quota_bytes, quota_messages=body.quota_messages, display_name=body.display_name,
        max_per_user=services.max_per_user_per_domain(ctx.config), notifier=ctx.notifier,
    )
    ctx.audit("mailbox.add", info.address, user=info.user, quota_bytes=info.quota_bytes,
              quota_messages=info.quota_messages,
              generated=generated is not None)
    return {"mailbox": info.as_dict(), "password": generated}


@router.get("/mailboxes/{address}", tags=["mailboxes"], response_model=schemas.Mailbox, responses=ERRORS)
def get_mailbox(address: AddressPath, request: Request, principal: Login) -> dict:
    ctx = context(request, principal)
    return services.get_mailbox(ctx.db, auth.ensure_own_mailbox(ctx.db, principal, address)).as_dict()


@router.patch("/mailboxes/{address}", tags=["mailboxes"], response_model=schemas.Mailbox, responses=ERRORS)
def update_mailbox(address: AddressPath, body: schemas.MailboxUpdate, request: Request, principal: Admin) -> dict:
    ctx = context(request, principal)
    info = services.get_mailbox(ctx.db, address)
    if body.enabled is not None:
        info = services.set_mailbox_enabled(ctx.db, address, body.enabled)
        if not info.enabled:
            auth.end_sessions_of(ctx.db, auth.KIND_MAILBOX, info.address)
        ctx.audit("mailbox.enable" if body.enabled else "mailbox.disable", info.address)
    if body.quota_bytes is not None or body.quota_messages is not None:
        info = services.set_mailbox_quota(ctx.db, address, body.quota_bytes, body.quota_messages)
        ctx.audit("mailbox.quota", info.address, quota_bytes=info.quota_bytes, quota_messages=info.quota_messages)
    return info.as_dict()


@router.delete("/mailboxes/{address}", tags=["mailboxes"], status_code=204, responses=ERRORS)
def remove_mailbox(address: AddressPath, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    key = services.get_mailbox(ctx.db, address).address
    services.remove_mailbox(ctx.db, key)
    auth.end_sessions_of(ctx.db, auth.KIND_MAILBOX, key)
    ctx.audit("mailbox.remove", key)
    return Response(status_code=204)


@router.post("/mailboxes/{address}/password", tags=["passwords"], response_model=schemas.PasswordResult,
             responses=ERRORS)
def set_mailbox_password(address: AddressPath, body: schemas.PasswordSet, request: Request,
                         principal: Admin) -> dict:
    """Set a mailbox password (admin); without `password` one is generated and returned once."""
    ctx = context(request, principal)
    key = services.get_mailbox(ctx.db, address).address
    generated = services.set_mailbox_password(ctx.db, ctx.hasher, ctx.policy, key, body.password,
                                              notifier=ctx.notifier)
    auth.end_sessions_of(ctx.db, auth.KIND_MAILBOX, key)
    ctx.audit("mailbox.password", key, generated=generated is not None)
    return {"password": generated}


def change_own_password(ctx, principal: auth.Principal, address: str, old: str, new: str) -> str:
    """Check the old password (throttled like any login), then set the new one."""
    key = auth.ensure_own_mailbox(ctx.db, principal, address)
    checked = auth.login(ctx.db, ctx.hasher, key, old, ctx.client_ip)
    if checked is None:
        raise services.InvalidInput("the current password is wrong", "wrong_password")
    services.set_mailbox_password(ctx.db, ctx.hasher, ctx.policy, key, new, notifier=ctx.notifier)
    keep = principal.session_id if principal.kind == auth.KIND_MAILBOX else None
    auth.end_sessions_of(ctx.db, auth.KIND_MAILBOX, key, keep=keep)
    ctx.audit("mailbox.password_change", key)
    return key


@router.post("/mailboxes/{address}/password/change", tags=["passwords"], status_code=204,
             responses={**ERRORS, 429: {"model": schemas.Error}})
def change_mailbox_password(address: AddressPath, body: schemas.PasswordChange, request: Request,
                            principal: Login) -> Response:
    """Change the password of one's own mailbox, proving the current one."""
    change_own_password(context(request, principal), principal, address, body.old_password, body.new_password)
    return Response(status_code=204)


@router.get("/mailboxes/{address}/connection", tags=["mailboxes"], response_model=schemas.ConnectionSettings,
            responses=ERRORS)
def mailbox_connection(address: AddressPath, request: Request, principal: Login) -> dict:
    """Server names, ports and security for a mail client."""
    ctx = context(request, principal)
    return notices.mailbox_settings(ctx.db, ctx.config, auth.ensure_own_mailbox(ctx.db, principal, address)).as_dict()


# --------------------------------------------------------------------------- passwords


@router.get("/passwords/generate", tags=["passwords"], response_model=schemas.GeneratedPassword, responses=ERRORS)
def generate_password(request: Request, principal: Login) -> dict:
    """A random password that meets the policy (not stored anywhere)."""
    generated = passwords.generate(policy=request.app.state.policy)
    return {"password": generated, "score": passwords.score(generated)}


@router.post("/passwords/score", tags=["passwords"], response_model=schemas.PasswordScore, responses=ERRORS)
def score_password(body: schemas.PasswordScoreRequest, request: Request, principal: Login) -> dict:
    """Strength 0-4 and what the policy finds wrong (empty: acceptable)."""
    return {"score": passwords.score(body.password), "problems": request.app.state.policy.problems(body.password)}


# --------------------------------------------------------------------------- aliases


@router.get("/aliases", tags=["aliases"], response_model=list[schemas.Alias], responses=ERRORS)
def list_aliases(request: Request, principal: Admin, domain: DomainFilter = None) -> list[dict]:
    return [a.as_dict() for a in services.list_aliases(context(request, principal).db, domain=domain or None)]


@router.post("/aliases", tags=["aliases"], status_code=201, response_model=schemas.Alias, responses=ERRORS)
def add_alias(body: schemas.AliasCreate, request: Request, principal: Admin) -> dict:
    ctx = context(request, principal)
    info = services.add_alias(ctx.db, body.address, body.targets)
    ctx.audit("alias.add", info.address, targets=info.targets)
    return info.as_dict()


@router.put("/aliases/{address}", tags=["aliases"], response_model=schemas.Alias, responses=ERRORS)
def set_alias_targets(address: AddressPath, body: schemas.AliasUpdate, request: Request, principal: Admin) -> dict:
    ctx = context(request, principal)
    info = services.set_alias_targets(ctx.db, address, body.targets)
    ctx.audit("alias.targets", info.address, targets=info.targets)
    return info.as_dict()


@router.delete("/aliases/{address}", tags=["aliases"], status_code=204, responses=ERRORS)
def remove_alias(address: AddressPath, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    services.remove_alias(ctx.db, address)
    ctx.audit("alias.remove", address.strip().lower())
    return Response(status_code=204)


# --------------------------------------------------------------------------- groups


@router.get("/groups", tags=["groups"], response_model=list[schemas.Group], responses=ERRORS)
def list_groups(request: Request, principal: Admin, domain: DomainFilter = None) -> list[dict]:
    return [g.as_dict() for g in services.list_groups(context(request, principal).db, domain=domain or None)]


@router.post("/groups", tags=["groups"], status_code=201, response_model=schemas.Group, responses=ERRORS)
def add_group(body: schemas.GroupCreate, request: Request, principal: Admin) -> dict:
    ctx = context(request, principal)
    info = services.add_group(ctx.db, body.address, body.members, members_can_send=body.members_can_send)
    ctx.audit("group.add", info.address, members=info.members, members_can_send=info.members_can_send)
    return info.as_dict()


@router.get("/groups/{address}", tags=["groups"], response_model=schemas.Group, responses=ERRORS)
def get_group(address: AddressPath, request: Request, principal: Admin) -> dict:
    return services.get_group(context(request, principal).db, address).as_dict()


@router.patch("/groups/{address}", tags=["groups"], response_model=schemas.Group, responses=ERRORS)
def update_group(address: AddressPath, body: schemas.GroupUpdate, request: Request, principal: Admin) -> dict:
    """Add and/or remove members."""
    ctx = context(request, principal)
    info = services.get_group(ctx.db, address)
    if body.add:
        info = services.add_group_members(ctx.db, address, body.add)
        ctx.audit("group.members_add", info.address, members=body.add)
    if body.remove:
        info = services.remove_group_members(ctx.db, address, body.remove)
        ctx.audit("group.members_remove", info.address, members=body.remove)
    return info.as_dict()


@router.delete("/groups/{address}", tags=["groups"], status_code=204, responses=ERRORS)
def remove_group(address: AddressPath, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    key = services.get_group(ctx.db, address).address
    services.remove_group(ctx.db, key)
    ctx.audit("group.remove", key)
    return Response(status_code=204)


# --------------------------------------------------------------------------- users


@router.get("/users", tags=["users"], response_model=list[schemas.User], responses=ERRORS)
def list_users(request: Request, principal: Admin) -> list[dict]:
    return [u.as_dict() for u in services.list_users(context(request, principal).db)]


@router.post("/users", tags=["users"], status_code=201, response_model=schemas.UserCreated, responses=ERRORS)
def add_user(body: schemas.UserCreate, request: Request, principal: Admin) -> dict:
    """Create a console account; without `password` one is generated and returned this once."""
    ctx = context(request, principal)
    info, generated = services.add_user(ctx.db, ctx.hasher, ctx.policy, body.name, role=body.role,
                                        email=body.email or None, display_name=body.display_name,
                                        password=body.password)
    ctx.audit("user.add", info.name, role=info.role, generated=generated is not None)
    return {"user": info.as_dict(), "password": generated}


@router.get("/users/{name}", tags=["users"], response_model=schemas.User, responses=ERRORS)
def get_user(name: UserName, request: Request, principal: Admin) -> dict:
    return services.get_user(context(request, principal).db, name).as_dict()


@router.post("/users/{name}/password", tags=["passwords"], response_model=schemas.PasswordResult,
             responses=ERRORS)
def set_user_password(name: UserName, body: schemas.PasswordSet, request: Request, principal: Admin) -> dict:
    ctx = context(request, principal)
    key = services.get_user(ctx.db, name).name
    generated = services.set_user_password(ctx.db, ctx.hasher, ctx.policy, key, body.password)
    keep = principal.session_id if (principal.kind == auth.KIND_USER and principal.name == key) else None
    auth.end_sessions_of(ctx.db, auth.KIND_USER, key, keep=keep)
    ctx.audit("user.password", key, generated=generated is not None)
    return {"password": generated}


@router.delete("/users/{name}", tags=["users"], status_code=204, responses=ERRORS)
def remove_user(name: UserName, request: Request, principal: Admin) -> Response:
    ctx = context(request, principal)
    key = services.get_user(ctx.db, name).name
    services.remove_user(ctx.db, key)
    auth.end_sessions_of(ctx.db, auth.KIND_USER, key)
    ctx.audit("user.remove", key)
    return Response(status_code=204)
