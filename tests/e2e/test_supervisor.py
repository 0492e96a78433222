"""The supervisor: restart of a killed role, clean stop on SIGTERM, idempotent signals,
JSON log lines, skipped roles, the restart backoff, and roles forked from the preloaded
supervisor (default signal handling, their command line) or started with exec on request."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import serve_process
from serve_process import (
    STOP_DEADLINE,
    Served,
    admin_port,
    alive,
    descendants_of,
    http_get,
    listener_environ,
    refused,
    role_children,
    serve,
    wait_healthy,
    wait_until,
)

from courriel import supervisor

initialised_template = serve_process.initialised_template
served_data = serve_process.served_data

SUPPORT = Path(serve_process.__file__).parent


def test_killed_admin_role_is_restarted(served_data, tmp_path):
    environ = listener_environ()
    port = admin_port(environ)
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(port, served)
        (first,) = wait_until(lambda: role_children(served.pid, "admin"), 10, "the admin role process")
        serve_process.kill_quietly(first)
        wait_until(lambda: not alive(first), 10, "the killed admin process to be reaped")
        (second,) = wait_until(lambda: role_children(served.pid, "admin"), 30, "a restarted admin role process")
        assert second != first
        assert wait_healthy(port, served).json() == {"status": "ok"}
        log = served.log()
        assert "role exited; restarting" in log and "killed by SIGKILL" in log
        assert served.process.poll() is None  # the supervisor itself kept running
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()


def test_sigterm_stops_everything_within_the_deadline(served_data, tmp_path):
    environ = listener_environ()
    environ["COURRIEL_LOG_FORMAT"] = "json"
    port = admin_port(environ)
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(port, served)
        children = descendants_of(served.pid)
        assert children, "no role process was started"
        started = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        # Idempotent: repeated and mixed stop signals do not restart or break the stop.
        served.process.send_signal(signal.SIGINT)
        served.process.send_signal(signal.SIGTERM)
        status = served.wait_exit(STOP_DEADLINE)
        elapsed = time.monotonic() - started
    finally:
        served.stop()
    assert status == 0, served.log()
    assert elapsed < supervisor.STOP_TIMEOUT, f"stop took {elapsed:.1f}s"
    assert not [pid for pid in children if alive(pid)], "a role process outlived the supervisor"
    assert refused(port)
    assert not (served_data / "run" / "courriel.pid").exists()
    records = [json.loads(line) for line in served.log().splitlines() if line.strip()]
    messages = [r["message"] for r in records if r["process"] == "supervisor"]
    assert messages.count("stopping") == 1
    assert "supervisor stopped" in messages
    assert any(r["message"] == "role stopped" and r["role"] == "admin" for r in records)


def test_a_second_supervisor_on_the_same_data_is_refused(served_data, tmp_path):
    environ = listener_environ()
    served = serve(served_data, environ, tmp_path / "first.log")
    try:
        wait_healthy(admin_port(environ), served)
        second = serve(served_data, listener_environ(), tmp_path / "second.log")
        assert second.wait_exit(STOP_DEADLINE) == 1
        assert "already running" in second.log() and str(served.pid) in second.log()
        assert http_get(admin_port(environ), "/healthz").status_code == 200
    finally:
        served.stop()


def test_role_whose_module_does_not_exist_is_skipped(served_data, tmp_path):
    environ = listener_environ()
    served = Served([sys.executable, str(SUPPORT / "serve_roles_table.py"), str(served_data)],
                    environ, tmp_path / "serve.log")
    try:
        wait_healthy(admin_port(environ), served)
        log = served.log()
        assert "role skipped: module not installed role=ghost role_module=courriel.ghost.role" in log
        assert "role started role=ghost" not in log
        assert role_children(served.pid, "ghost") == []
        assert len(role_children(served.pid, "admin")) == 1
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()


def test_backoff_doubles_and_is_bounded():
    delays = [supervisor.backoff(n) for n in range(1, 20)]
    assert delays[0] == supervisor.BACKOFF_INITIAL
    assert delays[1] == 2 * delays[0] and delays[2] == 4 * delays[0]
    assert max(delays) == supervisor.BACKOFF_MAX
    assert delays == sorted(delays)


def _serve_test_roles(data, tmp_path, roles: str, stop_timeout: float | None = None):
    environ = listener_environ()
    environ["SERVE_TEST_ROLES"] = roles
    argv = [sys.executable, str(SUPPORT / "serve_roles_table.py"), str(data)]
    if stop_timeout is not None:
        argv.append(str(stop_timeout))
    return Served(argv, environ, tmp_path / "serve.log"), environ


def test_role_ignoring_sigterm_is_killed_after_the_stop_timeout(served_data, tmp_path):
    served, environ = _serve_test_roles(served_data, tmp_path, "stubborn", stop_timeout=2.0)
    try:
        wait_healthy(admin_port(environ), served)
        wait_until(lambda: "stubborn role ignoring SIGTERM" in served.log(), 30, "the stubborn role")
        children = descendants_of(served.pid)
        started = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        status = served.wait_exit(STOP_DEADLINE)
        elapsed = time.monotonic() - started
    finally:
        served.stop()
    log = served.log()
    assert status == 1, log  # a role had to be killed: not a clean stop
    assert 2.0 <= elapsed < STOP_DEADLINE
    (line,) = [line for line in log.splitlines() if "roles did not stop in time; killing them" in line]
    assert "stubborn" in line.split("roles=")[1].split()[0].split(",")  # (admin too, on a slow machine)
    assert "role stopped role=stubborn" in log and "killed by SIGKILL" in log
    assert not [pid for pid in children if alive(pid)]


def test_crashing_role_is_restarted_with_growing_delays(served_data, tmp_path):
    served, environ = _serve_test_roles(served_data, tmp_path, "crashing")
    try:
        wait_healthy(admin_port(environ), served)
        wait_until(lambda: served.log().count("role exited; restarting role=crashing") >= 3, 30,
                   "three restarts of the crashing role")
        served.process.send_signal(signal.SIGTERM)
        status = served.wait_exit(STOP_DEADLINE)
    finally:
        served.stop()
    log = served.log()
    assert status == 0, log
    delays = [line.split("restart_in=")[1].split()[0] for line in log.splitlines()
              if "role exited; restarting role=crashing" in line]
    assert delays[:3] == ["0.5s", "1s", "2s"]
    assert "status=\"exit status 1\"" in log


def test_roles_do_not_outlive_a_supervisor_killed_with_sigkill(served_data, tmp_path):
    environ = listener_environ()
    port = admin_port(environ)
    served = serve(served_data, environ, tmp_path / "serve.log")
    children: list[int] = []
    try:
        wait_healthy(port, served)
        children = descendants_of(served.pid)
        assert children
        serve_process.kill_quietly(served.pid)
        served.wait_exit(STOP_DEADLINE)
        # The parent-death signal (SIGTERM) stops each role cleanly.
        wait_until(lambda: not [pid for pid in children if alive(pid)], STOP_DEADLINE, "orphaned roles to stop")
        assert refused(port)
    finally:
        for pid in children:
            if alive(pid):
                serve_process.kill_quietly(pid)
        served.stop()


def test_supervisor_with_no_role_to_run_is_an_error(served_data, tmp_path):
    environ = listener_environ()
    environ["SERVE_TEST_SHIPPED"] = "0"  # only the role whose module is missing
    served = Served([sys.executable, str(SUPPORT / "serve_roles_table.py"), str(served_data)],
                    environ, tmp_path / "serve.log")
    assert served.wait_exit(STOP_DEADLINE) == 1
    assert "no role to run" in served.log()
    assert not (served_data / "run" / "courriel.pid").exists()


def _status_mask(pid: int, field: str) -> int:
    """A signal mask (SigBlk, SigIgn, SigCgt) of /proc/PID/status as an integer."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _bit(signum: int) -> int:
    return 1 << (signum - 1)


