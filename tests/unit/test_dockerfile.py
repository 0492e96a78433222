"""The Dockerfile, its entry point and compose.yaml agree with the code: the exposed and
published ports are the production listener ports, the data volume is the default data
directory, the health check probes the admin role's /healthz, the user is not root."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import yaml

from courriel import config as config_mod
from courriel.admin import health
from courriel.cli import ops

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_PORTS = {prod for prod, _dev in config_mod.LISTENER_PORTS.values()}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            keyword, _, arguments = current.strip().partition(" ")
            result.append((keyword.upper(), arguments.strip()))
            current = ""
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, arguments))
    return found


def env_of(stage) -> dict[str, str]:
    values = {}
    for keyword, arguments in stage:
        if keyword == "ENV":
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                values[name] = value
    return values


def exec_form(arguments: str) -> list[str]:
    import json

    return json.loads(arguments)


DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_multi_stage_wheel_build_into_a_venv_in_a_slim_runtime():
    build, runtime = stages(DOCKERFILE)
    assert re.search(r"\bAS build$", build[0][1]) and "slim" in build[0][1]
    assert "slim" in runtime[0][1]
    assert any(k == "RUN" and "pip wheel" in a for k, a in build)
    installs = [a for k, a in runtime if k == "RUN" and "pip install" in a]
    assert installs and all("--no-index" in a for a in installs)
    assert any("python -m venv /opt/courriel" in a for a in installs)
    copied = {a.split()[0].rstrip("/") for k, a in build if k == "COPY"}
    for folder in ("server", "smtp", "imap", "admin", "dns", "imapsync"):  # pyproject's package-dir map
        assert folder in copied
    assert not any(k == "COPY" and not a.startswith("--") and "tests" in a for k, a in runtime)


def test_ports_volume_user_environment_match_the_code():
    runtime = stages(DOCKERFILE)[-1]
    exposed = {int(port) for k, a in runtime if k == "EXPOSE" for port in a.split()}
    assert exposed == PRODUCTION_PORTS
    volumes = [v for k, a in runtime if k == "VOLUME" for v in exec_form(a)]
    assert volumes == [config_mod.DEFAULT_DATA_DIR]
    env = env_of(runtime)
    assert env["COURRIEL_DATA"] == config_mod.DEFAULT_DATA_DIR
    assert env["PYTHONSAFEPATH"] == "1"
    assert env["COURRIEL_LOG_FORMAT"] in ("json", "text")
    users = [a for k, a in runtime if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any("useradd" in a and users[-1].split(":")[0] in a for k, a in runtime if k == "RUN")
    # Every COURRIEL_* variable names a real setting (or the data directory).
    settings = {f"COURRIEL_{s.section.upper()}_{s.key.upper()}" for s in config_mod.SCHEMA} | {"COURRIEL_DATA"}
    assert {name for name in env if name.startswith("COURRIEL_")} <= settings


def test_healthcheck_probes_healthz_and_tini_runs_the_entrypoint():
    runtime = stages(DOCKERFILE)[-1]
    checks = [a for k, a in runtime if k == "HEALTHCHECK"]
    assert len(checks) == 1
    command = exec_form(checks[0].partition("CMD")[2].strip())
    assert command == ["courriel", "healthcheck"]
    # What `courriel healthcheck` probes in the image's (production) profile: /healthz on the admin port.
    config = config_mod.load(Path("/nonexistent"), environ={})
    assert ops.health_url(config) == f"https://127.0.0.1:{config_mod.LISTENER_PORTS['admin'][0]}/healthz"
    assert "/healthz" in {route.path for route in health.router.routes}
    entrypoint = exec_form(next(a for k, a in runtime if k == "ENTRYPOINT"))
    assert entrypoint[:2] == ["tini", "--"]
    assert exec_form(next(a for k, a in runtime if k == "CMD")) == ["courriel", "serve"]
    copied = next(a for k, a in runtime if k == "COPY" and entrypoint[2] in a)
    script = ROOT / copied.split()[-2]
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "courriel init" in text and 'exec "$@"' in text and "courriel.toml" in text


def test_compose_publishes_the_same_ports_and_volume():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service = compose["services"]["courriel"]
    published = {int(mapping.split(":")[-1]) for mapping in service["ports"]}
    assert published == PRODUCTION_PORTS
    assert any(volume.endswith(":" + config_mod.DEFAULT_DATA_DIR) for volume in service["volumes"])
    assert str(service["sysctls"]["net.ipv4.ip_unprivileged_port_start"]) == "0"
    for name in service["environment"]:
        assert name in {f"COURRIEL_{s.section.upper()}_{s.key.upper()}" for s in config_mod.SCHEMA}


def test_dockerignore_keeps_the_context_small():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests"} <= ignored
    assert not ignored & {"server", "smtp", "imap", "admin", "dns", "imapsync", "contrib", "README.md"}
