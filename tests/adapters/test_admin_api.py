"""The JSON API under /api/v1: every endpoint as admin and as user, bad input (422 with a
code), 401 and 403, API keys shown once and stored hashed, the audit log, throttled logins,
security headers and cookies, and one run over a real socket through the admin role."""

from __future__ import annotations

import re
import signal

import httpx
from admin_app import ADMIN, ALICE, BOB_MAILBOX, DOMAIN, USER, admin_setup, api, queue_message  # noqa: F401
from serve_process import (  # noqa: F401
    STOP_DEADLINE,
    admin_port,
    initialised_template,
    listener_environ,
    serve,
    served_data,
    wait_healthy,
)
from sqlalchemy import select

from courriel import config as config_mod
from courriel import passwords
from courriel.admin import services
from courriel.db import Database
from courriel.models import ApiKey, AuditEntry, ConsoleSession


def error_of(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"code", "message"}, body
    assert "Traceback" not in response.text
    if code is not None:
        assert body["code"] == code, body
    return body


# --------------------------------------------------------------------------- domains


def test_domains_crud(api):  # noqa: F811
    created = api.post("/api/v1/domains", json={"name": "Example.NET"})
    assert created.status_code == 201
    assert created.json()["name"] == "example.net"
    assert {d["name"] for d in api.get("/api/v1/domains").json()} == {DOMAIN, "example.net"}
    assert api.get("/api/v1/domains/example.net").json()["verified"] is False
    api.post("/api/v1/mailboxes", json={"address": "x@example.net"})
    updated = api.patch("/api/v1/domains/example.net", json={"catch_all": "x@example.net", "is_default": True})
    assert updated.status_code == 200, updated.text
    assert updated.json()["catch_all"] == "x@example.net" and updated.json()["is_default"] is True
    error_of(api.delete("/api/v1/domains/example.net"), 409, "in_use")
    assert api.delete("/api/v1/mailboxes/x@example.net").status_code == 204
    assert api.delete("/api/v1/domains/example.net").status_code == 204
    error_of(api.get("/api/v1/domains/example.net"), 404, "not_found")


def test_domain_bad_input_changes_nothing(api):  # noqa: F811
    error_of(api.post("/api/v1/domains", json={"name": "not a domain"}), 422, "invalid_domain")
    error_of(api.post("/api/v1/domains", json={"name": DOMAIN}), 409, "duplicate")
    error_of(api.post("/api/v1/domains", json={"name": "ok.example", "extra": 1}), 422, "invalid_request")
    error_of(api.post("/api/v1/domains", json={"name": "nul\x00.example"}), 422, "invalid_request")
    error_of(api.post("/api/v1/domains", content=b"{not json", headers={"content-type": "application/json"}),
             422, "invalid_request")
    error_of(api.post("/api/v1/domains", json=["a"]), 422, "invalid_request")
    assert [d["name"] for d in api.get("/api/v1/domains").json()] == [DOMAIN]


def test_wizard_records_check_and_dkim_keys(api):  # noqa: F811
    begun = api.post("/api/v1/wizard", json={"name": "wizard.example", "algorithm": "ed25519"})
    assert begun.status_code == 201, begun.text
    steps = {s["name"]: s["state"] for s in begun.json()["steps"]}
    assert steps["name"] == "done" and steps["ownership"] == "todo"
    records = api.get("/api/v1/domains/wizard.example/records").json()
    assert {"MX", "TXT"} <= {r["type"] for r in records}
    assert any("courriel-verification=" in r["value"] for r in records)
    # The resolver points at a closed loopback port: the check stores errors, never a 500.
    checked = api.post("/api/v1/domains/wizard.example/check")
    assert checked.status_code == 200, checked.text
    assert checked.json()["status"] != "ok"
    assert api.post("/api/v1/domains/wizard.example/verify").json()["verified"] is False
    assert "wizard.example" in api.get("/api/v1/health").json()["domains_with_dns_problems"]
    assert api.get("/api/v1/domains/wizard.example/wizard").json()["domain"] == "wizard.example"

    keys = api.get("/api/v1/dkim-keys", params={"domain": "wizard.example"}).json()
    assert [k["state"] for k in keys] == ["pending"] and keys[0]["algorithm"] == "ed25519-sha256"
    assert "PRIVATE" not in str(keys)
    selector = keys[0]["selector"]
    error_of(api.post(f"/api/v1/domains/wizard.example/dkim-keys/{selector}/activate", json={}), 409)
    active = api.post(f"/api/v1/domains/wizard.example/dkim-keys/{selector}/activate", json={"force": True})
    assert active.json()["state"] == "active"
    rotated = api.post("/api/v1/domains/wizard.example/dkim-keys", json={})
    assert rotated.status_code == 201 and rotated.json()["state"] == "pending"
    assert rotated.json()["record"]["name"].startswith(rotated.json()["selector"] + "._domainkey.")
    retired = api.post(f"/api/v1/domains/wizard.example/dkim-keys/{selector}/retire", json={"force": True})
    assert retired.json()["state"] == "retired"
    error_of(api.post("/api/v1/domains/wizard.example/dkim-keys", json={"algorithm": "dsa"}), 422)
    error_of(api.post("/api/v1/domains/wizard.example/dkim-keys/bad_selector!/retire", json={}), 422)