def test_roles_are_forked_from_the_preloaded_supervisor_with_default_signals(served_data, tmp_path):
    environ = listener_environ()
    environ.pop(supervisor.EXEC_ENV, None)
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(admin_port(environ), served)
        (admin,) = wait_until(lambda: role_children(served.pid, "admin"), 10, "the admin role process")
        log = served.log()
        assert "role modules preloaded" in log
        assert "role started role=admin" in log and "start=fork" in log and "start=exec" not in log
        # A forked role reads as the command it runs (its argv area was rewritten) ...
        argv = [word for word in serve_process.command_line(admin) if word]
        assert argv[:4] == ["courriel", "serve", "--role", "admin"], argv
        assert Path(f"/proc/{admin}/comm").read_text().strip() == "courriel"
        # ... and the same interpreter image, not a new one (no exec).
        assert os.readlink(f"/proc/{admin}/exe") == os.readlink(f"/proc/{served.pid}/exe")
        for pid in descendants_of(served.pid):
            # Nothing blocked nor ignored is left over from the supervisor's fork: SIGTERM and
            # SIGHUP reach every role with the role's own handlers or the default action.
            assert _status_mask(pid, "SigBlk") == 0, pid
            ignored = _status_mask(pid, "SigIgn")
            assert not ignored & (_bit(signal.SIGTERM) | _bit(signal.SIGHUP) | _bit(signal.SIGINT)), pid
            assert not [fd for fd in os.listdir(f"/proc/{pid}/fd")
                        if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("courriel.pid")], pid
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()


