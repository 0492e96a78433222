"""`courriel queue list|show|flush|retry|hold|release|delete`: the operator's view of the mail queue.

Like Postfix's `mailq`, `postqueue -f`, `postsuper -h/-H/-d`. Every command takes `--data` and
`--json`. Changes go through `courriel.queue.spool` (the only writer of queue rows); a running
queue role picks them up through a `queue` hint, or on its next rescan.

Standards: none (operator interface). Security: queue ids are validated before any lookup;
message bodies are never printed (`show` prints the envelope, states and last replies only).
Durability: every change is one spool transaction.
"""

from __future__ import annotations

import datetime as dt
import re

from courriel import config as config_mod
from courriel import notify, schema
from courriel.cli import CommandError, add_data_argument, add_json_argument, emit, table
from courriel.db import Database
from courriel.queue import spool, stats
from courriel.queue.spool import QueuedMessage

_QUEUE_ID = re.compile(r"^[0-9A-Fa-f]{4,32}$")


def register(subparsers) -> None:
    parser = subparsers.add_parser("queue", help="inspect and manage the mail queue")
    commands = parser.add_subparsers(dest="queue_command", metavar="ACTION")
    commands.required = True

    def leaf(name: str, help_text: str, function, with_id: bool = False):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_data_argument(sub)
        add_json_argument(sub)
        if with_id:
            sub.add_argument("queue_id", metavar="ID", help="queue id (as shown by `courriel queue list`)")
        sub.set_defaults(handler=lambda args: _run(args, function))
        return sub

    listing = leaf("list", "list queued messages, oldest first", _list)
    listing.add_argument("--state", choices=[str(s) for s in stats.STATES], help="only messages in this state")
    leaf("show", "show one message's envelope and per-recipient state", _show, with_id=True)
    leaf("flush", "make every deferred message due now", _flush)
    leaf("retry", "make one deferred message due now", _retry, with_id=True)
    leaf("hold", "keep a message in the queue without delivering it", _hold, with_id=True)
    leaf("release", "release a held message for delivery", _release, with_id=True)
    leaf("delete", "remove a message from the queue without delivering it", _delete, with_id=True)


class _Context:
    def __init__(self, args):
        self.config = config_mod.load(args.data or config_mod.default_data_dir())
        if not (self.config.data_dir / config_mod.CONFIG_FILE).exists():
            raise CommandError(f"{self.config.data_dir} is not a Courriel data directory (run `courriel init`)")
        self.db = Database(self.config.database_url)
        if schema.current_revision(self.db) != schema.head_revision():
            self.db.dispose()
            raise CommandError("the database schema is not current (run `courriel init` to migrate it)")

    def kick(self) -> None:
        notify.queue_changed(self.config.run_dir)


def _run(args, function) -> int:
    queue_id = getattr(args, "queue_id", None)
    if queue_id is not None and not _QUEUE_ID.match(queue_id):
        raise CommandError(f"{queue_id!r} is not a queue id")
    if queue_id is not None:
        args.queue_id = queue_id.upper()
    context = _Context(args)
    try:
        return function(args, context) or 0
    finally:
        context.db.dispose()


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds") if value else None


def entry_json(entry: QueuedMessage, with_recipients: bool = True) -> dict:
    payload = {
        "id": entry.id, "state": entry.state, "sender": entry.sender, "source": entry.source, "size": entry.size,
        "received_at": _iso(entry.received_at), "next_attempt_at": _iso(entry.next_attempt_at),
        "attempts": entry.attempts, "smtputf8": entry.smtputf8, "body_type": entry.body_type,
        "dsn_ret": entry.dsn_ret, "dsn_envid": entry.dsn_envid,
    }
    if with_recipients:
        payload["recipients"] = [
            {"address": r.address, "state": r.state, "attempts": r.attempts, "last_reply": r.last_reply,
             "notify": r.notify, "orcpt": r.orcpt, "mailbox_id": r.mailbox_id}
            for r in entry.recipients
        ]
    return payload


def _list(args, context: _Context) -> int:
    entries = spool.list_entries(context.db, state=args.state)
    rows = [
        {"id": e.id, "state": e.state, "size": e.size, "received": _iso(e.received_at),
         "sender": e.sender or "<>", "recipients": f"{len(e.pending_recipients)}/{len(e.recipients)} pending"}
        for e in entries
    ]
    payload = {"messages": [entry_json(e) for e in entries], "counts": stats.size_by_state(context.db),
               "oldest_age_seconds": stats.oldest_age_seconds(context.db)}
    emit(args, payload, lambda: table(rows, ["id", "state", "size", "received", "sender", "recipients"]))
    return 0


def _get(context: _Context, queue_id: str) -> QueuedMessage:
    entry = spool.get(context.db, queue_id)
    if entry is None:
        raise CommandError(f"no queued message {queue_id}")
    return entry


def _show(args, context: _Context) -> int:
    entry = _get(context, args.queue_id)

    def text() -> str:
        lines = [f"{key}: {value}" for key, value in entry_json(entry, with_recipients=False).items()
                 if value is not None]
        lines.append("")
        lines.append(table([{"recipient": r.address, "state": r.state, "attempts": r.attempts,
                             "last reply": (r.last_reply or "")[:100]} for r in entry.recipients],
                           ["recipient", "state", "attempts", "last reply"]))
        return "\n".join(lines)

    emit(args, entry_json(entry), text)
    return 0


def _flush(args, context: _Context) -> int:
    count = spool.flush(context.db)
    context.kick()
    emit(args, {"flushed": count}, f"{count} deferred message(s) due now")
    return 0


def _retry(args, context: _Context) -> int:
    entry = _get(context, args.queue_id)
    if entry.state not in ("deferred", "incoming", "hold"):
        raise CommandError(f"message {entry.id} is {entry.state}; only deferred or held messages can be retried")
    # Through the spool's own operations: held → deferred and due now.
    if entry.state != "hold":
        spool.hold(context.db, entry.id)
    spool.unhold(context.db, entry.id)
    context.kick()
    emit(args, {"id": entry.id, "state": "deferred", "due": "now"}, f"{entry.id}: due now")
    return 0


def _hold(args, context: _Context) -> int:
    entry = _get(context, args.queue_id)
    if not spool.hold(context.db, entry.id):
        raise CommandError(f"no queued message {entry.id}")
    emit(args, {"id": entry.id, "state": "hold"}, f"{entry.id}: on hold")
    return 0


def _release(args, context: _Context) -> int:
    entry = _get(context, args.queue_id)
    if not spool.unhold(context.db, entry.id):
        raise CommandError(f"message {entry.id} is not on hold")
    context.kick()
    emit(args, {"id": entry.id, "state": "deferred"}, f"{entry.id}: released")
    return 0


def _delete(args, context: _Context) -> int:
    entry = _get(context, args.queue_id)
    if not spool.remove(context.db, entry.id):
        raise CommandError(f"no queued message {entry.id}")
    emit(args, {"id": entry.id, "deleted": True}, f"{entry.id}: deleted")
    return 0
