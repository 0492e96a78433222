"""Benchmark: idle memory of the whole appliance, per process (issue: packaging and operations).

Not a test (tests/e2e/test_memory_bench.py runs `measure` once, with a short idle time, and
checks only that every process was found). Runs `courriel init` in a temporary data directory,
starts `courriel serve --dev` on it with every listener on a free loopback port, waits until
the admin role answers `/healthz` and every available role process is running, lets it idle,
then reads the resident (RSS), proportional (PSS) and unique (USS) set size of the supervisor
and each process below it from /proc/PID/smaps_rollup, prints a table and the totals, and stops it.

    PYTHONSAFEPATH=1 .venv/bin/python bench/memory.py [--idle 10] [--data DIR] [--json] [--exec]
    PYTHONSAFEPATH=1 .venv/bin/python bench/memory.py --watch 600 --match courriel-bench-  # during `make bench`

`--watch SECONDS` measures memory under load instead: it starts nothing, samples the running
`courriel serve` process trees (supervisors: a `courriel serve` command line without `--role`)
whose command line contains `--match` (bench/run.py's data directories are
/tmp/courriel-bench-*) once a second, for at most SECONDS or until one was seen and all are
gone, and prints the sample with the highest PSS total and each process's peak.

PSS divides each shared page by the number of processes that map it, so the PSS total is what
the process tree costs the machine; the RSS total counts shared pages (the interpreter, shared
libraries, and the modules the supervisor imported before forking the roles) once per process;
USS counts only the pages no other process maps. `--exec` measures the roles started with
fork + exec (COURRIEL_SERVE_EXEC=1, no copy-on-write sharing of the modules) for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from courriel.config import LISTENER_PORTS
from courriel.roles import ROLES, instances

COURRIEL = Path(sys.executable).parent / "courriel"
START_DEADLINE = 60.0  # seconds; the machine may be shared and slow
STOP_DEADLINE = 20.0


@dataclass
class Sample:
    """The memory of one process of the tree, in KiB."""

    pid: int
    label: str  # "supervisor", a role name, or "ROLE.child" for a process below a role
    rss_kib: int
    pss_kib: int
    uss_kib: int = 0  # Private_Clean + Private_Dirty
    pss_anon_kib: int = 0  # the anonymous part of PSS: shared only within this process tree


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_environ(exec_roles: bool = False) -> dict[str, str]:
    """The environment of the measured server: every listener on a free loopback port, no
    periodic DNS check (it would reach the network), roles forked unless `exec_roles`."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("COURRIEL_LISTENERS_", "LISTEN_")) and k != "COURRIEL_SERVE_EXEC"}
    environ["PYTHONSAFEPATH"] = "1"
    if exec_roles:
        environ["COURRIEL_SERVE_EXEC"] = "1"
    environ["COURRIEL_DOMAINS_CHECK_INTERVAL"] = "0"
    for name in LISTENER_PORTS:
        environ[f"COURRIEL_LISTENERS_{name.upper()}"] = f"127.0.0.1:{free_port()}"
    return environ


def smaps_rollup(pid: int) -> tuple[int, int, int, int] | None:
    """(RSS, PSS, USS, anonymous PSS) of `pid` in KiB, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Pss_Anon"):
            fields[key] = int(rest.split()[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields.get("Rss", 0), fields.get("Pss", 0), uss, fields.get("Pss_Anon", 0)


def children_of(pid: int) -> list[int]:
    """Live (not zombie) children of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def role_of(pid: int) -> str | None:
    """The `--role NAME` of a process's command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return argv[argv.index("--role") + 1] if "--role" in argv[:-1] else None


def expected_roles(data: Path, environ: dict[str, str]) -> dict[str, int]:
    """Role name → number of processes the supervisor runs for the data directory."""
    from courriel import config as config_mod

    config = config_mod.load(data, dev=True, environ=environ)
    expected = {}
    for spec in ROLES.values():
        if not spec.available():
            continue
        if spec.listeners and not any(config.listener(name) for name in spec.listeners):
            continue
        if spec.has_work and environ.get("COURRIEL_SERVE_EXEC") != "1":  # on demand: not without work
            continue
        expected[spec.name] = instances(spec, config)
    return expected


def process_tree(supervisor: int) -> list[tuple[int, str]]:
    """(pid, label) of the supervisor and every process below it."""
    tree = [(supervisor, "supervisor")]
    for child in children_of(supervisor):
        label = role_of(child) or "other"
        tree.append((child, label))
        frontier = children_of(child)
        for _ in range(10):  # bounded depth
            if not frontier:
                break
            tree += [(pid, f"{label}.child") for pid in frontier]
            frontier = [grandchild for pid in frontier for grandchild in children_of(pid)]
    return tree


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1.0) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _wait(condition, deadline: float, what: str, process: subprocess.Popen, log_path: Path) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"courriel serve exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() >= end:
            raise RuntimeError(f"timed out after {deadline}s waiting for {what}:\n{log_path.read_text()}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def measure(idle: float = 10.0, data: Path | None = None, exec_roles: bool = False) -> list[Sample]:
    """Start the appliance on a fresh data directory (or `data`, initialised when empty), let it
    idle `idle` seconds once every role runs, and return one sample per process."""
    with tempfile.TemporaryDirectory(prefix="courriel-memory-") as scratch:
        data = Path(data) if data is not None else Path(scratch) / "data"
        if not (data / "courriel.toml").exists():
            subprocess.run([str(COURRIEL), "init", "--data", str(data)], check=True, capture_output=True)
        environ = serve_environ(exec_roles)
        expected = expected_roles(data, environ)
        port = int(environ["COURRIEL_LISTENERS_ADMIN"].rpartition(":")[2])
        log_path = Path(scratch) / "serve.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(  # its own session: a Ctrl-C of the bench stops it through _stop
                [str(COURRIEL), "serve", "--dev", "--data", str(data)], env=environ, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                if "admin" in expected:
                    _wait(lambda: _healthy(port), START_DEADLINE, "/healthz", process, log_path)

                def all_running() -> bool:
                    labels = [label for _, label in process_tree(process.pid)]
                    return all(labels.count(role) == count for role, count in expected.items())

                _wait(all_running, START_DEADLINE, f"role processes {sorted(expected)}", process, log_path)
                time.sleep(idle)  # the quantity measured is memory after idling
                samples = []
                for pid, label in process_tree(process.pid):
                    sizes = smaps_rollup(pid)
                    if sizes is not None:
                        samples.append(Sample(pid, label, *sizes))
                return samples
            finally:
                _stop(process)


def running_supervisors(match: str = "") -> list[int]:
    """Pids of the `courriel serve` supervisors on this machine (a role has `--role`) whose
    command line contains `match`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [word for word in (entry / "cmdline").read_bytes().decode(errors="replace").split("\0") if word]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if ("serve" in argv and "--role" not in argv and any(Path(word).name == "courriel" for word in argv[:2])
                and match in " ".join(argv)):
            found.append(int(entry.name))
    return sorted(found)


