"""Hostile request bodies against the admin API (the real ASGI application): deeply nested JSON
and an over-sized body are refused with a 4xx, never a 500, and change nothing."""

from __future__ import annotations

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
