"""DNS routes of the JSON API: a domain's expected records, the wizard, ownership
verification, DNS checks and DKIM keys (`courriel.admin.services.dns` and `.dkim`).

Security: admin only; names and selectors are validated by the services before any lookup;
private keys are never returned (only the public key and the DNS record).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from courriel.admin import auth
from courriel.admin.api import schemas
from courriel.admin.api.context import context
from courriel.admin.api.registry import ERRORS
from courriel.admin.services import dkim as dkim_service
from courriel.admin.services import dns as dns_service

router = APIRouter(tags=["dns"])
Admin = Annotated[auth.Principal, Depends(auth.require_admin)]
DomainName = Annotated[str, Path(max_length=253)]
Selector = Annotated[str, Path(max_length=63)]
Algorithm = Annotated[str, Field(pattern="^(rsa|ed25519|rsa-sha256|ed25519-sha256)$")]


class WizardBegin(schemas.Body):
    name: schemas.Text
    algorithm: Algorithm | None = None


class KeyCreate(schemas.Body):
    algorithm: Algorithm | None = None


class KeyAction(schemas.Body):
    force: bool = False


class Record(BaseModel):
    type: str
    name: str
    value: str
    purpose: str


class DkimKey(BaseModel):
    domain: str
    selector: str
    algorithm: str
    state: str
    public_key: str
    created_at: str
    activated_at: str | None
    retired_at: str | None
    record: Record | None = None


def _key(info: dkim_service.DkimKeyInfo) -> dict:
    record = dkim_service.dns_record(info)
    return {**info.as_dict(), "record": dns_service.record_rows([record])[0]}


@router.get("/domains/{name}/records", response_model=list[Record], responses=ERRORS)
def expected_records(name: DomainName, request: Request, principal: Admin) -> list[dict]:
    """Every DNS record the domain must publish for this server."""
    ctx = context(request, principal)
    return dns_service.record_rows(dns_service.expected_records(ctx.db, ctx.config, name))


@router.get("/domains/{name}/wizard", responses=ERRORS)
def wizard_state(name: DomainName, request: Request, principal: Admin) -> dict:
    """Where the domain stands in the wizard: each step done, todo, problem or skipped."""
    ctx = context(request, principal)
    return dns_service.wizard(ctx.db, ctx.config, name).as_dict()


@router.post("/wizard", status_code=201, responses=ERRORS)
def wizard_begin(body: WizardBegin, request: Request, principal: Admin) -> dict:
    """The wizard's first steps: add the domain (if new) and generate its first DKIM key."""
    ctx = context(request, principal)
    state = dns_service.begin(ctx.db, ctx.config, body.name, algorithm=body.algorithm)
    ctx.audit("domain.wizard", state.domain, algorithm=body.algorithm)
    return state.as_dict()


@router.post("/domains/{name}/verify", responses=ERRORS)
def verify_ownership(name: DomainName, request: Request, principal: Admin) -> dict:
    """Look for the ownership TXT record now."""
    ctx = context(request, principal)
    result = dns_service.verify(ctx.db, ctx.config, name)
    ctx.audit("domain.verify", result.domain, verified=result.verified)
    return result.as_dict()


@router.post("/domains/{name}/check", responses=ERRORS)
def check_dns(name: DomainName, request: Request, principal: Admin) -> dict:
    """Check every expected record now; the result is stored for the dashboard."""
    ctx = context(request, principal)
    return dns_service.check(ctx.db, ctx.config, name).as_dict()


@router.get("/dkim-keys", response_model=list[DkimKey], responses=ERRORS)
def list_dkim_keys(request: Request, principal: Admin,
                   domain: Annotated[str | None, Query(max_length=253)] = None) -> list[dict]:
    ctx = context(request, principal)
    return [_key(k) for k in dkim_service.list_keys(ctx.db, domain or None)]


@router.post("/domains/{name}/dkim-keys", status_code=201, response_model=DkimKey, responses=ERRORS)
def rotate_dkim_key(name: DomainName, body: KeyCreate, request: Request, principal: Admin) -> dict:
    """A new pending key (a rotation when the domain already has one); publish it, then activate."""
    ctx = context(request, principal)
    info = dkim_service.rotate(ctx.db, ctx.config, name, body.algorithm)
    ctx.audit("dkim.create", f"{info.selector}._domainkey.{info.domain}", algorithm=info.algorithm)
    return _key(info)


@router.post("/domains/{name}/dkim-keys/{selector}/activate", response_model=DkimKey, responses=ERRORS)
def activate_dkim_key(name: DomainName, selector: Selector, body: KeyAction, request: Request,
                      principal: Admin) -> dict:
    ctx = context(request, principal)
    info = dkim_service.activate(ctx.db, ctx.config, name, selector, force=body.force)
    ctx.audit("dkim.activate", f"{info.selector}._domainkey.{info.domain}", force=body.force)
    return _key(info)


@router.post("/domains/{name}/dkim-keys/{selector}/retire", response_model=DkimKey, responses=ERRORS)
def retire_dkim_key(name: DomainName, selector: Selector, body: KeyAction, request: Request,
                    principal: Admin) -> dict:
    ctx = context(request, principal)
    info = dkim_service.retire(ctx.db, ctx.config, name, selector, force=body.force)
    ctx.audit("dkim.retire", f"{info.selector}._domainkey.{info.domain}", force=body.force)
    return _key(info)
