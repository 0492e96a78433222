"""The admin role's ASGI application factory: `create_app(config) -> FastAPI`.

Owns the application object and its lifetime: the database handle in `app.state.database`
(opened at construction, disposed at shutdown), the password hasher and policy, and the
routers mounted on it: health, the JSON API under /api/v1 (`courriel.admin.api`), the web
console (`courriel.admin.web`) and its static files; the error handlers and security headers.
Security: every router mounted here parses untrusted HTTP input; see each router.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from courriel import __version__, metrics, passwords
from courriel.admin import api, auth, health, web
from courriel.admin.api import errors
from courriel.admin.request_limits import BodyLimit
from courriel.admin.security_headers import SecurityHeaders
from courriel.admin.services import calendar as calendar_service
from courriel.admin.services.errors import NotFound
from courriel.config import Config
from courriel.db import Database

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(config: Config) -> FastAPI:
    database = Database(config.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            database.dispose()

    app = FastAPI(title="Courriel", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.database = database
    app.state.hasher = passwords.PasswordHasher.from_config(config)
    app.state.policy = passwords.PasswordPolicy.from_config(config)
    app.include_router(health.router, dependencies=[Depends(auth.public)])
    exporter = metrics.Exporter(config, database)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(auth.public)])
    def metrics_endpoint() -> Response:  # sync: runs in the thread pool (reads files and the database)
        body, content_type = exporter.render()
        return Response(body, media_type=content_type)

    # The secret calendar feed (issue: rules, iCalendar): the token in the path is the credential.
    @app.get("/calendar/feed/{token}.ics", include_in_schema=False, dependencies=[Depends(auth.public)])
    def calendar_feed(token: str) -> Response:
        body = calendar_service.calendar_feed(database, token)
        if body is None:
            raise NotFound("no calendar feed at this address")
        return Response(body, media_type="text/calendar; charset=utf-8")

    api.include(app)
    web.include(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    errors.install(app, web.html_error)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders, dev=config.dev)
    return app
