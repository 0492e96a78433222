"""The IMAP connection state table: which command may run in which state, as data.

Owns the four connection states and, for every command the parser knows, the states it is
allowed in and whether it needs TLS first; `refusal` gives the answer for a command the
session must not run now. The session consults it before dispatching to `do_<command>`.

Standards: RFC 3501 §3 (states: not authenticated, authenticated, selected, logout) and §6
(commands grouped by state: §6.1 any state, §6.2 not authenticated, §6.3 authenticated,
§6.4 selected), RFC 9051 §3 and §6, RFC 3501 §6.2.1/§6.2.3 and RFC 9051 §6.2.3 (LOGINDISABLED:
no plaintext LOGIN or AUTHENTICATE PLAIN before TLS; RFC 5530 §3 PRIVACYREQUIRED code),
RFC 2177 (IDLE: authenticated or selected), RFC 5161 §3.1 (ENABLE: authenticated state only),
RFC 4978 §3 (COMPRESS: after authentication), RFC 8437 (UNAUTHENTICATE), RFC 2971 (ID: any
state), RFC 2595 §3.1 / RFC 3501 §6.2.1 (STARTTLS refused once TLS is active).
Security: this is the gate that keeps unauthenticated clients away from mailbox commands
and plaintext passwords off unencrypted connections.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from courriel.imap.protocol.commands import COMMANDS

__all__ = ["ALLOWED", "Refusal", "State", "refusal"]


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
_AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
_NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
_SELECTED = frozenset({State.SELECTED})

ALLOWED: dict[str, frozenset[State]] = {
    # RFC 3501 §6.1: any state
    "CAPABILITY": _ANY, "NOOP": _ANY, "LOGOUT": _ANY, "ID": _ANY,
    # RFC 3501 §6.2: not authenticated
    "STARTTLS": _NOT_AUTH, "AUTHENTICATE": _NOT_AUTH, "LOGIN": _NOT_AUTH,
    # RFC 3501 §6.3: authenticated (also valid in selected state)
    "SELECT": _AUTH, "EXAMINE": _AUTH, "CREATE": _AUTH, "DELETE": _AUTH, "RENAME": _AUTH,
    "SUBSCRIBE": _AUTH, "UNSUBSCRIBE": _AUTH, "LIST": _AUTH, "LSUB": _AUTH, "STATUS": _AUTH, "APPEND": _AUTH,
    "NAMESPACE": _AUTH, "IDLE": _AUTH, "COMPRESS": _AUTH, "UNAUTHENTICATE": _AUTH,
    "GETQUOTA": _AUTH, "GETQUOTAROOT": _AUTH, "SETQUOTA": _AUTH,
    "GETMETADATA": _AUTH, "SETMETADATA": _AUTH,  # RFC 5464 §4: authenticated and selected states
    "ENABLE": frozenset({State.AUTHENTICATED}),  # RFC 5161 §3.1: only before SELECT
    # RFC 3501 §6.4: selected
    "CHECK": _SELECTED, "CLOSE": _SELECTED, "UNSELECT": _SELECTED, "EXPUNGE": _SELECTED, "SEARCH": _SELECTED,
    "FETCH": _SELECTED, "STORE": _SELECTED, "COPY": _SELECTED, "MOVE": _SELECTED, "SORT": _SELECTED,
    "THREAD": _SELECTED,
}
assert set(ALLOWED) == set(COMMANDS), set(COMMANDS) ^ set(ALLOWED)

PLAINTEXT_PASSWORD_COMMANDS = frozenset({"LOGIN"})
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


@dataclass(frozen=True)
class Refusal:
    """How to answer a command that may not run now: `encoder.tagged(tag, status, text, code)`."""

    status: str
    text: str
    code: str | None = None


def refusal(command: str, state: State, *, tls_active: bool = False, plaintext_allowed: bool = False,
            mechanism: str | None = None) -> Refusal | None:
    """None when `command` (a command name, e.g. "FETCH") may run in `state`, else the answer.

    Wrong state → BAD (RFC 3501 §6: the command is not valid in this state). Before TLS, when
    plaintext passwords are not allowed, LOGIN and AUTHENTICATE with a plaintext `mechanism`
    (PLAIN, LOGIN) → NO [PRIVACYREQUIRED] (RFC 3501 §6.2.3 LOGINDISABLED, RFC 5530 §3).
    STARTTLS once TLS is active → BAD."""
    allowed = ALLOWED.get(command)
    if allowed is None:
        return Refusal("BAD", f"unknown command {command[:40]}")
    if state is State.LOGOUT:
        return Refusal("BAD", "connection is closing")
    if state not in allowed:
        if state is State.NOT_AUTHENTICATED:
            return Refusal("BAD", f"{command} needs authentication first")
        if allowed == _SELECTED:
            return Refusal("BAD", f"{command} needs a selected mailbox")
        if command == "ENABLE":
            return Refusal("BAD", "ENABLE is only valid before SELECT")
        return Refusal("BAD", f"{command} is not valid after authentication")
    if command == "STARTTLS" and tls_active:
        return Refusal("BAD", "TLS is already active")
    sends_password = command in PLAINTEXT_PASSWORD_COMMANDS or (
        command == "AUTHENTICATE" and (mechanism or "").upper() in PLAINTEXT_MECHANISMS)
    if sends_password and not tls_active and not plaintext_allowed:
        return Refusal("NO", "use STARTTLS before sending a password", "PRIVACYREQUIRED")
    return None
