"""`courriel init`: data directory, documented config, migrations, TLS key mode, admin once."""

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

from sqlalchemy import select

from courriel import config as config_mod
from courriel import passwords, schema
from courriel.db import Database
from courriel.models import User

COURRIEL = Path(sys.executable).parent / "courriel"


def run(*args, env=None):
    return subprocess.run([COURRIEL, *args], capture_output=True, text=True, env=env)


def test_init_creates_everything_once(tmp_path):
    data = tmp_path / "data"
    first = run("init", "--data", str(data), "--hostname", "mail.example.com", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["changed"] and report["admin_user"] == "admin"
    password = report["admin_password"]
    assert len(password) >= 16

    document = tomllib.loads((data / "courriel.toml").read_text())
    assert document["server"]["hostname"] == "mail.example.com"
    assert stat.S_IMODE(os.stat(data / "tls" / "key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data / "keys").st_mode) == 0o700
    assert "BEGIN CERTIFICATE" in (data / "tls" / "cert.pem").read_text()

    cfg = config_mod.load(data)
    db = Database(cfg.database_url)
    assert schema.current_revision(db) == schema.head_revision()
    with db.read() as session:
        admin = session.scalars(select(User)).one()
    assert admin.role == "admin" and admin.password_hash.startswith("$argon2id$")
    assert passwords.PasswordHasher.from_config(cfg).verify(password, admin.password_hash)
    assert password not in (data / "courriel.toml").read_text()
    db.dispose()

    before = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file() and "courriel.db" not in p.name}
    second = run("init", "--data", str(data))
    assert second.returncode == 0
    assert "nothing changed" in second.stdout
    assert "password" not in second.stdout.lower()
    after = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file() and "courriel.db" not in p.name}
    assert before == after


def test_data_defaults_to_environment_variable(tmp_path):
    env = dict(os.environ, COURRIEL_DATA=str(tmp_path / "envdata"))
    result = run("init", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "envdata" / "courriel.toml").exists()


def test_bad_config_is_exit_2(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "courriel.toml").write_text("[smtp]\nmax_recipients = 'x'\n")
    result = run("init", "--data", str(data))
    assert result.returncode == 2
    assert "max_recipients" in result.stderr
