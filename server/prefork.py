"""Pre-forked role processes: import the roles' modules once in the supervisor, fork each role.

Owns the memory side of `courriel serve` (README "Memory"): the list of modules the supervisor
imports before it starts the roles (`PRELOAD_MODULES`), the `gc.freeze()` that keeps those
objects out of the collector's reach, the check that forking is still safe, the process
title of a forked role, and the bound on glibc's malloc arenas in every role
(`limit_malloc_arenas`).

Why: a role started with fork + exec imports SQLAlchemy, the models, the store, asyncio, ssl,
the email package, cryptography... again, ~60 MiB of private pages per process. Forked from a
supervisor that imported them once, a role shares those pages copy-on-write with the
supervisor and with every other role: their proportional set size (PSS) is divided among the
processes, so the appliance costs the machine far less (the resident set size, RSS, of each
process still counts every shared page it maps).

What must not exist in the supervisor before a fork (the child inherits it half-made): a
thread (an import that starts one makes `fork_hazard` refuse, and the supervisor falls back
to fork + exec), an event loop, a Twisted reactor (`twisted.internet.reactor` is never
preloaded: the IMAP role installs the asyncio reactor first), an open database connection
(the schema upgrade runs in a short-lived child of its own), prometheus-client imported
before `PROMETHEUS_MULTIPROC_DIR` is set (its value class is chosen at import).

`gc.freeze()` (Python ≥ 3.7) moves every object alive after the preload to the permanent
generation: a collection in a role never writes their GC headers, so their pages stay shared.
Reference counting still writes to the objects a role touches; those pages become private.

Arenas: glibc gives each thread that allocates its own arena (up to 8 per core) and keeps the
freed memory of each for reuse. A role's threads (the store calls run in a thread pool) only
allocate in turn, under the GIL, so more arenas buy nothing but retained memory: measured on
the IMAP role after 16 clients fetched 500 messages at once, 51 MiB private with the default,
43 with 2 arenas, 40 with 1. `MALLOC_ARENA_MAX` set by the operator wins.

Standards: none (Linux: prctl(2) PR_SET_NAME, proc(5) /proc/PID/stat arg_start/arg_end;
glibc mallopt(3) M_ARENA_MAX).
Security: none; the module list is static.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import logging
import os
import sys
import threading
from pathlib import Path

log = logging.getLogger("courriel.supervisor")

PR_SET_NAME = 15  # <linux/prctl.h>
M_ARENA_MAX = -8  # <malloc.h>
MALLOC_ARENAS = 2  # per role process (module docstring)
TASK_COMM_LEN = 16  # prctl(2): the name is at most 16 bytes, the final NUL included
STAT_ARG_START = 48  # proc(5): fields 48 and 49 of /proc/PID/stat, since Linux 3.5
STAT_ARG_END = 49

# The modules two or more roles import at start (measured with `python -X importtime` on each
# role module), then each role's own heavy stack: importing a role's stack here costs nothing
# more once two processes share it. Never `twisted.internet.reactor` (see the docstring), never
# the role modules' `run` side effects (importing a role module has none).
PRELOAD_MODULES: tuple[str, ...] = (
    # shared core (ring 1) and the libraries under it
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    "sqlite3",
    "courriel.db",
    "courriel.models",
    "courriel.store",
    "courriel.blobs",
    "courriel.registry",
    "courriel.passwords",
    "courriel.logins",
    "courriel.notify",
    "courriel.mime",
    "courriel.queue.spool",
    "prometheus_client",
    "courriel.metrics",
    "asyncio",
    "ssl",
    "email.parser",
    "email.policy",
    "cryptography.hazmat.primitives.asymmetric.rsa",
    # the roles' own stacks
    "courriel.smtp.role",
    "courriel.queue.role",
    "courriel.imap.role",
    "courriel.imapsync.accounts",  # the on-demand check; the sync role itself starts only with work
    "courriel.admin.role",
    "courriel.imap.session",  # courriel.imap.transport imports the reactor: not preloaded
    "courriel.imap.fetch",
    "courriel.imap.search",
    "courriel.imap.selected",
    "twisted.internet.asyncioreactor",
    "twisted.internet.protocol",
    "twisted.internet.ssl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.lifespan.on",
    "anyio._backends._asyncio",
)
FORBIDDEN_BEFORE_FORK = ("twisted.internet.reactor",)


def preload(modules: tuple[str, ...] = PRELOAD_MODULES) -> list[str]:
    """Import `modules` (those that are not installed are skipped), then freeze the heap.

    Returns the names imported. Call it once, in the supervisor, after the environment of the
    roles is set (PROMETHEUS_MULTIPROC_DIR) and before the first fork."""
    loaded = []
    gc.disable()  # no collection while importing: freed holes in pages would be filled (and copied) by the roles
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a build without this role or library: the role imports it itself
            log.debug("preload skipped", extra={"preload_module": name, "error": str(exc)})
            continue
        except Exception as exc:  # a broken module breaks its role (restarted with backoff), not the supervisor
            log.warning("preload failed", extra={"preload_module": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        loaded.append(name)
    if "sqlalchemy.orm" in sys.modules:  # build every mapper's structures here, once, not per role
        sys.modules["sqlalchemy.orm"].configure_mappers()
    gc.freeze()  # every object alive now: never scanned (nor written) by a role's collector
    gc.enable()
    return loaded


def fork_hazard() -> str | None:
    """Why forking a role from this process would be unsafe now, or None when it is safe."""
    if threading.active_count() > 1:
        names = ",".join(t.name for t in threading.enumerate() if t is not threading.current_thread())
        return f"threads running in the supervisor ({names})"
    for name in FORBIDDEN_BEFORE_FORK:
        if name in sys.modules:
            return f"{name} was imported in the supervisor"
    return None


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Bound glibc's malloc arenas of this process to `count` (threads started afterwards share
    them), unless MALLOC_ARENA_MAX is set; False when not applied (another libc, or the variable)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    with contextlib.suppress(OSError, AttributeError):
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, count))
    return False


def set_process_title(words: list[str]) -> None:
    """Show `words` as this process's command line (ps, /proc/PID/cmdline) and its first
    word as its name (top, /proc/PID/comm), as far as the original command line's space allows.

    A forked role keeps the supervisor's argv; overwriting the argv area (as setproctitle(3)
    does) makes it read `courriel serve --role NAME ...`, which operators and tools grep for.
    Words that do not fit are left out; nothing is changed when even the first two do not."""
    name = words[0].encode()[:TASK_COMM_LEN - 1]
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
    try:
        stat = Path("/proc/self/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (the state)
        start, end = int(fields[STAT_ARG_START - 3]), int(fields[STAT_ARG_END - 3])
    except (OSError, ValueError, IndexError):
        return
    size = end - start
    title = b""
    for word in words:
        candidate = title + word.encode() + b"\0"
        if len(candidate) > size:
            break
        title = candidate
    if title.count(b"\0") < min(2, len(words)) or start <= 0:
        return
    ctypes.memmove(start, title.ljust(size, b"\0"), size)