# --------------------------------------------------------------------------- mailboxes and passwords


def test_mailbox_create_generated_password_update_delete(api, admin_setup):  # noqa: F811
    created = api.post("/api/v1/mailboxes", json={"address": "Carol@Example.org", "quota_bytes": 1024,
                                                  "quota_messages": 100})
    assert created.status_code == 201, created.text
    assert created.json()["mailbox"]["quota_messages"] == 100
    generated = created.json()["password"]
    assert created.json()["mailbox"]["address"] == "carol@example.org"
    assert not passwords.PasswordPolicy().problems(generated)
    # The generated password works for a login, and is never returned again.
    login = admin_setup.client().post("/api/v1/session", json={"username": "carol@example.org",
                                                               "password": generated})
    assert login.status_code == 201
    assert generated not in api.get("/api/v1/mailboxes/carol@example.org").text
    assert generated not in api.get("/api/v1/audit").text
    # The new mailbox is mailed its connection settings (a notice through the queue).
    notices = [e for e in api.get("/api/v1/queue").json() if e["sender"] == ""]
    assert [r["address"] for e in notices for r in e["recipients"]] == ["carol@example.org"]

    chosen = api.post("/api/v1/mailboxes", json={"address": "dave@example.org", "password": "Dave-pass-2026"})
    assert chosen.json()["password"] is None
    patched = api.patch("/api/v1/mailboxes/dave@example.org", json={"enabled": False, "quota_bytes": 5})
    assert patched.json()["enabled"] is False and patched.json()["quota_bytes"] == 5
    assert patched.json()["quota_messages"] == 0
    # RFC 9208 §5.2 MESSAGE limit: set alone, the byte limit stays as it was.
    patched = api.patch("/api/v1/mailboxes/dave@example.org", json={"quota_messages": 7})
    assert (patched.json()["quota_bytes"], patched.json()["quota_messages"]) == (5, 7)
    assert api.get("/api/v1/mailboxes/dave@example.org").json()["quota_messages"] == 7
    addresses = [m["address"] for m in api.get("/api/v1/mailboxes", params={"domain": DOMAIN}).json()]
    assert addresses == sorted(addresses) and "dave@example.org" in addresses
    assert [m["address"] for m in api.get("/api/v1/mailboxes", params={"user": USER[0]}).json()] == [BOB_MAILBOX[0]]

    reset = api.post("/api/v1/mailboxes/dave@example.org/password", json={})
    assert reset.status_code == 200 and len(reset.json()["password"]) >= 10
    assert api.post("/api/v1/mailboxes/dave@example.org/password", json={"password": "Other-pass-2026"}
                    ).json() == {"password": None}
    error_of(api.post("/api/v1/mailboxes/dave@example.org/password", json={"password": "short"}), 422,
             "invalid_password")
    assert api.delete("/api/v1/mailboxes/dave@example.org").status_code == 204
    error_of(api.get("/api/v1/mailboxes/dave@example.org"), 404)


