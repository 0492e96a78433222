"""The queue's pure modules stay pure (ARCHITECTURE §4, ring 0): no IO, database or clock imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

QUEUE = Path(__file__).resolve().parents[2] / "server" / "queue"
FORBIDDEN = {"socket", "asyncio", "sqlalchemy", "subprocess", "os", "time", "threading", "dns", "aiosmtplib",
             "aiosmtpd", "courriel"}


@pytest.mark.parametrize("module", ["schedule.py", "router.py", "dsn.py"])
def test_pure_modules_import_no_io(module):
    tree = ast.parse((QUEUE / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, imported & FORBIDDEN
    source = (QUEUE / module).read_text()
    assert ".now(" not in source and "time.time" not in source  # the clock is always a parameter
