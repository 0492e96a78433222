"""The admin role's ASGI application factory: `create_app(config) -> FastAPI`.

Owns the application object and its lifetime: the database handle in `app.state.database`
(opened at construction, disposed at shutdown) and the routers mounted on it. The JSON API,
the web console and `/metrics` are added here as routers.
Security: every router mounted here parses untrusted HTTP input; see each router.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response

from courriel import __version__, metrics
from courriel.admin import health
from courriel.config import Config
from courriel.db import Database


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
    app.include_router(health.router)
    exporter = metrics.Exporter(config, database)

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint() -> Response:  # sync: runs in the thread pool (reads files and the database)
        body, content_type = exporter.render()
        return Response(body, media_type=content_type)

    return app
