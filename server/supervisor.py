"""Supervisor: binds the listening sockets, runs one process per role, restarts them.

Owns `courriel serve` (ARCHITECTURE §2): the start-up checks (initialised data directory,
schema at head), the pid file, listener binding, the socket handoff to role processes,
the restart policy and the stop sequence (the log line format is `courriel.logs`).

Standards: the socket handoff follows systemd's sd_listen_fds(3) convention: sockets are
file descriptors 3, 4, ... (SD_LISTEN_FDS_START), `LISTEN_FDS` is their count,
`LISTEN_PID` the pid of the process they are meant for, `LISTEN_FDNAMES` their
colon-separated names (here the listener names: mx, submission, submissions, imap, imaps,
admin). The same code therefore accepts sockets from this supervisor and from systemd
socket units with `FileDescriptorName=`.

Processes: the supervisor upgrades the schema in a short-lived child (Alembic never stays
resident), imports the roles' modules once (`courriel.prefork`), then forks each available role
(see `courriel.roles`) without exec: the role shares those modules' pages copy-on-write and runs
the same code path as `courriel serve --role NAME` (sockets under LISTEN_FDS, its command line
rewritten to read `courriel serve --role NAME ...`). With `COURRIEL_SERVE_EXEC=1`, or when
forking is unsafe (a thread in the supervisor), it forks and execs `python -m
courriel.cli.serve --role NAME` instead. Either way each role runs in its own process group (a
terminal's Ctrl-C reaches the supervisor only, which forwards SIGTERM), with default signal
dispositions, and with a parent-death signal (a supervisor killed with SIGKILL does not leave
roles behind). A role that exits while the supervisor is not stopping is started again (forked
afresh from the supervisor) after an exponential backoff. A role that has work only sometimes
(the sync role) is forked on demand and may stop itself when idle (`courriel.on_demand`).
SIGTERM or SIGINT (any number of times: handling is idempotent) stop every role with SIGTERM,
wait `stop_timeout` seconds, then SIGKILL what is left; each role stops gracefully within that
time (stops accepting, finishes the SMTP transactions and IMAP commands in flight, then says 421
or BYE).

Reload: SIGHUP reloads without dropping a connection. The supervisor reads its configuration
again (a file that no longer parses is logged and the running settings stay; `[log] level`
applies at once; a changed listener address or IMAP worker count is logged as needing a restart,
since the sockets stay bound) and forwards SIGHUP to every running role. Each role handles it in
its own process (`courriel.reload`): every role re-reads the configuration and applies
`[log] level`; the smtp, imap, queue and admin roles apply the other settings to the sessions, delivery
attempts and requests that follow; the smtp and imap roles also load the certificate and key
again for the TLS handshakes that follow (465/993, and STARTTLS on 25/587/143), while
connections already in TLS keep theirs; a bad new pair (unreadable, a key that is not the
certificate's, expired) is refused with one error line and the old certificate keeps serving. A
forked role ignores SIGHUP until its handler is installed (it reads the fresh files as it starts
anyway).

Security: reads the operator's configuration and environment only; never logs the
environment or the database URL (it may hold a password).
Metrics: the roles run with `PROMETHEUS_MULTIPROC_DIR=DATA/run/metrics`, emptied at start; an
exited role's live gauges are dropped (`courriel.metrics`), so the admin role's `/metrics`
aggregates every role.

Durability: writes `DATA/run/courriel.pid` (advisory, no fsync needed) and
`DATA/run/schema.lock`; the schema upgrade itself is transactional (`courriel.schema`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

# Light imports only: SQLAlchemy, Alembic and prometheus-client are imported where they are
# used (the schema child, the preload after PROMETHEUS_MULTIPROC_DIR is set).
from courriel import config as config_mod
from courriel import datadir, on_demand, prefork, reload
from courriel.logs import configure_logging
from courriel.roles import ROLES, RoleSpec, instances

log = logging.getLogger("courriel.supervisor")

SD_LISTEN_FDS_START = 3  # sd_listen_fds(3)
PID_FILE = "courriel.pid"
SCHEMA_LOCK = "schema.lock"
STOP_TIMEOUT = 10.0  # seconds between the forwarded SIGTERM and SIGKILL
BACKOFF_INITIAL = 0.5  # seconds before the first restart of a crashed role
BACKOFF_MAX = 60.0
STABLE_AFTER = 30.0  # a role that ran this long has its backoff reset
LISTEN_BACKLOG = socket.SOMAXCONN
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXEC_ENV = "COURRIEL_SERVE_EXEC"  # "1": start roles with fork + exec instead of a plain fork
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # = courriel.metrics.MULTIPROC_ENV
METRICS_SUBDIR = "metrics"  # = courriel.metrics.METRICS_SUBDIR
ROLE_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)  # the supervisor's handlers

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class ServeError(Exception):
    """A start-up failure to report as one clear line, with the process exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILURE):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- start-up checks