def test_mailbox_bad_input(api):  # noqa: F811
    error_of(api.post("/api/v1/mailboxes", json={"address": "nobody@unknown.example"}), 404)
    error_of(api.post("/api/v1/mailboxes", json={"address": "no-at-sign"}), 422, "invalid_address")
    error_of(api.post("/api/v1/mailboxes", json={"address": ALICE[0]}), 409, "duplicate")
    error_of(api.post("/api/v1/mailboxes", json={"address": "q@example.org", "quota_bytes": -1}), 422)
    error_of(api.post("/api/v1/mailboxes", json={"address": "q@example.org", "quota_messages": -1}), 422)
    lone_surrogate = b'{"address": "q@example.org", "password": "a\\ud800bcdefghijK1"}'
    error_of(api.post("/api/v1/mailboxes", content=lone_surrogate, headers={"content-type": "application/json"}), 422)
    error_of(api.post("/api/v1/mailboxes", json={"address": "q@example.org", "user": "ghost"}), 404)
    assert "q@example.org" not in api.get("/api/v1/mailboxes").text


def test_user_changes_own_password_with_old_one(admin_setup):  # noqa: F811
    user = admin_setup.bearer(*ALICE)
    me = user.get("/api/v1/me").json()
    assert me == {"name": ALICE[0], "role": "user", "kind": "mailbox", "mailboxes": [ALICE[0]]}
    assert [m["address"] for m in user.get("/api/v1/mailboxes").json()] == [ALICE[0]]
    settings = user.get(f"/api/v1/mailboxes/{ALICE[0]}/connection").json()
    assert settings["address"] == ALICE[0] and settings["incoming"][0]["host"] == "mail.example.org"
    assert {e["username"] for e in settings["incoming"] + settings["outgoing"]} == {ALICE[0]}
    assert {e["security"] for e in settings["incoming"]} == {"SSL/TLS", "STARTTLS"}

    error_of(user.post(f"/api/v1/mailboxes/{ALICE[0]}/password/change",
                       json={"old_password": "wrong-Pass-1", "new_password": "Alice-new-2026"}), 400 + 22,
             "wrong_password")
    error_of(user.post(f"/api/v1/mailboxes/{ALICE[0]}/password/change",
                       json={"old_password": ALICE[1], "new_password": "weak"}), 422, "invalid_password")
    changed = user.post(f"/api/v1/mailboxes/{ALICE[0]}/password/change",
                        json={"old_password": ALICE[1], "new_password": "Alice-new-2026"})
    assert changed.status_code == 204, changed.text
    admin = admin_setup.bearer(*ADMIN)
    notices = [e for e in admin.get("/api/v1/queue").json() if e["sender"] == ""]
    assert [r["address"] for e in notices for r in e["recipients"]] == [ALICE[0]]  # "password changed"
    anonymous = admin_setup.client()
    assert anonymous.post("/api/v1/session", json={"username": ALICE[0], "password": ALICE[1]}).status_code == 401
    assert anonymous.post("/api/v1/session", json={"username": ALICE[0], "password": "Alice-new-2026"}
                          ).status_code == 201
    assert user.get("/api/v1/me").status_code == 200  # the session that changed it stays signed in
    # Another user's mailbox is out of reach.
    error_of(user.get(f"/api/v1/mailboxes/{BOB_MAILBOX[0]}"), 403, "forbidden")
    error_of(user.post(f"/api/v1/mailboxes/{BOB_MAILBOX[0]}/password/change",
                       json={"old_password": BOB_MAILBOX[1], "new_password": "Stolen-pass-2026"}), 403)


def test_console_user_sees_owned_mailboxes(admin_setup):  # noqa: F811
    bob = admin_setup.bearer(*USER)
    assert bob.get("/api/v1/me").json()["mailboxes"] == [BOB_MAILBOX[0]]
    assert bob.get(f"/api/v1/mailboxes/{BOB_MAILBOX[0]}").status_code == 200
    error_of(bob.get(f"/api/v1/mailboxes/{ALICE[0]}"), 403)
    error_of(bob.get("/api/v1/users"), 403)


def test_password_tools(api):  # noqa: F811
    generated = api.get("/api/v1/passwords/generate").json()
    assert generated["score"] >= 3 and len(generated["password"]) >= 10
    assert api.post("/api/v1/passwords/score", json={"password": "password"}).json()["score"] == 0
    scored = api.post("/api/v1/passwords/score", json={"password": "abc"}).json()
    assert scored["problems"]
    error_of(api.post("/api/v1/passwords/score", json={"password": ""}), 422)


