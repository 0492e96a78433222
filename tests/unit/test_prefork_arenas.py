"""`prefork.limit_malloc_arenas`: threads started afterwards share the bounded number of glibc
malloc arenas (counted with malloc_info(3)); MALLOC_ARENA_MAX set by the operator wins."""

import ctypes
import os
import subprocess
import sys

import pytest

GLIBC = hasattr(ctypes.CDLL(None), "malloc_info")
PROGRAM = r"""
import ctypes, sys, tempfile, threading
from courriel import prefork
applied = prefork.limit_malloc_arenas(1) if sys.argv[1] == "limit" else None
start = threading.Barrier(4)
def allocate():
    start.wait()  # all four threads allocate at the same time
    kept = [bytearray(100_000) for _ in range(50)]
    del kept
threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile() as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(applied, open(report.name).read().count("<heap nr="))
"""


def _arenas(mode: str, **environ) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | environ
    result = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    applied, heaps = result.stdout.split()
    return applied, int(heaps)


def test_threads_share_the_bounded_arenas():
    if not GLIBC:
        pytest.skip("not glibc")
    assert _arenas("default")[1] > 1  # each allocating thread got an arena of its own
    assert _arenas("limit") == ("True", 1)


def test_the_operator_setting_wins():
    if not GLIBC:
        pytest.skip("not glibc")
    applied, heaps = _arenas("limit", MALLOC_ARENA_MAX="3")
    assert applied == "False"
    assert 1 < heaps <= 3
