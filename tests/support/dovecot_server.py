"""A private Dovecot IMAP server on 127.0.0.1 for interop tests (a real reference peer).

`DovecotServer` renders its own configuration into a temporary directory (nothing under
/etc is read or changed), starts `dovecot -F` on a free loopback port with a passwd-file
user and a maildir inside that directory, and stops it by its own process id.

Use the `dovecot` fixture (session scope) from a test module:

    from dovecot_server import dovecot  # noqa: F401

    def test_x(dovecot):
        mailbox = dovecot.fresh_mailbox()  # a mailbox of this test's own
        with dovecot.client() as imap:     # imaplib.IMAP4, logged in
            imap.append(mailbox, None, None, b"...")

The fixture skips the test when Dovecot is not installed (Debian package dovecot-imapd,
listed in TEST_DEBIAN_PACKAGES of the Makefile). As root, Dovecot needs a non-root
mail user (`nobody`) and directories that user can traverse.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# COURRIEL_TEST_DOVECOT names another dovecot binary (or a missing one, to check the skip).
DOVECOT = os.environ.get("COURRIEL_TEST_DOVECOT") or shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "tester@example.test"
PASSWORD = "secret-pw"
START_TIMEOUT = 20.0

_CONFIG = """\
# Standalone test instance: nothing from /etc/dovecot is included.
instance_name = {instance}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = {protocols}
listen = 127.0.0.1
# Plaintext logins are allowed: loopback only, test account only.
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5
{ssl}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/etc/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/etc/users
  default_fields = uid={uid} gid={gid} home={root}/mail/%d/%n
}}
mail_location = maildir:~/Maildir
first_valid_uid = 1
first_valid_gid = 1
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
{pop3_section}"""


# Added with DovecotServer(pop3=True) (Debian package dovecot-pop3d).
_POP3_SECTION = """\
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s_port}
  }}
}}
protocol pop3 {{
  pop3_uidl_format = %08Xu%08Xv
  mail_max_userip_connections = 50
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dovecot_available() -> bool:
    return Path(DOVECOT).exists()


class DovecotServer:
    """One running Dovecot instance owned by the test process."""

    def __init__(self, pop3: bool = False, tls: bool = False) -> None:
        # Under /tmp so that every Dovecot user can traverse the path.
        self.root = Path(tempfile.mkdtemp(prefix="courriel-dovecot-", dir="/tmp"))
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.user = USER
        self.password = PASSWORD
        self.process: subprocess.Popen | None = None
        self.pop3 = pop3
        self.pop3_port = _free_port() if pop3 else None
        # tls=True: STARTTLS on the plain ports, implicit TLS on imaps_port / pop3s_port, with a
        # certificate for 127.0.0.1 from a test CA whose PEM is at `ca_file` (needs trustme).
        self.tls = tls
        self.imaps_port = _free_port() if tls else 0
        self.pop3s_port = _free_port() if tls and pop3 else 0
        self.ca_file: Path | None = None

    def _users(self) -> tuple[int, int, str, str, str]:
        """(mail uid, mail gid, login user, internal user, internal group)."""
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            login = "dovenull" if _has_user("dovenull") else "nobody"
            internal = "dovecot" if _has_user("dovecot") else "nobody"
            group = internal if internal != "nobody" else "nogroup"
            return nobody.pw_uid, nobody.pw_gid, login, internal, group
        me = pwd.getpwuid(os.geteuid())
        return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name, grp.getgrgid(me.pw_gid).gr_name

    def start(self) -> None:
        uid, gid, login_user, internal_user, internal_group = self._users()
        for name in ("etc", "run", "state", "mail"):
            (self.root / name).mkdir()
            # Explicit modes: the process umask may be 027 (`courriel.cli.main` sets it).
            (self.root / name).chmod(0o755)
        self.root.chmod(0o755)
        (self.root / "mail").chmod(0o777)
        if os.geteuid() == 0:
            os.chown(self.root / "mail", uid, gid)
        (self.root / "etc" / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        (self.root / "etc" / "users").chmod(0o644)
        config = self.root / "etc" / "dovecot.conf"
        config.write_text(_CONFIG.format(
            instance=f"courriel-test-{self.port}", root=self.root, uid=uid, gid=gid, port=self.port,
            login_user=login_user, internal_user=internal_user, internal_group=internal_group,
            protocols="imap pop3" if self.pop3 else "imap", imaps_port=self.imaps_port, ssl=self._ssl_settings(),
            pop3_section=_POP3_SECTION.format(pop3_port=self.pop3_port, pop3s_port=self.pop3s_port)
            if self.pop3 else "",
        ))
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"dovecot exited at start: {err}{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(100).startswith(b"* OK"):
                    return
            time.sleep(0.05)  # poll interval while waiting for the listener, bounded by the deadline
        raise RuntimeError(f"dovecot did not listen on {self.host}:{self.port}: {self.log()}")

    def _ssl_settings(self) -> str:
        if not self.tls:
            return "ssl = no"
        import trustme

        authority = trustme.CA()
        certificate = authority.issue_cert("127.0.0.1", "localhost")
        etc = self.root / "etc"
        certificate.private_key_and_cert_chain_pem.write_to_path(str(etc / "server.pem"))
        (etc / "server.pem").chmod(0o600)
        self.ca_file = etc / "ca.pem"
        authority.cert_pem.write_to_path(str(self.ca_file))
        self.ca_file.chmod(0o644)
        return f"ssl = yes\nssl_cert = <{etc}/server.pem\nssl_key = <{etc}/server.pem"

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def fresh_mailbox(self, prefix: str = "test") -> str:
        """Create a mailbox with a name no other test uses, and return its name."""
        self._mailboxes = getattr(self, "_mailboxes", 0) + 1
        name = f"{prefix}-{os.getpid()}-{self._mailboxes}"
        with self.client() as imap:
            typ, answer = imap.create(name)
            if typ != "OK":
                raise RuntimeError(f"CREATE {name} failed: {answer}")
        return name

    def add_user(self, user: str, password: str) -> None:
        """Another account (passwd-file is re-read when it changes), for tests that own a whole account."""
        with (self.root / "etc" / "users").open("a") as handle:
            handle.write(f"{user}:{{PLAIN}}{password}::::::\n")
        # Dovecot re-reads the file at most once a second: wait until the login works.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with self.client(user, password):
                    return
            except imaplib.IMAP4.error as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{user} cannot log in: {exc}\n{self.log()[-3000:]}") from exc
                time.sleep(0.2)  # poll interval, bounded by the deadline

    @contextlib.contextmanager
    def client(self, user: str | None = None, password: str | None = None):
        """An imaplib client logged in as the test user (or the given one)."""
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            imap.login(user or self.user, password or self.password)
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def dovecot():
    if not dovecot_available():
        pytest.skip("dovecot is not installed (Debian package dovecot-imapd)")
    server = DovecotServer()
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server
    server.stop()
