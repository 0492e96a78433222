"""`courriel domain|mailbox|alias|group|user`: registry management over the admin services.

Every command takes `--data` and `--json`; refusals from `courriel.admin.services` are printed
on stderr and exit with status 2, having written nothing.
Security: passwords are never taken from the command line: they are read from a prompt or
from standard input (`--password-stdin`), or generated and printed once.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable

from courriel import config as config_mod
from courriel import passwords, schema
from courriel.admin import services
from courriel.admin.services import dns as domain_wizard
from courriel.admin.services import notices
from courriel.cli import CommandError, add_data_argument, add_json_argument, emit, table
from courriel.db import Database

# --------------------------------------------------------------------------- plumbing


class Context:
    """The data directory's configuration, database, hasher and policy for one command."""

    def __init__(self, args):
        data_dir = args.data or config_mod.default_data_dir()
        self.config = config_mod.load(data_dir)
        if not (self.config.data_dir / config_mod.CONFIG_FILE).exists():
            raise CommandError(f"{self.config.data_dir} is not a Courriel data directory (run `courriel init`)")
        self.db = Database(self.config.database_url)
        if schema.current_revision(self.db) != schema.head_revision():
            self.db.dispose()
            raise CommandError("the database schema is not current (run `courriel init` to migrate it)")
        self.hasher = passwords.PasswordHasher.from_config(self.config)
        self.policy = passwords.PasswordPolicy.from_config(self.config)

    def close(self) -> None:
        self.db.dispose()


def _command(function: Callable) -> Callable:
    """Wrap a command body: open the context, map service refusals to exit status 2."""

    def handler(args) -> int:
        context = Context(args)
        try:
            return function(args, context) or 0
        except services.ServiceError as exc:
            raise CommandError(f"{exc.message} [{exc.code}]") from None
        finally:
            context.close()

    return handler


def _leaf(subparsers, name: str, help_text: str, function: Callable):
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    add_data_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(handler=_command(function))
    return parser


def _group(subparsers, name: str, help_text: str):
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    children = parser.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    children.required = True
    return children


def _read_password(args, *, allow_prompt: bool) -> str | None:
    """The password from stdin (--password-stdin) or a prompt; None means generate one."""
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
        if not password:
            raise CommandError("no password on standard input")
        return password
    if getattr(args, "generate", False) or not allow_prompt:
        return None
    if not sys.stdin.isatty():
        raise CommandError("no password given: use --password-stdin, --generate, or run on a terminal")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat it: "):
        raise CommandError("the two passwords differ")
    return first


def _password_line(generated: str | None) -> list[str]:
    if not generated:
        return []
    return [f"Password: {generated}", "This password is shown once; store it now."]


# --------------------------------------------------------------------------- domain


def _domain_add(args, ctx):
    info = services.add_domain(ctx.db, args.name, is_default=args.default, catch_all=args.catch_all)
    emit(args, info.as_dict(), lambda: "\n".join([
        f"Added domain {info.name}" + (f" ({info.unicode_name})" if info.unicode_name != info.name else ""),
        f"Verification token: {info.verification_token}",
    ]))


def _domain_list(args, ctx):
    rows = [d.as_dict() for d in services.list_domains(ctx.db)]
    emit(args, rows, lambda: table(rows, ["name", "unicode_name", "is_default", "verified", "catch_all", "mailboxes"]))


def _domain_remove(args, ctx):
    services.remove_domain(ctx.db, args.name)
    emit(args, {"removed": args.name}, f"Removed domain {args.name}")


def _domain_default(args, ctx):
    info = services.set_default_domain(ctx.db, args.name)
    emit(args, info.as_dict(), f"{info.name} is now the default domain")


def _domain_catch_all(args, ctx):
    if args.clear == bool(args.target):
        raise CommandError("give a target address or --clear (not both)")
    info = services.set_catch_all(ctx.db, args.name, None if args.clear else args.target)
    emit(args, info.as_dict(), f"Catch-all of {info.name}: {info.catch_all or '(none)'}")


def _register_domain(subparsers) -> None:
    children = _group(subparsers, "domain", "manage mail domains")
    parser = _leaf(children, "add", "add a domain", _domain_add)
    parser.add_argument("name", help="domain name (Unicode or A-label)")
    parser.add_argument("--default", action="store_true", help="make it the default domain")
    parser.add_argument("--catch-all", metavar="ADDRESS", help="address receiving mail for unknown local parts")
    _leaf(children, "list", "list domains", _domain_list)
    parser = _leaf(children, "remove", "remove a domain that has no mailboxes", _domain_remove)
    parser.add_argument("name")
    parser = _leaf(children, "default", "make a domain the default one", _domain_default)
    parser.add_argument("name")
    parser = _leaf(children, "catch-all", "set or clear a domain's catch-all address", _domain_catch_all)
    parser.add_argument("name")
    parser.add_argument("target", nargs="?")
    parser.add_argument("--clear", action="store_true")


# --------------------------------------------------------------------------- mailbox


