"""`make bench`: Courriel and a Postfix + Dovecot pair measured in one run by the shared mailbench.

Not a test. Owns the benchmark procedure: a throwaway Courriel data directory (`courriel init`,
domain `bench.test`, mailboxes user1..user100 with password `pass`) served by
`courriel serve --dev` on free loopback ports, then the private Postfix + Dovecot peers
(`../shared/peers/start-peers`, root only) on free loopback ports; both get the same mailbench
scenarios with the same parameters and seed, one server at a time. Writes to the results
directory: `courriel.jsonl`, `peers.jsonl` (mailbench JSON lines), `mailbench-*.txt` (its human
output), `courriel-server.log`, `env.txt`, and `summary.md` / `summary.json` (the table of
Courriel/peers ratios per metric).

The harness is not part of this repository: it is `../shared/bench/mailbench.py` next to it.

    .venv/bin/python bench/run.py [--out bench-out] [--messages 1000] [--targets courriel,peers]

Security: binds and connects to 127.0.0.1 only; the bench password `pass` is accepted through
a policy override in this process's configuration only (never written to a config file).
Durability: everything it writes is scratch (temporary directories, the results directory).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT.parent / "shared" / "bench" / "mailbench.py"
PEERS = ROOT.parent / "shared" / "peers"
sys.path.insert(0, str(ROOT / "tests" / "support"))

from dns_test_server import DnsTestServer  # noqa: E402

DOMAIN = "bench.test"
PASSWORD = "pass"  # noqa: S105 (the bench accounts' password, as in ../shared/peers)
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0

# Phases: `smtp` measures SMTP alone (no IMAP session open), `full` everything, ingest with
# delivery verification. Each scenario is one mailbench invocation, so that Courriel's CPU can be
# split by role around it.
PHASES = {
    "smtp": [("smtp-ingest", ["--no-ingest-verify"])],
    "full": [("smtp-ingest", []), ("deliver-e2e", []), ("imap-read", []), ("idle-push", [])],
}
ROLE_STARTED = re.compile(r"role started role=(\w+) child_pid=(\d+)")


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime + cutime + cstime of one process (Linux /proc), None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_greeting(port: int, prefix: bytes, deadline: float) -> bool:
    """Poll until a server on 127.0.0.1:`port` sends a greeting starting with `prefix`."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.settimeout(5)
                if sock.recv(512).startswith(prefix):
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


# --------------------------------------------------------------------------- Courriel


