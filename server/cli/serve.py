"""`courriel serve`: run the supervisor (all roles), or one role alone with `--role`.

The supervisor starts each role process as `python -m courriel.cli.serve --role NAME ...`
(the same options as `courriel serve`), so this module is also that entry point.
Exit status: 0 after a clean stop, 2 for a data directory that is not initialised or a bad
configuration, 1 for other start-up failures (a port that cannot be bound).
"""

from __future__ import annotations

import sys

from courriel.cli import CommandError, add_data_argument
from courriel.roles import ROLE_NAMES


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the appliance (all roles, or one)")
    add_data_argument(parser)
    parser.add_argument("--dev", action="store_true", help="development profile: loopback, dev ports")
    parser.add_argument("--role", choices=ROLE_NAMES,
                        help="run this role alone (uses sockets passed with LISTEN_FDS, else binds its own)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from courriel import supervisor

    try:
        return supervisor.main(data_dir=args.data, dev=args.dev, role=args.role)
    except supervisor.ServeError as exc:
        raise CommandError(str(exc), exc.status) from None


if __name__ == "__main__":
    from courriel.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