def _mailbox_add(args, ctx):
    quota = services.parse_size(args.quota) if args.quota else 0
    message_quota = services.parse_message_count(args.quota_messages) if args.quota_messages else 0
    password = _read_password(args, allow_prompt=False)
    if args.address.rpartition("@")[2].lower() == domain_wizard.default_domain_name(ctx.config):
        domain_wizard.ensure_default_domain(ctx.db, ctx.config)  # no wizard for the server's own domain
    info, generated = services.add_mailbox(
        ctx.db, ctx.hasher, ctx.policy, args.address, user=args.user, password=password, quota_bytes=quota,
        quota_messages=message_quota,
        display_name=args.name, max_per_user=services.max_per_user_per_domain(ctx.config),
        notifier=notices.Notifier(ctx.db, ctx.config),
    )
    emit(args, info.as_dict() | {"password": generated},
         lambda: "\n".join([f"Added mailbox {info.address}", *_password_line(generated)]))


def _mailbox_list(args, ctx):
    rows = [m.as_dict() for m in services.list_mailboxes(ctx.db, domain=args.domain, user=args.user)]
    emit(args, rows, lambda: table(rows, ["address", "user", "display_name", "quota_bytes", "quota_messages",
                                                   "enabled"]))


def _mailbox_passwd(args, ctx):
    password = _read_password(args, allow_prompt=True)
    generated = services.set_mailbox_password(ctx.db, ctx.hasher, ctx.policy, args.address, password,
                                              notifier=notices.Notifier(ctx.db, ctx.config))
    emit(args, {"address": args.address, "password": generated},
         lambda: "\n".join([f"Password of {args.address} changed", *_password_line(generated)]))


def _mailbox_enable(args, ctx):
    info = services.set_mailbox_enabled(ctx.db, args.address, True)
    emit(args, info.as_dict(), f"Enabled {info.address}")


def _mailbox_disable(args, ctx):
    info = services.set_mailbox_enabled(ctx.db, args.address, False)
    emit(args, info.as_dict(), f"Disabled {info.address}")


def _mailbox_quota(args, ctx):
    if args.size is None and args.quota_messages is None:
        raise services.InvalidInput("give a size, --quota-messages, or both", "invalid_quota")
    info = services.set_mailbox_quota(
        ctx.db, args.address, services.parse_size(args.size) if args.size is not None else None,
        services.parse_message_count(args.quota_messages) if args.quota_messages is not None else None)
    emit(args, info.as_dict(), f"Quota of {info.address}: {info.quota_bytes or 'unlimited'} bytes, "
                               f"{info.quota_messages or 'unlimited'} messages")


def _mailbox_remove(args, ctx):
    services.remove_mailbox(ctx.db, args.address)
    emit(args, {"removed": args.address}, f"Removed mailbox {args.address} and its messages")


