"""SMTP session limits come from the `[smtp]` settings: changed through the configuration (the
COURRIEL_SMTP_* environment, the same path as `courriel.toml`), they hold over a real loopback
socket; unchanged, they keep the RFC 5321 §4.5.3 defaults."""

from __future__ import annotations

import pytest
from smtp_harness import RawClient, make_smtp_world

from courriel import config as config_mod
from courriel.smtp.server import session_limits


@pytest.fixture
def strict_world(data_dir, monkeypatch):
    settings = {"smtp_max_errors": "3", "smtp_max_recipients": "2", "smtp_max_connections_per_ip": "1"}
    with make_smtp_world(data_dir, f"sqlite:///{data_dir / 'courriel.db'}", monkeypatch, settings=settings) as world:
        world.add_mailbox("alice@example.org")
        world.add_mailbox("carol@example.org")
        world.add_mailbox("dave@example.org")
        yield world


class SecondConnection:
    """Another connection from 127.0.0.1: its first reply (a 421 instead of the greeting)."""

    def __init__(self, world):
        self.client = RawClient(world.ports["mx"])

    def __enter__(self):
        return self.client.reply()

    def __exit__(self, *exc):
        self.client.close()


def test_error_limit_from_config_disconnects_after_three_errors(strict_world):
    with strict_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("RCPT TO:<alice@example.org>")[0] == 503
        assert client.command("DATA")[0] == 503
        assert client.command("NOSUCHCOMMAND")[0] == 500
        assert client.reply() == (421, "4.7.0 Too many errors, closing connection")
        assert client.closed()


def test_recipient_and_connection_limits_from_config(strict_world):
    with strict_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        # max_connections_per_ip = 1: a second session from the same address is turned away.
        with SecondConnection(strict_world) as (code, text):
            assert (code, text) == (421, "4.7.0 Too many connections from your address, try again later")
        assert client.command("MAIL FROM:<bob@remote.test>")[0] == 250
        assert client.command("RCPT TO:<alice@example.org>")[0] == 250
        assert client.command("RCPT TO:<carol@example.org>")[0] == 250
        assert client.command("RCPT TO:<dave@example.org>") == (452, "4.5.3 Too many recipients")


def test_defaults_and_documented_settings(tmp_path):
    config = config_mod.load(tmp_path, dev=True, environ={})
    limits = session_limits(config)
    assert (limits.idle_seconds, limits.session_seconds, limits.max_commands, limits.max_errors,
            limits.max_recipients, limits.max_connections_per_ip) == (300.0, 1800.0, 2000, 20, 100, 20)
    (tmp_path / config_mod.CONFIG_FILE).write_text("[smtp]\nidle_timeout = 60\nmax_commands = 50\n")
    limits = session_limits(config_mod.load(tmp_path, dev=True, environ={}))
    assert (limits.idle_seconds, limits.max_commands) == (60.0, 50)
    rendered = config_mod.render_file()
    for key in ("max_message_size", "max_recipients", "idle_timeout", "session_timeout", "max_commands",
                "max_errors", "max_auth_failures", "max_connections_per_ip", "tls_handshake_timeout"):
        assert f"# {key} = " in rendered.partition("[smtp]")[2].partition("\n[")[0], key
