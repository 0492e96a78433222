"""`courriel filter|vacation|contact|calendar`: a mailbox's server-side rules over the services
in `courriel.admin.services.rules` and `courriel.admin.services.calendar`.

    courriel filter list|add|remove|move|preview|apply|export MAILBOX ...
    courriel vacation show|set|off MAILBOX ...
    courriel contact add|list|remove MAILBOX ...
    courriel calendar list|rsvp|feed-url MAILBOX ...

Every command takes `--data` and `--json`; refusals are printed on stderr and exit with status
2, having written nothing.
Standards: RFC 5228 (export prints a Sieve script), RFC 5546 (rsvp sends an iTIP REPLY).
Security: the feed URL's secret is printed once when issued; it is not stored in clear.
Durability: through the services (one transaction per change; RSVPs through the spool).
"""

from __future__ import annotations

from collections.abc import Callable

from courriel.admin.services import ServiceError
from courriel.admin.services import calendar as calendar_services
from courriel.admin.services import rules as services
from courriel.blobs import BlobStore
from courriel.cli import CommandError, add_data_argument, add_json_argument, emit, table
from courriel.cli.registry import Context
from courriel.store import Store

FEED_PATH = "/calendar/feed/{token}.ics"  # served by the admin role (`calendar_services.calendar_feed`)


def _command(function: Callable) -> Callable:
    def handler(args) -> int:
        context = Context(args)
        try:
            return function(args, context) or 0
        except ServiceError as exc:
            raise CommandError(f"{exc.message} [{exc.code}]") from None
        finally:
            context.close()

    return handler


def _leaf(children, name: str, help_text: str, function: Callable):
    parser = children.add_parser(name, help=help_text, description=help_text)
    add_data_argument(parser)
    add_json_argument(parser)
    parser.add_argument("mailbox", metavar="MAILBOX", help="the mailbox address")
    parser.set_defaults(handler=_command(function))
    return parser


def _group(subparsers, name: str, help_text: str):
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    children = parser.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    children.required = True
    return children


def _store(ctx) -> Store:
    blobs = BlobStore(ctx.config.blob_dir, ctx.db)
    return Store(ctx.db, blobs, ctx.config.run_dir)


# --------------------------------------------------------------------------- filter


def _filter_text(info: services.FilterInfo) -> str:
    def condition(c: dict) -> str:
        if c["field"] in ("attachment", "calendar"):
            return {"has": f"has-{c['field']}", "has_none": f"no-{c['field']}"}[c["op"]]
        name = f"header:{c['header']}" if c["field"] == "header" else c["field"].replace("_", "-")
        return f"{name} {c['op'].replace('_', '-')} {c['value']}"

    def action(a: dict) -> str:
        return " ".join([a["action"], a.get("folder") or a.get("tag") or ""]).strip()

    state = "" if info.enabled else " (disabled)"
    joined = f" {'and' if info.match == 'all' else 'or'} ".join(condition(c) for c in info.conditions)
    return (f"#{info.id} [{info.position}] {info.name or '(unnamed)'}{state} in {', '.join(info.folders)}: "
            f"if {joined} then {', '.join(action(a) for a in info.actions)}{'; stop' if info.stop else ''}")


def _filter_list(args, ctx):
    found = services.list_filters(ctx.db, args.mailbox)
    emit(args, [f.as_dict() for f in found], lambda: "\n".join(_filter_text(f) for f in found) or "(none)")


def _filter_add(args, ctx):
    info = services.add_filter(ctx.db, args.mailbox, conditions=args.conditions, actions=args.actions,
                               match="any" if args.any else "all", stop=args.stop,
                               folders=args.folders.split(",") if args.folders else ("INBOX",), name=args.name or "",
                               enabled=not args.disabled, position=args.position)
    emit(args, info.as_dict(), lambda: f"added {_filter_text(info)}")


def _filter_remove(args, ctx):
    services.remove_filter(ctx.db, args.mailbox, args.id)
    emit(args, {"removed": args.id}, f"removed filter {args.id}")


def _filter_move(args, ctx):
    found = services.move_filter(ctx.db, args.mailbox, args.id, args.position)
    emit(args, [f.as_dict() for f in found], lambda: "\n".join(_filter_text(f) for f in found))