def require_initialised(config: config_mod.Config) -> None:
    """Refuse a data directory that `courriel init` has not prepared (exit status 2)."""
    data_dir = config.data_dir
    missing = []
    if not (data_dir / config_mod.CONFIG_FILE).is_file():
        missing.append(config_mod.CONFIG_FILE)
    missing += [name + "/" for name in datadir.SUBDIRS if not (data_dir / name).is_dir()]
    if not config.get("database", "url") and not (data_dir / "courriel.db").is_file():
        missing.append("courriel.db")
    if missing:
        raise ServeError(
            f"{data_dir} is not an initialised data directory (missing {', '.join(missing)}); "
            f"run `courriel init --data {data_dir}` first",
            EXIT_BAD_INPUT,
        )


def ensure_schema(config: config_mod.Config) -> str | None:
    """Bring the database schema to the head; returns the revision when it applied one.

    Serialised between processes of this host by a lock file, so roles started together
    by systemd do not migrate twice."""
    from courriel import schema
    from courriel.db import Database

    with open(config.run_dir / SCHEMA_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db = Database(config.database_url)
        try:
            return schema.head_revision() if schema.upgrade(db) else None
        finally:
            db.dispose()


def ensure_schema_in_child(config: config_mod.Config) -> str | None:
    """`ensure_schema` in a short-lived forked child, so that Alembic, its templates and the
    migration's connection never stay in the memory of a long-running process (and no
    database connection exists before the roles are forked). Same result; a failure is
    logged by the child and raised here as a ServeError."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: upgrade, report the revision on the pipe, leave without cleanup
        status = EXIT_FAILURE
        try:
            os.close(read_end)
            revision = ensure_schema(config)
            os.write(write_end, (revision or "").encode())
            status = EXIT_OK
        except BaseException:
            with contextlib.suppress(BaseException):
                log.exception("cannot bring the database schema to the current revision")
        finally:
            with contextlib.suppress(BaseException):
                logging.shutdown()
            os._exit(status)
    os.close(write_end)
    try:
        chunks = []
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != EXIT_OK:
        raise ServeError(f"database schema upgrade failed ({describe_status(status)})")
    return b"".join(chunks).decode() or None


class PidFile:
    """`DATA/run/courriel.pid`, locked while the supervisor runs: a second supervisor on
    the same data directory is refused instead of fighting over the ports."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise ServeError(f"a supervisor is already running for {self.path.parent.parent} (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


# --------------------------------------------------------------------------- sockets


def bind_listener(name: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket for one listener: SO_REUSEADDR, IPv6 for an IPv6 literal
    (dual-stack when the address is `::`)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        address: tuple = (host, port)
    except ValueError:  # a host name: bind its first address
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        except OSError as exc:
            raise ServeError(f"cannot resolve the {name} listener address {host!r}: {exc}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen for {name} on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def inherited_sockets(environ: MutableMapping[str, str] | None = None) -> dict[str, socket.socket]:
    """The sockets passed to this process under the sd_listen_fds(3) convention, by name.

    Ignored unless LISTEN_PID is this process (the variables may have leaked from a
    parent). The variables are removed afterwards, as `sd_listen_fds(1)` does, and the
    descriptors made close-on-exec so they do not leak into our own children."""
    environ = os.environ if environ is None else environ
    pid, count = environ.get("LISTEN_PID", ""), environ.get("LISTEN_FDS", "")
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    for variable in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(variable, None)
    try:
        if int(pid) != os.getpid():
            return {}
        total = int(count)
    except ValueError:
        return {}
    found: dict[str, socket.socket] = {}
    for index in range(total):
        fd = SD_LISTEN_FDS_START + index
        name = names[index] if index < len(names) and names[index] else "unknown"
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            log.warning("ignoring inherited descriptor", extra={"fd": fd, "fd_name": name, "error": str(exc)})
            continue
        if name in found:
            log.warning("ignoring a second inherited socket with the same name", extra={"fd": fd, "fd_name": name})
            sock.close()
            continue
        found[name] = sock
    return found


def role_sockets(config: config_mod.Config, spec: RoleSpec,
                 inherited: dict[str, socket.socket]) -> dict[str, socket.socket]:
    """The role's listeners: inherited ones by name, the others bound here when enabled."""
    sockets: dict[str, socket.socket] = {}
    try:
        for name in spec.listeners:
            if name in inherited:
                sockets[name] = inherited.pop(name)
            elif (address := config.listener(name)) is not None:
                sockets[name] = bind_listener(name, *address)
    except ServeError:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


# --------------------------------------------------------------------------- role processes


def role_command(config: config_mod.Config, spec: RoleSpec) -> list[str]:
    """The command line of one role process."""
    argv = [sys.executable, "-m", "courriel.cli.serve", "--role", spec.name, "--data", str(config.data_dir)]
    return [*argv, "--dev"] if config.dev else argv


def _parent_death_signal():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _parent_death_signal()


def spawn(argv: list[str], environ: Mapping[str, str], sockets: list[tuple[str, socket.socket]]) -> int:
    """Fork and exec `argv` with `sockets` as descriptors 3, 4, ... (sd_listen_fds(3)).

    The child gets its own process group, stdin from /dev/null, and SIGTERM when the
    supervisor dies. Returns the child's pid."""
    env = {k: v for k, v in environ.items() if k not in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")}
    if sockets:
        env["LISTEN_FDS"] = str(len(sockets))
        env["LISTEN_FDNAMES"] = ":".join(name for name, _ in sockets)
    fds = [sock.fileno() for _, sock in sockets]
    parent = os.getpid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    pid = os.fork()
    if pid:
        os.close(devnull)
        return pid
    # Child: only descriptor moves and exec from here; any failure ends in _exit(127).
    try:
        _enter_role_process_group(parent)
        _hand_over_sockets(devnull, fds)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # kept across exec: a reload until run_role's handler
        if sockets:
            env["LISTEN_PID"] = str(os.getpid())
        os.execve(argv[0], argv, env)  # noqa: S606 - a fixed argv, no shell
    except BaseException as exc:  # report, then leave the forked copy at once
        with contextlib.suppress(OSError):
            os.write(2, f"courriel: cannot start {argv}: {exc}\n".encode())
    finally:
        os._exit(127)


def _enter_role_process_group(parent: int) -> None:
    """In a new child: its own process group, SIGTERM when the supervisor dies."""
    os.setpgid(0, 0)
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the supervisor died before the prctl
        os._exit(EXIT_FAILURE)


def _hand_over_sockets(devnull: int, fds: list[int]) -> None:
    """stdin from /dev/null, `fds` as descriptors 3, 4, ... (sd_listen_fds(3))."""
    os.dup2(devnull, 0)
    os.close(devnull)
    # Move the sockets above the target range first so no dup2 overwrites a source.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, SD_LISTEN_FDS_START + len(fds)) for fd in fds]
    for index, fd in enumerate(high):
        os.dup2(fd, SD_LISTEN_FDS_START + index)  # inheritable: survives exec
        os.close(fd)


@dataclass
class RoleProcess:
    """One supervised process (a role, or one worker of a role)."""

    spec: RoleSpec
    worker: int = 0
    pid: int | None = None
    started_at: float = 0.0
    failures: int = 0
    start_due: float = 0.0  # monotonic time of the next (re)start
    waiting: bool = False  # an on-demand role without work (`courriel.on_demand`): not started

    @property
    def label(self) -> str:
        return self.spec.name if self.worker == 0 else f"{self.spec.name}.{self.worker}"


def describe_status(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def backoff(failures: int) -> float:
    """Seconds before restarting a role that has failed `failures` times in a row."""
    return min(BACKOFF_INITIAL * 2 ** max(0, failures - 1), BACKOFF_MAX)


class Supervisor:
    """Runs the roles of one data directory until SIGTERM or SIGINT; SIGHUP reloads."""

    def __init__(self, config: config_mod.Config, roles: Mapping[str, RoleSpec] = ROLES,
                 stop_timeout: float = STOP_TIMEOUT):
        self.config = config
        self.roles = roles
        self.stop_timeout = stop_timeout
        self.processes: list[RoleProcess] = []
        self.sockets: dict[str, socket.socket] = {}
        self.stop_signal: int | None = None
        self.reload_requested = False
        self.killed = False
        self._wake_read: socket.socket | None = None
        self._wake_write: socket.socket | None = None
        self._previous_handlers: dict[int, object] = {}
        self.metrics_dir: Path | None = None  # PROMETHEUS_MULTIPROC_DIR of the roles (courriel.metrics)
        self.pid_file: PidFile | None = None
        self.fork_roles = os.environ.get(EXEC_ENV, "") not in ("1", "true", "yes")
        self.demand: on_demand.Demand | None = None  # forked roles only: with exec, they always run

    # ---- planning
    def plan(self) -> list[RoleProcess]:
        """The processes to run: roles whose module exists and that have work to do."""
        processes = []
        for spec in self.roles.values():
            if not spec.available():
                log.info("role skipped: module not installed", extra={"role": spec.name, "role_module": spec.module})
                continue
            enabled = [name for name in spec.listeners if self.config.listener(name) is not None]
            if spec.listeners and not enabled:
                log.info("role skipped: every listener is disabled", extra={"role": spec.name})
                continue
            processes += [RoleProcess(spec, worker) for worker in range(instances(spec, self.config))]
        return processes

    def bind(self) -> None:
        for process in self.processes:
            for name in process.spec.listeners:
                address = self.config.listener(name)
                if address is None or name in self.sockets:
                    continue
                self.sockets[name] = bind_listener(name, *address)
                host, port = self.sockets[name].getsockname()[:2]
                log.info("listening", extra={"listener": name, "address": f"{host}:{port}"})

    # ---- signals
    def _on_stop_signal(self, signum, _frame) -> None:
        if self.stop_signal is None:  # idempotent: the first signal decides, repeats are no-ops
            self.stop_signal = signum

    def _on_reload_signal(self, _signum, _frame) -> None:
        self.reload_requested = True  # handled by the loop; several SIGHUPs before it runs make one reload

    def _reload(self) -> None:
        """SIGHUP: read the configuration again, then forward SIGHUP to every running role."""
        self.reload_requested = False
        fresh = reload.reread(self.config, "supervisor")
        if fresh is not None:
            needs_restart = [f"listeners.{name}" for name in config_mod.LISTENER_PORTS
                             if fresh.listener(name) != self.config.listener(name)]
            if fresh.get("imap", "workers") != self.config.get("imap", "workers"):
                needs_restart.append("imap.workers")
            if needs_restart:
                log.warning("changed settings apply at the next restart", extra={"settings": ",".join(needs_restart)})
            self.config = fresh
        roles = [p.label for p in self.processes if p.pid is not None]
        self._signal_all(signal.SIGHUP)
        log.info("reload forwarded", extra={"roles": ",".join(roles) or "-", "configuration": (
            "reloaded" if fresh is not None else "unchanged")})

    def _install_signals(self) -> None:
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        signal.set_wakeup_fd(self._wake_write.fileno(), warn_on_full_buffer=False)
        for signum, handler in ((signal.SIGTERM, self._on_stop_signal), (signal.SIGINT, self._on_stop_signal),
                                (signal.SIGHUP, self._on_reload_signal), (signal.SIGCHLD, lambda *_: None)):
            self._previous_handlers[signum] = signal.signal(signum, handler)

    def _restore_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(-1)
        for sock in (self._wake_read, self._wake_write):
            if sock is not None:
                sock.close()

    def _wait(self, timeout: float) -> None:
        assert self._wake_read is not None
        hints = self.demand.fileno() if self.demand is not None else None
        select.select([self._wake_read] if hints is None else [self._wake_read, hints], [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError):
            while self._wake_read.recv(512):
                pass

    # ---- processes
    def command(self, process: RoleProcess) -> list[str] | None:
        """The command line that runs `process` (a role process reads its sockets from
        LISTEN_FDS), or None to fork it from this process without exec (`courriel.prefork`)."""
        if self.fork_roles:
            return None
        return role_command(self.config, process.spec)

    def _start(self, process: RoleProcess) -> None:
        handed = [(name, self.sockets[name]) for name in process.spec.listeners if name in self.sockets]
        argv = self.command(process)
        if argv is not None:
            process.pid = spawn(argv, dict(os.environ, PYTHONSAFEPATH="1"), handed)
        else:
            process.pid = self._fork_role(process, handed)
        process.started_at = time.monotonic()
        log.info("role started", extra={"role": process.label, "child_pid": process.pid,
                                        "listeners": ",".join(name for name, _ in handed) or "-",
                                        "start": "exec" if argv is not None else "fork"})

    def _fork_role(self, process: RoleProcess, handed: list[tuple[str, socket.socket]]) -> int:
        """Fork `process` from this (pre-imported) supervisor; returns the child's pid.

        The child drops everything of the supervisor (signal handlers and wake-up descriptor,
        pid file, other listeners), takes its sockets as descriptors 3, 4, ... with LISTEN_FDS
        set, and runs the role exactly as `courriel serve --role NAME` does after its start-up
        checks. Stop signals stay blocked across the fork, so one sent to the new child before
        it has reset the supervisor's handlers is delivered to the role's defaults."""
        parent = os.getpid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, ROLE_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            os.close(devnull)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
            raise
        if pid:
            os.close(devnull)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
            return pid
        status = 127
        try:
            _enter_role_process_group(parent)
            # Copies above the target range, kept while the supervisor's own objects are closed.
            floor = SD_LISTEN_FDS_START + len(handed)
            fds = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, floor) for _, sock in handed]
            self._leave_supervisor()
            _hand_over_sockets(devnull, fds)
            for fd in fds:
                os.close(fd)
            for variable in (EXEC_ENV, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", on_demand.ON_DEMAND_ENV):
                os.environ.pop(variable, None)
            if process.spec.has_work and self.demand is not None:
                os.environ[on_demand.ON_DEMAND_ENV] = "1"
            if handed:
                os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(handed)),
                                  LISTEN_FDNAMES=":".join(name for name, _ in handed))
            words = ["courriel", "serve", "--role", process.spec.name, "--data", str(self.config.data_dir)]
            prefork.set_process_title([*words, "--dev"] if self.config.dev else words)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
            status = run_forked_role(self.config, process.spec)
        except SystemExit as exc:
            status = EXIT_OK if exc.code is None else exc.code if isinstance(exc.code, int) else EXIT_FAILURE
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
            status = EXIT_FAILURE
        finally:
            with contextlib.suppress(BaseException):
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)  # never back into the supervisor's frames

    def _leave_supervisor(self) -> None:
        """In a forked role: default signal handling, and none of the supervisor's descriptors."""
        signal.set_wakeup_fd(-1)
        for signum in ROLE_SIGNALS:  # the role contract: Python's defaults
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload, never a kill: until run_role's handler
        signal.signal(signal.SIGTERM, _stop_before_serving)
        self._previous_handlers.clear()
        for sock in (self._wake_read, self._wake_write, *self.sockets.values()):
            if sock is not None:
                sock.close()
        self.sockets.clear()
        if self.demand is not None:
            self.demand.leave()
        if self.pid_file is not None and self.pid_file.fd is not None:
            os.close(self.pid_file.fd)  # the supervisor's lock stays the supervisor's
            self.pid_file.fd = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.demand is not None and self.demand.reaped(pid, status):
                continue
            process = next((p for p in self.processes if p.pid == pid), None)
            if process is None:
                continue
            process.pid = None
            if self.metrics_dir is not None:
                from courriel import metrics  # imported already, after PROMETHEUS_MULTIPROC_DIR was set

                metrics.forget_process(self.metrics_dir, pid)
            now = time.monotonic()
            if self.stop_signal is not None:
                log.info("role stopped", extra={"role": process.label, "child_pid": pid,
                                                "status": describe_status(status)})
                continue
            if self.demand is not None and process.spec.has_work and os.waitstatus_to_exitcode(status) == EXIT_OK:
                process.waiting = True  # it stopped for lack of work: started again when it has some
                self.demand.idle(process.spec.name)
                log.info("role idle; started again when it has work", extra={"role": process.label, "child_pid": pid})
                continue
            process.failures = 1 if now - process.started_at >= STABLE_AFTER else process.failures + 1
            delay = backoff(process.failures)
            process.start_due = now + delay
            log.warning("role exited; restarting", extra={
                "role": process.label, "child_pid": pid, "status": describe_status(status),
                "failures": process.failures, "restart_in": f"{delay:g}s"})

    def _signal_all(self, signum: int) -> None:
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def run(self) -> int:
        pid_file = self.pid_file = PidFile(self.config.run_dir / PID_FILE)
        pid_file.acquire()
        # In the environment before prometheus-client is imported (it picks its value class
        # then): the roles forked from here and the exec'd ones alike record into it.
        # The reset also drops the empty files that importing courriel.metrics made here.
        metrics_dir = self.config.run_dir / METRICS_SUBDIR
        metrics_dir.mkdir(mode=0o750, exist_ok=True)
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
        from courriel import metrics

        self.metrics_dir = metrics.reset_multiprocess_dir(self.config)
        self._install_signals()
        try:
            self.processes = self.plan()
            if not self.processes:
                raise ServeError("no role to run: every role is missing or has all its listeners disabled")
            self.bind()
            self._prepare_fork()
            self._prepare_on_demand()
            log.info("supervisor started", extra={
                "roles": ",".join(p.label for p in self.processes) or "-", "dev": self.config.dev})
            return self._loop()
        finally:
            if self.demand is not None:
                self.demand.close()
            self._signal_all(signal.SIGKILL)  # only reached with children alive on an internal error
            for sock in self.sockets.values():
                sock.close()
            self._restore_signals()
            pid_file.release()

    def _prepare_fork(self) -> None:
        """Preload the roles' modules and decide between fork and fork + exec."""
        if not self.fork_roles:
            return
        started = time.monotonic()
        loaded = prefork.preload()
        hazard = prefork.fork_hazard()
        if hazard is not None:
            log.warning("roles start with exec: forking is unsafe", extra={"reason": hazard})
            self.fork_roles = False
            return
        log.info("role modules preloaded", extra={"modules": len(loaded),
                                                  "seconds": f"{time.monotonic() - started:.2f}"})

    def _poll_demand(self, now: float) -> float:
        """Mark the on-demand roles that have work as due now; seconds until the next check."""
        if self.demand is None:
            return on_demand.CHECK_SECONDS
        next_check = self.demand.poll({p.spec.name for p in self.processes if p.waiting})
        for process in self.processes:
            if process.waiting and self.demand.take(process.spec.name):
                process.waiting = False
                process.start_due = now
        return next_check

    def _prepare_on_demand(self) -> None:
        """Forked roles with `has_work` wait for work (`courriel.on_demand`); with exec they run."""
        waiting = [p for p in self.processes if p.spec.has_work]
        if not self.fork_roles or not waiting:
            return
        self.demand = on_demand.Demand(
            self.config, {p.spec.name: p.spec.has_work for p in waiting},
            {p.spec.name: p.spec.wake_topic for p in waiting if p.spec.wake_topic})
        self.demand.open(self.config.run_dir)
        for process in waiting:
            process.waiting = True

    def _loop(self) -> int:
        kill_deadline: float | None = None
        while True:
            self._reap()
            now = time.monotonic()
            if self.reload_requested and self.stop_signal is None:
                self._reload()
            if self.stop_signal is not None:
                if kill_deadline is None:
                    log.info("stopping", extra={"signal": signal.Signals(self.stop_signal).name})
                    self._signal_all(signal.SIGTERM)
                    kill_deadline = now + self.stop_timeout
                alive = [p for p in self.processes if p.pid is not None]
                if not alive:
                    log.info("supervisor stopped")
                    return EXIT_FAILURE if self.killed else EXIT_OK
                if now >= kill_deadline and not self.killed:
                    log.error("roles did not stop in time; killing them",
                              extra={"roles": ",".join(p.label for p in alive), "timeout": self.stop_timeout})
                    self._signal_all(signal.SIGKILL)
                    self.killed = True
                timeout = max(0.05, kill_deadline - now) if not self.killed else 0.5
            else:
                next_check = self._poll_demand(now)
                for process in self.processes:
                    if process.pid is None and not process.waiting and process.start_due <= now:
                        self._start(process)
                pending = [p.start_due - now for p in self.processes if p.pid is None and not p.waiting]
                timeout = min([5.0, *pending, next_check])
            self._wait(timeout)


# --------------------------------------------------------------------------- entry points


def _stop_before_serving(signum, frame) -> None:
    """SIGTERM before the role has installed its own handler: nothing is in flight yet, so the
    stop is clean (exit 0), not a kill the supervisor would count as a crash."""
    raise SystemExit(EXIT_OK)


def run_role(config: config_mod.Config, spec: RoleSpec) -> int:
    """Run one role in this process: inherited sockets (LISTEN_FDS) or its own."""
    signal.signal(signal.SIGTERM, _stop_before_serving)  # until the role installs its own
    prefork.limit_malloc_arenas()  # before the role starts its threads
    if not spec.available():
        raise ServeError(f"role {spec.name} is not available in this installation (module {spec.module} not found)",
                         EXIT_BAD_INPUT)
    inherited = inherited_sockets()
    sockets = role_sockets(config, spec, inherited)
    for name, sock in inherited.items():
        log.warning("ignoring an inherited socket this role does not serve", extra={"fd_name": name})
        sock.close()
    try:
        run = spec.load()
        reload.install_default(config, spec.name)  # SIGHUP: re-read the settings; the role may install its own
        log.info("role running", extra={"role": spec.name, "listeners": ",".join(
            f"{name}={_address(sock)}" for name, sock in sockets.items()) or "-"})
        status = run(config, sockets)
    except Exception:
        log.exception("role failed", extra={"role": spec.name})
        return EXIT_FAILURE
    finally:
        for sock in sockets.values():
            sock.close()
    status = EXIT_OK if status is None else int(status)
    log.info("role finished", extra={"role": spec.name, "status": status})
    return status


def _address(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_forked_role(config: config_mod.Config, spec: RoleSpec) -> int:
    """The body of a role forked by the supervisor: `main(role=...)` without the start-up
    checks the supervisor made (the configuration is read again, as an exec'd role does)."""
    config = config_mod.load(config.data_dir, dev=config.dev)
    configure_logging(config, spec.name)
    return run_role(config, spec)


def main(data_dir: Path | str | None = None, dev: bool = False, role: str | None = None) -> int:
    """`courriel serve [--role NAME]`: the supervisor, or one role alone."""
    data_dir = Path(data_dir or config_mod.default_data_dir()).absolute()
    config = config_mod.load(data_dir, dev=dev)
    configure_logging(config, role or "supervisor")
    require_initialised(config)
    revision = ensure_schema_in_child(config)
    if revision:
        log.info("database schema upgraded", extra={"revision": revision})
    if role is not None:
        return run_role(config, ROLES[role])
    return Supervisor(config).run()
