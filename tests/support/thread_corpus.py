"""A 49-message corpus for SORT and THREAD tests (RFC 5256, RFC 5957): threads linked by References
and In-Reply-To, missing parents, a reference loop, duplicate and missing Message-IDs, reply and
forward subject prefixes, list tags, encoded words, missing and unparseable dates, time zones,
display names, groups, Cc lines and bodies of different sizes.

`CORPUS` is a list of (message bytes, flags, internal date) in APPEND order; `append_corpus(imap,
mailbox)` appends them with imaplib (the same bytes to every server under test).
"""

from __future__ import annotations

import imaplib

# (subject, from, to, cc, date, message-id, references, in-reply-to, body lines)
# None leaves the header out; "" writes it empty.
_SPEC: list[tuple] = [
    ("Project kickoff", "Alice Martin <alice@example.org>", "team@example.org", None,
     "Mon, 06 Jan 2025 09:00:00 +0000", "<kick@example.org>", None, None, 3),
    ("Re: Project kickoff", "bob@example.net", "Alice Martin <alice@example.org>", "carol@example.com",
     "Mon, 06 Jan 2025 10:15:00 +0100", "<kick-r1@example.net>", "<kick@example.org>", None, 5),
    ("RE: Project kickoff", "Carol <carol@example.com>", "alice@example.org", None,
     "Mon, 06 Jan 2025 11:00:00 +0000", "<kick-r2@example.com>", None, "<kick@example.org>", 2),
    ("Re: Re: Project kickoff", "Alice Martin <alice@example.org>", "bob@example.net", "Carol <carol@example.com>",
     "Tue, 07 Jan 2025 08:30:00 -0500", "<kick-r3@example.org>", "<kick@example.org> <kick-r1@example.net>", None, 8),
    ("Fwd: Project kickoff", "dave@example.org", "erin@example.org", None,
     "Tue, 07 Jan 2025 12:00:00 +0000", "<kick-fwd@example.org>", None, None, 40),
    ("Re: Project kickoff", "erin@example.org", "dave@example.org", None,
     "Wed, 08 Jan 2025 09:00:00 +0000", "<kick-r4@example.org>",
     "<kick-fwd@example.org>", "<kick-fwd@example.org>", 1),
    ("[team] Weekly report", "Reports <reports@example.org>", "team@example.org", None,
     "Fri, 10 Jan 2025 17:00:00 +0000", "<wr1@example.org>", None, None, 30),
    ("Re: [team] Weekly report", "frank@example.net", "reports@example.org", "alice@example.org",
     "Fri, 10 Jan 2025 18:00:00 +0000", "<wr1-r1@example.net>", "<wr1@example.org>", None, 4),
    ("[team] Re: [team] Fwd: Weekly report", "Grace <grace@example.com>", "team@example.org", None,
     "Sat, 11 Jan 2025 07:00:00 +0000", "<wr1-f1@example.com>", None, None, 6),
    ("Weekly report (fwd)", "heidi@example.org", "team@example.org", None,
     "Sat, 11 Jan 2025 08:00:00 +0000", "<wr1-f2@example.org>", None, None, 12),
    ("[Fwd: Weekly report]", "ivan@example.org", "team@example.org", None,
     "Sun, 12 Jan 2025 09:00:00 +0000", "<wr1-f3@example.org>", None, None, 2),
    ("[team] Weekly report", "Reports <reports@example.org>", "team@example.org", None,
     "Fri, 17 Jan 2025 17:00:00 +0000", "<wr2@example.org>", None, None, 31),
    # Children of a message that is not in the mailbox (a dummy parent).
    ("Re: Lost thread", "judy@example.org", "list@example.org", None,
     "Mon, 13 Jan 2025 10:00:00 +0000", "<lost-a@example.org>", "<lost-root@example.org>", None, 3),
    ("Re: Lost thread", "ken@example.org", "list@example.org", None,
     "Mon, 13 Jan 2025 09:00:00 +0000", "<lost-b@example.org>", "<lost-root@example.org>", None, 3),
    ("Re: Lost thread", "liam@example.org", "list@example.org", None,
     "Mon, 13 Jan 2025 11:00:00 +0000", "<lost-c@example.org>", "<lost-root@example.org> <lost-a@example.org>",
     None, 3),
    # A missing message in the middle of a chain.
    ("Budget", "Mallory <mallory@example.com>", "finance@example.com", None,
     "Tue, 14 Jan 2025 09:00:00 +0000", "<budget@example.com>", None, None, 9),
    ("Re: Budget", "nina@example.com", "finance@example.com", None,
     "Tue, 14 Jan 2025 15:00:00 +0000", "<budget-r2@example.com>", "<budget@example.com> <budget-gone@example.com>",
     None, 2),
    # A loop: each says the other is its parent.
    ("Loop one", "oscar@example.org", "peggy@example.org", None,
     "Wed, 15 Jan 2025 09:00:00 +0000", "<loop-1@example.org>", "<loop-2@example.org>", None, 1),
    ("Loop two", "peggy@example.org", "oscar@example.org", None,
     "Wed, 15 Jan 2025 10:00:00 +0000", "<loop-2@example.org>", "<loop-1@example.org>", None, 1),
    # Duplicate Message-IDs, a missing one, a self reference.
    ("Duplicate A", "quinn@example.org", "rick@example.org", None,
     "Thu, 16 Jan 2025 09:00:00 +0000", "<dup@example.org>", None, None, 2),
    ("Duplicate B", "quinn@example.org", "rick@example.org", None,
     "Thu, 16 Jan 2025 10:00:00 +0000", "<dup@example.org>", None, None, 2),
    ("Re: Duplicate A", "rick@example.org", "quinn@example.org", None,
     "Thu, 16 Jan 2025 11:00:00 +0000", "<dup-r@example.org>", "<dup@example.org>", None, 2),
    ("No id at all", "sybil@example.org", "trent@example.org", None,
     "Thu, 16 Jan 2025 12:00:00 +0000", None, None, None, 2),
    ("Talking to myself", "trent@example.org", "trent@example.org", None,
     "Thu, 16 Jan 2025 13:00:00 +0000", "<self@example.org>", "<self@example.org>", None, 2),
    # Encoded words, 8-bit names, display names and groups.
    ("=?utf-8?q?Caf=C3=A9?= meeting", "=?utf-8?q?=C3=89mile_Zola?= <emile@example.fr>", "Victor <victor@example.fr>",
     None, "Fri, 17 Jan 2025 09:00:00 +0100", "<cafe@example.fr>", None, None, 4),
    ("RE: re: =?iso-8859-1?q?Caf=E9?= meeting", "victor@example.fr",
     "=?utf-8?q?=C3=89mile_Zola?= <emile@example.fr>", None,
     "Fri, 17 Jan 2025 10:00:00 +0100", "<cafe-r@example.fr>", "<cafe@example.fr>", None, 4),
    ("Fw: =?utf-8?b?W3RlYW1dIExhdW5jaA==?=", "\"Walter, Jr.\" <walter@example.org>", "team: alice@example.org, "
     "bob@example.net;", None, "Sat, 18 Jan 2025 09:00:00 +0000", "<launch@example.org>", None, None, 7),
    ("launch", "xavier@example.org", "Undisclosed recipients:;", None,
     "Sat, 18 Jan 2025 10:00:00 +0000", "<launch-2@example.org>", None, None, 7),
    # Missing, empty and odd headers; dates without Date:, unparseable, in other zones.
    ("", "yvonne@example.org", "zack@example.org", None,
     "Sun, 19 Jan 2025 09:00:00 +0000", "<empty-subject@example.org>", None, None, 1),
    (None, "zack@example.org", "yvonne@example.org", None,
     "Sun, 19 Jan 2025 10:00:00 +0000", "<no-subject@example.org>", None, None, 1),
    ("No date here", "amy@example.org", "zack@example.org", "Bea <bea@example.org>",
     None, "<no-date@example.org>", None, None, 5),
    ("Odd date", "amy@example.org", "zack@example.org", None,
     "yesterday at noon", "<odd-date@example.org>", None, None, 5),
    ("Far east", "Chen <chen@example.cn>", "amy@example.org", None,
     "Mon, 20 Jan 2025 08:00:00 +0800", "<east@example.cn>", None, None, 6),
    ("Far west", "Dana <dana@example.us>", "amy@example.org", None,
     "Sun, 19 Jan 2025 16:00:00 -0800", "<west@example.us>", None, None, 6),
    (None, None, None, None, None, None, None, None, 1),
    ("Re: Far east", "amy@example.org", "Chen <chen@example.cn>", "Dana <dana@example.us>",
     "Mon, 20 Jan 2025 09:00:00 +0000", "<east-r@example.org>", None, "<east@example.cn> <west@example.us>", 3),
    ("Same second", "amy@example.org", "bob@example.net", None,
     "Tue, 21 Jan 2025 09:00:00 +0000", "<same-1@example.org>", None, None, 2),
    ("Same second", "AMY@example.org", "Bob@example.net", None,
     "Tue, 21 Jan 2025 09:00:00 +0000", "<same-2@example.org>", None, None, 2),
    ("re: same SECOND", "amy@example.org", "bob@example.net", None,
     "Tue, 21 Jan 2025 09:00:00 +0000", "<same-3@example.org>", "<same-1@example.org>", None, 2),
    # A reply dated before its parent, siblings sent at the same second, a reply that arrives before the
    # original without references, and children of one missing parent dated against their order.
    ("Schedule", "amy@example.org", "bob@example.net", None,
     "Thu, 23 Jan 2025 12:00:00 +0000", "<sched@example.org>", None, None, 2),
    ("Re: Schedule", "bob@example.net", "amy@example.org", None,
     "Thu, 23 Jan 2025 08:00:00 +0000", "<sched-r1@example.net>", "<sched@example.org>", None, 2),
    ("Re: Schedule", "carl@example.net", "amy@example.org", None,
     "Thu, 23 Jan 2025 13:00:00 +0000", "<sched-r2@example.net>", "<sched@example.org>", None, 2),
    ("Re: Schedule", "dora@example.net", "amy@example.org", None,
     "Thu, 23 Jan 2025 13:00:00 +0000", "<sched-r3@example.net>", "<sched@example.org>", None, 2),
    ("Re: Minutes", "eve@example.org", "team@example.org", None,
     "Fri, 24 Jan 2025 08:00:00 +0000", "<min-r@example.org>", None, None, 2),
    ("Minutes", "fay@example.org", "team@example.org", None,
     "Fri, 24 Jan 2025 09:00:00 +0000", "<min@example.org>", None, None, 2),
    ("Re: Orphans", "gus@example.org", "team@example.org", None,
     "Sat, 25 Jan 2025 12:00:00 +0000", "<orph-a@example.org>", "<orph-root@example.org>", None, 2),
    ("Re: Orphans", "hal@example.org", "team@example.org", None,
     "Sat, 25 Jan 2025 09:00:00 +0000", "<orph-b@example.org>", "<orph-root@example.org>", None, 2),
    ("Orphans", "ida@example.org", "team@example.org", None,
     "Sat, 25 Jan 2025 10:00:00 +0000", "<orph-c@example.org>", None, None, 2),
    ("Late reply to kickoff", "bob@example.net", "alice@example.org", None,
     "Wed, 22 Jan 2025 09:00:00 +0000", "<kick-late@example.net>",
     "<kick@example.org> <kick-r1@example.net> <kick-r3@example.org>", None, 2),
]

