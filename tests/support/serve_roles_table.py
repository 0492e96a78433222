"""Run the supervisor with a role table of the test's choosing (a real process, real signals).

Usage: python serve_roles_table.py DATA_DIR [STOP_TIMEOUT]   (the `--dev` profile; listeners
from the environment). The table is the shipped one plus:
- "ghost": a role whose module does not exist (it must be skipped);
- the roles named in $SERVE_TEST_ROLES (comma-separated) from `serve_test_role.py`:
  "stubborn" ignores SIGTERM, "crashing" exits with status 1 at once;
- without the shipped roles when $SERVE_TEST_SHIPPED is "0".
Exits with the supervisor's status.
"""

import os
import sys
from pathlib import Path

from courriel import config as config_mod
from courriel import roles, supervisor

GHOST = roles.RoleSpec("ghost", "courriel.ghost.role", ("admin",))
TEST_ROLE = Path(__file__).with_name("serve_test_role.py")


class TestSupervisor(supervisor.Supervisor):
    def command(self, process):
        if process.spec.module == "serve_test_role":
            return [sys.executable, str(TEST_ROLE), process.spec.name]
        return super().command(process)


class TestRoleSpec(roles.RoleSpec):
    def available(self) -> bool:
        return True


def main() -> int:
    config = config_mod.load(sys.argv[1], dev=True)
    supervisor.configure_logging(config, "supervisor")
    supervisor.require_initialised(config)
    shipped = roles.ROLES if os.environ.get("SERVE_TEST_SHIPPED", "1") != "0" else {}
    table = {**shipped, GHOST.name: GHOST}
    for name in filter(None, os.environ.get("SERVE_TEST_ROLES", "").split(",")):
        table[name] = TestRoleSpec(name, "serve_test_role")
    stop_timeout = float(sys.argv[2]) if len(sys.argv) > 2 else supervisor.STOP_TIMEOUT
    try:
        return TestSupervisor(config, roles=table, stop_timeout=stop_timeout).run()
    except supervisor.ServeError as exc:
        print(f"courriel: error: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    sys.exit(main())
