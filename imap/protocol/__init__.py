"""Sans-IO IMAP protocol core: parser, typed commands, response encoder, state table."""
