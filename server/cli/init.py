"""`courriel init`: create or complete a data directory (see `courriel.datadir`)."""

from __future__ import annotations

from courriel import config as config_mod
from courriel import datadir
from courriel.cli import add_data_argument, add_json_argument, emit


def register(subparsers) -> None:
    parser = subparsers.add_parser("init", help="initialise a data directory")
    add_data_argument(parser)
    add_json_argument(parser)
    parser.add_argument("--hostname", help="public host name of this server (default: localhost)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    data_dir = args.data or config_mod.default_data_dir()
    result = datadir.initialise(data_dir, hostname=args.hostname)

    def text() -> str:
        if not result.changed:
            return f"{result.data_dir} is already initialised; nothing changed."
        lines = [f"Initialised {result.data_dir}:"] + [f"  created {item}" for item in result.created]
        if result.admin_password:
            lines += [
                "",
                f"Admin account: {datadir.ADMIN_NAME}",
                f"Admin password: {result.admin_password}",
                "This password is shown once; store it now.",
            ]
        return "\n".join(lines)

    emit(
        args,
        {
            "data_dir": str(result.data_dir),
            "changed": result.changed,
            "created": result.created,
            "admin_user": datadir.ADMIN_NAME if result.admin_password else None,
            "admin_password": result.admin_password,
        },
        text,
    )
    return 0
