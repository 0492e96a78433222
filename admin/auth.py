"""Who is asking, and may they: console sessions, CSRF tokens, API keys and role checks.

Owns:
- logins (`login`): a name with an "@" is a mailbox address checked with
  `courriel.logins.authenticate_mailbox` (role user, sees that mailbox only); any other name is
  a console account checked with `authenticate_user` (role admin or user, a user sees the
  mailboxes it owns). Both share the throttling of SMTP and IMAP logins.
- sessions (`console_sessions`): a random 256-bit token in an HttpOnly, SameSite=Lax cookie
  (Secure outside `--dev`), or as `Authorization: Bearer` for scripts; only its SHA-256
  digest is stored. Each session has its own CSRF token.
- API keys (`api_keys`): created by an admin, shown once, stored as a SHA-256 digest,
  revocable; a key acts with administrator rights.
- the FastAPI dependencies every route declares exactly one of: `require_admin`,
  `require_login` (admin or user) or `public`. A cookie-authenticated unsafe request
  (POST, PUT, PATCH, DELETE) must carry the session's CSRF token (form field `csrf_token` or
  header `X-CSRF-Token`); the login form uses a double-submit cookie.

Standards: RFC 6265 §4.1.2.5-6 (Secure, HttpOnly), RFC 6265bis SameSite, RFC 6750 §2.1
(Bearer tokens), RFC 9110 §9.2.1 (safe methods).
Security: parses untrusted cookies, headers and forms; tokens are compared in constant time
(digest lookups); passwords and tokens are never logged or stored in clear.
Durability: sessions, keys and flash messages are single short write transactions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import delete, select, update
from starlette.concurrency import run_in_threadpool

from courriel import logins
from courriel.admin import services
from courriel.admin.audit import Actor
from courriel.admin.services import lookups
from courriel.admin.services.errors import InvalidInput, NotFound
from courriel.db import Database
from courriel.models import ApiKey, ConsoleSession, Role, utcnow
from courriel.passwords import PasswordHasher

SESSION_COOKIE = "courriel_session"
LOGIN_CSRF_COOKIE = "courriel_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_LIFETIME = dt.timedelta(hours=12)
SESSION_TOKEN_PREFIX = "cs_"  # noqa: S105 - a public marker, not a secret
API_KEY_PREFIX = "ck_"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_KEY_NAME = 100
KEY_USE_RESOLUTION = dt.timedelta(minutes=1)

KIND_USER = "user"
KIND_MAILBOX = "mailbox"
KIND_KEY = "key"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    kind: str  # KIND_USER | KIND_MAILBOX | KIND_KEY
    role: str  # Role.ADMIN | Role.USER
    name: str  # user name, mailbox address, or "key:<prefix>"
    account_id: int
    session_id: str | None = None  # digest of the session token
    csrf_token: str | None = None
    via_cookie: bool = False
    flash: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def actor(self, client_address: str | None) -> Actor:
        return Actor(self.name, self.role, client_address)


# --------------------------------------------------------------------------- errors


class NotAuthenticated(Exception):
    """No valid session or key: 401 for the API, a redirect to the login page for the console."""


class Forbidden(Exception):
    """Authenticated, but this role may not do this (or the CSRF token is missing or wrong)."""

    def __init__(self, message: str = "this account may not do that", code: str = "forbidden"):
        super().__init__(message)
        self.message = message
        self.code = code


class Throttled(Exception):
    def __init__(self, retry_after: float):
        super().__init__("too many failed logins; try again later")
        self.retry_after = max(1, int(retry_after + 0.999))


# --------------------------------------------------------------------------- logins and sessions


def login(db: Database, hasher: PasswordHasher, name: str, password: str,
          client_ip: str | None) -> Principal | None:
    """Check a console login; None for bad credentials (or a disabled mailbox).
    Raises `Throttled` while the client or the account is blocked."""
    name = (name or "").strip()
    if len(name) > 320 or len(password or "") > 1024:
        return None
    if "@" in name:
        result = logins.authenticate_mailbox(db, hasher, name, password or "", client_ip, "console")
        kind, role = KIND_MAILBOX, Role.USER
    else:
        result = logins.authenticate_user(db, hasher, name, password or "", client_ip)
        kind, role = KIND_USER, None
    if result.status is logins.LoginStatus.THROTTLED:
        raise Throttled(result.retry_after)
    if not result.ok:
        return None
    if role is None:
        role = Role.ADMIN if services.get_user(db, result.account).role == Role.ADMIN else Role.USER
    return Principal(kind, str(role), result.account, result.account_id)


def start_session(db: Database, principal: Principal, client_ip: str | None,
                  now: dt.datetime | None = None) -> tuple[str, Principal]:
    """Open a session; returns the token (for the cookie or the Bearer header) and the principal."""
    now = now or utcnow()
    token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with db.write() as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
        session.add(ConsoleSession(
            id=digest(token), kind=principal.kind, role=principal.role, account=principal.name,
            account_id=principal.account_id, csrf_token=csrf, client_address=(client_ip or "")[:64] or None,
            created_at=now, expires_at=now + SESSION_LIFETIME,
        ))
    return token, Principal(principal.kind, principal.role, principal.name, principal.account_id,
                            digest(token), csrf)


def session_principal(db: Database, token: str, now: dt.datetime | None = None) -> Principal | None:
    if not token or not token.startswith(SESSION_TOKEN_PREFIX) or len(token) > 100:
        return None
    now = now or utcnow()
    with db.read() as session:
        row = session.get(ConsoleSession, digest(token))
        if row is None or row.expires_at <= now:
            return None
        return Principal(row.kind, row.role, row.account, row.account_id, row.id, row.csrf_token, flash=row.flash)


def end_session(db: Database, session_id: str) -> None:
    with db.write() as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.id == session_id))


def end_sessions_of(db: Database, kind: str, account: str, keep: str | None = None) -> None:
    """Sign out every session of an account (after its password changed), except `keep`."""
    with db.write() as session:
        query = delete(ConsoleSession).where(ConsoleSession.kind == kind, ConsoleSession.account == account)
        if keep:
            query = query.where(ConsoleSession.id != keep)
        session.execute(query)


def set_flash(db: Database, session_id: str | None, message: str) -> None:
    if not session_id:
        return
    with db.write() as session:
        session.execute(update(ConsoleSession).where(ConsoleSession.id == session_id).values(flash=message[:1000]))


def clear_flash(db: Database, session_id: str) -> None:
    with db.write() as session:
        session.execute(update(ConsoleSession).where(ConsoleSession.id == session_id).values(flash=None))


# --------------------------------------------------------------------------- API keys


@dataclass(frozen=True)
class ApiKeyInfo:
    id: int
    name: str
    prefix: str
    created_by: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked: bool

    def as_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "prefix": self.prefix, "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked": self.revoked,
        }


def _key_info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(row.id, row.name, row.prefix, row.created_by, row.created_at, row.last_used_at,
                      row.revoked_at is not None)


def create_api_key(db: Database, name: str, created_by: str) -> tuple[ApiKeyInfo, str]:
    """A new key; returns it and the token, which is shown once and never stored."""
    name = (name or "").strip()
    if not name or len(name) > MAX_KEY_NAME or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidInput(f"a key name is 1-{MAX_KEY_NAME} printable characters", "invalid_name")
    prefix = secrets.token_hex(4)
    token = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with db.write() as session:
        row = ApiKey(name=name, prefix=prefix, key_hash=digest(token), created_by=created_by[:320])
        session.add(row)
        session.flush()
        return _key_info(row), token


def list_api_keys(db: Database) -> list[ApiKeyInfo]:
    with db.read() as session:
        return [_key_info(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.id))]


def revoke_api_key(db: Database, prefix: str, now: dt.datetime | None = None) -> ApiKeyInfo:
    if not re.fullmatch(r"[0-9a-f]{1,16}", prefix or ""):
        raise NotFound(f"API key {(prefix or '')[:16]!r} does not exist")
    with db.write() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None:
            raise NotFound(f"API key {prefix} does not exist")
        if row.revoked_at is None:
            row.revoked_at = now or utcnow()
        session.flush()
        return _key_info(row)


def key_principal(db: Database, token: str, now: dt.datetime | None = None) -> Principal | None:
    if not token.startswith(API_KEY_PREFIX) or len(token) > 120:
        return None
    prefix = token[len(API_KEY_PREFIX):].partition("_")[0]
    if not re.fullmatch(r"[0-9a-f]{1,16}", prefix):
        return None
    now = now or utcnow()
    with db.write() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest(token)):
            return None
        # Recorded at most once a minute: not a write for every request of a busy script.
        if row.last_used_at is None or now - row.last_used_at > KEY_USE_RESOLUTION:
            row.last_used_at = now
        return Principal(KIND_KEY, Role.ADMIN, f"key:{row.prefix}", row.id)


# --------------------------------------------------------------------------- ownership


def own_mailboxes(db: Database, principal: Principal) -> list[str]:
    """Addresses of the mailboxes a user may manage (admins: use the services directly)."""
    if principal.kind == KIND_MAILBOX:
        return [principal.name]
    if principal.kind == KIND_USER:
        return [m.address for m in services.list_mailboxes(db, user=principal.name)]
    return []


def ensure_own_mailbox(db: Database, principal: Principal, address: str) -> str:
    """The canonical address when `principal` may manage that mailbox; Forbidden otherwise."""
    if principal.is_admin:
        return services.get_mailbox(db, address).address
    try:
        key = str(lookups.address(address))
    except InvalidInput:
        raise Forbidden("this account may not manage that mailbox") from None
    if key not in own_mailboxes(db, principal):
        raise Forbidden("this account may not manage that mailbox")
    return key


# --------------------------------------------------------------------------- FastAPI dependencies


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _resolve(request: Request) -> Principal | None:
    cached = getattr(request.state, "principal", False)
    if cached is not False:
        return cached
    db: Database = request.app.state.database
    principal = None
    token = _bearer(request)
    if token is not None:
        principal = key_principal(db, token) or session_principal(db, token)
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            found = session_principal(db, cookie)
            if found is not None:
                principal = Principal(found.kind, found.role, found.name, found.account_id, found.session_id,
                                      found.csrf_token, via_cookie=True, flash=found.flash)
    request.state.principal = principal
    return principal


async def _check_csrf(request: Request, principal: Principal) -> None:
    """A cookie travels with cross-site requests; the token proves the page was ours."""
    if request.method not in UNSAFE_METHODS or not principal.via_cookie:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not principal.csrf_token or not hmac.compare_digest(sent, principal.csrf_token):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again", "csrf")


async def _principal(request: Request) -> Principal | None:
    # Token look-ups hit the database: off the event loop (ARCHITECTURE §4).
    return await run_in_threadpool(_resolve, request)


async def require_login(request: Request) -> Principal:
    """Any signed-in account (admin or user)."""
    principal = await _principal(request)
    if principal is None:
        raise NotAuthenticated()
    await _check_csrf(request, principal)
    return principal


async def require_admin(request: Request) -> Principal:
    """An administrator (console account with role admin, or an API key)."""
    principal = await _principal(request)
    if principal is None:
        raise NotAuthenticated()
    if not principal.is_admin:
        raise Forbidden("administrators only")
    await _check_csrf(request, principal)
    return principal


async def public(request: Request) -> Principal | None:
    """No sign-in needed; the caller, if any, is still known to the page."""
    return await _principal(request)


ACCESS_CHECKS = (require_admin, require_login, public)


def check_login_csrf(request: Request, sent: str | None) -> None:
    """The login form's double-submit cookie (there is no session yet)."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise Forbidden("the login form expired; reload the page and try again", "csrf")


def cookie_options(config) -> dict:
    return {"httponly": True, "samesite": "lax", "secure": not config.dev, "path": "/"}