# --------------------------------------------------------------------------- aliases, groups, users


def test_aliases(api):  # noqa: F811
    created = api.post("/api/v1/aliases", json={"address": "info@example.org", "targets": [ALICE[0], "x@ext.example"]})
    assert created.status_code == 201 and created.json()["targets"] == [ALICE[0], "x@ext.example"]
    assert api.put("/api/v1/aliases/info@example.org", json={"targets": [BOB_MAILBOX[0]]}).json()["targets"] == [
        BOB_MAILBOX[0]]
    assert [a["address"] for a in api.get("/api/v1/aliases").json()] == ["info@example.org"]
    error_of(api.post("/api/v1/aliases", json={"address": "loop@example.org", "targets": ["loop@example.org"]}),
             422, "invalid_target")
    error_of(api.post("/api/v1/aliases", json={"address": "e@example.org", "targets": []}), 422)
    assert api.delete("/api/v1/aliases/info@example.org").status_code == 204
    error_of(api.delete("/api/v1/aliases/info@example.org"), 404)


def test_groups(api):  # noqa: F811
    created = api.post("/api/v1/groups", json={"address": "team@example.org", "members": [ALICE[0]]})
    assert created.status_code == 201 and created.json()["members"] == [ALICE[0]]
    changed = api.patch("/api/v1/groups/team@example.org", json={"add": [BOB_MAILBOX[0]], "remove": [ALICE[0]]})
    assert changed.json()["members"] == [BOB_MAILBOX[0]]
    assert api.get("/api/v1/groups/team@example.org").json()["members_can_send"] is True
    assert len(api.get("/api/v1/groups").json()) == 1
    error_of(api.patch("/api/v1/groups/team@example.org", json={"add": ["ghost@example.org"]}), 404)
    assert api.delete("/api/v1/groups/team@example.org").status_code == 204


def test_users(api, admin_setup):  # noqa: F811
    created = api.post("/api/v1/users", json={"name": "eve", "role": "admin"})
    assert created.status_code == 201 and created.json()["user"]["role"] == "admin"
    generated = created.json()["password"]
    assert admin_setup.client().post("/api/v1/session", json={"username": "eve", "password": generated}
                                     ).status_code == 201
    assert api.get("/api/v1/users/eve").json()["name"] == "eve"
    assert len(api.post("/api/v1/users/eve/password", json={}).json()["password"]) >= 10
    error_of(api.post("/api/v1/users", json={"name": "Bad Name!"}), 422, "invalid_name")
    error_of(api.post("/api/v1/users", json={"name": "x", "role": "god"}), 422)
    error_of(api.delete(f"/api/v1/users/{USER[0]}"), 409, "in_use")
    assert api.delete("/api/v1/users/eve").status_code == 204
    assert {u["name"] for u in api.get("/api/v1/users").json()} == {ADMIN[0], USER[0]}


# --------------------------------------------------------------------------- queue and health


def test_queue_list_retry_delete(api, admin_setup):  # noqa: F811
    first = queue_message(admin_setup.db, admin_setup.config)
    second = queue_message(admin_setup.db, admin_setup.config)
    listed = api.get("/api/v1/queue").json()
    assert [e["id"] for e in listed] == [first, second]
    assert listed[0]["recipients"][0]["address"] == "someone@remote.example"
    assert api.get(f"/api/v1/queue/{first}").json()["state"] == "incoming"
    error_of(api.post(f"/api/v1/queue/{first}/retry"), 409, "invalid_state")
    from courriel.queue import spool

    spool.hold(admin_setup.db, first)
    assert api.get("/api/v1/queue", params={"state": "hold"}).json()[0]["id"] == first
    assert api.post(f"/api/v1/queue/{first}/retry").json() == {"id": first, "changed": 1}
    assert api.get(f"/api/v1/queue/{first}").json()["state"] == "deferred"
    assert api.post("/api/v1/queue/flush").json()["changed"] == 1
    health = api.get("/api/v1/health").json()
    assert health["database"] == "ok" and sum(health["queue"].values()) == 2
    assert health["queue_oldest_age_seconds"] >= 0
    assert api.delete(f"/api/v1/queue/{second}").status_code == 204
    error_of(api.delete(f"/api/v1/queue/{second}"), 404)
    error_of(api.get("/api/v1/queue/not-an-id!"), 422)
    error_of(api.get("/api/v1/queue", params={"state": "bogus"}), 422)
    assert [e["id"] for e in api.get("/api/v1/queue").json()] == [first]