def _filter_enable(args, ctx, enabled: bool):
    info = services.set_filter_enabled(ctx.db, args.mailbox, args.id, enabled)
    emit(args, info.as_dict(), lambda: _filter_text(info))


def _filter_preview(args, ctx):
    found = services.preview_filter(_store(ctx), args.mailbox, args.id)
    emit(args, [m.as_dict() for m in found],
         lambda: table([m.as_dict() for m in found], ["folder", "uid", "from_addr", "subject"]))


def _filter_apply(args, ctx):
    report = services.apply_filter(_store(ctx), args.mailbox, args.id, trash_instead_of_delete=args.trash)
    emit(args, report.as_dict(), lambda: ", ".join(f"{k} {v}" for k, v in report.as_dict().items()))


def _filter_export(args, ctx):
    script = services.export_sieve(ctx.db, args.mailbox)
    emit(args, {"sieve": script}, script.rstrip("\n"))


def _register_filter(subparsers) -> None:
    children = _group(subparsers, "filter", "delivery filters of a mailbox")
    _leaf(children, "list", "list the filters in order", _filter_list)
    add = _leaf(children, "add", "add a filter", _filter_add)
    add.add_argument("--if", dest="conditions", action="append", required=True, metavar="CONDITION",
                     help="'from|to|cc|to-or-cc|subject|header:NAME matches|does-not-match|contains|"
                          "does-not-contain VALUE', has-attachment, no-attachment, has-calendar (repeatable)")
    add.add_argument("--then", dest="actions", action="append", required=True, metavar="ACTION",
                     help="delete | move FOLDER | tag NAME | flag | read (repeatable)")
    add.add_argument("--any", action="store_true", help="match when any condition holds (default: all)")
    add.add_argument("--stop", action="store_true", help="stop evaluating later filters when this one matches")
    add.add_argument("--folders", help="where it applies: comma list of INBOX, Sent, Spam (default INBOX)")
    add.add_argument("--name", help="a name for people")
    add.add_argument("--position", type=int, help="0 for first (default: last)")
    add.add_argument("--disabled", action="store_true", help="add it disabled")
    for name, help_text, function in (("remove", "remove a filter", _filter_remove),
                                      ("preview", "list existing messages the filter matches", _filter_preview),
                                      ("enable", "enable a filter", lambda a, c: _filter_enable(a, c, True)),
                                      ("disable", "disable a filter", lambda a, c: _filter_enable(a, c, False))):
        _leaf(children, name, help_text, function).add_argument("id", type=int, metavar="ID")
    move = _leaf(children, "move", "move a filter to another position", _filter_move)
    move.add_argument("id", type=int, metavar="ID")
    move.add_argument("position", type=int, metavar="POSITION", help="0 for first")
    apply = _leaf(children, "apply", "run a filter on the existing messages", _filter_apply)
    apply.add_argument("id", type=int, metavar="ID")
    apply.add_argument("--trash", action="store_true", help="move to Trash instead of deleting permanently")
    _leaf(children, "export", "print the filters as a Sieve script (RFC 5228)", _filter_export)


# --------------------------------------------------------------------------- vacation


def _vacation_text(info: services.VacationInfo) -> str:
    if not info.enabled:
        return f"auto-reply of {info.mailbox}: off"
    until = f" until {info.end}" if info.end else ""
    only = " (contacts only)" if info.contacts_only else ""
    return f"auto-reply of {info.mailbox}: on from {info.start}{until}{only}\nsubject: {info.subject}\n\n{info.body}"


def _vacation_show(args, ctx):
    info = services.get_vacation(ctx.db, args.mailbox)
    emit(args, info.as_dict(), lambda: _vacation_text(info))


def _vacation_set(args, ctx):
    body = args.body
    if args.body_file:
        try:
            with open(args.body_file, encoding="utf-8") as handle:
                body = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {args.body_file}: {exc}") from None
    info = services.set_vacation(ctx.db, args.mailbox, enabled=True, start=args.start, end=args.end,
                                 subject=args.subject or "", body=body or "", contacts_only=args.contacts_only)
    emit(args, info.as_dict(), lambda: _vacation_text(info))


