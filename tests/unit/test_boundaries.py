"""Import boundaries (ARCHITECTURE §4): imports point inward only, library names stay in ring 2.

ring 0: pure (no IO, no DB, no clock); ring 1: state (DB + files); ring 2: adapters. A module
not listed in ring 0 or ring 1 is an adapter (ring 2).
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"server": "courriel", "smtp": "courriel.smtp", "imap": "courriel.imap", "admin": "courriel.admin",
           "dns": "courriel.dns", "imapsync": "courriel.imapsync"}

RING0 = [r"courriel\.mime(_\w+)?", r"courriel\.imap\.protocol(\..+)?", r"courriel\.queue\.(schedule|router|dsn)",
         r"courriel\.dns\.records", r"courriel\.smtp\.(policy|replies|received)", r"courriel\.imapsync\.plan",
         r"courriel\.imap\.(sort|thread|qresync|quota|compress)",
         r"courriel\.rules\.(filters|sieve|vacation|signature|calendar)"]
RING1 = [r"courriel", r"courriel\.(config|models|db|schema|durable|blobs|registry|passwords|logins"
         r"|store(_folders|_errors|_metadata|_reads)?|notify|datadir|tls)", r"courriel\.queue(\.(spool|local|stats))?",
         r"courriel\.rules(\.(hooks|records|contacts))?", r"courriel\.migrations(\..+)?"]
# Libraries that only adapters may import.
ADAPTER_LIBRARIES = {"twisted", "aiosmtpd", "aiosmtplib", "dns", "fastapi", "starlette", "uvicorn", "imapclient",
                     "spf", "dkim"}
STATE_LIBRARIES = {"sqlalchemy", "alembic", "psycopg"}


def ring(module: str) -> int:
    if any(re.fullmatch(p, module) for p in RING0):
        return 0
    if any(re.fullmatch(p, module) for p in RING1):
        return 1
    return 2


def modules():
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if "versions" in parts:  # migration scripts
                continue
            yield ".".join([package, *parts]), path


def imports(path: Path, module: str):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                is_package = path.name == "__init__.py"
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                yield ".".join(base + ([node.module] if node.module else []))
            elif node.module:
                yield node.module
                if node.module == "courriel" or node.module.startswith("courriel."):
                    yield from (f"{node.module}.{alias.name}" for alias in node.names)


def known_module(name: str, known: set[str]) -> str | None:
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def test_imports_point_inward_and_libraries_stay_in_adapters():
    table = dict(modules())
    known = set(table)
    violations = []
    for module, path in table.items():
        own = ring(module)
        for imported in set(imports(path, module)):
            top = imported.split(".")[0]
            if top == "courriel":
                target = known_module(imported, known)
                if target and target != module and ring(target) > own:
                    violations.append(f"{module} (ring {own}) imports {target} (ring {ring(target)})")
            elif own < 2 and top in ADAPTER_LIBRARIES:
                violations.append(f"{module} (ring {own}) imports the adapter library {top}")
            elif own == 0 and top in STATE_LIBRARIES:
                violations.append(f"{module} (ring 0) imports {top}")
    assert not violations, "\n".join(sorted(violations))


def test_the_table_classifies_known_modules():
    assert ring("courriel.imap.protocol.parser") == 0
    assert ring("courriel.store") == 1
    assert ring("courriel.store_folders") == 1 and ring("courriel.store_errors") == 1
    assert ring("courriel.store_reads") == 1
    assert ring("courriel.store_metadata") == 1
    assert ring("courriel.smtp.server") == 2
    assert ring("courriel.admin.services.domains") == 2
