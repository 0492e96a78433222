"""Health endpoints of the admin role: `/healthz` (liveness) and `/readyz` (readiness).

`/healthz` answers 200 `{"status": "ok"}` whenever the process serves HTTP (for a
supervisor, systemd or a container orchestrator deciding whether to restart it).
`/readyz` answers 200 when the database answers a trivial query, 503 otherwise (for a
load balancer deciding whether to send traffic).
Security: no input is read; nothing but the status is disclosed (no error text, which
could name hosts or users of the database).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("courriel.admin.health")

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    # A sync endpoint: FastAPI runs it in its thread pool, off the event loop (ARCHITECTURE §4).
    database = request.app.state.database
    try:
        with database.read() as session:
            session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        log.warning("database not reachable", extra={"error": type(exc).__name__})
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
