"""The rules' pure modules stay pure (ARCHITECTURE §4, ring 0): no IO, database or clock, and
they import only other pure modules; the state modules import no adapter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "server" / "rules"
PURE = ["filters.py", "sieve.py", "vacation.py", "signature.py", "calendar.py"]
FORBIDDEN = {"socket", "asyncio", "sqlalchemy", "subprocess", "os", "time", "threading", "pathlib", "logging"}
PURE_COURRIEL = {"courriel.mime_search", "courriel.mime_headers", "courriel.mime_structure", "courriel.mime_compose",
                 "courriel.mime_sections",
                 "courriel.rules.filters", "courriel.rules.signature"}
ADAPTERS = {"courriel.smtp", "courriel.imap", "courriel.admin", "courriel.cli", "courriel.queue.runner",
            "twisted", "aiosmtpd", "aiosmtplib", "fastapi", "uvicorn"}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io(module):
    names = imported(RULES / module)
    assert not {n.split(".")[0] for n in names} & FORBIDDEN
    assert {n for n in names if n.startswith("courriel")} <= PURE_COURRIEL
    source = (RULES / module).read_text(encoding="utf-8")
    assert ".now(" not in source and "time.time" not in source  # the clock is always a parameter


@pytest.mark.parametrize("module", ["hooks.py", "records.py", "contacts.py"])
def test_state_modules_import_no_adapter(module):
    names = imported(RULES / module)
    assert not {n for n in names if any(n == a or n.startswith(a + ".") for a in ADAPTERS)}
