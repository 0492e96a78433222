"""IMAP METADATA (RFC 5464): the same commands against Courriel and a private Dovecot with
`imap_metadata = yes`, answers compared as values.

Normalisations, each allowed by the RFCs: a value may come quoted or as a literal (RFC 3501 §4.3;
Dovecot always sends literals), so both answers are parsed into (entry, value) pairs first; the
tagged text after the response code is the server's own. Refusals are compared by status only:
for a shared server entry Dovecot answers NO [CANNOT], Courriel NO [NOPERM] (RFC 5464 §4.3 asks
only for NO). Dovecot's /shared/admin is its `mail_server_admin` setting, set here to what
Courriel computes for the test user's domain.
"""

from __future__ import annotations

import imaplib
import re

import pytest
from dovecot_server import DovecotServer, dovecot_available
from imap_server import imap_server  # noqa: F401
from sqlalchemy import delete

from courriel.models import MetadataEntry

pytestmark = pytest.mark.timeout(90)

imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))

_METADATA_SETTINGS = ("imap_metadata = yes\nmail_attribute_dict = file:%h/dovecot-attributes\n"
                      "mail_server_admin = mailto:postmaster@{domain}\n")

SCRIPT = [
    ("SETMETADATA", "INBOX", '(/private/comment "my inbox" /shared/comment "shared note" '
                             '/private/vendor/a "1" /private/vendor/a/b "22" /private/vendor/a/b/c "333" '
                             f'/private/vendor/a/long "{"x" * 40}")'),
    ("GETMETADATA", "INBOX", "/private/comment"),
    ("GETMETADATA", "INBOX", "/private/missing"),
    ("GETMETADATA", "INBOX", "(/private/comment /SHARED/Comment)"),
    ("GETMETADATA", "(DEPTH 1)", "INBOX", "/private/vendor/a"),
    ("GETMETADATA", "(DEPTH infinity)", "INBOX", "/private/vendor"),
    ("GETMETADATA", "(MAXSIZE 2 DEPTH infinity)", "INBOX", "/private/vendor/a"),
    ("GETMETADATA", '""', "/shared/admin"),
    ("SETMETADATA", '""', '(/shared/comment "mine")'),
    ("SETMETADATA", '""', '(/private/vendor/x-client/theme "dark")'),
    ("GETMETADATA", '""', "/private/vendor/x-client/theme"),
    ("SETMETADATA", "INBOX", "(/private/comment NIL)"),
    ("GETMETADATA", "INBOX", "(/private/comment /shared/comment)"),
    ("SETMETADATA", "NoSuchFolder", '(/private/comment "x")'),
    ("GETMETADATA", "INBOX", "/comment"),  # neither /private nor /shared: BAD
    ("SETMETADATA", "INBOX", '(/private/vendor/ "x")'),
]

_TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))')


def _tokens(text: bytes) -> list:
    out, at = [], 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            break
        at = match.end()
        if match.group(3) is not None:
            out.append(re.sub(rb"\\(.)", rb"\1", match.group(3)))
        elif match.group(4) is not None:
            out.append(None if match.group(4).upper() == b"NIL" else match.group(4))
    return out


def _pairs(responses) -> tuple:
    """imaplib's METADATA items → (mailbox, sorted (entry, value) pairs), literals and quoted alike
    (Dovecot lists entries in its dictionary's order, RFC 5464 asks for none)."""
    tokens: list = []
    for item in responses:
        if isinstance(item, tuple):
            prefix, data = item
            tokens += [*_tokens(re.sub(rb"~?\{\d+\}$", b"", prefix)), data]
        elif not item.startswith(b"LONGENTRIES"):  # a tagged [METADATA ...] code, compared apart
            tokens += _tokens(item)
    if not tokens:
        return ()
    return tokens[0], sorted(zip(tokens[1::2], tokens[2::2], strict=True), key=lambda pair: pair[0])


def _run(client) -> list:
    answers = []
    for command in SCRIPT:
        try:
            typ, data = client._simple_command(*command)
        except imaplib.IMAP4.error:
            answers.append((command, "BAD"))
            continue
        responses = client.untagged_responses.pop("METADATA", [])
        code = re.match(rb"\[(METADATA [^\]]*)\]", data[0] or b"")
        answers.append((command, typ, code.group(1) if code else None, _pairs(responses) if typ == "OK" else None))
    return answers


@pytest.fixture(scope="module")
def metadata_dovecot(imap_server):  # noqa: F811
    if not dovecot_available():
        pytest.skip("dovecot is not installed (Debian package dovecot-imapd)")
    import dovecot_server

    domain = imap_server.address.rpartition("@")[2]
    server = DovecotServer()
    with pytest.MonkeyPatch.context() as patch:  # the fixture's configuration plus METADATA
        patch.setattr(dovecot_server, "_CONFIG", dovecot_server._CONFIG + _METADATA_SETTINGS.format(domain=domain))
        try:
            server.start()
        except Exception:
            server.stop()
            raise
    yield server
    server.stop()


def test_metadata_answers_match_dovecot(imap_server, metadata_dovecot):  # noqa: F811
    imap_server.clear()
    with imap_server.db.write() as session:
        session.execute(delete(MetadataEntry))
    client = imap_server.login()
    try:
        ours = _run(client)
    finally:
        client.logout()
    with metadata_dovecot.client() as reference:
        theirs = _run(reference)
    for mine, dovecot_answer in zip(ours, theirs, strict=True):
        assert mine == dovecot_answer, (mine, dovecot_answer)
