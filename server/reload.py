"""SIGHUP in a role process: read the configuration again and apply what can change while serving.

Owns the role side of `courriel serve`'s reload (the supervisor forwards its SIGHUP to every
role, `courriel.supervisor`): `reread` loads the data directory's configuration again and
applies the settings every role shares (`[log] level`); `install_default` gives a role that
has nothing more to reload a SIGHUP handler that does just that, so the signal never kills it
(SIGHUP's default action ends a process). The runner (`courriel.supervisor.run_role`) installs
it before the role runs; a role that reloads more (the smtp, imap, queue and admin roles apply
the settings to what follows, the TLS roles reload their certificate, `courriel.tls.reload_context`)
installs its own handler on its event loop and calls `reread` from it.

What a reload does not change: listener addresses and the number of IMAP workers (the
sockets are bound once, by the supervisor), the database URL, the data directory; those need
a restart. A configuration file that no longer parses is refused with one error line and the
running settings stay.

Standards: none (SIGHUP as "reload", the convention of daemons and of systemd's ExecReload).
Security: reads the operator's configuration file; never logs values (only which failed).
"""

from __future__ import annotations

import logging
import signal

from courriel import config as config_mod

log = logging.getLogger("courriel.reload")

SHARED_SETTINGS = ("log.level",)  # what `reread` applies in every role


def reread(config: config_mod.Config, role: str) -> config_mod.Config | None:
    """The data directory's configuration loaded again, with `[log] level` applied; None (and
    one error line) when it cannot be read, in which case nothing changes."""
    try:
        fresh = config_mod.load(config.data_dir, dev=config.dev)
        level = logging.getLevelName(str(fresh.get("log", "level")).upper())
        if not isinstance(level, int):
            raise config_mod.ConfigError(f"log.level must be debug, info, warning or error, "
                                         f"got {fresh.get('log', 'level')!r}")
    except (config_mod.ConfigError, OSError, UnicodeDecodeError) as exc:
        log.error("configuration reload failed; the running settings stay", extra={"role": role, "error": str(exc)})
        return None
    logging.getLogger().setLevel(level)
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    return fresh


def install_default(config: config_mod.Config, role: str) -> None:
    """A SIGHUP handler for `role`: `reread`, then one "reloaded" line. Runs between two Python
    instructions of the main thread (a Python signal handler), like the roles' stop handlers."""

    def on_sighup(_signum, _frame) -> None:
        if reread(config, role) is not None:
            log.info("reloaded", extra={"role": role, "applied": ",".join(SHARED_SETTINGS)})

    signal.signal(signal.SIGHUP, on_sighup)
