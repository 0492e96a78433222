"""A raw IMAP client for transcript tests: exact command lines over a socket, the untagged
lines and the tagged line back, with a deadline on every read."""

from __future__ import annotations

import re
import socket
import time


class RawClient:
    """Raw IMAP lines over a socket; `run` returns the untagged lines and the tagged line."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.counter = 0
        self.read_until(rb"^\* OK")

    def read_until(self, pattern: bytes) -> bytes:
        deadline = time.monotonic() + 30
        while not re.search(pattern, self.buffer, re.M):
            assert time.monotonic() < deadline, self.buffer[-500:]
            chunk = self.sock.recv(1 << 20)
            assert chunk, "connection closed"
            self.buffer += chunk
        return self.buffer

    def send(self, command: bytes) -> str:
        """Send `<tag> <command>` (literals included) and return the tagged line."""
        self.counter += 1
        tag = f"q{self.counter}".encode()
        self.buffer = b""
        self.sock.sendall(tag + b" " + command + b"\r\n")
        self.read_until(rb"^" + tag + rb" (OK|NO|BAD)[^\r\n]*\r\n")
        return self.buffer.decode("utf-8", "replace")

    def run(self, command: str) -> tuple[list[str], str]:
        tag = f"q{self.counter + 1} "
        lines = self.send(command.encode()).split("\r\n")
        tagged = next(line for line in lines if line.startswith(tag))
        return [line for line in lines if line.startswith("* ")], tagged

    def close(self) -> None:
        self.run("LOGOUT")
        self.sock.close()


def login(server, address: str | None = None) -> RawClient:
    client = RawClient(server.imap_port)
    _, tagged = client.run(f'LOGIN "{address or server.address}" "{server.password}"')
    assert " OK " in tagged
    return client


def response_code(lines: list[str], name: str) -> int:
    for line in lines:
        match = re.search(rf"\[{name} (\d+)\]", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no {name} in {lines}")


def fetch_uids(lines: list[str]) -> list[int]:
    return [int(re.search(r"UID (\d+)", line).group(1)) for line in lines if re.match(r"\* \d+ FETCH ", line)]
