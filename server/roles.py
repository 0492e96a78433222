"""The role contract: which processes `courriel serve` runs and what each one receives.

Owns the table role name → module → listeners (ARCHITECTURE §2). The supervisor and
`courriel serve --role NAME` read it; nothing else decides what a role is.

The contract every role module implements
-----------------------------------------
A role is a module named in `ROLES` (for instance `courriel.smtp.role`) that exposes::

    def run(config: courriel.config.Config, sockets: dict[str, socket.socket]) -> int

- `config` is the resolved configuration of the data directory. The data directory is
  initialised and the database schema is at the Alembic head before `run` is called.
- `sockets` maps listener names (the keys of `config.LISTENER_PORTS`: "mx", "submission",
  "submissions", "imap", "imaps", "admin") to bound, listening TCP sockets, already in
  listening state (`listen()` has been called). The role receives only the listeners named
  in its `RoleSpec.listeners`, and only those that are enabled; a role must serve whatever
  subset it gets (an empty dict when every one of its listeners is disabled). Sockets come
  from the supervisor, from systemd socket units (LISTEN_FDS), or are bound by the runner
  itself: the role never binds its listeners. The sockets are blocking; a role that runs
  an event loop sets them non-blocking itself (asyncio's `create_server(sock=...)` does).
- `run` blocks while the role serves and returns the process exit status: 0 after a clean
  stop, 1 after an internal failure, 2 for a configuration error that a restart cannot fix.
- SIGTERM and SIGINT ask for a clean stop: stop accepting, finish or hand back in-flight
  work without losing mail (anything not yet acknowledged is simply not acknowledged),
  close the sockets and return 0 within a few seconds. The supervisor sends SIGKILL after
  its stop timeout. A role installs its own handlers for these signals; until it does, the
  runner's SIGTERM handler raises SystemExit(0) (nothing is in flight before the role serves)
  and SIGINT raises KeyboardInterrupt.
- SIGHUP asks for a reload without dropping a connection. The runner installs a handler before
  `run` (`courriel.reload.install_default`: the configuration is read again, `[log] level`
  applied, one "reloaded" line); a role that can reload more installs its own and calls
  `courriel.reload.reread` from it (the smtp and imap roles reload their TLS certificate).
- Logging goes through the standard `logging` module (logger names under "courriel.");
  the runner has configured the handler and format (text or JSON) already. Never log
  passwords, keys or message bodies.
- A role with `has_work` (the sync role) is started on demand by the supervisor
  (`courriel.on_demand`): only while `has_work(config)` is true or after a hint of its
  `wake_topic`. Started that way it has `COURRIEL_ON_DEMAND=1` in its environment and may
  return 0 after it has been idle for a while; the supervisor then waits for work again.
- A role must not assume it is the only process of its kind: the supervisor may run
  several IMAP workers on one socket, and several hosts may share one PostgreSQL database.
- Under `courriel serve` the role process is forked from the supervisor, which imported the
  role modules beforehand (`courriel.prefork.PRELOAD_MODULES`) so that the roles share their
  pages. Importing a role module must therefore have no side effect that cannot cross a
  fork: no thread, event loop, Twisted reactor (import `twisted.internet.reactor` inside
  `run` only), database connection or open file; `run` creates all of these itself. The
  same module also runs in a process of its own (`--role`, systemd, `COURRIEL_SERVE_EXEC=1`).

A role whose module cannot be found is not started (the supervisor logs that it skips it),
so a build may ship without some roles.

Security: none here; the table is static.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from courriel import notify

RoleRun = Callable[[Any, dict], int]


@dataclass(frozen=True)
class RoleSpec:
    """One role: its name, the module exposing `run(config, sockets)`, its listener names."""

    name: str
    module: str
    listeners: tuple[str, ...] = ()
    # On-demand roles (`courriel.on_demand`): "module:function" answering has_work(config) -> bool,
    # and the `courriel.notify` topic that says there may be work now.
    has_work: str | None = None
    wake_topic: str | None = None

    def available(self) -> bool:
        """True when the role's module exists in this installation."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:  # the parent package itself is missing
            return False

    def load(self) -> RoleRun:
        """Import the role module and return its `run` callable."""
        module = importlib.import_module(self.module)
        run = getattr(module, "run", None)
        if not callable(run):
            raise TypeError(f"{self.module} does not define run(config, sockets)")
        return run


ROLES: dict[str, RoleSpec] = {
    spec.name: spec
    for spec in (
        RoleSpec("smtp", "courriel.smtp.role", ("mx", "submission", "submissions")),
        RoleSpec("imap", "courriel.imap.role", ("imap", "imaps")),
        RoleSpec("queue", "courriel.queue.role"),
        RoleSpec("admin", "courriel.admin.role", ("admin",)),
        RoleSpec("sync", "courriel.imapsync.role", has_work="courriel.imapsync.accounts:has_work",
                 wake_topic=notify.ACCOUNTS),
    )
}

ROLE_NAMES: tuple[str, ...] = tuple(ROLES)


def instances(spec: RoleSpec, config) -> int:
    """How many processes of a role the supervisor runs (IMAP workers share the socket)."""
    if spec.name == "imap":
        return max(1, int(config.get("imap", "workers")))
    return 1
