"""Sync role: external IMAP/POP accounts imported and kept in step."""
