"""Server-side rules of a mailbox: delivery filters, tags, auto-reply (vacation), contacts,
signatures and iCalendar invitations.

Pure parts (ring 0): `filters` (evaluation), `sieve` (export), `vacation` (decision and
composition), `signature`, `calendar` (iCalendar parsing and RSVP composition). State
(ring 1): `hooks` (the queue's delivery hooks) and `contacts`. The use cases for the CLI, the
API and the console live in `courriel.admin.services.rules`.
"""
