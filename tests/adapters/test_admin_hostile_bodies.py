"""Hostile request bodies against the admin API (the real ASGI application): deeply nested JSON
and an over-sized body are refused with a 4xx, never a 500, and change nothing."""

from __future__ import annotations

import re

from admin_app import admin_setup, api  # noqa: F401 - pytest fixtures


def test_deeply_nested_json_is_a_client_error(api):  # noqa: F811
    body = b"[" * 200_000 + b"]" * 200_000
    response = api.post("/api/v1/domains", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.status_code
    assert api.get("/api/v1/domains").status_code == 200


def test_oversized_body_is_refused_with_413(api):  # noqa: F811
    body = b'{"name": "' + b"a" * (2 * 1024 * 1024) + b'.example"}'
    response = api.post("/api/v1/domains", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_every_state_changing_route_refuses_a_cookie_without_csrf_token(admin_setup):  # noqa: F811
    """A signed-in console cookie alone (what a cross-site form sends) changes nothing anywhere:
    every POST/PUT/PATCH/DELETE route answers 403 without the CSRF token, and the same with a wrong one."""
    from admin_app import ADMIN
    client, _token = admin_setup.console(*ADMIN)
    checked = []
    app = admin_setup.app
    for _ in range(10):  # unwrap ASGI middleware down to the application with routes
        if hasattr(app, "routes"):
            break
        app = app.app
    for route in _flat_routes(app.routes):
        methods = set(getattr(route, "methods", None) or ()) & {"POST", "PUT", "PATCH", "DELETE"}
        path = getattr(route, "path", "")
        if not methods or path in ("/login", "/api/v1/session"):
            continue
        url = re.sub(r"\{(\w+)(:\w+)?\}", "x", path)
        for method in sorted(methods):
            for sent in ({}, {"csrf_token": "forged"}):
                kwargs = {"data": sent} if method == "POST" and not path.startswith("/api/") else {}
                response = client.request(method, url, follow_redirects=False, **kwargs)
                assert response.status_code == 403, f"{method} {path} -> {response.status_code}"
            checked.append((method, path))
    assert len(checked) > 10, [(type(r).__name__, getattr(r, "path", None)) for r in app.routes][:20]


def _flat_routes(routes, prefix: str = ""):
    """(route-like objects with a full `path`) through included routers, whatever their wrapper."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _flat_routes(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif hasattr(route, "methods"):
            yield type("Flat", (), {"methods": route.methods, "path": prefix + route.path})()
