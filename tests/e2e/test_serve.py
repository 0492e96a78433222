"""`courriel serve`: the dev profile end to end, start-up refusals, a role run alone with
sockets handed over under the sd_listen_fds(3) convention, and the systemd units."""

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
import serve_process
import uvicorn
from serve_process import (
    COURRIEL,
    START_DEADLINE,
    STOP_DEADLINE,
    Served,
    admin_port,
    free_port,
    http_get,
    listener_environ,
    refused,
    serve,
    wait_healthy,
    wait_until,
)

from courriel import config as config_mod
from courriel import schema, supervisor
from courriel.admin.app import create_app
from courriel.db import Database
from courriel.roles import ROLES

# Fixtures shared with test_supervisor.py.
initialised_template = serve_process.initialised_template
served_data = serve_process.served_data

ROOT = Path(__file__).resolve().parents[2]


def test_serve_dev_binds_listeners_and_answers_healthz(served_data, tmp_path):
    environ = listener_environ()
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        port = admin_port(environ)
        response = wait_healthy(port, served)
        assert response.json() == {"status": "ok"}
        ready = http_get(port, "/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        assert (served_data / "run" / "courriel.pid").read_text().strip() == str(served.pid)
        log = served.log()
        assert "supervisor started" in log
        for spec in ROLES.values():  # every available role's listeners are bound, the others skipped
            if not spec.available():
                assert f"role skipped: module not installed role={spec.name}" in log
                continue
            for name in spec.listeners:
                assert not refused(int(environ[f"COURRIEL_LISTENERS_{name.upper()}"].rpartition(":")[2])), name
                assert f"listening listener={name} " in log
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()


def test_uninitialised_data_dir_is_refused_with_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    environ = listener_environ()
    for data in (empty, tmp_path / "absent"):
        result = subprocess.run([COURRIEL, "serve", "--dev", "--data", str(data)], env=environ,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "not an initialised data directory" in result.stderr
        assert "courriel init" in result.stderr
        assert "Traceback" not in result.stderr
    assert list(empty.iterdir()) == []  # nothing written
    assert not (tmp_path / "absent").exists()
    assert refused(admin_port(environ))


def test_role_alone_serves_a_socket_passed_with_listen_fds(served_data, tmp_path):
    """The socket a service manager hands over wins over the configured address."""
    configured_port = free_port()
    environ = listener_environ(admin=f"127.0.0.1:{configured_port}")
    inherited = socket.create_server(("127.0.0.1", 0))
    passed_port = inherited.getsockname()[1]
    fd = inherited.fileno()
    # sd_listen_fds(3): the socket is descriptor 3 and LISTEN_PID is the pid of the process
    # that reads it: the shell's $$, which exec keeps.
    argv = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=admin exec "$@"', "sh",
            str(COURRIEL), "serve", "--role", "admin", "--dev", "--data", str(served_data)]
    served = Served(argv, environ, tmp_path / "role.log", pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3))
    inherited.close()  # the role process holds its own copy now
    try:
        assert wait_healthy(passed_port, served).json() == {"status": "ok"}
        assert refused(configured_port)  # it did not bind the configured address
        assert f"admin=127.0.0.1:{passed_port}" in served.log()
    finally:
        served.process.send_signal(signal.SIGTERM)
        status = served.wait_exit(STOP_DEADLINE)
    assert status == 0, served.log()
    assert refused(passed_port)


def test_role_alone_binds_its_own_listener_and_ignores_foreign_listen_fds(served_data, tmp_path):
    # LISTEN_PID names another process: the variables leaked from a parent and must be ignored.
    environ = listener_environ()
    environ.update(LISTEN_PID="1", LISTEN_FDS="1", LISTEN_FDNAMES="admin")
    served = serve(served_data, environ, tmp_path / "role.log", "--role", "admin")
    try:
        assert wait_healthy(admin_port(environ), served).json() == {"status": "ok"}
        assert not (served_data / "run" / "courriel.pid").exists()  # a role alone is not the supervisor
    finally:
        served.process.send_signal(signal.SIGTERM)
        status = served.wait_exit(STOP_DEADLINE)
    assert status == 0, served.log()


