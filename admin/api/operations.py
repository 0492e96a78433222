"""Operations routes of the JSON API: the mail queue, the health summary, the audit log and
API keys.

Security: admin only. API key tokens are returned once at creation; lists show the public
prefix only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from courriel.admin import audit, auth, services
from courriel.admin.api import schemas
from courriel.admin.api.context import context
from courriel.admin.api.registry import ERRORS
from courriel.admin.services import dns as dns_service
from courriel.models import QueueState
from courriel.queue import spool, stats

router = APIRouter()
Admin = Annotated[auth.Principal, Depends(auth.require_admin)]
QueueId = Annotated[str, Path(pattern="^[0-9A-Za-z]{1,32}$")]
QUEUE_STATES = "^(" + "|".join(s.value for s in QueueState) + ")$"


def queue_entry(entry: spool.QueuedMessage) -> dict:
    return {
        "id": entry.id, "sender": entry.sender, "source": entry.source, "size": entry.size, "state": entry.state,
        "attempts": entry.attempts, "received_at": entry.received_at.isoformat(),
        "next_attempt_at": entry.next_attempt_at.isoformat(),
        "recipients": [{"address": r.address, "state": r.state, "attempts": r.attempts, "last_reply": r.last_reply}
                       for r in entry.recipients],
    }


def _entry(db, queue_id: str) -> spool.QueuedMessage:
    entry = spool.get(db, queue_id)
    if entry is None:
        raise services.NotFound(f"queue entry {queue_id} does not exist")
    return entry


def retry(db, queue_id: str) -> int:
    """Make a held or deferred message due now. A held one is released; deferred ones are all
    made due (the spool's `flush`, like `postqueue -f`). Returns how many changed."""
    entry = _entry(db, queue_id)
    if entry.state == QueueState.HOLD:
        return int(spool.unhold(db, queue_id))
    if entry.state == QueueState.DEFERRED:
        return spool.flush(db)
    raise services.Conflict(f"queue entry {queue_id} is {entry.state}; only held or deferred mail can be retried",
                            "invalid_state")


@router.get("/queue", tags=["queue"], response_model=list[schemas.QueueEntry], responses=ERRORS)
def list_queue(request: Request, principal: Admin,
               state: Annotated[str | None, Query(pattern=QUEUE_STATES)] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict]:
    """Queue entries, oldest first."""
    return [queue_entry(e) for e in spool.list_entries(context(request, principal).db, state=state, limit=limit)]


@router.get("/queue/{queue_id}", tags=["queue"], response_model=schemas.QueueEntry, responses=ERRORS)
def get_queue_entry(queue_id: QueueId, request: Request, principal: Admin) -> dict:
    return queue_entry(_entry(context(request, principal).db, queue_id))


@router.post("/queue/{queue_id}/retry", tags=["queue"], response_model=schemas.QueueAction, responses=ERRORS)
def retry_queue_entry(queue_id: QueueId, request: Request, principal: Admin) -> dict:
    ctx = context(request, principal)
    changed = retry(ctx.db, queue_id)
    ctx.audit("queue.retry", queue_id, changed=changed)
    return {"id": queue_id, "changed": changed}


@router.post("/queue/flush", tags=["queue"], response_model=schemas.QueueAction, responses=ERRORS)
def flush_queue(request: Request, principal: Admin) -> dict:
    """Make every deferred message due now."""
    ctx = context(request, principal)
    changed = spool.flush(ctx.db)
    ctx.audit("queue.flush", "", changed=changed)
    return {"id": None, "changed": changed}


@router.delete("/queue/{queue_id}", tags=["queue"], status_code=204, responses=ERRORS)
def delete_queue_entry(queue_id: QueueId, request: Request, principal: Admin) -> Response:
    """Delete a message from the queue without delivering it."""
    ctx = context(request, principal)
    if not spool.remove(ctx.db, queue_id):
        raise services.NotFound(f"queue entry {queue_id} does not exist")
    ctx.audit("queue.delete", queue_id)
    return Response(status_code=204)


def dns_red_flags(db) -> list[str]:
    """Domains whose ownership is unproven or whose last DNS check found problems."""
    flagged = []
    for domain in services.list_domains(db):
        stored, _ = dns_service.last_check(db, domain.name)
        if not (domain.verified or domain.is_default) or (stored and stored.get("status") != "ok"):
            flagged.append(domain.name)
    return flagged


def health_summary(db) -> dict:
    try:
        with db.read() as session:
            session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        return {"status": "unavailable", "database": "unreachable", "queue": {}, "queue_oldest_age_seconds": 0.0,
                "domains": 0, "domains_with_dns_problems": []}
    flagged = dns_red_flags(db)
    return {
        "status": "ok" if not flagged else "attention", "database": "ok", "queue": stats.size_by_state(db),
        "queue_oldest_age_seconds": round(stats.oldest_age_seconds(db), 1),
        "domains": len(services.list_domains(db)), "domains_with_dns_problems": flagged,
    }


@router.get("/health", tags=["operations"], response_model=schemas.Health, responses=ERRORS)
def health(request: Request, principal: Admin) -> dict:
    """Database, queue sizes and age, domains with DNS red flags."""
    return health_summary(context(request, principal).db)


@router.get("/audit", tags=["operations"], response_model=list[schemas.AuditEntry], responses=ERRORS)
def audit_log(request: Request, principal: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 100,
              before: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> list[dict]:
    """Administrative changes, newest first (`before`: an entry id, to page back)."""
    return [e.as_dict() for e in audit.entries(context(request, principal).db, limit=limit, before_id=before)]


@router.get("/keys", tags=["api keys"], response_model=list[schemas.ApiKey], responses=ERRORS)
def list_keys(request: Request, principal: Admin) -> list[dict]:
    return [k.as_dict() for k in auth.list_api_keys(context(request, principal).db)]


@router.post("/keys", tags=["api keys"], status_code=201, response_model=schemas.ApiKeyCreated, responses=ERRORS)
def create_key(body: schemas.ApiKeyCreate, request: Request, principal: Admin) -> dict:
    """A new API key with administrator rights; the token is in this answer only."""
    ctx = context(request, principal)
    info, token = auth.create_api_key(ctx.db, body.name, principal.name)
    ctx.audit("api_key.create", info.prefix, name=info.name)
    return {"key": info.as_dict(), "token": token}


@router.delete("/keys/{prefix}", tags=["api keys"], response_model=schemas.ApiKey, responses=ERRORS)
def revoke_key(prefix: Annotated[str, Path(max_length=16)], request: Request, principal: Admin) -> dict:
    ctx = context(request, principal)
    info = auth.revoke_api_key(ctx.db, prefix)
    ctx.audit("api_key.revoke", info.prefix, name=info.name)
    return info.as_dict()



