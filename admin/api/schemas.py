"""Request and response bodies of the JSON API (pydantic models; OpenAPI is generated from them).

Security: every text field rejects NUL, other control characters and lone surrogates (they
cannot be stored or hashed), and has a length bound; unknown fields are refused.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_QUOTA = 2**62


def _printable(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("control characters and lone surrogates are not allowed")
    return value


def _encodable(value: str) -> str:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value) or "\x00" in value:
        raise ValueError("NUL and lone surrogates are not allowed")
    return value


Text = Annotated[str, Field(max_length=320), AfterValidator(_printable)]
LongText = Annotated[str, Field(max_length=1000), AfterValidator(_printable)]
Password = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_encodable)]
AddressList = Annotated[list[Text], Field(max_length=1000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    code: str
    message: str


class LoginRequest(Body):
    username: Text
    password: Password


class SessionCreated(BaseModel):
    token: str
    name: str
    role: str
    kind: str


class Me(BaseModel):
    name: str
    role: str
    kind: str
    mailboxes: list[str]


class DomainCreate(Body):
    name: Text
    is_default: bool = False
    catch_all: Text | None = None


class DomainUpdate(Body):
    is_default: bool | None = None
    catch_all: Text | None = Field(default=None, description="an address, or \"\" to clear the catch-all")


class Domain(BaseModel):
    name: str
    unicode_name: str
    is_default: bool
    verification_token: str
    verified: bool
    catch_all: str | None
    mailboxes: int


class MailboxCreate(Body):
    address: Text
    user: Text | None = None
    password: Password | None = Field(default=None, description="omit to generate one (returned once)")
    quota_bytes: int = Field(default=0, ge=0, le=MAX_QUOTA)
    quota_messages: int = Field(default=0, ge=0, le=MAX_QUOTA, description="RFC 9208 MESSAGE limit; 0: unlimited")
    display_name: Annotated[str, Field(max_length=200), AfterValidator(_printable)] | None = None


class MailboxUpdate(Body):
    enabled: bool | None = None
    quota_bytes: int | None = Field(default=None, ge=0, le=MAX_QUOTA)
    quota_messages: int | None = Field(default=None, ge=0, le=MAX_QUOTA)


class Mailbox(BaseModel):
    id: int
    address: str
    domain: str
    user: str | None
    display_name: str
    quota_bytes: int
    enabled: bool
    quota_messages: int


class MailboxCreated(BaseModel):
    mailbox: Mailbox
    password: str | None = Field(description="the generated password, shown this once; null when one was given")


class PasswordSet(Body):
    password: Password | None = Field(default=None, description="omit to generate one (returned once)")


class PasswordChange(Body):
    old_password: Password
    new_password: Password


class PasswordResult(BaseModel):
    password: str | None


class PasswordScoreRequest(Body):
    password: Password


class PasswordScore(BaseModel):
    score: int
    problems: list[str]


class GeneratedPassword(BaseModel):
    password: str
    score: int


class AliasCreate(Body):
    address: Text
    targets: AddressList


class AliasUpdate(Body):
    targets: AddressList


class Alias(BaseModel):
    address: str
    domain: str
    targets: list[str]


class GroupCreate(Body):
    address: Text
    members: AddressList = []
    members_can_send: bool = True


class GroupUpdate(Body):
    add: AddressList = []
    remove: AddressList = []


class Group(BaseModel):
    address: str
    domain: str
    members_can_send: bool
    members: list[str]


class UserCreate(Body):
    name: Text
    role: Annotated[str, Field(pattern="^(admin|user)$")] = "user"
    email: Text | None = None
    display_name: Annotated[str, Field(max_length=200), AfterValidator(_printable)] | None = None
    password: Password | None = Field(default=None, description="omit to generate one (returned once)")


class User(BaseModel):
    name: str
    display_name: str
    email: str | None
    role: str
    mailboxes: int


class UserCreated(BaseModel):
    user: User
    password: str | None


class ApiKeyCreate(Body):
    name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_printable)]


class ApiKey(BaseModel):
    id: int
    name: str
    prefix: str
    created_by: str
    created_at: str
    last_used_at: str | None
    revoked: bool


class ApiKeyCreated(BaseModel):
    key: ApiKey
    token: str = Field(description="the secret, shown this once")


class ConnectionEndpoint(BaseModel):
    protocol: str
    host: str
    port: int
    security: str
    username: str
    authentication: str


class ConnectionSettings(BaseModel):
    address: str
    incoming: list[ConnectionEndpoint]
    outgoing: list[ConnectionEndpoint]


class QueueRecipient(BaseModel):
    address: str
    state: str
    attempts: int
    last_reply: str | None


class QueueEntry(BaseModel):
    id: str
    sender: str
    source: str
    size: int
    state: str
    attempts: int
    received_at: str
    next_attempt_at: str
    recipients: list[QueueRecipient]


class QueueAction(BaseModel):
    id: str | None = None
    changed: int


class Health(BaseModel):
    status: str
    database: str
    queue: dict[str, int]
    queue_oldest_age_seconds: float
    domains: int
    domains_with_dns_problems: list[str]


class AuditEntry(BaseModel):
    id: int
    at: str
    actor: str
    actor_role: str
    client_address: str | None
    action: str
    target: str
    detail: str
