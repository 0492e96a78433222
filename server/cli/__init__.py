"""The `courriel` command line: one sub-command group per module in this package.

Conventions for every command: `--json` prints machine-readable output on stdout; errors
go to stderr as one clear line; bad input exits with status 2 and writes nothing;
internal failures exit with status 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from courriel import config as config_mod

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """A failure to report on stderr with an exit status (2: bad input, nothing written)."""

    def __init__(self, message: str, status: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.status = status


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=None,
        help=f"data directory (default: $COURRIEL_DATA, then {config_mod.DEFAULT_DATA_DIR})",
    )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def emit(args: argparse.Namespace, payload: Any, text: str | Callable[[], str]) -> None:
    """Print `payload` as JSON with --json, else the human text."""
    if getattr(args, "json", False):
        json.dump(payload, sys.stdout, indent=2, default=str, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(text() if callable(text) else text)


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain aligned text table."""
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


# The command modules, in the order of `courriel --help`.
COMMAND_MODULE_NAMES = ("init", "serve", "registry", "dns", "queue", "sync", "ops", "rules")

# Top-level command → the modules that register it. `main` imports only these for a known
# command, so that `courriel serve` (the supervisor and every role process) and `courriel
# healthcheck` do not import the registry, DNS, DKIM and rules stacks (tens of MiB per
# process). A command missing here still works: every module is then imported.
# tests/unit/test_cli_commands.py checks this table against what the modules register.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "init": ("init",),
    "serve": ("serve",),
    "domain": ("registry", "dns"),
    "mailbox": ("registry", "dns"),
    "alias": ("registry",),
    "group": ("registry",),
    "user": ("registry",),
    "dkim": ("dns",),
    "queue": ("queue",),
    "sync": ("sync",),
    "backup": ("ops",),
    "restore": ("ops",),
    "import": ("ops",),
    "export": ("ops",),
    "healthcheck": ("ops",),
    "filter": ("rules",),
    "vacation": ("rules",),
    "contact": ("rules",),
    "calendar": ("rules",),
}


def _command_modules(names: tuple[str, ...] = COMMAND_MODULE_NAMES):
    # Each module exposes register(subparsers); imported here, on demand, so that a missing
    # optional role never breaks the rest of the CLI.
    return [importlib.import_module(f"courriel.cli.{name}") for name in names]


def _command_of(argv: list[str]) -> str | None:
    """The top-level command of `argv` (its first argument when it is not an option)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of `command` when it is a known one."""
    parser = argparse.ArgumentParser(prog="courriel", description="Courriel mail server appliance")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in _command_modules(COMMAND_MODULES.get(command or "", COMMAND_MODULE_NAMES)):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o027)  # data files (database, blobs, keys) are never world-readable
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or EXIT_OK
    except CommandError as exc:
        print(f"courriel: error: {exc}", file=sys.stderr)
        return exc.status
    except config_mod.ConfigError as exc:
        print(f"courriel: configuration error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
