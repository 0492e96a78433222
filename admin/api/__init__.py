"""The JSON API under /api/v1 (FastAPI routers) and its OpenAPI document.

Routes validate the request, call the service layer (`courriel.admin.services`, the spool's
operator functions, `courriel.admin.auth`), record admin changes in the audit log, and return
JSON. They hold no SQL. Every route declares one access check from `courriel.admin.auth`.
Errors are `{"code": ..., "message": ...}` with the HTTP status of the error class
(`courriel.admin.api.errors`).

Standards: RFC 9110 (status codes), RFC 6750 (Bearer tokens), OpenAPI 3.1.
Security: all input is untrusted; see `courriel.admin.auth` for the checks.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from courriel import __version__
from courriel.admin import auth
from courriel.admin.api import domain_dns, operations, registry, session

PREFIX = "/api/v1"
ROUTERS = (session.router, registry.router, domain_dns.router, operations.router)

document_router = APIRouter(prefix=PREFIX)


@document_router.get("/openapi.json", include_in_schema=False, dependencies=[Depends(auth.public)])
def openapi_document(request: Request) -> JSONResponse:
    app: FastAPI = request.app
    cached = getattr(app.state, "api_openapi", None)
    if cached is None:
        cached = get_openapi(
            title="Courriel API", version=__version__, routes=app.routes,
            description="Administration of domains, mailboxes, aliases, groups, users, DKIM keys and the queue. "
                        "Authenticate with `Authorization: Bearer <API key or session token>`.",
        )
        # Only the JSON API: the console's routes are not part of it.
        paths = cached.get("paths", {})
        cached["paths"] = {path: item for path, item in paths.items() if path.startswith(PREFIX + "/")}
        cached.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        cached["security"] = [{"bearer": []}]
        app.state.api_openapi = cached
    return JSONResponse(cached)


def route_list(app: FastAPI) -> list:
    """Every route of the application with its full path, methods and dependencies (FastAPI
    nests included routers since 0.16x; older versions list them flat)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def include(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX)
    app.include_router(document_router)
