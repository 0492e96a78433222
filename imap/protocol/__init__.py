"""Sans-IO IMAP protocol core (ring 0): parser, typed commands, response encoder, state table.

Modules:
- `parser`: `Parser` (incremental framing + command grammar, limits, resynchronisation,
  AUTHENTICATE/IDLE input modes) and `Limits`; `parse_command` for one framed command.
- `commands`: the typed command dataclasses (`COMMANDS`: name → class) and the parser's other
  events (`ContinuationRequest`, `CommandError`, `AuthenticateResponse`, `IdleDone`).
- `encoder`: response serialisation (status lines, strings, lists, FETCH streaming, ESEARCH,
  LIST, STATUS, ...).
- `states`: the per-state command table `ALLOWED` and `refusal()`.
- `capabilities`: the CAPABILITY list for a connection.
- `mutf7`: modified UTF-7 mailbox names; `sequence`: sequence sets; `dates`: date/date-time;
  `search`: search-key grammar and `resolve` of sequence sets in a key tree; `grammar`: the
  low-level cursor.

How a session drives it (one connection; `send` writes bytes, in order):

    parser = Parser(Limits(max_message_size=append_limit), authenticated=False)  # True after login
    state = State.NOT_AUTHENTICATED

    def on_data(data):
        parser.receive(data)
        while (event := parser.next_event()) is not None:   # stop pulling while a command runs
            if isinstance(event, ContinuationRequest):   # or answer the tag + parser.abandon_command()
                send(encoder.continuation(event.text))
            elif isinstance(event, CommandError):
                send(encoder.tagged(event.tag, event.status, event.text, event.code))
                if event.close:
                    close()
            elif isinstance(event, Command):
                answer = refusal(event.name, state, tls_active=tls, plaintext_allowed=cfg_plain,
                                 mechanism=getattr(event, "mechanism", None))
                if answer is not None:
                    send(encoder.tagged(event.tag, answer.status, answer.text, answer.code))
                else:
                    getattr(session, "do_" + event.name.lower())(event)   # e.g. do_fetch(Fetch)

The `do_authenticate`, `do_idle` and `do_starttls` handlers switch the parser's input mode
(`expect_authenticate_response`, `expect_idle_done`, `discard_buffered`; see `parser`). A
FETCH response is written with `encoder.fetch_response(msn, items)` or `encoder.stream(parts)`,
which yield byte chunks: write them one by one so a large body is never held whole.

Standards: RFC 3501, RFC 9051 and the extensions listed in each module.
Security: `parser` is the first code to see client bytes; see its docstring.
"""
