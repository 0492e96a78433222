"""SIGHUP in a role process: read the configuration again and apply what can change while serving.

Owns the role side of `courriel serve`'s reload (the supervisor forwards its SIGHUP to every
role, `courriel.supervisor`): `reread` loads the data directory's configuration again and
applies the settings every role shares (`[log] level`); `apply` is one whole reload: `reread`,
then the role's own settings and its TLS certificate, then one "reloaded" line; `install_default`
gives a role that has nothing more to reload a SIGHUP handler that does just that, so the signal
never kills it (SIGHUP's default action ends a process). The runner
(`courriel.supervisor.run_role`) installs it before the role runs; a role that reloads more (the
smtp, imap, queue and admin roles apply the settings to what follows, the TLS roles reload their
certificate) installs its own handler, on its event loop, that calls `apply`.

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
from collections.abc import Callable
from pathlib import Path

from courriel import config as config_mod
from courriel import tls

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


def apply(config: config_mod.Config, role: str, settings: Callable[[config_mod.Config], object] | None = None,
          certificate: Callable[[Path, Path], tls.CertificateSummary] | None = None) -> None:
    """One reload of `role`: `reread`; `settings(fresh)` when it could be read; then, with
    `certificate`, `certificate(cert_path, key_path)` from the fresh configuration (the running
    one when the file no longer parses). Logs one "reloaded" line naming what was applied, or,
    when the certificate is refused (`tls.CertificateError`), one error line instead: the
    previous certificate keeps serving."""
    fresh = reread(config, role)
    applied = []
    if fresh is not None:
        applied.append("settings" if settings is not None else ",".join(SHARED_SETTINGS))
        if settings is not None:
            settings(fresh)
    fields = {}
    if certificate is not None:
        current = fresh or config
        path = current.path("tls", "certificate")
        try:
            summary = certificate(path, current.path("tls", "private_key"))
        except tls.CertificateError as exc:
            log.error("TLS certificate reload failed; the previous certificate stays in use",
                      extra={"role": role, "certificate": str(path), "error": str(exc)})
            return
        applied.append("certificate")
        fields = {"certificate": str(path), **summary.log_fields()}
    if applied:
        log.info("reloaded", extra={"role": role, "applied": ",".join(applied), **fields})


def install_default(config: config_mod.Config, role: str) -> None:
    """A SIGHUP handler for `role` that only `apply`s the shared settings. Runs between two Python
    instructions of the main thread (a Python signal handler), like the roles' stop handlers."""

    def on_sighup(_signum, _frame) -> None:
        apply(config, role)

    signal.signal(signal.SIGHUP, on_sighup)
