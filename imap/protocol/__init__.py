"""Sans-IO IMAP protocol core (ring 0): parser, typed commands, response encoder, state table.

Modules:
- `parser`: `Parser` (incremental framing + command grammar, limits, resynchronisation,
  AUTHENTICATE/IDLE input modes) and `Limits`; `parse_command` for one framed command.
- `commands`: the typed command dataclasses and the parser's other events
  (`ContinuationRequest`, `CommandError`, `AuthenticateResponse`, `IdleDone`).
- `encoder`: response serialisation (status lines, strings, lists, FETCH streaming, ESEARCH,
  LIST, STATUS...).
- `states`: the per-state command table and `refusal()`.
- `capabilities`: the CAPABILITY list for a connection.
- `mutf7`: modified UTF-7 mailbox names; `sequence`: sequence sets; `dates`: date/date-time;
  `search`: search-key grammar and sequence-set resolution; `grammar`: the low-level cursor.

Standards: RFC 3501, RFC 9051 and the extensions listed in each module.
Security: `parser` is the first code to see client bytes; see its docstring.
"""
