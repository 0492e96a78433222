"""The `courriel` command line: one sub-command group per module in this package.

Conventions for every command: `--json` prints machine-readable output on stdout; errors
go to stderr as one clear line; bad input exits with status 2 and writes nothing;
internal failures exit with status 1.
"""

from __future__ import annotations

import argparse
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


def _command_modules():
    # Each module exposes register(subparsers); imported here so that a missing optional
    # role never breaks the rest of the CLI.
    from courriel.cli import dns, init, ops, queue, registry, rules, serve, sync

    return [init, serve, registry, dns, queue, sync, ops, rules]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="courriel", description="Courriel mail server appliance")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in _command_modules():
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o027)  # data files (database, blobs, keys) are never world-readable
    parser = build_parser()
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
