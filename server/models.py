"""Database models (SQLAlchemy 2): registry, mailbox store and queue tables.

Owns the schema only; behaviour lives in `registry`, `store` and `queue`. The same
models run on SQLite and PostgreSQL (LIBRARIES.md traps: BigInteger keys do not
autoincrement on SQLite, UIDs are unsigned 32-bit, MODSEQ 63-bit, datetimes are UTC).

Standards: RFC 3501 §2.3.1.1 (UID, UIDVALIDITY), RFC 7162 §3.1 (MODSEQ, HIGHESTMODSEQ),
RFC 6154 (special-use folders), RFC 3461 (DSN envelope parameters).
Migrations: `courriel/migrations` (Alembic); change both together.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# BigInteger primary keys that still autoincrement on SQLite.
BigId = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(dt.UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    pass


# --------------------------------------------------------------------------- registry


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"


class Domain(Base):
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The A-label (IDNA ASCII) form, lower case: the canonical key.
    name: Mapped[str] = mapped_column(String(253), unique=True)
    verification_token: Mapped[str] = mapped_column(String(64))
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # Address (local or external) that receives mail for unknown local parts, if any.
    catch_all: Mapped[str | None] = mapped_column(String(320))
    dns_status: Mapped[str | None] = mapped_column(Text)  # last checker result (JSON)
    dns_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    """A console account: an admin or a user who owns mailboxes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))  # profile address for notices
    role: Mapped[str] = mapped_column(String(16), default=Role.USER)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Mailbox(Base):
    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="RESTRICT"), index=True)
    local_part: Mapped[str] = mapped_column(String(64))
    # local_part@domain.name, local part lower-cased: the lookup key.
    address: Mapped[str] = mapped_column(String(320), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    quota_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # 0: unlimited
    quota_messages: Mapped[int] = mapped_column(BigInteger, default=0)  # RFC 9208 §5.2 MESSAGE; 0: unlimited
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    domain: Mapped[Domain] = relationship(lazy="joined")


class Alias(Base):
    __tablename__ = "aliases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="RESTRICT"), index=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    targets: Mapped[list[AliasTarget]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AliasTarget.id"
    )


