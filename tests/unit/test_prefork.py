"""courriel.prefork: the preload survives missing and broken modules, the fork-safety check sees
threads, and a process title rewrites the command line that ps and /proc show."""

import gc
import subprocess
import sys
import threading

from courriel import prefork


def test_preload_skips_missing_and_broken_modules(tmp_path, monkeypatch):
    (tmp_path / "prefork_ok_module.py").write_text("VALUE = 1\n")
    (tmp_path / "prefork_broken_module.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        loaded = prefork.preload(("prefork_missing_module", "prefork_broken_module", "prefork_ok_module"))
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        for name in ("prefork_ok_module", "prefork_broken_module"):
            sys.modules.pop(name, None)
    assert loaded == ["prefork_ok_module"]


def test_fork_hazard_names_a_running_thread():
    assert prefork.fork_hazard() is None or "threads" in prefork.fork_hazard()  # pytest may run helpers
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(10,), name="prefork-test-thread")
    thread.start()
    try:
        assert "prefork-test-thread" in prefork.fork_hazard()
    finally:
        release.set()
        thread.join(10)


def test_process_title_rewrites_cmdline_and_comm():
    script = (
        "import sys; from pathlib import Path; from courriel import prefork;"
        "prefork.set_process_title(['courriel', 'serve', '--role', 'queue', '--data', '/d' * 500]);"
        "print(Path('/proc/self/cmdline').read_bytes().decode().split(chr(0)));"
        "print(Path('/proc/self/comm').read_text().strip())"
    )
    result = subprocess.run([sys.executable, "-c", script, "padding-argument-for-room"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    argv_line, comm = result.stdout.splitlines()
    words = [word for word in eval(argv_line) if word]  # noqa: S307 - our own printed list
    assert words == ["courriel", "serve", "--role", "queue", "--data"]  # the long path did not fit
    assert comm == "courriel"
