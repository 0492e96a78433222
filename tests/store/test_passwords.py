"""Password policy, score, generator, argon2id, Dovecot hash import and rehash on login."""

import shutil
import subprocess

import pytest
from passlib.hash import bcrypt, md5_crypt, sha256_crypt, sha512_crypt

from courriel import logins, passwords
from courriel.admin import services
from courriel.models import Mailbox

HASHER = passwords.PasswordHasher(memory_kib=1024, time_cost=1)
SECRET = "Secret pass1"


def test_policy_length_and_classes():
    policy = passwords.PasswordPolicy(min_length=10, min_classes=3)
    assert policy.problems("Abcdefgh12") == []
    assert any("at least 10" in p for p in policy.problems("Abc12"))
    assert any("mix at least 3" in p for p in policy.problems("abcdefghijkl"))
    assert any("control" in p for p in policy.problems("Abcdefgh12\n"))
    assert any("white space" in p for p in policy.problems(" Abcdefgh12"))
    assert policy.problems("Éléphant-rose") == []  # non-ASCII letters count as letters
    assert any("at most" in p for p in policy.problems("Ab1" * 400))


def test_from_config(config):
    policy = passwords.PasswordPolicy.from_config(config)
    assert (policy.min_length, policy.min_classes) == (10, 2)


def test_score():
    assert passwords.score("") == 0
    assert passwords.score("password") == 0
    assert passwords.score("Password1!") == 0  # a common word with decoration
    assert passwords.score("aaaaaaaaaaaa") == 0
    assert passwords.score("abcdefgh") <= 1
    assert passwords.score("tr0ub4dor") in (1, 2)
    assert passwords.score("correct horse battery staple") >= 3
    assert passwords.score(passwords.generate()) == 4
    scores = [passwords.score(p) for p in ("abc", "Tr0ub4dor", "Tr0ub4dor&3xyzQ", "Tr0ub4dor&3xyzQ-77-kPz#Lm")]
    assert scores == sorted(scores) and scores[0] < scores[-1]


@pytest.mark.parametrize("policy", [
    passwords.PasswordPolicy(),
    passwords.PasswordPolicy(min_length=30, min_classes=4),
    passwords.PasswordPolicy(min_length=8, min_classes=1),
])
def test_generator_meets_policy(policy):
    seen = set()
    for _ in range(50):
        password = passwords.generate(policy=policy)
        assert policy.problems(password) == []
        assert len(password) >= max(20, policy.min_length)
        seen.add(password)
    assert len(seen) == 50
    if policy.min_classes == 4:
        assert all(len(passwords.character_classes(p)) == 4 for p in seen)


def test_argon2id_hash_verify_and_rehash():
    stored = HASHER.hash(SECRET)
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert HASHER.verify(SECRET, stored) and not HASHER.verify("wrong", stored)
    assert not HASHER.verify(SECRET, None) and not HASHER.verify(SECRET, "")
    assert not HASHER.needs_rehash(stored)
    assert passwords.PasswordHasher(memory_kib=2048, time_cost=1).needs_rehash(stored)
    assert HASHER.verify_nothing(SECRET) is False


def _passlib_hashes():
    return {
        "SHA512-CRYPT": "{SHA512-CRYPT}" + sha512_crypt.using(rounds=5000).hash(SECRET),
        "SHA256-CRYPT": "{SHA256-CRYPT}" + sha256_crypt.using(rounds=5000).hash(SECRET),
        "MD5-CRYPT": "{MD5-CRYPT}" + md5_crypt.hash(SECRET),
        "BLF-CRYPT": "{BLF-CRYPT}" + bcrypt.using(rounds=4, ident="2y").hash(SECRET),
        "bare-sha512": sha512_crypt.using(rounds=5000).hash(SECRET),
    }


DOVECOT_SCHEMES = ["SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "ARGON2ID", "ARGON2I", "SSHA",
                   "SSHA256", "SSHA512", "PBKDF2", "PLAIN", "CLEAR", "SHA", "SHA256", "SHA512", "SMD5", "PLAIN-MD5",
                   "MD5", "SHA256.HEX", "SSHA.HEX"]


def _doveadm_hashes():
    doveadm = shutil.which("doveadm")
    if doveadm is None:
        return {}
    found = {}
    for scheme in DOVECOT_SCHEMES:
        args = [doveadm, "pw", "-s", scheme, "-p", SECRET]
        if scheme == "BLF-CRYPT":
            args += ["-r", "4"]
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        found[scheme] = out.stdout.strip()
    return found


def _check(hashes):
    for name, stored in hashes.items():
        assert HASHER.verify(SECRET, stored), (name, stored)
        assert not HASHER.verify("Secret pass2", stored), name
        assert HASHER.needs_rehash(stored), name


def test_crypt_hashes_made_by_passlib_verify():
    _check(_passlib_hashes())


def test_hashes_made_by_doveadm_verify():
    if not shutil.which("doveadm"):
        pytest.skip("doveadm (Debian dovecot-core) is not installed")
    hashes = _doveadm_hashes()
    assert len(hashes) == len(DOVECOT_SCHEMES)
    _check(hashes)


def test_long_password_against_dovecot_bcrypt():
    if not shutil.which("doveadm"):
        pytest.skip("doveadm (Debian dovecot-core) is not installed")
    long_secret = "Long pass phrase " * 6  # 102 bytes: bcrypt used the first 72
    out = subprocess.run(["doveadm", "pw", "-s", "BLF-CRYPT", "-r", "4", "-p", long_secret], capture_output=True,
                         text=True, timeout=30, check=True)
    assert HASHER.verify(long_secret, out.stdout.strip())
    assert not HASHER.verify(long_secret[:70], out.stdout.strip())


def test_unusable_hashes_never_match():
    cram = "{CRAM-MD5}d7559d1d2ebd1de19d38cec4e91a4053e16080b1441fde61fc805b61b8a92121"
    for stored in (cram, "{NOPE}abc", "{SSHA}!!!notbase64", "{PBKDF2}$1$salt$x$zz", "garbage", "{SSHA}AAAA"):
        assert not HASHER.verify(SECRET, stored), stored


def test_login_rehashes_legacy_hash(db):
    services.add_domain(db, "example.com")
    services.add_mailbox(db, HASHER, passwords.PasswordPolicy(), "legacy@example.com", password="Initial pass 1")
    legacy = "{SHA512-CRYPT}" + sha512_crypt.using(rounds=5000).hash(SECRET)
    with db.write() as session:
        session.query(Mailbox).filter_by(address="legacy@example.com").update({"password_hash": legacy})
    wrong = logins.authenticate_mailbox(db, HASHER, "legacy@example.com", "nope", "127.0.0.1", "imap")
    assert wrong.status is logins.LoginStatus.BAD_CREDENTIALS
    with db.read() as session:
        assert session.query(Mailbox).filter_by(address="legacy@example.com").one().password_hash == legacy
    result = logins.authenticate_mailbox(db, HASHER, "Legacy@Example.com", SECRET, "127.0.0.1", "imap")
    assert result.ok and result.account == "legacy@example.com"
    with db.read() as session:
        upgraded = session.query(Mailbox).filter_by(address="legacy@example.com").one().password_hash
    assert upgraded.startswith("$argon2id$") and HASHER.verify(SECRET, upgraded)
    assert not HASHER.needs_rehash(upgraded)
    assert logins.authenticate_mailbox(db, HASHER, "legacy@example.com", SECRET, "127.0.0.1", "smtp").ok
