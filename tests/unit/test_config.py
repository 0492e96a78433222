"""Configuration: profiles, file, environment overrides, rendered file, bad input."""

import tomllib

import pytest

from courriel import config as config_mod


def test_production_and_dev_ports(tmp_path):
    prod = config_mod.load(tmp_path, dev=False, environ={})
    dev = config_mod.load(tmp_path, dev=True, environ={})
    expected = {"mx": (25, 2525), "submission": (587, 2587), "submissions": (465, 2465),
                "imap": (143, 2143), "imaps": (993, 2993), "admin": (8443, 8080)}
    for role, (prod_port, dev_port) in expected.items():
        assert prod.listener(role)[1] == prod_port
        assert dev.listener(role) == ("127.0.0.1", dev_port)


def test_file_then_environment(tmp_path):
    (tmp_path / "courriel.toml").write_text('[smtp]\nmax_recipients = 7\n[dns]\nnameservers = ["10.0.0.1"]\n')
    env = {"COURRIEL_DNS_NAMESERVERS": "127.0.0.1:5353, 127.0.0.2"}
    cfg = config_mod.load(tmp_path, environ=env)
    assert cfg.get("smtp", "max_recipients") == 7
    assert cfg.get("dns", "nameservers") == ["127.0.0.1:5353", "127.0.0.2"]


def test_database_url_defaults_to_sqlite_in_data_dir(tmp_path):
    cfg = config_mod.load(tmp_path, environ={})
    assert cfg.database_url == f"sqlite:///{tmp_path / 'courriel.db'}"


@pytest.mark.parametrize("content, message", [
    ("[smtp]\nmax_recipients = 'many'\n", "must be a int"),
    ("[smtp]\nno_such_key = 1\n", "unknown setting"),
    ("[smtp\n", "courriel.toml"),
])
def test_bad_file_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "courriel.toml").write_text(content)
    with pytest.raises(config_mod.ConfigError, match=message):
        config_mod.load(tmp_path, environ={})


def test_bad_environment_value(tmp_path):
    with pytest.raises(config_mod.ConfigError, match="COURRIEL_SMTP_MAX_RECIPIENTS"):
        config_mod.load(tmp_path, environ={"COURRIEL_SMTP_MAX_RECIPIENTS": "x"})


def test_rendered_file_documents_every_key_and_parses():
    text = config_mod.render_file({("server", "hostname"): "mail.example.com"})
    for setting in config_mod.SCHEMA:
        assert f"{setting.key} = " in text
    document = tomllib.loads(text)
    assert document == {section: {} for section in {s.section for s in config_mod.SCHEMA}} | {
        "server": {"hostname": "mail.example.com"}}


def test_tests_never_resolve_through_the_machine_resolver(tmp_path):
    """The suite's guard: DNS goes to loopback only (tests/conftest.py)."""
    cfg = config_mod.load(tmp_path)
    assert cfg.get("dns", "nameservers")
    assert all(server.startswith("127.") for server in cfg.get("dns", "nameservers"))
