"""Error responses: every refusal is JSON `{"code": ..., "message": ...}` under /api/, an HTML
page (or a redirect to the login page) in the console; never a stack trace.

Security: validation errors are reported without the offending input (it may be a password).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from courriel.admin import auth
from courriel.admin.services.errors import ServiceError
from courriel.queue.spool import SpoolError

log = logging.getLogger("courriel.admin")

STATUS_CODES = {
    400: "bad_request", 401: "not_authenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid_request",
    429: "throttled", 500: "internal_error",
}


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_json(status: int, code: str, message: str, **extra) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status)


def install(app: FastAPI, html_error) -> None:
    """Register the handlers; `html_error(request, status, message)` renders console errors."""

    def respond(request: Request, status: int, code: str, message: str, headers=None, **extra) -> Response:
        if is_api(request):
            response = error_json(status, code, message, **extra)
        else:
            response = html_error(request, status, message)
        if headers:
            response.headers.update(headers)
        return response

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return respond(request, exc.http_status, exc.code, exc.message)

    @app.exception_handler(SpoolError)
    async def spool_error(request: Request, exc: SpoolError) -> Response:
        return respond(request, 409, "conflict", str(exc))

    @app.exception_handler(auth.NotAuthenticated)
    async def not_authenticated(request: Request, exc: auth.NotAuthenticated) -> Response:
        if is_api(request):
            response = error_json(401, "not_authenticated", "sign in or send an API key as a Bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(auth.Forbidden)
    async def forbidden(request: Request, exc: auth.Forbidden) -> Response:
        return respond(request, 403, exc.code, exc.message)

    @app.exception_handler(auth.Throttled)
    async def throttled(request: Request, exc: auth.Throttled) -> Response:
        return respond(request, 429, "throttled", str(exc), headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", "")),
             "type": str(error.get("type", ""))}
            for error in exc.errors()[:20]
        ]
        message = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
        return respond(request, 422, "invalid_request", message, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return respond(request, exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__,
                  exc_info=exc)
        return respond(request, 500, "internal_error", "internal error; the server log has the details")
