"""IMAP role: IMAP4rev1/rev2 server (sans-IO protocol core, session, Twisted transport)."""
