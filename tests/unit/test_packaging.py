"""Packaging guards (ARCHITECTURE §1): one import package, no folder importable bare."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import dns
import dns.resolver

import courriel
import courriel.dns

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ["server", "smtp", "imap", "admin", "dns", "imapsync"]


def test_dns_is_dnspython_and_courriel_dns_is_ours():
    assert hasattr(dns.resolver, "Resolver")
    assert Path(dns.__file__).parent.parent.name == "site-packages"
    assert Path(courriel.dns.__file__).parent == ROOT / "dns"
    assert Path(courriel.__file__).parent == ROOT / "server"


def test_no_folder_importable_under_its_bare_name():
    for name in FOLDERS:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        origin = Path(spec.origin or next(iter(spec.submodule_search_locations))).resolve()
        assert not origin.is_relative_to(ROOT / name), f"{name} resolves to the source folder {origin}"


def test_bare_imports_fail_from_the_repository_root():
    """Even with the repository root as working directory (PYTHONSAFEPATH guards `-c`)."""
    code = "import dns.resolver, sys; import courriel.dns; print(dns.__file__)"
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "site-packages" in out.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "courriel"
    assert script.exists()
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "init" in out.stdout and "serve" in out.stdout