def sample_tree(supervisor: int) -> list[Sample]:
    samples = []
    for pid, label in process_tree(supervisor):
        sizes = smaps_rollup(pid)
        if sizes is not None:
            samples.append(Sample(pid, label, *sizes))
    return samples


def watch(seconds: float, match: str = "", interval: float = 1.0) -> tuple[list[Sample], list[Sample]]:
    """Sample every running supervisor's tree until `seconds` pass, or until trees were seen and
    are all gone. Returns (the sample set with the highest PSS total, each label's peak), both
    taken only while the most processes were running (a supervisor alone while its roles start
    or stop holds every shared page: its PSS then equals its RSS)."""
    end = time.monotonic() + seconds
    busiest: list[Sample] = []
    peaks: dict[str, Sample] = {}
    most = 0
    seen = False
    while time.monotonic() < end:
        supervisors = running_supervisors(match)
        if seen and not supervisors:
            break
        samples = [sample for pid in supervisors for sample in sample_tree(pid)]
        seen = seen or bool(samples)
        if len(samples) > most:  # more processes than before: start over
            most, busiest, peaks = len(samples), [], {}
        if samples and len(samples) == most:
            if sum(s.pss_kib for s in samples) > sum(s.pss_kib for s in busiest):
                busiest = samples
            for sample in samples:
                peak = peaks.get(sample.label)
                if peak is None or sample.pss_kib > peak.pss_kib:
                    peaks[sample.label] = sample
        time.sleep(interval)
    return busiest, list(peaks.values())


def render(samples: list[Sample]) -> str:
    lines = [f"{'process':<16} {'pid':>8} {'RSS MiB':>9} {'PSS MiB':>9} {'USS MiB':>9}"]
    for s in samples:
        lines.append(f"{s.label:<16} {s.pid:>8} {s.rss_kib / 1024:>9.1f} {s.pss_kib / 1024:>9.1f} "
                     f"{s.uss_kib / 1024:>9.1f}")
    rss, pss, uss, anon = (sum(getattr(s, f) for s in samples) / 1024
                           for f in ("rss_kib", "pss_kib", "uss_kib", "pss_anon_kib"))
    lines.append(f"{'total':<16} {'':>8} {rss:>9.1f} {pss:>9.1f} {uss:>9.1f}")
    # File-backed pages (the interpreter, shared libraries) are shared with every other program
    # that maps them, so their PSS depends on what else runs; the anonymous part does not.
    lines.append(f"PSS {pss:.1f} MiB = {anon:.1f} anonymous (this tree only) + {pss - anon:.1f} file-backed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idling before sampling (default 10)")
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: a fresh temporary one)")
    parser.add_argument("--json", action="store_true", help="print the samples as JSON")
    parser.add_argument("--exec", dest="exec_roles", action="store_true",
                        help="start the roles with fork + exec (COURRIEL_SERVE_EXEC=1) instead of forking them")
    parser.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                        help="start nothing: sample running `courriel serve` trees for at most SECONDS")
    parser.add_argument("--match", default="", help="with --watch: only supervisors whose command line contains this")
    args = parser.parse_args(argv)
    if args.watch is not None:
        busiest, peaks = watch(args.watch, args.match)
        if args.json:
            print(json.dumps({"busiest": [asdict(s) for s in busiest], "peaks": [asdict(s) for s in peaks]}, indent=2))
        else:
            print("highest PSS total:\n" + render(busiest) + "\n\npeak of each process:\n" + render(peaks))
        return 0
    samples = measure(args.idle, args.data, args.exec_roles)
    if args.json:
        print(json.dumps([asdict(s) for s in samples], indent=2))
    else:
        print(render(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