class AliasTarget(Base):
    __tablename__ = "alias_targets"
    __table_args__ = (UniqueConstraint("alias_id", "target"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alias_id: Mapped[int] = mapped_column(ForeignKey("aliases.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(320))  # local or external address


class MailGroup(Base):
    __tablename__ = "mail_groups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="RESTRICT"), index=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    # Members may send with the group address as envelope sender / From.
    members_can_send: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[GroupMember]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="GroupMember.id"
    )


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (UniqueConstraint("group_id", "mailbox_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("mail_groups.id", ondelete="CASCADE"))
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)


class DkimKey(Base):
    __tablename__ = "dkim_keys"
    __table_args__ = (UniqueConstraint("domain_id", "selector"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    selector: Mapped[str] = mapped_column(String(63))
    algorithm: Mapped[str] = mapped_column(String(16))  # rsa-sha256 | ed25519-sha256
    key_file: Mapped[str] = mapped_column(String(255))  # relative to the data directory, 0600
    public_key: Mapped[str] = mapped_column(Text)  # base64 for the p= tag
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|active|retired
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class LoginFailure(Base):
    """Recent failed logins per client network or per account, shared by every process
    (SMTP AUTH, IMAP LOGIN, console) so that throttling holds across roles and workers."""

    __tablename__ = "login_failures"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # "ip" (address or IPv6 /64) | "account"
    key: Mapped[str] = mapped_column(String(320))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_failure_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # No attempt is verified before this instant (growing delay, then a temporary lockout).
    blocked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


# --------------------------------------------------------------------------- admin console


class ApiKey(Base):
    """A token for scripts using the JSON API with administrator rights. Only a SHA-256 digest
    of the token is stored (the token is random, 256 bits: no slow hash is needed); `prefix` is
    the public start of the token, shown in lists so that people can tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ConsoleSession(Base):
    """A signed-in console or API session; the key is a SHA-256 digest of the cookie token."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "user" (console account) | "mailbox"
    role: Mapped[str] = mapped_column(String(16))  # Role
    account: Mapped[str] = mapped_column(String(320))  # user name or mailbox address
    account_id: Mapped[int] = mapped_column(BigInteger)
    csrf_token: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    flash: Mapped[str | None] = mapped_column(Text)  # one message for the next page
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class AuditEntry(Base):
    """One administrative change: who, what, when, from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320))
    actor_role: Mapped[str] = mapped_column(String(16))
    client_address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(320), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


# --------------------------------------------------------------------------- store


class SpecialUse(StrEnum):
    SENT = "\\Sent"
    DRAFTS = "\\Drafts"
    TRASH = "\\Trash"
    JUNK = "\\Junk"


# The folders every mailbox gets at creation (name, RFC 6154 special-use).
DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", SpecialUse.SENT),
    ("Drafts", SpecialUse.DRAFTS),
    ("Trash", SpecialUse.TRASH),
    ("Spam", SpecialUse.JUNK),
)


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("mailbox_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)
    # Full Unicode path with "/" as hierarchy delimiter; "INBOX" for the inbox.
    name: Mapped[str] = mapped_column(String(1000))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    special_use: Mapped[str | None] = mapped_column(String(16))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uidnext: Mapped[int] = mapped_column(BigInteger, default=1)  # RFC 3501 §2.3.1.1
    highestmodseq: Mapped[int] = mapped_column(BigInteger, default=1)  # RFC 7162 §3.1.1
    # The highest MODSEQ whose expunge entries were pruned (store.prune_expunges); 0: none.
    expunges_pruned_modseq: Mapped[int] = mapped_column(BigInteger, default=0)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Blob(Base):
    """One message body file, shared by every message row and queue entry that refers to it."""

    __tablename__ = "blobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    path: Mapped[str] = mapped_column(String(255), unique=True)  # relative to the blob dir
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    refcount: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("folder_id", "uid"),
        Index("ix_messages_folder_modseq", "folder_id", "modseq"),
        # STATUS counts and quota sums read this index only, never the wide rows.
        Index("ix_messages_folder_flags_size", "folder_id", "flags", "size"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int] = mapped_column(BigInteger)
    # System flags as a bit set (see store.SYSTEM_FLAGS); keywords space-separated.
    flags: Mapped[int] = mapped_column(Integer, default=0)
    keywords: Mapped[str] = mapped_column(Text, default="")
    internaldate: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    size: Mapped[int] = mapped_column(BigInteger)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id", ondelete="RESTRICT"), index=True)
    # Cached parse results (JSON) and header fields for SEARCH/SORT in SQL.
    envelope: Mapped[str] = mapped_column(Text, default="")
    bodystructure: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(998), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    from_addr: Mapped[str] = mapped_column(Text, default="")
    to_addr: Mapped[str] = mapped_column(Text, default="")
    cc_addr: Mapped[str] = mapped_column(Text, default="")
    sent_date: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # RFC 5256 §2.2 THREAD=REFERENCES: parent msg-ids (References, else In-Reply-To), space-separated.
    reference_ids: Mapped[str] = mapped_column(Text, default="")


class Expunge(Base):
    """Expunged UIDs with the MODSEQ of their removal (RFC 7162 §3.2.10 VANISHED)."""

    __tablename__ = "expunges"
    __table_args__ = (Index("ix_expunges_folder_modseq", "folder_id", "modseq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int] = mapped_column(BigInteger)
    expunged_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MetadataEntry(Base):
    """RFC 5464 METADATA entries: of a folder, or of the server (`folder_id` NULL) as this mailbox sees it.

    `name` is the entry name lower-cased, with its /private or /shared prefix (RFC 5464 §3.2)."""

    __tablename__ = "metadata_entries"
    __table_args__ = (Index("ix_metadata_entries_mailbox_folder_name", "mailbox_id", "folder_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[bytes] = mapped_column(LargeBinary)


# --------------------------------------------------------------------------- queue


class QueueState(StrEnum):
    """Queue states as Postfix operators know them."""

    INCOMING = "incoming"
    ACTIVE = "active"
    DEFERRED = "deferred"
    HOLD = "hold"
    CORRUPT = "corrupt"
    DONE = "done"


class RecipientState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    DEFERRED = "deferred"
    BOUNCED = "bounced"


class QueueMessage(Base):
    __tablename__ = "queue_messages"
    __table_args__ = (Index("ix_queue_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the queue id
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id", ondelete="RESTRICT"), index=True)
    sender: Mapped[str] = mapped_column(String(320), default="")  # "" is the null sender
    source: Mapped[str] = mapped_column(String(16))  # mx | submission | local | dsn
    size: Mapped[int] = mapped_column(BigInteger)
    # RFC 3461 §4.3 RET and §4.4 ENVID; RFC 6152 BODY; RFC 6531 SMTPUTF8.
    dsn_ret: Mapped[str | None] = mapped_column(String(8))
    dsn_envid: Mapped[str | None] = mapped_column(String(100))
    body_type: Mapped[str | None] = mapped_column(String(16))
    smtputf8: Mapped[bool] = mapped_column(Boolean, default=False)
    auth_user: Mapped[str | None] = mapped_column(String(320))
    client_address: Mapped[str | None] = mapped_column(String(64))
    client_helo: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default=QueueState.INCOMING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delay_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    recipients: Mapped[list[QueueRecipient]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="QueueRecipient.id"
    )


class QueueRecipient(Base):
    __tablename__ = "queue_recipients"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("queue_messages.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320))
    # RFC 3461 §4.2 ORCPT and §4.1 NOTIFY (comma list, None: default SUCCESS not requested).
    orcpt: Mapped[str | None] = mapped_column(String(500))
    notify: Mapped[str | None] = mapped_column(String(40))
    # Delivery target decided at RCPT time: mailbox id for local delivery, None: route later.
    mailbox_id: Mapped[int | None] = mapped_column(BigInteger)
    folder: Mapped[str | None] = mapped_column(String(1000))  # e.g. Spam for DMARC quarantine
    state: Mapped[str] = mapped_column(String(16), default=RecipientState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_reply: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# --------------------------------------------------------------------------- external accounts (sync)


class SyncAccountState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # by the operator, or after repeated failures
    DISABLED = "disabled"  # stopped; imported messages are kept


class SyncAccount(Base):
    """An external IMAP or POP3 account kept in step with a local mailbox (courriel.imapsync)."""

    __tablename__ = "sync_accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    protocol: Mapped[str] = mapped_column(String(8))  # imap | pop3
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(16))  # ssl | starttls | none
    username: Mapped[str] = mapped_column(String(320))
    auth: Mapped[str] = mapped_column(String(16), default="plain")  # plain | cram-md5
    secret: Mapped[str] = mapped_column(Text)  # the password, encrypted (imapsync.credentials)
    leave_on_server: Mapped[bool] = mapped_column(Boolean, default=True)  # POP3 only
    state: Mapped[str] = mapped_column(String(16), default=SyncAccountState.ACTIVE)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_sync_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SyncFolder(Base):
    """One remote folder of an account and the local folder it maps to, with its sync state."""

    __tablename__ = "sync_folders"
    __table_args__ = (UniqueConstraint("account_id", "remote_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("sync_accounts.id", ondelete="CASCADE"), index=True)
    remote_name: Mapped[str] = mapped_column(String(1000))
    local_folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"), index=True)
    remote_uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)  # 0: not seen yet
    remote_modseq: Mapped[int] = mapped_column(BigInteger, default=0)  # RFC 7162 HIGHESTMODSEQ seen
    local_modseq: Mapped[int] = mapped_column(BigInteger, default=0)  # local HIGHESTMODSEQ seen
    total: Mapped[int] = mapped_column(Integer, default=0)  # remote messages at the last scan
    done: Mapped[int] = mapped_column(Integer, default=0)  # of them, present locally
    import_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    imported_since_start: Mapped[int] = mapped_column(Integer, default=0)
    # Local UIDs from this one on that no map row explains are new local mail, uploaded to the
    # remote; older ones (there before the account, or settled by an earlier pass) stay local.
    local_uidnext: Mapped[int] = mapped_column(BigInteger, default=0)


class SyncMessage(Base):
    """The UID map: a remote message (UIDVALIDITY, UID) and its local copy, with the flags both
    sides agreed on at the last sync (the base of the three-way flag merge)."""

    __tablename__ = "sync_messages"
    __table_args__ = (
        UniqueConstraint("sync_folder_id", "remote_uidvalidity", "remote_uid"),
        Index("ix_sync_messages_local", "sync_folder_id", "local_uid"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sync_folder_id: Mapped[int] = mapped_column(ForeignKey("sync_folders.id", ondelete="CASCADE"))
    remote_uidvalidity: Mapped[int] = mapped_column(BigInteger)
    remote_uid: Mapped[int] = mapped_column(BigInteger)
    local_uid: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[str] = mapped_column(Text, default="")  # space-separated, sorted
    message_id: Mapped[str] = mapped_column(String(998), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # remote: imported from the remote | local: uploaded from here | pending: an upload was
    # started (remote_uid is -local_uid until the remote UID is known; see imapsync.upload)
    origin: Mapped[str] = mapped_column(String(8), default="remote")


class SyncPopMessage(Base):
    """POP3 messages already imported, by UIDL (RFC 1939 §7)."""

    __tablename__ = "sync_pop_messages"
    __table_args__ = (UniqueConstraint("account_id", "uidl"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("sync_accounts.id", ondelete="CASCADE"))
    uidl: Mapped[str] = mapped_column(String(70))
    local_folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"), index=True)
    local_uid: Mapped[int] = mapped_column(BigInteger)
    deleted_on_server: Mapped[bool] = mapped_column(Boolean, default=False)


# --------------------------------------------------------------------------- server-side rules (courriel.rules)


class RuleFilter(Base):
    """One ordered delivery filter of a mailbox: conditions, actions and where it applies
    (JSON documents validated by `courriel.rules.filters`)."""

    __tablename__ = "rule_filters"
    __table_args__ = (Index("ix_rule_filters_mailbox_position", "mailbox_id", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)  # evaluation order, 0 first
    name: Mapped[str] = mapped_column(String(200), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    match: Mapped[str] = mapped_column(String(8), default="all")  # all | any
    conditions: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    actions: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    folders: Mapped[str] = mapped_column(String(100), default="INBOX")  # space-separated: INBOX Sent Spam
    stop: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleTag(Base):
    """A tag of a mailbox: a name and colour shown to people, an IMAP keyword on messages,
    and senders whose mail is tagged on arrival."""

    __tablename__ = "rule_tags"
    __table_args__ = (UniqueConstraint("mailbox_id", "name"), UniqueConstraint("mailbox_id", "keyword"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    keyword: Mapped[str] = mapped_column(String(100))  # RFC 3501 §2.3.2 flag-keyword (an atom)
    colour: Mapped[str] = mapped_column(String(7), default="#808080")
    senders: Mapped[str] = mapped_column(Text, default="")  # space-separated addresses or globs
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class VacationSetting(Base):
    """The auto-reply (vacation) settings of a mailbox (RFC 3834)."""

    __tablename__ = "vacation_settings"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    start_date: Mapped[str] = mapped_column(String(10))  # ISO date, inclusive
    end_date: Mapped[str | None] = mapped_column(String(10))  # ISO date, inclusive; None: open-ended
    subject: Mapped[str] = mapped_column(String(400), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    contacts_only: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class VacationReply(Base):
    """One auto-reply sent: at most one per mailbox, sender and day (RFC 3834 §2)."""

    __tablename__ = "vacation_replies"
    __table_args__ = (UniqueConstraint("mailbox_id", "sender", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(320))
    day: Mapped[str] = mapped_column(String(10))  # ISO date
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Contact(Base):
    """An address book entry of a mailbox's owner, added by hand or learnt from sent mail."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("mailbox_id", "address"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # lower case
    name: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(16), default="explicit")  # explicit | learnt
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Signature(Base):
    """The signature of a mailbox, plain text and HTML."""

    __tablename__ = "signatures"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CalendarEvent(Base):
    """An event of a mailbox's calendar, from an iCalendar invitation (RFC 5546), keyed by
    UID and RECURRENCE-ID; a newer SEQUENCE replaces it."""

    __tablename__ = "calendar_events"
    __table_args__ = (UniqueConstraint("mailbox_id", "uid", "recurrence_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    uid: Mapped[str] = mapped_column(String(500))
    recurrence_id: Mapped[str] = mapped_column(String(64), default="")  # "" for the master event
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="CONFIRMED")  # CONFIRMED | TENTATIVE | CANCELLED
    summary: Mapped[str] = mapped_column(Text, default="")
    organizer: Mapped[str] = mapped_column(String(320), default="")
    starts_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ics: Mapped[str] = mapped_column(Text)  # the organizer's VCALENDAR (VTIMEZONEs + this VEVENT)
    partstat: Mapped[str | None] = mapped_column(String(16))  # our answer: ACCEPTED | TENTATIVE | DECLINED
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CalendarFeedToken(Base):
    """The secret of a mailbox's .ics feed URL; only its SHA-256 digest is stored."""

    __tablename__ = "calendar_feed_tokens"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
