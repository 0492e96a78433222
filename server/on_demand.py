"""On-demand roles: started by the supervisor when they have work, stopped by themselves when idle.

Owns the start condition of a role whose `RoleSpec.has_work` is set (the sync role: it has work
while an active external account exists). Postfix's master starts its daemons on demand in the
same spirit; here the reason is memory (README "Memory"): an appliance without external
accounts does not keep an idle sync process.

How the supervisor knows there is work, without holding a database connection itself (a
connection must not exist across the forks of the roles):

- a checker: a short-lived child forked from the supervisor calls `has_work(config)` and exits
  0 (work), 1 (none) or 2 (the check failed); at start, then every `CHECK_SECONDS` while the
  role is not running. A check that fails or outlasts `CHECK_TIMEOUT` starts the role (it logs
  and retries database errors itself).
- a wake-up hint (`courriel.notify`, the role's `wake_topic`): `courriel sync add` and
  `courriel sync resume` send one, so a new account starts the role within a second; a lost
  hint costs at most `CHECK_SECONDS`.

A role started on demand gets `COURRIEL_ON_DEMAND=1` in its environment: it may return 0 once it
has had nothing to do for a while, and the supervisor then waits for work again instead of
restarting it. Run alone (`courriel serve --role sync`, systemd) the variable is absent and
the role never stops by itself. With fork + exec (`COURRIEL_SERVE_EXEC=1`) the roles share no
memory and on-demand roles simply run all the time.

Security: none; the checker reads one table. Durability: none.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from courriel import notify

log = logging.getLogger("courriel.supervisor")

ON_DEMAND_ENV = "COURRIEL_ON_DEMAND"
CHECK_SECONDS = 60.0  # between two checks while an on-demand role is not running
CHECK_TIMEOUT = 30.0  # a checker still running after this is killed and the role started
EXIT_WORK, EXIT_NO_WORK = 0, 1


def load_has_work(reference: str) -> Callable[[object], bool]:
    """The function named "module:function" (`RoleSpec.has_work`)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def started_on_demand(environ=os.environ) -> bool:
    """In a role: True when the supervisor started it on demand (it may stop itself when idle)."""
    return environ.get(ON_DEMAND_ENV) == "1"


@dataclass
class _Check:
    role: str
    pid: int
    deadline: float


@dataclass
class Demand:
    """Which on-demand roles of one supervisor have work, from checker children and hints."""

    config: object
    has_work: dict[str, str]  # role name → "module:function"
    wake_topics: dict[str, str] = field(default_factory=dict)  # role name → notify topic
    clock: Callable[[], float] = time.monotonic
    wanted: set[str] = field(default_factory=set)
    next_check: dict[str, float] = field(default_factory=dict)
    checks: dict[int, _Check] = field(default_factory=dict)
    without_work: set[str] = field(default_factory=set)  # roles last checked without work
    listener: notify.Listener | None = None

    def open(self, run_dir) -> None:
        """Listen for the wake-up hints; every role is checked at once."""
        now = self.clock()
        self.next_check = dict.fromkeys(self.has_work, now)
        if self.wake_topics:
            try:
                self.listener = notify.Listener(run_dir, sorted(set(self.wake_topics.values())))
            except OSError as exc:
                log.warning("no wake-up hints for on-demand roles; checking every %.0f s", CHECK_SECONDS,
                            extra={"error": str(exc)})

    def close(self) -> None:
        """In the supervisor, at stop: no more hints, no checker left behind."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for pid in list(self.checks):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.checks.clear()

    def leave(self) -> None:
        """In a child forked from the supervisor: drop the hint socket (the file stays the supervisor's)."""
        if self.listener is not None:
            self.listener.socket.close()
            self.listener = None
        self.checks.clear()

    def fileno(self) -> int | None:
        return self.listener.fileno() if self.listener is not None else None

    def take(self, role: str) -> bool:
        """True (once) when `role` should be started now."""
        if role in self.wanted:
            self.wanted.discard(role)
            return True
        return False

    def idle(self, role: str) -> None:
        """`role` stopped by itself for lack of work: check again later."""
        self.without_work.add(role)
        self.next_check[role] = self.clock() + CHECK_SECONDS

    def poll(self, idle_roles: set[str]) -> float:
        """Read the hints, start the checks that are due for the roles in `idle_roles` (on-demand
        roles not running), kill overdue checkers. Returns the seconds until the next due check."""
        now = self.clock()
        if self.listener is not None:
            topics = {hint.topic for hint in self.listener.receive()}
            for role, topic in self.wake_topics.items():
                if topic in topics and role in idle_roles:
                    self.without_work.discard(role)
                    log.info("role has work", extra={"role": role, "reason": f"{topic} hint"})
                    self.wanted.add(role)
        checking = {check.role for check in self.checks.values()}
        for role in idle_roles - self.wanted - checking:
            if self.next_check.get(role, now) <= now:
                self._start_check(role, now)
        for check in list(self.checks.values()):
            if check.deadline <= now:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(check.pid, signal.SIGKILL)  # reaped by `reaped`, as a failed check
        due = [self.next_check[role] - now for role in idle_roles - self.wanted if role in self.next_check]
        due += [check.deadline - now for check in self.checks.values()]
        return max(0.0, min(due, default=CHECK_SECONDS))

    def reaped(self, pid: int, status: int) -> bool:
        """Record the exit of a checker; False when `pid` is not one."""
        check = self.checks.pop(pid, None)
        if check is None:
            return False
        code = os.waitstatus_to_exitcode(status)
        if code == EXIT_NO_WORK:
            if check.role not in self.without_work:  # once per idle period, not every check
                log.info("role waits for work", extra={"role": check.role})
                self.without_work.add(check.role)
            self.next_check[check.role] = self.clock() + CHECK_SECONDS
        else:
            self.without_work.discard(check.role)
            if code != EXIT_WORK:
                log.warning("on-demand check failed; starting the role", extra={"role": check.role, "status": code})
            else:
                log.info("role has work", extra={"role": check.role, "reason": "check"})
            self.wanted.add(check.role)
        return True

    def _start_check(self, role: str, now: float) -> None:
        pid = os.fork()
        if pid == 0:  # the checker: one query, then leave without running the supervisor's cleanup
            status = 2
            try:
                self.leave()
                status = EXIT_WORK if load_has_work(self.has_work[role])(self.config) else EXIT_NO_WORK
            except BaseException:
                with contextlib.suppress(BaseException):
                    log.exception("on-demand check failed", extra={"role": role})
            finally:
                os._exit(status)
        self.checks[pid] = _Check(role, pid, now + CHECK_TIMEOUT)
