"""Courriel: a self-hosted mail server appliance.

This package (the repository's `server/` folder) is the shared core that every role uses:
configuration, database, durable files, blobs, models, registry, passwords, store, queue,
notify, CLI and supervisor (ARCHITECTURE §1).
"""

__version__ = "0.1.0"
