"""IMAP state table (RFC 3501 §3, §6) and the CAPABILITY list."""

from __future__ import annotations

import pytest

from courriel.imap.protocol import commands as c
from courriel.imap.protocol.capabilities import CapabilityOptions, capabilities
from courriel.imap.protocol.states import ALLOWED, State, refusal

ANY = {"CAPABILITY", "NOOP", "LOGOUT", "ID"}
NOT_AUTHENTICATED_ONLY = {"STARTTLS", "AUTHENTICATE", "LOGIN"}
SELECTED_ONLY = {"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "SORT",
                 "THREAD"}

ROWS = [(name, state) for name in sorted(c.COMMANDS) for state in State]


def expected_allowed(name: str, state: State) -> bool:
    if state is State.LOGOUT:
        return False
    if name in ANY:
        return True
    if name in NOT_AUTHENTICATED_ONLY:
        return state is State.NOT_AUTHENTICATED
    if name in SELECTED_ONLY:
        return state is State.SELECTED
    if name == "ENABLE":
        return state is State.AUTHENTICATED  # RFC 5161 §3.1
    return state in (State.AUTHENTICATED, State.SELECTED)


@pytest.mark.parametrize(("name", "state"), ROWS, ids=[f"{n}-{s.name}" for n, s in ROWS])
def test_every_command_in_every_state(name, state):
    answer = refusal(name, state, plaintext_allowed=True)
    if expected_allowed(name, state):
        assert answer is None
    else:
        assert answer is not None and answer.status == "BAD" and answer.text


def test_table_covers_every_parsed_command():
    assert set(ALLOWED) == set(c.COMMANDS)


def test_unknown_command():
    assert refusal("XYZZY", State.AUTHENTICATED).status == "BAD"


def test_passwords_need_tls_unless_plaintext_allowed():
    assert refusal("LOGIN", State.NOT_AUTHENTICATED) == refusal("LOGIN", State.NOT_AUTHENTICATED, mechanism=None)
    no = refusal("LOGIN", State.NOT_AUTHENTICATED)
    assert (no.status, no.code) == ("NO", "PRIVACYREQUIRED")
    plain = refusal("AUTHENTICATE", State.NOT_AUTHENTICATED, mechanism="plain")
    assert (plain.status, plain.code) == ("NO", "PRIVACYREQUIRED")
    assert refusal("AUTHENTICATE", State.NOT_AUTHENTICATED, mechanism="EXTERNAL") is None
    assert refusal("LOGIN", State.NOT_AUTHENTICATED, tls_active=True) is None
    assert refusal("LOGIN", State.NOT_AUTHENTICATED, plaintext_allowed=True) is None


def test_starttls_refused_inside_tls():
    assert refusal("STARTTLS", State.NOT_AUTHENTICATED) is None
    assert refusal("STARTTLS", State.NOT_AUTHENTICATED, tls_active=True).status == "BAD"


def test_capabilities_before_tls():
    names = capabilities(tls_active=False, authenticated=False)
    assert names[0] == "IMAP4rev1"
    assert "STARTTLS" in names and "LOGINDISABLED" in names
    assert not any(n.startswith("AUTH=") for n in names)


def test_capabilities_after_tls_and_after_login():
    names = capabilities(tls_active=True, authenticated=False, options=CapabilityOptions(append_limit=1000))
    assert "STARTTLS" not in names and "LOGINDISABLED" not in names and "AUTH=PLAIN" in names
    for name in ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS",
                 "MOVE", "UNSELECT", "CHILDREN", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "CREATE-SPECIAL-USE",
                 "MULTIAPPEND", "BINARY", "APPENDLIMIT=1000", "ESEARCH", "SEARCHRES", "CONDSTORE", "QRESYNC"]:
        assert name in names
    after = capabilities(tls_active=True, authenticated=True)
    assert not any(n.startswith("AUTH=") or n in ("STARTTLS", "LOGINDISABLED") for n in after)
    assert "APPENDLIMIT=1000" not in after


def test_capabilities_plaintext_allowed_and_toggles():
    names = capabilities(tls_active=False, authenticated=False,
                         options=CapabilityOptions(plaintext_allowed=True, starttls_available=False, qresync=False,
                                                   condstore=False, binary=False))
    assert "AUTH=PLAIN" in names and "LOGINDISABLED" not in names and "STARTTLS" not in names
    assert not {"QRESYNC", "CONDSTORE", "BINARY"} & set(names)
    extra = capabilities(tls_active=True, authenticated=True,
                         options=CapabilityOptions(sort=True, thread=True, quota=True, compress=True,
                                                   unauthenticate=True, utf8_accept=True))
    assert {"SORT", "THREAD=REFERENCES", "QUOTA", "COMPRESS=DEFLATE", "UNAUTHENTICATE", "UTF8=ACCEPT"} <= set(extra)
