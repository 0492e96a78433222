"""The CLI's command → module table (`courriel.cli.COMMAND_MODULES`): loading only the modules
of one command builds the same parser for it as loading them all, and `courriel serve` (the
entry point of every role process) imports none of the other command stacks."""

import argparse
import subprocess
import sys

import pytest

from courriel import cli


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _shape(parser: argparse.ArgumentParser) -> list:
    """The options and nested sub-commands of a parser, recursively."""
    shape = sorted(tuple(a.option_strings) or (a.dest,) for a in parser._actions
                   if not isinstance(a, argparse._SubParsersAction))
    nested = {name: _shape(child) for name, child in _subcommands(parser).items()} \
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions) else {}
    return [shape, sorted(nested.items())]


def test_every_command_is_in_the_table():
    assert sorted(_subcommands(cli.build_parser())) == sorted(cli.COMMAND_MODULES)


@pytest.mark.parametrize("command", sorted(cli.COMMAND_MODULES))
def test_the_table_builds_the_same_command_as_every_module(command):
    full = _subcommands(cli.build_parser())[command]
    alone = _subcommands(cli.build_parser(command))
    assert command in alone
    assert _shape(alone[command]) == _shape(full)


def test_unknown_command_and_help_load_every_module():
    for argv in ([], ["--help"], ["no-such-command"]):
        assert sorted(_subcommands(cli.build_parser(cli._command_of(argv)))) == sorted(cli.COMMAND_MODULES)


def test_serve_imports_no_other_command_stack():
    code = ("import sys; from courriel import cli; cli.build_parser('serve'); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('courriel.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            timeout=60).stdout.split()
    assert "courriel.cli.serve" in loaded
    for heavy in ("courriel.cli.registry", "courriel.cli.dns", "courriel.cli.rules", "courriel.admin.services"):
        assert heavy not in loaded