# --------------------------------------------------------------------------- authentication


def test_anonymous_and_user_are_refused(admin_setup):  # noqa: F811
    anonymous = admin_setup.client()
    response = anonymous.get("/api/v1/domains")
    error_of(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    error_of(anonymous.get("/api/v1/domains", headers={"Authorization": "Bearer cs_forged"}), 401)
    error_of(anonymous.post("/api/v1/session", json={"username": ADMIN[0], "password": "wrong-Pass-1"}), 401)
    user = admin_setup.bearer(*ALICE)
    error_of(user.get("/api/v1/domains"), 403, "forbidden")
    error_of(user.post("/api/v1/domains", json={"name": "evil.example"}), 403)
    error_of(user.post("/api/v1/keys", json={"name": "mine"}), 403)
    assert user.delete("/api/v1/session").status_code == 204
    error_of(user.get("/api/v1/me"), 401)


def test_api_keys_shown_once_stored_hashed_revocable(api, admin_setup):  # noqa: F811
    created = api.post("/api/v1/keys", json={"name": "backup script"})
    assert created.status_code == 201
    token, prefix = created.json()["token"], created.json()["key"]["prefix"]
    assert token.startswith(f"ck_{prefix}_")
    with admin_setup.db.read() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        assert row.key_hash != token and token not in row.key_hash and len(row.key_hash) == 64
    assert token not in api.get("/api/v1/keys").text
    script = admin_setup.client()
    script.headers["Authorization"] = f"Bearer {token}"
    assert script.get("/api/v1/domains").status_code == 200
    assert script.post("/api/v1/domains", json={"name": "scripted.example"}).status_code == 201
    entries = api.get("/api/v1/audit").json()
    assert entries[0]["actor"] == f"key:{prefix}" and entries[0]["target"] == "scripted.example"
    assert api.get("/api/v1/keys").json()[0]["last_used_at"] is not None
    assert api.delete(f"/api/v1/keys/{prefix}").json()["revoked"] is True
    error_of(script.get("/api/v1/domains"), 401)
    error_of(script.get("/api/v1/domains", headers={"Authorization": f"Bearer {token[:-1]}x"}), 401)
    error_of(api.delete("/api/v1/keys/zz%00"), 404)
    error_of(api.post("/api/v1/keys", json={"name": ""}), 422)


def test_audit_log_records_who_what_when_where(api):  # noqa: F811
    api.post("/api/v1/domains", json={"name": "audited.example"})
    api.post("/api/v1/mailboxes", json={"address": "m@audited.example", "password": "Secret-pass-99"})
    entries = api.get("/api/v1/audit", params={"limit": 2}).json()
    assert [e["action"] for e in entries] == ["mailbox.add", "domain.add"]
    assert entries[0]["actor"] == ADMIN[0] and entries[0]["actor_role"] == "admin"
    assert entries[0]["client_address"] and entries[0]["at"]
    assert "Secret-pass-99" not in str(entries)
    older = api.get("/api/v1/audit", params={"before": entries[0]["id"], "limit": 1}).json()
    assert older[0]["id"] == entries[1]["id"]


def test_cookie_session_needs_csrf_header_for_changes(admin_setup):  # noqa: F811
    client, csrf = admin_setup.console(*ADMIN)
    assert client.get("/api/v1/domains").status_code == 200  # safe method: no token needed
    error_of(client.post("/api/v1/domains", json={"name": "csrf.example"}), 403, "csrf")
    error_of(client.post("/api/v1/domains", json={"name": "csrf.example"}, headers={"X-CSRF-Token": "forged"}),
             403, "csrf")
    ok = client.post("/api/v1/domains", json={"name": "csrf.example"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201


def test_failed_logins_are_throttled(admin_setup):  # noqa: F811
    client = admin_setup.client()
    statuses = [client.post("/api/v1/session", json={"username": ADMIN[0], "password": f"wrong-{i}"}).status_code
                for i in range(8)]
    assert statuses[0] == 401 and statuses[-1] == 429
    throttled = client.post("/api/v1/session", json={"username": ADMIN[0], "password": ADMIN[1]})
    error_of(throttled, 429, "throttled")
    assert int(throttled.headers["retry-after"]) >= 1


def test_security_headers_and_cookie_flags(admin_setup, data_dir, monkeypatch):  # noqa: F811
    client = admin_setup.client()
    for path in ("/api/v1/domains", "/login", "/static/console.css", "/api/v1/openapi.json"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert (headers.get("cache-control") == "no-store") == (not path.startswith("/static/"))
    login_page = client.get("/login")
    assert "<script>" not in login_page.text and "onclick" not in login_page.text
    response = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1],
                                           "csrf_token": client.cookies["courriel_login_csrf"]},
                           follow_redirects=False)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("courriel_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # --dev: plain HTTP
    with admin_setup.db.read() as session:
        stored = session.scalars(select(ConsoleSession.id)).all()
    token = cookie.split(";")[0].partition("=")[2]
    assert token not in stored and len(stored) == 1  # only a digest is stored

    # Outside --dev the cookie is Secure.
    from starlette.testclient import TestClient

    from courriel.admin.app import create_app

    production = create_app(config_mod.load(data_dir, dev=False))
    with TestClient(production, base_url="https://127.0.0.1") as secure_client:
        page = secure_client.get("/login")
        assert "Secure" in page.headers["set-cookie"]
        assert "strict-transport-security" in page.headers
        response = secure_client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1],
                                                      "csrf_token": secure_client.cookies["courriel_login_csrf"]},
                                      follow_redirects=False)
        assert response.status_code == 303
        assert "Secure" in next(c for c in response.headers.get_list("set-cookie")
                                if c.startswith("courriel_session="))