class CourrielTarget:
    """A `courriel serve --dev` on a throwaway data directory with the bench mailboxes."""

    name = "courriel"

    def __init__(self, out: Path, users: int):
        self.out = out
        self.users = users
        self.data = Path(tempfile.mkdtemp(prefix="courriel-bench-"))
        self.smtp_port, self.imap_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None
        self.log = None
        # SPF, DMARC and the reverse lookup of the client go to a loopback DNS server, never off
        # this machine: 127.0.0.1 has PTR localhost (forward-confirmed), every other name NXDOMAIN.
        self.dns = DnsTestServer().start()
        self.dns.add_ptr("127.0.0.1", "localhost")
        self.dns.add("localhost", "A", "127.0.0.1")

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "COURRIEL_LISTENERS_MX": f"127.0.0.1:{self.smtp_port}",
            "COURRIEL_LISTENERS_IMAP": f"127.0.0.1:{self.imap_port}",
            "COURRIEL_LISTENERS_SUBMISSION": f"127.0.0.1:{free_port()}",
            "COURRIEL_LISTENERS_SUBMISSIONS": f"127.0.0.1:{free_port()}",
            "COURRIEL_LISTENERS_IMAPS": f"127.0.0.1:{free_port()}",
            "COURRIEL_LISTENERS_ADMIN": f"127.0.0.1:{free_port()}",
            "COURRIEL_IMAP_MAX_CONNECTIONS_PER_USER": "1000",
            "COURRIEL_IMAP_MAX_CONNECTIONS_PER_IP": "1000",
            "COURRIEL_PASSWORDS_MIN_LENGTH": "1",
            "COURRIEL_PASSWORDS_MIN_CLASSES": "0",
            "COURRIEL_DOMAINS_CHECK_INTERVAL": "0",
            # Like the peers' Postfix `mynetworks = 127.0.0.0/8`: the bench sender is mailbench@bench.test.
            "COURRIEL_SMTP_TRUSTED_NETWORKS": "127.0.0.0/8",
            "COURRIEL_DNS_NAMESERVERS": self.dns.nameserver,
            "COURRIEL_DNS_TIMEOUT": "2",
            "PYTHONSAFEPATH": "1",
        })
        return env

    def provision(self) -> None:
        """`courriel init`, then the domain and mailboxes through the admin service layer."""
        courriel = Path(sys.executable).parent / "courriel"
        subprocess.run([str(courriel), "init", "--data", str(self.data)], check=True,
                       env=self.environment(), stdout=subprocess.DEVNULL)
        from courriel import config as config_mod
        from courriel import passwords
        from courriel.admin import services
        from courriel.db import Database

        config = config_mod.load(self.data, dev=True, environ=self.environment())
        db = Database(config.database_url)
        try:
            hasher = passwords.PasswordHasher.from_config(config)
            policy = passwords.PasswordPolicy.from_config(config)
            services.add_domain(db, DOMAIN)
            for n in range(1, self.users + 1):
                services.add_mailbox(db, hasher, policy, f"user{n}@{DOMAIN}", password=PASSWORD)
        finally:
            db.dispose()

    def start(self) -> None:
        self.log = open(self.out / "courriel-server.log", "ab")  # noqa: SIM115 (closed in stop)
        courriel = Path(sys.executable).parent / "courriel"
        self.process = subprocess.Popen(
            [str(courriel), "serve", "--dev", "--data", str(self.data)],
            env=self.environment(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        if not (wait_for_greeting(self.smtp_port, b"220", deadline)
                and wait_for_greeting(self.imap_port, b"* OK", deadline)):
            self.stop()
            raise SystemExit(f"courriel serve did not answer on SMTP {self.smtp_port} / IMAP {self.imap_port} "
                             f"within {START_TIMEOUT:.0f} s; see {self.out / 'courriel-server.log'}")

    def mailbench_args(self) -> list[str]:
        return ["--smtp-port", str(self.smtp_port), "--imap-port", str(self.imap_port),
                "--server-pid", str(self.data / "run" / "courriel.pid")]

    def role_cpu(self) -> dict[str, float]:
        """CPU seconds so far of each role process (the latest one started for each role)."""
        pids = dict(ROLE_STARTED.findall((self.out / "courriel-server.log").read_text(errors="replace")))
        if self.process is not None:
            pids["supervisor"] = str(self.process.pid)
        found = {role: process_cpu_seconds(int(pid)) for role, pid in pids.items()}
        return {role: seconds for role, seconds in found.items() if seconds is not None}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        if self.log is not None:
            self.log.close()
            self.log = None

    def describe(self) -> str:
        return "courriel serve --dev (SQLite), version " + subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True,
        ).stdout.strip()

    def cleanup(self) -> None:
        self.dns.stop()
        shutil.rmtree(self.data, ignore_errors=True)


# --------------------------------------------------------------------------- Postfix + Dovecot


class PeersTarget:
    """The private Postfix + Dovecot of ../shared/peers on free loopback ports."""

    name = "peers"

    def __init__(self, out: Path, users: int):
        self.out = out
        self.users = users
        # Short (unix socket paths) and traversable: postfix, dovecot and nobody must reach it.
        self.scratch = Path(tempfile.mkdtemp(prefix="cbench-peers-"))
        self.scratch.chmod(0o755)
        self.smtp_port, self.imap_port = free_port(), free_port()
        self.env: dict[str, str] = {}

    def provision(self) -> None:
        if os.geteuid() != 0:
            raise SystemExit("the Postfix + Dovecot peers need root (start-peers); run as root or "
                             "use --targets courriel")

    def start(self) -> None:
        env = dict(os.environ, PEERS_SMTP_PORT=str(self.smtp_port), PEERS_IMAP_PORT=str(self.imap_port),
                   PEERS_USERS=str(self.users), PEERS_PASSWORD=PASSWORD, PEERS_DOMAIN=DOMAIN)
        with open(self.out / "peers-start.log", "ab") as log:
            result = subprocess.run([str(PEERS / "start-peers"), str(self.scratch), "--fresh"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            self.stop()
            raise SystemExit(f"start-peers failed; see {self.out / 'peers-start.log'}")
        text = subprocess.run(["bash", "-c", 'set -a; . "$1"; env -0', "-", str(self.scratch / "peers.env")],
                              capture_output=True, check=True).stdout
        self.env = {}
        for item in text.decode().split("\0"):
            key, sep, value = item.partition("=")
            if sep:
                self.env[key] = value

    def role_cpu(self) -> dict[str, float]:
        return {}

    def mailbench_args(self) -> list[str]:
        d = Path(self.env["PEERS_DIR"])
        return ["--smtp-port", self.env["SMTP_PORT"], "--imap-port", self.env["IMAP_PORT"],
                "--server-pid", str(d / "postfix" / "spool" / "pid" / "master.pid"),
                "--server-pid", str(d / "dovecot" / "run" / "master.pid")]

    def stop(self) -> None:
        if self.scratch.exists():
            with open(self.out / "peers-start.log", "ab") as log:
                subprocess.run([str(PEERS / "stop-peers"), str(self.scratch)], stdout=log, stderr=subprocess.STDOUT)

    def describe(self) -> str:
        pf = subprocess.run(["postconf", "-d", "mail_version"], capture_output=True, text=True).stdout.split()
        dv = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.strip()
        return f"Postfix {pf[-1] if pf else '?'} + Dovecot {dv} (maildir, LMTP)"

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


TARGETS = {"courriel": CourrielTarget, "peers": PeersTarget}


# --------------------------------------------------------------------------- summary


def _lat(latency: dict | None, key: str):
    return (latency or {}).get(key)


def _per(total_s, count):
    if total_s is None or not count:
        return None
    return round(1000.0 * total_s / count, 3)


def scenario_metrics(record: dict) -> list[tuple[str, str, float | None]]:
    """(metric, direction, value) rows of one mailbench record; direction is `higher` or `lower`
    (which one is better), empty for context (no ratio)."""
    s, m, p = record["scenario"], record.get("metrics") or {}, record.get("params") or {}
    rows: list[tuple[str, str, float | None]] = [
        ("host load average (1 min) at start", "", ((record.get("host_loadavg") or {}).get("start") or [None])[0]),
    ]
    if s == "smtp-ingest":
        rows += [("accepted msgs/s", "higher", m.get("msgs_per_s")),
                 ("MAIL..250 p50 ms", "lower", _lat(m.get("latency"), "p50_ms")),
                 ("MAIL..250 p99 ms", "lower", _lat(m.get("latency"), "p99_ms")),
                 ("server CPU ms/msg (accept phase)", "lower",
                  _per(m.get("server_cpu_s_accept_phase"), m.get("accepted")))]
        if "delivered_msgs_per_s" in m or "delivered" in m:
            rows += [("delivered msgs/s (IMAP-visible)", "higher", m.get("delivered_msgs_per_s")),
                     ("server CPU ms/msg (accept+deliver)", "lower", m.get("server_cpu_ms_per_msg"))]
    elif s == "deliver-e2e":
        rows += [("sent msgs/s", "higher", m.get("send_msgs_per_s")),
                 ("250->visible p50 ms", "lower", _lat(m.get("latency_from_accept"), "p50_ms")),
                 ("250->visible p99 ms", "lower", _lat(m.get("latency_from_accept"), "p99_ms")),
                 ("all visible after s", "lower", m.get("all_visible_after_s")),
                 ("server CPU ms/msg", "lower", _per(m.get("server_cpu_s"), m.get("accepted")))]
    elif s == "imap-read":
        fill = m.get("append_fill") or {}
        rows += [("APPEND msgs/s", "higher", fill.get("msgs_per_s")),
                 ("APPEND batch p50 ms", "lower", _lat(fill.get("batch_latency"), "p50_ms")),
                 ("APPEND batch p99 ms", "lower", _lat(fill.get("batch_latency"), "p99_ms")),
                 ("server CPU ms/msg (APPEND)", "lower", _per(fill.get("server_cpu_s"), fill.get("messages")))]
        for ps in m.get("passes") or []:
            n = ps.get("pass")
            rows += [(f"pass {n}: FETCH envelope msgs/s", "higher", ps.get("fetch_envelope_msgs_per_s")),
                     (f"pass {n}: SEARCH TEXT ms", "lower", ps.get("search_text_ms")),
                     (f"pass {n}: FETCH BODY[] MB/s", "higher", ps.get("fetch_body_MB_per_s")),
                     (f"pass {n}: STORE 1:* ms", "lower", ps.get("store_seen_all_ms")),
                     (f"pass {n}: server CPU ms/msg", "lower", _per(ps.get("server_cpu_s"), p.get("messages")))]
    elif s == "imap-mixed":
        rows += [("ops/s", "higher", m.get("ops_per_s")),
                 ("server CPU ms/op", "lower", m.get("server_cpu_ms_per_op"))]
        for op, d in (m.get("per_op") or {}).items():
            rows += [(f"{op} p50 ms", "lower", d.get("p50_ms")), (f"{op} p99 ms", "lower", d.get("p99_ms"))]
    elif s == "idle-push":
        rows += [("pushes seen", "higher", m.get("ok")),
                 ("250->EXISTS p50 ms", "lower", _lat(m.get("latency_from_accept"), "p50_ms")),
                 ("250->EXISTS p99 ms", "lower", _lat(m.get("latency_from_accept"), "p99_ms")),
                 ("server CPU ms/push", "lower", _per(m.get("server_cpu_s"), m.get("tries")))]
    return rows


def load_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(records: dict[str, list[dict]], courriel_roles: list[dict] = ()) -> list[dict]:
    """One row per (phase, scenario, run, metric): the value of each target and Courriel/peers.
    `courriel_roles` (phase, scenario, cpu_s by role) adds a row of Courriel's CPU by role."""
    table: dict[tuple, dict] = {}
    for target, recs in records.items():
        for rec in recs:
            phase = (rec.get("label") or "").rsplit(" ", 1)[-1]
            key0 = (phase, rec["scenario"], rec.get("run", 1))
            ok_key = (*key0, "scenario ok")
            table.setdefault(ok_key, {"direction": "", "values": {}})["values"][target] = bool(rec.get("ok"))
            for metric, direction, value in scenario_metrics(rec):
                row = table.setdefault((*key0, metric), {"direction": direction, "values": {}})
                row["values"][target] = value
    for entry in courriel_roles:
        busy = sorted(entry["cpu_s"].items(), key=lambda item: -item[1])
        text = ", ".join(f"{role} {seconds:.1f}" for role, seconds in busy if seconds >= 0.05) or "-"
        key = (entry["phase"], entry["scenario"], 1, "Courriel CPU s by role (whole mailbench invocation)")
        table[key] = {"direction": "", "values": {"courriel": text}}
    order: dict[tuple, int] = {}
    for key in table:
        order.setdefault(key[:3], len(order))
    rows = []
    for (phase, scenario, run, metric), row in sorted(table.items(), key=lambda item: order[item[0][:3]]):
        c, p = row["values"].get("courriel"), row["values"].get("peers")
        ratio = None
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (c, p))
        if row["direction"] and numbers and p:
            ratio = round(c / p, 3)
        rows.append({"phase": phase, "scenario": scenario, "run": run, "metric": metric,
                     "better": row["direction"], "courriel": c, "peers": p, "courriel_over_peers": ratio})
    return rows


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "ok" if value else "FAILED"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def render_table(rows: list[dict]) -> str:
    lines = ["| phase | scenario | metric | better | Courriel | Postfix+Dovecot | Courriel/peers |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        run = f" #{r['run']}" if r["run"] != 1 else ""
        lines.append(f"| {r['phase']} | {r['scenario']}{run} | {r['metric']} | {r['better']} | "
                     f"{_cell(r['courriel'])} | {_cell(r['peers'])} | {_cell(r['courriel_over_peers'])} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def harness_args(args) -> list[str]:
    """Parameters shared by both targets (same workload, same seed)."""
    return ["--smtp-host", "127.0.0.1", "--imap-host", "127.0.0.1",
            "--user-pattern", "user{n}@" + DOMAIN, "--users", str(args.users), "--password", PASSWORD,
            "--domain", DOMAIN, "--seed", str(args.seed), "--repeat", str(args.repeat), "--pause", "1",
            "--messages", str(args.messages), "--read-messages", str(args.read_messages),
            "--e2e-messages", str(args.e2e_messages), "--idle-tries", str(args.idle_tries),
            "--mixed-duration", str(args.mixed_duration), "--drain-timeout", "180",
            "--scenario-timeout", str(args.scenario_timeout), *args.mailbench_arg]


def run_target(target, args, out: Path) -> dict[str, int]:
    """Every scenario of every phase against one target; returns mailbench's exit status by
    `phase scenario`. Courriel's CPU by role goes to `courriel-roles.jsonl`."""
    codes = {}
    jsonl = out / f"{target.name}.jsonl"
    target.provision()
    target.start()
    try:
        for phase in args.phases:
            text_path = out / f"mailbench-{target.name}-{phase}.txt"
            text_path.unlink(missing_ok=True)
            for scenario, extra in PHASES[phase]:
                print(f"== {target.name} {phase}: {scenario}", flush=True)
                command = [sys.executable, str(HARNESS), *harness_args(args), "--scenario", scenario, *extra,
                           *target.mailbench_args(), "--label", f"{target.name} {phase}", "--json", str(jsonl)]
                before = target.role_cpu()
                with open(text_path, "ab") as text:
                    result = subprocess.run(command, stdout=text, stderr=subprocess.STDOUT,
                                            timeout=args.scenario_timeout * 3)
                after = target.role_cpu()
                codes[f"{phase} {scenario}"] = result.returncode
                if after:
                    spent = {role: round(after[role] - before.get(role, 0.0), 2) for role in after}
                    with open(out / f"{target.name}-roles.jsonl", "a") as roles:
                        roles.write(json.dumps({"phase": phase, "scenario": scenario, "cpu_s": spent}) + "\n")
            print(text_path.read_text(errors="replace"), flush=True)
    finally:
        target.stop()
    return codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-out", help="results directory (default ./bench-out)")
    parser.add_argument("--targets", default="courriel,peers", help="comma-separated: courriel, peers")
    parser.add_argument("--phases", default="smtp,full",
                        help="comma-separated: smtp (smtp-ingest without IMAP), full (every scenario)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000, help="smtp-ingest messages")
    parser.add_argument("--read-messages", type=int, default=1000, help="imap-read mailbox size")
    parser.add_argument("--e2e-messages", type=int, default=200)
    parser.add_argument("--idle-tries", type=int, default=20)
    parser.add_argument("--mixed-duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario-timeout", type=float, default=300.0)
    parser.add_argument("--mailbench-arg", action="append", default=[],
                        help="extra mailbench argument for both targets (repeatable, e.g. --mailbench-arg=--no-mixed)")
    parser.add_argument("--keep", action="store_true", help="keep the Courriel data directory and peers scratch")
    args = parser.parse_args(argv)
    if not HARNESS.is_file():
        print(f"mailbench not found at {HARNESS}: it lives next to this repository, in ../shared/bench/",
              file=sys.stderr)
        return 2
    args.phases = [p for p in args.phases.split(",") if p]
    names = [t for t in args.targets.split(",") if t]
    unknown = [x for x in args.phases if x not in PHASES] + [t for t in names if t not in TARGETS]
    if unknown:
        parser.error(f"unknown phase or target: {', '.join(unknown)}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        (out / f"{name}.jsonl").unlink(missing_ok=True)
        (out / f"{name}-roles.jsonl").unlink(missing_ok=True)
    targets = [TARGETS[name](out, args.users) for name in names]
    env_lines = [
        f"date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
        f"cpus: {os.cpu_count()}  loadavg at start: {Path('/proc/loadavg').read_text().strip()}",
        f"python: {sys.version.split()[0]}",
        *[f"{t.name}: {t.describe()}" for t in targets],
        f"parameters: {' '.join(harness_args(args))}",
    ]
    (out / "env.txt").write_text("\n".join(env_lines) + "\n")

    codes: dict[str, dict[str, int]] = {}
    try:
        for target in targets:
            codes[target.name] = run_target(target, args, out)
    finally:
        if not args.keep:
            for target in targets:
                target.cleanup()

    rows = summarize({t.name: load_records(out / f"{t.name}.jsonl") for t in targets},
                     load_records(out / "courriel-roles.jsonl"))
    table = render_table(rows)
    header = "\n".join(env_lines) + "\n\n"
    (out / "summary.md").write_text(header + table)
    (out / "summary.json").write_text(json.dumps({"env": env_lines, "exit_codes": codes, "rows": rows}, indent=1))
    print(header + table)
    failed = {f"{t} {p}": c for t, phases in codes.items() for p, c in phases.items() if c != 0}
    if failed:
        print("mailbench reported failures (exit status != 0): " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
