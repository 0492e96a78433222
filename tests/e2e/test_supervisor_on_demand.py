"""On-demand roles (`courriel.on_demand`): under `courriel serve` the sync role runs only while
an active external account exists. Adding or resuming one starts it at once (a hint);
pausing the last one lets it stop by itself after `[sync] idle_stop`; a supervisor started
with an active account starts it from its first check. (With fork + exec it always runs:
`test_supervisor.test_roles_started_with_exec_when_asked`.)"""

import subprocess

import serve_process
from serve_process import (
    COURRIEL,
    add_mailbox,
    admin_port,
    listener_environ,
    role_children,
    serve,
    wait_healthy,
    wait_until,
)

from courriel import supervisor

initialised_template = serve_process.initialised_template
served_data = serve_process.served_data

MAILBOX = "owner@example.test"


def _cli(data, *args: str, password: str | None = None) -> str:
    result = subprocess.run([COURRIEL, *args, "--data", str(data)], input=password, capture_output=True, text=True,
                            timeout=60, env=listener_environ())
    assert result.returncode == 0, result.stderr
    return result.stdout


def _running_roles(served) -> set[str]:
    return {spec.name for spec in supervisor.ROLES.values() if role_children(served.pid, spec.name)}


def test_sync_role_starts_with_an_active_account_and_stops_without_one(served_data, tmp_path):
    add_mailbox(served_data, MAILBOX)
    environ = listener_environ()
    environ.pop(supervisor.EXEC_ENV, None)
    environ["COURRIEL_SYNC_IDLE_STOP"] = "0.5"
    served = serve(served_data, environ, tmp_path / "serve.log")
    try:
        wait_healthy(admin_port(environ), served)
        wait_until(lambda: "role waits for work role=sync" in served.log(), 30, "the first on-demand check")
        assert _running_roles(served) == {"smtp", "imap", "queue", "admin"}
        assert "role started role=sync" not in served.log()

        # Nothing listens on port 1: the account fails to connect, but it is active, so the role runs.
        added = _cli(served_data, "sync", "add", MAILBOX, "someone@remote.test", "--host", "127.0.0.1",
                     "--port", "1", "--security", "none", "--password-stdin", password="secret")
        account = added.split(":")[0].rpartition(" ")[2]
        (first,) = wait_until(lambda: role_children(served.pid, "sync"), 10, "the sync role started by the hint")
        assert 'role has work role=sync reason="accounts hint"' in served.log()

        _cli(served_data, "sync", "pause", account)
        wait_until(lambda: f"role idle; started again when it has work role=sync child_pid={first}" in served.log(),
                   30, "the sync role to stop by itself")
        wait_until(lambda: not role_children(served.pid, "sync"), 10, "the sync process to be gone")
        assert "role exited" not in served.log()  # an idle stop is not a crash: no restart

        _cli(served_data, "sync", "resume", account)
        wait_until(lambda: [pid for pid in role_children(served.pid, "sync") if pid != first], 10,
                   "the sync role started again by the resume hint")
    finally:
        served.stop()
    assert served.process.returncode == 0, served.log()

    # Started again with the account active: the first check starts the role, without a hint.
    again = serve(served_data, environ, tmp_path / "again.log")
    try:
        wait_until(lambda: role_children(again.pid, "sync"), 30, "the sync role started by the first check")
        assert "role has work role=sync reason=check" in again.log()
    finally:
        again.stop()
    assert again.process.returncode == 0, again.log()