def test_openapi_document_lists_the_api(admin_setup):  # noqa: F811
    document = admin_setup.client().get("/api/v1/openapi.json").json()
    paths = document["paths"]
    assert {"/api/v1/domains", "/api/v1/mailboxes", "/api/v1/aliases", "/api/v1/groups", "/api/v1/users",
            "/api/v1/dkim-keys", "/api/v1/queue", "/api/v1/health", "/api/v1/keys", "/api/v1/audit",
            "/api/v1/mailboxes/{address}/password/change", "/api/v1/mailboxes/{address}/connection"} <= set(paths)
    assert not any(p.startswith("/api/v1") is False for p in paths)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_real_socket_through_the_admin_role(served_data, tmp_path):  # noqa: F811
    """The API served by `courriel serve --role admin` over TCP on 127.0.0.1."""
    config = config_mod.load(served_data, dev=True)
    db = Database(config.database_url)
    try:
        services.add_user(db, passwords.PasswordHasher.from_config(config), passwords.PasswordPolicy(), "ops",
                          role="admin", password="Ops-pass-2026")
    finally:
        db.dispose()
    environ = listener_environ()
    environ["COURRIEL_DOMAINS_CHECK_INTERVAL"] = "0"  # no DNS lookups off this machine
    served = serve(served_data, environ, tmp_path / "admin.log", "--role", "admin")
    try:
        port = admin_port(environ)
        wait_healthy(port, served)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            signed_in = client.post("/api/v1/session", json={"username": "ops", "password": "Ops-pass-2026"})
            assert signed_in.status_code == 201, signed_in.text
            client.headers["Authorization"] = f"Bearer {signed_in.json()['token']}"
            assert client.post("/api/v1/domains", json={"name": "socket.example"}).status_code == 201
            created = client.post("/api/v1/mailboxes", json={"address": "u@socket.example"})
            assert created.status_code == 201 and created.json()["password"]
            error_of(client.post("/api/v1/domains", json={"name": "socket.example"}), 409, "duplicate")
            error_of(httpx.get(f"{base}/api/v1/domains", timeout=10), 401)
            assert "frame-ancestors 'none'" in client.get("/api/v1/me").headers["content-security-policy"]
    finally:
        served.process.send_signal(signal.SIGTERM)
        served.wait_exit(STOP_DEADLINE)
    db = Database(config.database_url)
    try:
        with db.read() as session:
            assert session.scalars(select(AuditEntry.action)).all() == ["domain.add", "mailbox.add"]
    finally:
        db.dispose()




