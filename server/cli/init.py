"""`courriel init`: create or complete a data directory (`courriel.datadir`), then make the
first admin account through the registry service layer when none exists."""

from __future__ import annotations

from sqlalchemy import select

from courriel import config as config_mod
from courriel import datadir, passwords
from courriel.admin import services
from courriel.cli import add_data_argument, add_json_argument, emit
from courriel.db import Database
from courriel.models import Role, User

ADMIN_NAME = "admin"


def register(subparsers) -> None:
    parser = subparsers.add_parser("init", help="initialise a data directory")
    add_data_argument(parser)
    add_json_argument(parser)
    parser.add_argument("--hostname", help="public host name of this server (default: localhost)")
    parser.set_defaults(handler=run)


def ensure_admin(config: config_mod.Config) -> str | None:
    """Create the first admin account when no admin exists; return its password once."""
    db = Database(config.database_url)
    try:
        with db.read() as session:
            if session.scalar(select(User.id).where(User.role == Role.ADMIN).limit(1)) is not None:
                return None
        _account, password = services.add_user(
            db, passwords.PasswordHasher.from_config(config), passwords.PasswordPolicy.from_config(config),
            ADMIN_NAME, role=Role.ADMIN, display_name="Administrator",
        )
        return password
    finally:
        db.dispose()


def run(args) -> int:
    data_dir = args.data or config_mod.default_data_dir()
    result = datadir.initialise(data_dir, hostname=args.hostname)
    admin_password = ensure_admin(config_mod.load(result.data_dir))
    created = result.created + ([f"admin account '{ADMIN_NAME}'"] if admin_password else [])

    def text() -> str:
        if not created:
            return f"{result.data_dir} is already initialised; nothing changed."
        lines = [f"Initialised {result.data_dir}:"] + [f"  created {item}" for item in created]
        if admin_password:
            lines += [
                "",
                f"Admin account: {ADMIN_NAME}",
                f"Admin password: {admin_password}",
                "This password is shown once; store it now.",
            ]
        return "\n".join(lines)

    emit(
        args,
        {
            "data_dir": str(result.data_dir),
            "changed": bool(created),
            "created": created,
            "admin_user": ADMIN_NAME if admin_password else None,
            "admin_password": admin_password,
        },
        text,
    )
    return 0