def _register_mailbox(subparsers) -> None:
    children = _group(subparsers, "mailbox", "manage mailboxes")
    parser = _leaf(children, "add", "add a mailbox (a password is generated unless --password-stdin)", _mailbox_add)
    parser.add_argument("address")
    parser.add_argument("--user", help="console user who owns it")
    parser.add_argument("--name", help="display name (default: the user's name)")
    parser.add_argument("--quota", help="size limit: bytes or K/M/G/T (default: unlimited)")
    parser.add_argument("--quota-messages", help="message count limit (default: unlimited)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    parser = _leaf(children, "list", "list mailboxes", _mailbox_list)
    parser.add_argument("--domain")
    parser.add_argument("--user")
    parser = _leaf(children, "passwd", "set a mailbox password (prompt, --password-stdin or --generate)",
                   _mailbox_passwd)
    parser.add_argument("address")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    source.add_argument("--generate", action="store_true", help="generate a password and print it once")
    for name, function, text in (("enable", _mailbox_enable, "accept mail and logins again"),
                                 ("disable", _mailbox_disable, "refuse mail and logins"),
                                 ("remove", _mailbox_remove, "remove a mailbox and its messages")):
        parser = _leaf(children, name, text, function)
        parser.add_argument("address")
    parser = _leaf(children, "quota", "set a mailbox's size and/or message quota (0: unlimited)", _mailbox_quota)
    parser.add_argument("address")
    parser.add_argument("size", nargs="?", help="size limit: bytes or K/M/G/T (omit to keep it)")
    parser.add_argument("--quota-messages", help="message count limit (omit to keep it)")


# --------------------------------------------------------------------------- alias


def _alias_add(args, ctx):
    info = services.add_alias(ctx.db, args.address, args.targets)
    emit(args, info.as_dict(), f"Added alias {info.address} -> {', '.join(info.targets)}")


def _alias_list(args, ctx):
    rows = [a.as_dict() for a in services.list_aliases(ctx.db, domain=args.domain)]
    emit(args, rows, lambda: table([r | {"targets": ", ".join(r["targets"])} for r in rows], ["address", "targets"]))


def _alias_remove(args, ctx):
    services.remove_alias(ctx.db, args.address)
    emit(args, {"removed": args.address}, f"Removed alias {args.address}")


def _register_alias(subparsers) -> None:
    children = _group(subparsers, "alias", "manage aliases")
    parser = _leaf(children, "add", "add an alias with one or more local or external targets", _alias_add)
    parser.add_argument("address")
    parser.add_argument("targets", nargs="+", metavar="TARGET")
    parser = _leaf(children, "list", "list aliases", _alias_list)
    parser.add_argument("--domain")
    parser = _leaf(children, "remove", "remove an alias", _alias_remove)
    parser.add_argument("address")


# --------------------------------------------------------------------------- group


def _group_add(args, ctx):
    info = services.add_group(ctx.db, args.address, args.members, members_can_send=not args.no_member_send)
    emit(args, info.as_dict(), f"Added group {info.address} with {len(info.members)} member(s)")


def _group_list(args, ctx):
    rows = [g.as_dict() for g in services.list_groups(ctx.db, domain=args.domain)]
    emit(args, rows, lambda: table([r | {"members": ", ".join(r["members"])} for r in rows],
                                   ["address", "members_can_send", "members"]))


def _group_remove(args, ctx):
    services.remove_group(ctx.db, args.address)
    emit(args, {"removed": args.address}, f"Removed group {args.address}")


def _members_add(args, ctx):
    info = services.add_group_members(ctx.db, args.group, args.members)
    emit(args, info.as_dict(), f"{info.address}: {len(info.members)} member(s)")


def _members_remove(args, ctx):
    info = services.remove_group_members(ctx.db, args.group, args.members)
    emit(args, info.as_dict(), f"{info.address}: {len(info.members)} member(s)")


def _members_list(args, ctx):
    members = services.list_group_members(ctx.db, args.group)
    emit(args, members, lambda: "\n".join(members) or "(none)")


def _register_group(subparsers) -> None:
    children = _group(subparsers, "group", "manage mail groups")
    parser = _leaf(children, "add", "add a group with member mailboxes", _group_add)
    parser.add_argument("address")
    parser.add_argument("members", nargs="*", metavar="MEMBER")
    parser.add_argument("--no-member-send", action="store_true", help="members may not send as the group")
    parser = _leaf(children, "list", "list groups", _group_list)
    parser.add_argument("--domain")
    parser = _leaf(children, "remove", "remove a group", _group_remove)
    parser.add_argument("address")
    members = _group(children, "members", "list, add or remove members")
    parser = _leaf(members, "list", "list members", _members_list)
    parser.add_argument("group")
    for name, function in (("add", _members_add), ("remove", _members_remove)):
        parser = _leaf(members, name, f"{name} member mailboxes", function)
        parser.add_argument("group")
        parser.add_argument("members", nargs="+", metavar="MEMBER")


# --------------------------------------------------------------------------- user


def _user_add(args, ctx):
    password = _read_password(args, allow_prompt=False)
    info, generated = services.add_user(
        ctx.db, ctx.hasher, ctx.policy, args.name_, role=args.role, email=args.email, display_name=args.display_name,
        password=password,
    )
    emit(args, info.as_dict() | {"password": generated},
         lambda: "\n".join([f"Added {info.role} {info.name}", *_password_line(generated)]))


def _user_list(args, ctx):
    rows = [u.as_dict() for u in services.list_users(ctx.db)]
    emit(args, rows, lambda: table(rows, ["name", "role", "display_name", "email", "mailboxes"]))


def _user_passwd(args, ctx):
    password = _read_password(args, allow_prompt=True)
    generated = services.set_user_password(ctx.db, ctx.hasher, ctx.policy, args.name_, password)
    emit(args, {"name": args.name_, "password": generated},
         lambda: "\n".join([f"Password of {args.name_} changed", *_password_line(generated)]))


def _user_remove(args, ctx):
    services.remove_user(ctx.db, args.name_)
    emit(args, {"removed": args.name_}, f"Removed user {args.name_}")


def _register_user(subparsers) -> None:
    children = _group(subparsers, "user", "manage console accounts")
    parser = _leaf(children, "add", "add a console account (a password is generated unless --password-stdin)",
                   _user_add)
    parser.add_argument("name_", metavar="NAME")
    parser.add_argument("--role", choices=["user", "admin"], default="user")
    parser.add_argument("--email", help="profile address for notices")
    parser.add_argument("--display-name")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    _leaf(children, "list", "list console accounts", _user_list)
    parser = _leaf(children, "passwd", "set a console password (prompt, --password-stdin or --generate)",
                   _user_passwd)
    parser.add_argument("name_", metavar="NAME")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true")
    source.add_argument("--generate", action="store_true")
    parser = _leaf(children, "remove", "remove a console account that owns no mailbox", _user_remove)
    parser.add_argument("name_", metavar="NAME")


def register(subparsers) -> None:
    _register_domain(subparsers)
    _register_mailbox(subparsers)
    _register_alias(subparsers)
    _register_group(subparsers)
    _register_user(subparsers)