def test_disabling_a_mailbox_signs_it_out(api, admin_setup):  # noqa: F811
    user = admin_setup.bearer(*ALICE)
    assert user.get("/api/v1/me").status_code == 200
    assert api.patch(f"/api/v1/mailboxes/{ALICE[0]}", json={"enabled": False}).json()["enabled"] is False
    error_of(user.get("/api/v1/me"), 401)
    error_of(admin_setup.client().post("/api/v1/session", json={"username": ALICE[0], "password": ALICE[1]}), 401)


def test_large_bodies_are_refused(api):  # noqa: F811
    huge = {"name": "x" * (2 * 1024 * 1024)}
    error_of(api.post("/api/v1/domains", json=huge), 413, "too_large")

    def chunks():
        for _ in range(40):
            yield b"name=" + b"y" * 65536

    streamed = api.post("/login", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
    error_of(streamed, 413, "too_large")
    assert [d["name"] for d in api.get("/api/v1/domains").json()] == [DOMAIN]


def test_console_login_throttled_page(admin_setup):  # noqa: F811
    client = admin_setup.client()
    client.get("/login")
    token = client.cookies["courriel_login_csrf"]
    statuses = []
    for attempt in range(8):
        response = client.post("/login", data={"username": ADMIN[0], "password": f"bad-{attempt}",
                                                "csrf_token": token}, follow_redirects=False)
        statuses.append(response.status_code)
    assert statuses[0] == 401 and statuses[-1] == 429
    assert "Too many failed sign-ins" in response.text and int(response.headers["retry-after"]) >= 1
    assert "courriel_session" not in client.cookies


def test_unknown_paths_and_methods_answer_json(api, admin_setup):  # noqa: F811
    error_of(api.get("/api/v1/no-such-thing"), 404, "not_found")
    error_of(api.put("/api/v1/domains", json={}), 405, "method_not_allowed")
    page = admin_setup.client().get("/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Traceback" not in page.text


# --------------------------------------------------------------------------- console forms (same services)

SECRET_FIELD = re.compile(r'id="secret" class="secret" readonly value="([^"]+)"')


def flash_of(client, response) -> str:
    assert response.status_code == 303, response.text[:500]
    page = client.get(response.headers["location"])
    found = re.search(r'<p class="flash (ok|error)"[^>]*>([^<]*)</p>', page.text)
    assert found, page.text[:1000]
    return f"{found.group(1)}: {found.group(2)}"


def test_console_forms_for_admins(admin_setup):  # noqa: F811
    client, csrf = admin_setup.console(*ADMIN)

    def post(path, **data):
        return client.post(path, data={"csrf_token": csrf, **data}, follow_redirects=False)

    created = post("/mailboxes", local_part="erin", domain=DOMAIN, mode="generate", quota="1G")
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    generated = SECRET_FIELD.search(created.text).group(1)
    assert not passwords.PasswordPolicy().problems(generated)
    detail = client.get("/mailboxes/erin@example.org")
    assert generated not in detail.text and "Mail client settings for erin@example.org" in detail.text
    assert "mailbox.add" in client.get("/audit").text and generated not in client.get("/audit").text

    mismatch = post("/mailboxes", local_part="fred", domain=DOMAIN, mode="choose", password="Fred-pass-2026",
                    password_again="Fred-pass-2027")
    assert flash_of(client, mismatch) == "error: the two passwords differ"
    assert "fred@" not in client.get("/mailboxes").text
    chosen = post("/mailboxes", local_part="fred", domain=DOMAIN, mode="choose", password="Fred-pass-2026",
                  password_again="Fred-pass-2026")
    assert flash_of(client, chosen) == "ok: Mailbox fred@example.org created."
    assert flash_of(client, post("/mailboxes/fred@example.org/settings", quota="2M")).startswith("ok:")
    assert flash_of(client, post("/mailboxes/fred@example.org/settings", enabled="1", quota="2M",
                                 quota_messages="300")).startswith("ok:")
    fred = services.get_mailbox(admin_setup.db, "fred@example.org")
    assert (fred.quota_bytes, fred.quota_messages) == (2 * 1024**2, 300)
    assert 'name="quota_messages" value="300"' in client.get("/mailboxes/fred@example.org").text
    assert flash_of(client, post("/mailboxes/fred@example.org/settings", quota="2M",
                                 quota_messages="lots")).startswith("error:")
    assert services.get_mailbox(admin_setup.db, "fred@example.org").quota_messages == 300
    assert flash_of(client, post("/mailboxes/fred@example.org/settings", quota="2M")).startswith("ok:")
    assert services.get_mailbox(admin_setup.db, "fred@example.org").enabled is False  # box left unticked
    assert "Delete the mailbox fred@example.org" in client.get("/mailboxes/fred@example.org/delete").text
    assert flash_of(client, post("/mailboxes/fred@example.org/delete")) == "ok: Mailbox fred@example.org deleted."

    assert flash_of(client, post("/aliases", address="info@example.org", targets=f"{ALICE[0]}\n x@ext.example"))\
        == "ok: Alias info@example.org added."
    assert services.list_aliases(admin_setup.db)[0].targets == [ALICE[0], "x@ext.example"]
    assert flash_of(client, post("/aliases/info@example.org/targets", targets="")).startswith("error:")
    assert flash_of(client, post("/aliases/info@example.org/delete")).startswith("ok:")

    assert flash_of(client, post("/groups", address="team@example.org", members=ALICE[0], members_can_send="1"))\
        == "ok: Group team@example.org added."
    changed = client.post("/groups/team@example.org/members", follow_redirects=False,
                          data={"csrf_token": csrf, "add": BOB_MAILBOX[0], "remove": [ALICE[0]]})
    assert flash_of(client, changed).startswith("ok:")
    assert services.get_group(admin_setup.db, "team@example.org").members == [BOB_MAILBOX[0]]

    user_page = post("/users", name="gina", role="user")
    assert SECRET_FIELD.search(user_page.text)
    assert flash_of(client, post("/users/gina/delete")) == "ok: User gina removed."
    key_page = post("/keys", name="monitoring")
    token = SECRET_FIELD.search(key_page.text).group(1)
    assert token.startswith("ck_") and token not in client.get("/keys").text
    prefix = token.split("_")[1]
    assert flash_of(client, post(f"/keys/{prefix}/revoke")) == "ok: API key monitoring revoked."

    queued = queue_message(admin_setup.db, admin_setup.config)
    assert queued in client.get("/queue").text
    assert flash_of(client, post(f"/queue/{queued}/retry")).startswith("error:")  # incoming: nothing to retry
    assert flash_of(client, post(f"/queue/{queued}/delete")) == f"ok: Message {queued} deleted."

    assert flash_of(client, post(f"/domains/{DOMAIN}/settings", catch_all=ALICE[0])).startswith("ok:")
    assert services.get_domain(admin_setup.db, DOMAIN).catch_all == ALICE[0]
    assert flash_of(client, post(f"/domains/{DOMAIN}/delete")).startswith("error:")  # still has mailboxes


def test_console_password_change_for_a_mailbox_user(admin_setup):  # noqa: F811
    client, csrf = admin_setup.console(*ALICE)
    page = client.get(f"/account/{ALICE[0]}")
    assert "Mail client settings for alice@example.org" in page.text

    def change(old, new, again):
        return client.post(f"/account/{ALICE[0]}/password", follow_redirects=False,
                           data={"csrf_token": csrf, "old_password": old, "new_password": new,
                                 "new_password_again": again})

    assert flash_of(client, change("Wrong-pass-000", "Alice-next-2026", "Alice-next-2026")) == \
        "error: the current password is wrong"
    assert flash_of(client, change(ALICE[1], "Alice-next-2026", "Alice-other-2026")) == \
        "error: the two new passwords differ"
    assert flash_of(client, change(ALICE[1], "Alice-next-2026", "Alice-next-2026")).startswith(
        "ok: Password of alice@example.org changed")
    assert admin_setup.client().post("/api/v1/session", json={"username": ALICE[0], "password": "Alice-next-2026"}
                                     ).status_code == 201
