"""`courriel serve`: run the supervisor (or one role) for a data directory."""

from __future__ import annotations

from courriel.cli import add_data_argument

ROLES = ("smtp", "imap", "queue", "admin", "sync")


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the appliance (all roles, or one)")
    add_data_argument(parser)
    parser.add_argument("--dev", action="store_true", help="development profile: loopback, dev ports")
    parser.add_argument("--role", choices=ROLES, help="run this role alone")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from courriel import supervisor

    return supervisor.main(data_dir=args.data, dev=args.dev, role=args.role)