def _vacation_off(args, ctx):
    info = services.vacation_off(ctx.db, args.mailbox)
    emit(args, info.as_dict(), lambda: _vacation_text(info))


def _register_vacation(subparsers) -> None:
    children = _group(subparsers, "vacation", "the auto-reply of a mailbox")
    _leaf(children, "show", "show the auto-reply settings", _vacation_show)
    setting = _leaf(children, "set", "turn the auto-reply on", _vacation_set)
    setting.add_argument("--start", help="first day, YYYY-MM-DD (default: today)")
    setting.add_argument("--end", help="last day, YYYY-MM-DD (default: none)")
    setting.add_argument("--subject", help="reply subject (default: 'Auto: ' and the original subject)")
    setting.add_argument("--body", help="reply text (the signature is appended)")
    setting.add_argument("--body-file", help="read the reply text from a UTF-8 file")
    setting.add_argument("--contacts-only", action="store_true", help="reply only to senders in the contacts")
    _leaf(children, "off", "turn the auto-reply off", _vacation_off)


# --------------------------------------------------------------------------- contact


def _contact_add(args, ctx):
    info = services.add_contact(ctx.db, args.mailbox, args.address, args.name or "")
    emit(args, info.as_dict(), f"added contact {info.address}")


def _contact_list(args, ctx):
    found = services.list_contacts(ctx.db, args.mailbox)
    emit(args, [c.as_dict() for c in found], lambda: table([c.as_dict() for c in found], ["address", "name", "source"]))


def _contact_remove(args, ctx):
    services.remove_contact(ctx.db, args.mailbox, args.address)
    emit(args, {"removed": args.address}, f"removed contact {args.address}")


def _register_contact(subparsers) -> None:
    children = _group(subparsers, "contact", "the address book of a mailbox's owner")
    add = _leaf(children, "add", "add a contact", _contact_add)
    add.add_argument("address", metavar="ADDRESS")
    add.add_argument("--name", help="display name")
    _leaf(children, "list", "list contacts (explicit and learnt)", _contact_list)
    _leaf(children, "remove", "remove a contact", _contact_remove).add_argument("address", metavar="ADDRESS")


# --------------------------------------------------------------------------- calendar


def _calendar_list(args, ctx):
    found = calendar_services.list_events(ctx.db, args.mailbox)
    emit(args, [e.as_dict() for e in found],
         lambda: table([e.as_dict() for e in found], ["id", "starts_at", "status", "answer", "summary", "organizer"]))


def _calendar_rsvp(args, ctx):
    info = calendar_services.rsvp(ctx.db, BlobStore(ctx.config.blob_dir, ctx.db), args.mailbox, args.id, args.answer,
                         hostname=ctx.config.hostname, run_dir=ctx.config.run_dir)
    emit(args, info.as_dict(), f"answered {info.answer} to {info.organizer} for {info.summary!r}")


def _calendar_feed_url(args, ctx):
    token = calendar_services.issue_feed_token(ctx.db, args.mailbox, rotate=args.rotate)
    url = f"https://{ctx.config.hostname}{FEED_PATH.format(token=token)}"
    emit(args, {"url": url}, f"{url}\n(shown once: keep it secret; --rotate issues a new one)")


def _register_calendar(subparsers) -> None:
    children = _group(subparsers, "calendar", "invitations in a mailbox's calendar")
    _leaf(children, "list", "list events", _calendar_list)
    rsvp = _leaf(children, "rsvp", "answer an invitation (sends a reply to the organizer)", _calendar_rsvp)
    rsvp.add_argument("id", type=int, metavar="EVENT_ID")
    rsvp.add_argument("answer", choices=["yes", "maybe", "no"])
    feed = _leaf(children, "feed-url", "issue the secret .ics feed URL", _calendar_feed_url)
    feed.add_argument("--rotate", action="store_true", help="replace an existing URL (the old one stops working)")


def register(subparsers) -> None:
    _register_filter(subparsers)
    _register_vacation(subparsers)
    _register_contact(subparsers)
    _register_calendar(subparsers)