def test_roles_started_with_exec_when_asked(served_data, tmp_path):
    environ = listener_environ()
    environ[supervisor.EXEC_ENV] = "1"
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(admin_port(environ), served)
        (admin,) = wait_until(lambda: role_children(served.pid, "admin"), 10, "the admin role process")
        assert "courriel.cli.serve" in serve_process.command_line(admin)
        log = served.log()
        assert "start=exec" in log and "start=fork" not in log and "role modules preloaded" not in log
        # An exec'd role reloads on SIGHUP too (ignored across the exec until its handler is set).
        wait_until(lambda: f"admin[{admin}] courriel.supervisor: role running" in served.log(), 30, "the admin role")
        mark = len(served.log())
        served.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded role=admin" in served.log()[mark:], 30, "the admin role's reload")
        assert role_children(served.pid, "admin") == [admin]
        # With exec nothing is shared, so the on-demand sync role simply runs, without an account.
        wait_until(lambda: role_children(served.pid, "sync"), 30, "the sync role, without any account")
        assert "role waits for work" not in served.log()
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()


def test_killed_forked_role_restarts_and_sighup_reloads_every_role(served_data, tmp_path):
    """A crash of a forked role forks a fresh one from the supervisor; SIGHUP sent to the
    supervisor is a reload, not a stop: it is forwarded to every role (the restarted one too),
    each logs its reload and keeps running; SIGTERM then stops them all."""
    environ = listener_environ()
    environ.pop(supervisor.EXEC_ENV, None)
    served = serve(served_data, environ, tmp_path / "serve.log")
    names = [spec.name for spec in supervisor.ROLES.values() if spec.available() and not spec.has_work]
    try:
        wait_healthy(admin_port(environ), served)
        (first,) = wait_until(lambda: role_children(served.pid, "queue"), 10, "the queue role process")
        serve_process.kill_quietly(first)
        (second,) = wait_until(lambda: [p for p in role_children(served.pid, "queue") if p != first], 30,
                               "a restarted queue role process")
        pids = {name: wait_until(lambda name=name: role_children(served.pid, name), 30, f"the {name} role")
                for name in names}
        for name, found in pids.items():  # each role's SIGHUP handler is installed before this line
            for pid in found:
                wait_until(lambda name=name, pid=pid: f"{name}[{pid}] courriel.supervisor: role running"
                           in served.log(), 30, f"the {name} role to run")
        mark = len(served.log())
        served.process.send_signal(signal.SIGHUP)
        served.process.send_signal(signal.SIGHUP)  # repeated: one or two reloads, never a stop
        for name in names:
            wait_until(lambda name=name: f"reloaded role={name}" in served.log()[mark:], 30, f"the {name} reload")
        assert "reload forwarded" in served.log()[mark:]
        assert served.process.poll() is None
        assert {name: role_children(served.pid, name) for name in names} == pids
        assert "stopping" not in served.log()[mark:]
        children = descendants_of(served.pid)
        served.process.send_signal(signal.SIGTERM)
        status = served.wait_exit(STOP_DEADLINE)
    finally:
        served.stop()
    log = served.log()
    assert status == 0, log
    assert f"role stopped role=queue child_pid={second}" in log
    assert "role exited" not in log[mark:]
    assert not [pid for pid in children if alive(pid)]


def test_sigterm_sent_to_each_forked_role_stops_it_cleanly(served_data, tmp_path):
    """The roles' own stop handlers work in a forked process: each one, sent SIGTERM directly,
    exits with status 0 (and the supervisor, not stopping, starts it again)."""
    environ = listener_environ()
    environ.pop(supervisor.EXEC_ENV, None)
    served = serve(served_data, environ, tmp_path / "serve.log")
    names = [spec.name for spec in supervisor.ROLES.values() if spec.available() and not spec.has_work]
    try:
        wait_healthy(admin_port(environ), served)
        first = {name: wait_until(lambda name=name: role_children(served.pid, name), 30, f"the {name} role")[0]
                 for name in names}
        for pid in first.values():
            os.kill(pid, signal.SIGTERM)
        for name, pid in first.items():
            wait_until(lambda pid=pid: f"child_pid={pid} status=\"exit status 0\"" in served.log(), 30,
                       f"the {name} role to stop cleanly")
        for name, pid in first.items():
            wait_until(lambda name=name, pid=pid: [p for p in role_children(served.pid, name) if p != pid], 30,
                       f"the {name} role to be started again")
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()
