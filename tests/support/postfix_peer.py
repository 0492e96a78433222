"""A private Postfix instance on a loopback address, as a real remote MX for interop tests.

Everything (configuration, queue, data, log, delivered mail) lives in one scratch directory under
/tmp (the postfix and nobody users must be able to traverse it); the system instance and /etc
are never touched. The recipe follows shared/peers/start-peers: `postfix -c DIR/etc`, no chroot,
`maillog_file` (there is no syslog), `mydestination` empty.

What the peer does:
- listens with smtpd on HOST:PORT only, offering STARTTLS (a trustme certificate), PIPELINING,
  CHUNKING, 8BITMIME, SMTPUTF8, DSN (Postfix defaults);
- accepts mail for the addresses given as `mailboxes` in `domain` and writes each to a maildir
  `DIR/mail/<domain>/<local>/new/` (virtual(8), as the `nobody` user);
- rejects `reject_addresses` at RCPT with "550 5.1.1 ..." (check_recipient_access);
- never sends mail anywhere (default/relay/local transports are `error:`).

Use::

    with PostfixPeer("127.0.0.2", port, "remote.test", ["bob"], reject_addresses=["nobody"]) as peer:
        ... deliver ...
        messages = peer.delivered("bob")       # list of bytes, waits for nothing

Needs root and Debian's postfix package (`postfix_available()` says whether both are there).
Security: test-only; binds the given loopback address only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
MAIL_USER = "nobody"


def postfix_available() -> bool:
    return os.geteuid() == 0 and Path(POSTFIX).exists() and _has_user("postfix")


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {dir}/postfix.log
maillog_file_prefixes = {dir}
myhostname = mx.{domain}
mydomain = {domain}
myorigin = $myhostname
mydestination =
# Postfix accepts only configured interface addresses here (127.0.0.2 is routed to lo but not
# configured on it); master.cf binds {host} explicitly, and proxy_interfaces makes it "us".
inet_interfaces = 127.0.0.1
proxy_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP interop-peer
biff = no
append_dot_mydomain = no
smtputf8_enable = yes
alias_maps =
alias_database =
default_transport = error:interop peer: outbound delivery disabled
relay_transport = error:interop peer: outbound delivery disabled
local_transport = error:interop peer: local delivery disabled
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{dir}/etc/access
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = texthash:{dir}/etc/vmailbox
virtual_mailbox_base = {dir}/mail
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
virtual_transport = virtual
smtpd_tls_cert_file = {dir}/etc/cert.pem
smtpd_tls_key_file = {dir}/etc/key.pem
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
"""

MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixPeer:
    def __init__(self, host: str, port: int, domain: str, mailboxes: list[str],
                 reject_addresses: list[str] = (), timeout: float = 20.0):
        self.host = host
        self.port = port
        self.domain = domain
        self.mailboxes = list(mailboxes)
        self.reject_addresses = list(reject_addresses)
        self.timeout = timeout
        self.dir = Path(tempfile.mkdtemp(prefix="courriel-postfix-", dir="/tmp"))
        self.etc = self.dir / "etc"

    # ------------------------------------------------------------------ life cycle
    def start(self) -> PostfixPeer:
        import trustme

        user = pwd.getpwnam(MAIL_USER)
        # Explicit modes (the process umask may be 027, e.g. after `courriel` ran in-process): the
        # postfix user must read the configuration and maps, and traverse the directories.
        for name in ("etc", "spool", "data", "mail"):
            (self.dir / name).mkdir()
        for path in (self.dir, self.etc, self.dir / "spool"):
            os.chmod(path, 0o755)  # noqa: S103 - read by the postfix user
        os.chmod(self.dir / "data", 0o700)
        shutil.chown(self.dir / "data", "postfix", "postfix")
        os.chmod(self.dir / "mail", 0o700)
        os.chown(self.dir / "mail", user.pw_uid, user.pw_gid)
        values = dict(dir=self.dir, domain=self.domain, host=self.host, port=self.port,
                      uid=user.pw_uid, gid=user.pw_gid)
        (self.etc / "main.cf").write_text(MAIN_CF.format(**values))
        (self.etc / "master.cf").write_text(MASTER_CF.format(**values))
        (self.etc / "vmailbox").write_text(
            "".join(f"{name}@{self.domain} {self.domain}/{name}/\n" for name in self.mailboxes))
        (self.etc / "access").write_text(
            "".join(f"{name}@{self.domain} 550 5.1.1 <{name}@{self.domain}>: Recipient address rejected: "
                    f"no such user here\n" for name in self.reject_addresses))
        certificate = trustme.CA().issue_cert(f"mx.{self.domain}")
        certificate.cert_chain_pems[0].write_to_path(str(self.etc / "cert.pem"))
        certificate.private_key_pem.write_to_path(str(self.etc / "key.pem"))
        for name in ("main.cf", "master.cf", "vmailbox", "access", "cert.pem"):
            os.chmod(self.etc / name, 0o644)
        os.chmod(self.etc / "key.pem", 0o600)
        self._postfix("set-permissions", check=False)
        result = self._postfix("start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed: {result.stderr.strip()} {self.log()[-2000:]}")
        self._wait_listening()
        return self

    def _postfix(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([POSTFIX, "-c", str(self.etc), *command], capture_output=True, text=True,
                              check=check, stdin=subprocess.DEVNULL, timeout=self.timeout)

    def _wait_listening(self) -> None:
        import socket

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"postfix did not listen on {self.host}:{self.port}: {self.log()[-2000:]}")

    def _master_pid(self) -> int | None:
        try:
            return int((self.dir / "spool" / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        pid = self._master_pid()
        self._postfix("stop", check=False)
        deadline = time.monotonic() + self.timeout
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            if pid is not None:
                self._postfix("abort", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostfixPeer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ results
    def delivered(self, local_part: str) -> list[bytes]:
        """The messages delivered to one mailbox so far (maildir `new/`), oldest first."""
        folder = self.dir / "mail" / self.domain / local_part / "new"
        if not folder.is_dir():
            return []
        files = sorted(folder.iterdir(), key=lambda path: path.stat().st_mtime_ns)
        return [path.read_bytes() for path in files]

    def log(self) -> str:
        try:
            return (self.dir / "postfix.log").read_text(errors="replace")
        except OSError:
            return ""
