"""Every route of the admin application is walked as anonymous, user and admin.

The routes are enumerated from the application, so a new route is walked too, and a route
that declares none of `require_admin`, `require_login` or `public` fails the test."""

from __future__ import annotations

import re

import pytest
from admin_app import ADMIN, ALICE, DOMAIN, USER, AdminSetup, admin_setup, queue_message  # noqa: F401
from fastapi import APIRouter
from starlette.routing import Mount

from courriel.admin import auth
from courriel.admin.api import route_list

# Mounted sub-applications that are public by design.
PUBLIC_MOUNTS = {"/static"}
CHECK_NAMES = {auth.require_admin: "admin", auth.require_login: "login", auth.public: "public"}


def access_check(route) -> str | None:
    """The access check a route declares ("admin", "login", "public"), or None."""
    found = set()
    pending = [getattr(route, "dependant", None)]
    for _ in range(1000):  # bounded walk of the dependency tree
        if not pending:
            break
        dependant = pending.pop()
        if dependant is None:
            continue
        if dependant.call in CHECK_NAMES:
            found.add(CHECK_NAMES[dependant.call])
        pending.extend(dependant.dependencies)
    for name in ("admin", "login", "public"):  # the strictest one decides
        if name in found:
            return name
    return None


def walked_routes(app) -> list[tuple[str, str, str]]:
    """(method, path, check) for every route; fails on a route without a check."""
    unchecked, walked = [], []
    for route in route_list(app):
        if isinstance(getattr(route, "original_route", route), Mount) or isinstance(route, Mount):
            assert route.path in PUBLIC_MOUNTS, f"unexpected mounted application at {route.path}"
            continue
        check = access_check(route)
        if check is None:
            unchecked.append(route.path)
            continue
        for method in sorted(route.methods - {"HEAD"}):
            walked.append((method, route.path, check))
    assert not unchecked, f"routes without an access check: {unchecked}"
    # Signing out goes last, so the walk keeps its sessions.
    return sorted(walked, key=lambda item: item[1] in ("/logout", "/api/v1/session"))


def test_a_route_without_a_check_is_caught(admin_setup):  # noqa: F811
    stray = APIRouter()

    @stray.get("/stray")
    def unprotected() -> dict:
        return {}

    admin_setup.app.include_router(stray)
    with pytest.raises(AssertionError, match="/stray"):
        walked_routes(admin_setup.app)


def sample_values(setup: AdminSetup) -> dict[str, str]:
    queue_id = queue_message(setup.db, setup.config)
    key, _ = auth.create_api_key(setup.db, "walk", ADMIN[0])
    return {"name": DOMAIN, "address": ALICE[0], "domain": DOMAIN, "selector": "s1", "change": "activate",
            "queue_id": queue_id, "prefix": key.prefix, "token": "not-a-feed-token-0123456789"}


def url_for(path: str, values: dict[str, str]) -> str:
    if path.startswith(("/users/", "/api/v1/users/")):
        values = {**values, "name": USER[0]}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def call(client, method: str, path: str, csrf: str | None):
    if path.startswith("/api/"):
        kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    else:
        kwargs = {"data": {"csrf_token": csrf or ""}} if method == "POST" else {}
    return client.request(method, path, follow_redirects=False, **kwargs)


def describe(method: str, path: str, response) -> str:
    return f"{method} {path} -> {response.status_code}: {response.text[:300]}"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_route_checks_the_role(admin_setup):  # noqa: F811
    routes = walked_routes(admin_setup.app)
    assert len(routes) > 60
    values = sample_values(admin_setup)

    anonymous = admin_setup.client()
    for method, path, check in routes:
        response = call(anonymous, method, url_for(path, values), None)
        assert response.status_code < 500, describe(method, path, response)
        if check == "public":
            assert response.status_code != 401, describe(method, path, response)
        elif path.startswith("/api/"):
            assert response.status_code == 401, describe(method, path, response)
            assert response.json()["code"] == "not_authenticated"
        else:
            assert response.status_code == 303 and response.headers["location"] == "/login", \
                describe(method, path, response)

    # A user signed in with a mailbox address: its own mailbox is in the sample values.
    user_api = admin_setup.bearer(*ALICE)
    user_web, user_csrf = admin_setup.console(*ALICE)
    for method, path, check in routes:
        api_route = path.startswith("/api/")
        client, csrf = (user_api, None) if api_route else (user_web, user_csrf)
        response = call(client, method, url_for(path, values), csrf)
        assert response.status_code < 500, describe(method, path, response)
        if check == "admin":
            assert response.status_code == 403, describe(method, path, response)
            if api_route:
                assert response.json()["code"] == "forbidden"
        elif check == "login":
            assert response.status_code not in (401, 403), describe(method, path, response)
            if not api_route and path != "/logout":
                assert response.headers.get("location") != "/login", describe(method, path, response)

    admin_api = admin_setup.bearer(*ADMIN)
    admin_web, admin_csrf = admin_setup.console(*ADMIN)
    for method, path, check in routes:
        api_route = path.startswith("/api/")
        client, csrf = (admin_api, None) if api_route else (admin_web, admin_csrf)
        response = call(client, method, url_for(path, values), csrf)
        assert response.status_code < 500, describe(method, path, response)
        if check == "public":
            continue  # e.g. the login form, whose own token the walk does not send
        assert response.status_code not in (401, 403), describe(method, path, response)
        if not api_route and path != "/logout":
            assert response.headers.get("location") != "/login", describe(method, path, response)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_console_refuses_forms_without_the_csrf_token(admin_setup):  # noqa: F811
    client, csrf = admin_setup.console(*ADMIN)
    for page in ("/", "/domains", f"/domains/{DOMAIN}", "/mailboxes", f"/mailboxes/{ALICE[0]}", "/aliases",
                 "/groups", "/dkim", "/users", "/keys", "/queue"):
        html = client.get(page).text
        assert html.count('name="csrf_token"') == html.count(f'name="csrf_token" value="{csrf}"') >= 1, page
    refused = client.post("/domains", data={"name": "csrf.example"}, follow_redirects=False)
    assert refused.status_code == 403 and "CSRF" in refused.text
    forged = client.post("/domains", data={"name": "csrf.example", "csrf_token": "x" * 43}, follow_redirects=False)
    assert forged.status_code == 403
    assert "csrf.example" not in client.get("/domains").text
    accepted = client.post("/domains", data={"name": "csrf.example", "csrf_token": csrf}, follow_redirects=False)
    assert accepted.status_code == 303
    assert "csrf.example" in client.get("/domains").text
    # The login form has its own double-submit token.
    anonymous = admin_setup.client()
    anonymous.get("/login")
    assert anonymous.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": "forged"},
                          follow_redirects=False).status_code == 403


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_user_console_shows_only_own_mailboxes(admin_setup):  # noqa: F811
    client, _ = admin_setup.console(*USER)
    page = client.get("/account")
    assert "bob@example.org" in page.text and ALICE[0] not in page.text
    assert client.get(f"/account/{ALICE[0]}", follow_redirects=False).status_code == 403
    assert client.get("/mailboxes", follow_redirects=False).status_code == 403
    assert client.get("/", follow_redirects=False).headers["location"] == "/account"
