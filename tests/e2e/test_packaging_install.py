"""The package as the Docker image builds it: `pip wheel` of a copy of the source tree, the wheel
installed into a fresh virtualenv with `--no-index` (every dependency from a wheelhouse made of
the distributions installed in the development virtualenv), then the image's own steps run
from that venv: the entry point script initialises an empty data directory and execs
`courriel serve` (production profile, listeners moved to free loopback ports),
`courriel healthcheck` (the image's HEALTHCHECK) reports healthy, SIGTERM stops everything
with status 0, and `courriel backup` works from the installed package.

Slow (about a minute): it builds and installs everything.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import shutil
import signal
import ssl
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from serve_process import descendants_of, free_port, kill_quietly

from courriel.config import LISTENER_PORTS

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "README.md", "server", "smtp", "imap", "admin", "dns", "imapsync"]  # as the Dockerfile
ENTRYPOINT = ROOT / "contrib" / "docker" / "entrypoint.sh"
SKIP_DISTRIBUTIONS = {"courriel", "pip"}
DROPPED_METADATA = {"RECORD", "WHEEL", "INSTALLER", "REQUESTED", "direct_url.json"}
DEADLINE = 90.0

pytestmark = pytest.mark.slow


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheelhouse_from_installed(site_packages: Path, out: Path) -> int:
    """A py3-none-any wheel for each distribution installed in `site_packages` (same interpreter
    and platform, so compiled extensions are valid as they are). Returns how many were written."""
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for dist in importlib.metadata.distributions(path=[str(site_packages)]):
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        files = [f for f in (dist.files or []) if not str(f).startswith("..") and "__pycache__" not in f.parts]
        info_dirs = {f.parts[0] for f in files if f.parts[0].endswith(".dist-info")}
        if name in SKIP_DISTRIBUTIONS or len(info_dirs) != 1:
            continue
        info_dir = info_dirs.pop()
        wheel = out / f"{info_dir.removesuffix('.dist-info')}-py3-none-any.whl"
        record = []
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
            for entry in files:
                if entry.parts[0] == info_dir and entry.name in DROPPED_METADATA:
                    continue
                path = Path(dist.locate_file(entry))
                if not path.is_file():
                    continue
                data = path.read_bytes()
                archive.writestr(str(entry), data)
                record.append(f"{entry},{_record_hash(data)},{len(data)}")
            wheel_info = b"Wheel-Version: 1.0\nGenerator: courriel-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            archive.writestr(f"{info_dir}/WHEEL", wheel_info)
            record.append(f"{info_dir}/WHEEL,{_record_hash(wheel_info)},{len(wheel_info)}")
            record.append(f"{info_dir}/RECORD,,")
            archive.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
        written += 1
    return written


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:  # a copy: the build writes build/ and *.egg-info next to the sources
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", root / "dist", source])
    if built.returncode != 0 and "NewConnectionError" in built.stderr + built.stdout:
        pytest.skip("the build backend (setuptools) cannot be fetched: no package index reachable")
    assert built.returncode == 0, built.stderr
    wheels = list((root / "dist").glob("courriel-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as archive:
        names = archive.namelist()
    assert "courriel/dns/records.py" in names and "courriel/migrations/versions/0001_initial_schema.py" in names
    assert not any(name.startswith(("tests/", "dns/", "server/")) for name in names)

    assert wheelhouse_from_installed(Path(sysconfig.get_paths()["purelib"]), root / "wheelhouse") > 20
    target = root / "venv"
    made = run([sys.executable, "-m", "venv", target])
    assert made.returncode == 0, made.stderr
    installed = run([target / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index",
                     "--find-links", root / "wheelhouse", wheels[0]])
    assert installed.returncode == 0, installed.stderr
    return target


def clean_environ(venv: Path, data: Path) -> dict[str, str]:
    environ = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(data.parent),
        "LANG": "C.UTF-8",
        "PYTHONSAFEPATH": "1",
        "COURRIEL_DATA": str(data),
        "COURRIEL_LOG_FORMAT": "json",
        # Cheap password hashing for the test; production keeps the argon2id defaults.
        "COURRIEL_PASSWORDS_ARGON2_MEMORY_KIB": "1024",
        "COURRIEL_PASSWORDS_ARGON2_TIME_COST": "1",
    }
    for name in LISTENER_PORTS:  # production profile, moved to free loopback ports
        environ[f"COURRIEL_LISTENERS_{name.upper()}"] = f"127.0.0.1:{free_port()}"
    return environ


def test_installed_wheel_initialises_serves_and_reports_healthy(venv, tmp_path):
    data = tmp_path / "volume"
    environ = clean_environ(venv, data)
    probe = run([venv / "bin" / "python", "-c",
                 "import courriel, courriel.dns.records, dns.resolver; "
                 "print(courriel.__file__); print(courriel.dns.records.__file__); print(dns.resolver.__file__)"],
                env=environ, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    ours, our_dns, dnspython = probe.stdout.split()
    site = str(venv / "lib")
    assert ours.startswith(site) and our_dns.startswith(site) and "/courriel/dns/" in our_dns
    assert "/courriel/" not in dnspython  # `import dns` is dnspython, never our folder

    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        served = subprocess.Popen(["sh", str(ENTRYPOINT), "courriel", "serve"], env=environ, cwd=tmp_path,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + DEADLINE
        while True:
            assert served.poll() is None, f"serve exited with {served.returncode}:\n{log_path.read_text()}"
            check = run([venv / "bin" / "courriel", "healthcheck", "--timeout", "2"], env=environ, cwd=tmp_path)
            if check.returncode == 0:
                break
            assert time.monotonic() < end, f"never healthy: {check.stdout}{check.stderr}\n{log_path.read_text()}"
            time.sleep(0.5)
        assert check.stdout.startswith("healthy: https://127.0.0.1:")
        port = int(environ["COURRIEL_LISTENERS_ADMIN"].rpartition(":")[2])
        trusted = ssl.create_default_context(cafile=data / "tls" / "cert.pem")
        trusted.check_hostname = False  # the self-signed certificate names the host name, not 127.0.0.1
        metrics = httpx.get(f"https://127.0.0.1:{port}/metrics", verify=trusted, timeout=5.0)
        assert metrics.status_code == 200 and "courriel_queue_messages" in metrics.text
        assert (data / "courriel.toml").is_file()
        log_text = log_path.read_text()
        # The first start ran `courriel init`; its one-time admin password went to a private file, not the log.
        assert "initial-admin.txt" in log_text and "Admin password" not in log_text
        assert "Admin password: " in (data / "initial-admin.txt").read_text()
        assert (data / "initial-admin.txt").stat().st_mode & 0o777 == 0o600
        assert '"process": "supervisor"' in log_text  # JSON lines from the environment's log format

        served.send_signal(signal.SIGTERM)
        assert served.wait(timeout=30) == 0
    finally:
        if served.poll() is None:
            for pid in [served.pid, *descendants_of(served.pid)]:
                kill_quietly(pid)
            served.wait(timeout=10)

    backed = run([venv / "bin" / "courriel", "backup", tmp_path / "backup", "--json"], env=environ, cwd=tmp_path)
    assert backed.returncode == 0, backed.stderr
    assert (tmp_path / "backup" / "manifest.json").is_file()
    assert os.stat(tmp_path / "backup").st_mode & 0o777 == 0o700
