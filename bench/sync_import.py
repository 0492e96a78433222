"""Benchmark: initial import of N messages from a loopback Dovecot, Courriel's sync vs mbsync.

Not a test. Starts a private Dovecot (tests/support/dovecot_server.py), fills its INBOX with
N messages (default 10,000, 1-20 KiB each), then runs, each in a child process of its own:
- `courriel sync run --once` into a fresh data directory (SQLite), and
- `mbsync` (Debian package isync) pulling the same INBOX into a maildir,
and prints messages/s and the child's peak resident memory (wait4 ru_maxrss) for both.

    PYTHONSAFEPATH=1 .venv/bin/python bench/sync_import.py [--messages 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imapclient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from dovecot_server import DovecotServer  # noqa: E402

from courriel import config as config_mod  # noqa: E402
from courriel.cli import main as cli_main  # noqa: E402
from courriel.db import Database  # noqa: E402
from courriel.imapsync import accounts  # noqa: E402
from courriel.models import Domain, Mailbox  # noqa: E402
from courriel.store import create_default_folders  # noqa: E402


def make_message(n: int, rng: random.Random) -> bytes:
    size = rng.randint(1024, 20 * 1024)
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
    body = line * (size // len(line) + 1)
    return (f"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: bench {n}\r\n"
            f"Message-ID: <bench.{n}@example.net>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n").encode() + body


def fill(server: DovecotServer, count: int) -> None:
    rng = random.Random(1)
    with imapclient.IMAPClient(server.host, port=server.port, ssl=False) as client:
        client.login(server.user, server.password)
        for start in range(0, count, 500):
            # RFC 3502 MULTIAPPEND: one command per 500 messages.
            client.multiappend("INBOX", [make_message(n, rng) for n in range(start, min(count, start + 500))])


def _peak_kib(pid: int) -> int | None:
    """VmHWM of a running process (per address space, so exec starts it afresh, unlike
    ru_maxrss, which keeps the parent's high-water mark across fork + exec)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def run_child(command: list[str], env: dict | None = None) -> tuple[float, int, int]:
    """(seconds, exit status, peak RSS in KiB) of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0
    deadline = time.monotonic() + 3600
    while child.poll() is None and time.monotonic() < deadline:
        peak = max(peak, _peak_kib(child.pid) or 0)
        time.sleep(0.02)  # sampling interval of the memory high-water mark
    if child.poll() is None:
        child.kill()
    child.wait()
    elapsed = time.perf_counter() - started
    err = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if child.returncode != 0:
        print(f"{command[0]} failed ({child.returncode}): {err[-2000:]}", file=sys.stderr)
    return elapsed, child.returncode, peak


def courriel_run(server: DovecotServer, work: Path) -> tuple[float, int, int]:
    data = work / "courriel-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURRIEL_")} | {"PYTHONSAFEPATH": "1"}
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        assert cli_main(["init", "--data", str(data)]) == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    config = config_mod.load(data)
    db = Database(config.database_url)
    with db.write() as session:
        domain = Domain(name="example.org", verification_token=secrets.token_hex(8))
        session.add(domain)
        session.flush()
        mailbox = Mailbox(domain_id=domain.id, local_part="bench", address="bench@example.org")
        session.add(mailbox)
        session.flush()
        create_default_folders(session, mailbox.id)
        mailbox_id = mailbox.id
    account = accounts.create(db, data, mailbox_id, server.user, server.password, protocol="imap",
                              host="127.0.0.1", port=server.port, security="none", username=server.user)
    db.dispose()
    command = [sys.executable, "-c", "import sys; from courriel.cli import main; sys.exit(main())",
               "sync", "run", "--once", str(account), "--data", str(data)]
    return run_child(command, env)


def mbsync_run(server: DovecotServer, work: Path) -> tuple[float, int, int]:
    maildir = work / "maildir"
    maildir.mkdir()
    rc = work / "mbsyncrc"
    rc.write_text(f"""IMAPAccount bench
Host 127.0.0.1
Port {server.port}
User {server.user}
Pass {server.password}
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bench

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX

Channel bench
Far :remote:
Near :local:
Patterns INBOX
Create Near
Sync Pull
SyncState *
""")
    return run_child(["mbsync", "-c", str(rc), "-q", "bench"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="courriel-bench-sync-"))
    server = DovecotServer()
    try:
        server.start()
        started = time.perf_counter()
        fill(server, args.messages)
        print(f"filled Dovecot INBOX with {args.messages} messages in {time.perf_counter() - started:.1f}s")
        results = {"courriel sync": courriel_run(server, work)}
        if shutil.which("mbsync"):
            results["mbsync (isync)"] = mbsync_run(server, work)
        else:
            print("mbsync is not installed (Debian package isync): skipped")
        print(f"{'importer':16} {'seconds':>8} {'msg/s':>8} {'peak RSS MiB':>13} status")
        for name, (seconds, status, rss_kib) in results.items():
            print(f"{name:16} {seconds:8.1f} {args.messages / seconds:8.0f} {rss_kib / 1024:13.1f} {status}")
        return 0 if all(r[1] == 0 for r in results.values()) else 1
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