def test_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    units = sorted(p for p in (ROOT / "systemd").iterdir() if p.suffix in (".service", ".socket", ".target"))
    names = {unit.name for unit in units}
    assert {"courriel.target", "courriel-smtp.service", "courriel-admin.service"} <= names
    for listener in ("mx", "submission", "submissions", "imap", "imaps"):
        text = (ROOT / "systemd" / f"courriel-{listener}.socket").read_text()
        assert f"FileDescriptorName={listener}\n" in text
    for unit in units:
        text = unit.read_text()
        if unit.suffix == ".service":
            for line in ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                         "ReadWritePaths=/var/lib/courriel", "Environment=PYTHONSAFEPATH=1",
                         "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                         "ExecReload=/bin/kill -HUP $MAINPID"):
                assert line in text, f"{unit.name} lacks {line}"
        # Verify a copy whose ExecStart points at this checkout's console script.
        (tmp_path / unit.name).write_text(text.replace("/usr/bin/courriel", str(COURRIEL)))
    result = subprocess.run([analyze, "verify", *[str(tmp_path / u.name) for u in units]],
                            capture_output=True, text=True, timeout=120)
    problems = [line for line in result.stderr.splitlines() if "courriel" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_sysusers_and_tmpfiles_snippets():
    sysusers = ROOT / "systemd" / "sysusers.d" / "courriel.conf"
    tmpfiles = ROOT / "systemd" / "tmpfiles.d" / "courriel.conf"
    entries = [line.split() for line in tmpfiles.read_text().splitlines() if line and not line.startswith("#")]
    assert ["d", "/var/lib/courriel", "0750", "courriel", "courriel", "-"] in entries
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        pytest.skip("systemd-sysusers is not installed")
    result = subprocess.run([tool, "--dry-run", str(sysusers)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr  # a malformed line exits 1


def test_admin_role_outside_dev_serves_https_with_the_data_dir_certificate(served_data, tmp_path):
    environ = listener_environ()
    port = admin_port(environ)
    argv = [str(COURRIEL), "serve", "--role", "admin", "--data", str(served_data)]  # production profile
    served = Served(argv, environ, tmp_path / "role.log")
    context = ssl.create_default_context(cafile=str(served_data / "tls" / "cert.pem"))
    try:
        response = wait_until(
            lambda: _check_alive(served) and httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context, timeout=1),
            START_DEADLINE, "/healthz over HTTPS")
        assert response.status_code == 200 and response.json() == {"status": "ok"}
        with pytest.raises(httpx.HTTPError):  # no plaintext HTTP on the TLS port
            http_get(port, "/healthz")
    finally:
        served.process.send_signal(signal.SIGTERM)
        status = served.wait_exit(STOP_DEADLINE)
    assert status == 0, served.log()


def _check_alive(served: Served) -> bool:
    if served.process.poll() is not None:
        raise AssertionError(f"exited with {served.process.returncode}:\n{served.log()}")
    return True


def test_readyz_is_503_when_the_database_is_unreachable(served_data, tmp_path):
    """The app on a real socket, its database a file in a directory that does not exist."""
    config = config_mod.load(served_data, dev=True,
                             environ={"COURRIEL_DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/courriel.db"})
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_config=None, access_log=False))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        assert wait_healthy(port).json() == {"status": "ok"}  # alive, but not ready
        response = http_get(port, "/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert "missing" not in response.text  # no error detail leaks out
    finally:
        server.should_exit = True
        thread.join(timeout=STOP_DEADLINE)
        sock.close()
    assert not thread.is_alive()


def test_serve_upgrades_the_schema_at_start(served_data, tmp_path):
    (served_data / "courriel.db").unlink()
    (served_data / "courriel.db").touch()  # an empty database: no schema at all
    environ = listener_environ()
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(admin_port(environ), served)
        assert http_get(admin_port(environ), "/readyz").status_code == 200
        database = Database(config_mod.load(served_data, dev=True).database_url)
        try:
            assert schema.current_revision(database) == schema.head_revision()
        finally:
            database.dispose()
        assert f"database schema upgraded revision={schema.head_revision()}" in served.log()
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()


def test_failed_schema_upgrade_is_one_clear_error(served_data, tmp_path):
    """The upgrade runs in a short-lived child: its failure is logged there and the
    supervisor exits 1 without binding anything."""
    environ = listener_environ()
    environ["COURRIEL_DATABASE_URL"] = f"sqlite:///{tmp_path}/missing/dir/courriel.db"
    result = subprocess.run([COURRIEL, "serve", "--dev", "--data", str(served_data)], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "cannot bring the database schema to the current revision" in result.stderr
    assert "courriel: error: database schema upgrade failed (exit status 1)" in result.stderr
    assert refused(admin_port(environ))
    assert not (served_data / "run" / "courriel.pid").exists()


def test_bind_listener_ipv6_literal_is_an_ipv6_socket():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    try:
        sock = supervisor.bind_listener("admin", "::1", 0)
    except supervisor.ServeError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    with sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.getsockname()[0] == "::1"
    with supervisor.bind_listener("admin", "127.0.0.1", 0) as sock:
        assert sock.family == socket.AF_INET
        with pytest.raises(supervisor.ServeError, match=r"cannot listen for mx on 127\.0\.0\.1:\d+"):
            supervisor.bind_listener("mx", "127.0.0.1", sock.getsockname()[1])