_FLAGS = ["(\\Seen)", "()", "(\\Flagged)", "(\\Seen \\Answered)"]


def _message(index: int, spec: tuple) -> bytes:
    subject, sender, to, cc, date, message_id, references, in_reply_to, lines = spec
    headers = []
    for name, value in (("Date", date), ("From", sender), ("To", to), ("Cc", cc), ("Subject", subject),
                        ("Message-ID", message_id), ("In-Reply-To", in_reply_to), ("References", references)):
        if value is not None:
            headers.append(f"{name}: {value}".rstrip() if value == "" else f"{name}: {value}")
    headers.append("MIME-Version: 1.0")
    headers.append("Content-Type: text/plain; charset=utf-8")
    body = [f"Message {index}: line {n} of the corpus text." for n in range(lines)]
    return ("\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode("utf-8")


def _internal_date(index: int) -> str:
    # Arrival order differs from APPEND order and from the sent dates; a few arrive at the same second.
    day = 1 + (index * 7) % 28
    hour = (index * 5) % 24
    return f'"{day:02d}-Feb-2025 {hour:02d}:{(index * 13) % 60:02d}:00 +0000"'


CORPUS: list[tuple[bytes, str, str]] = [
    (_message(i, spec), _FLAGS[i % len(_FLAGS)], _internal_date(i)) for i, spec in enumerate(_SPEC)
]


def append_corpus(imap: imaplib.IMAP4, mailbox: str) -> None:
    for data, flags, date in CORPUS:
        typ, answer = imap.append(mailbox, flags, date, data)
        assert typ == "OK", answer
