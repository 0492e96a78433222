"""Run the supervisor with the role table extended by a role whose module does not exist.

Usage: python serve_roles_table.py DATA_DIR   (the `--dev` profile; listeners from the
environment). Exits with the supervisor's status.
"""

import sys

from courriel import config as config_mod
from courriel import roles, supervisor

MISSING = roles.RoleSpec("ghost", "courriel.ghost.role", ("admin",))


def main() -> int:
    config = config_mod.load(sys.argv[1], dev=True)
    supervisor.configure_logging(config, "supervisor")
    supervisor.require_initialised(config)
    return supervisor.Supervisor(config, roles={**roles.ROLES, MISSING.name: MISSING}).run()


if __name__ == "__main__":
    sys.exit(main())
