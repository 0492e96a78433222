"""The registry service layer: the only writer of the registry tables (ARCHITECTURE §4).

Use cases for domains, console users, mailboxes, aliases and mail groups, shared by the CLI
(`courriel.cli.registry`), the JSON API and the web console. Every function validates its
input and raises a `ServiceError` subclass with a stable `code` BEFORE writing anything;
writes happen in one transaction (`Database.write`).

Standards: RFC 5321 §4.1.2 and RFC 6531 §3.3 (addresses), RFC 5890/5891 (IDNA domains).
Security: all input is untrusted (operator or web form); passwords are hashed with argon2id
and a generated password is returned once, never stored or logged in clear.
Durability: one database transaction per call.
"""

from __future__ import annotations

from courriel.admin.services.aliases import AliasInfo, add_alias, list_aliases, remove_alias, set_alias_targets
from courriel.admin.services.domains import (
    DomainInfo,
    add_domain,
    get_domain,
    list_domains,
    remove_domain,
    set_catch_all,
    set_default_domain,
)
from courriel.admin.services.errors import Conflict, Duplicate, InvalidInput, NotFound, ServiceError
from courriel.admin.services.groups import (
    GroupInfo,
    add_group,
    add_group_members,
    get_group,
    list_group_members,
    list_groups,
    remove_group,
    remove_group_members,
)
from courriel.admin.services.mailboxes import (
    MailboxInfo,
    add_mailbox,
    get_mailbox,
    list_mailboxes,
    max_per_user_per_domain,
    parse_message_count,
    parse_size,
    remove_mailbox,
    set_mailbox_enabled,
    set_mailbox_password,
    set_mailbox_quota,
)
from courriel.admin.services.users import (
    UserInfo,
    add_user,
    get_user,
    list_users,
    remove_user,
    set_user_password,
)

__all__ = [
    "AliasInfo",
    "Conflict",
    "DomainInfo",
    "Duplicate",
    "GroupInfo",
    "InvalidInput",
    "MailboxInfo",
    "NotFound",
    "ServiceError",
    "UserInfo",
    "add_alias",
    "add_domain",
    "add_group",
    "add_group_members",
    "add_mailbox",
    "add_user",
    "get_domain",
    "get_group",
    "get_mailbox",
    "get_user",
    "list_aliases",
    "list_domains",
    "list_group_members",
    "list_groups",
    "list_mailboxes",
    "list_users",
    "max_per_user_per_domain",
    "parse_message_count",
    "parse_size",
    "remove_alias",
    "remove_domain",
    "remove_group",
    "remove_group_members",
    "remove_mailbox",
    "remove_user",
    "set_alias_targets",
    "set_catch_all",
    "set_default_domain",
    "set_mailbox_enabled",
    "set_mailbox_password",
    "set_mailbox_quota",
    "set_user_password",
]
