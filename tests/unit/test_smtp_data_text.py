"""`data_message` (ring 0 part of the ESMTP engine): the message in a DATA text, judged whole —
dot removal (RFC 5321 §4.5.2), SIZE, line length (§4.5.3.1.6), bare CR / hidden end of data
(§2.3.8, SMTP smuggling)."""

from __future__ import annotations

import pytest

from courriel.smtp import replies
from courriel.smtp.esmtp import data_message


@pytest.mark.parametrize(("text", "limit", "expected"), [
    (b"", 0, (b"", None)),
    (b"Subject: x\r\n\r\nbody\r\n", 0, (b"Subject: x\r\n\r\nbody\r\n", None)),
    (b"..leading\r\n..\r\n.x\r\n", 0, (b".leading\r\n.\r\nx\r\n", None)),  # one dot removed per line
    (b"a\r\n... three\r\n", 0, (b"a\r\n.. three\r\n", None)),
    (b"bare\nline feed\r\n", 0, (b"bare\nline feed\r\n", None)),  # sloppy but not smuggling
    (b"x" * 100 + b"\r\n", 50, (b"", replies.MESSAGE_TOO_BIG)),
    (b"x" * 1001 + b"\r\n", 0, (b"x" * 1001 + b"\r\n", None)),
    (b"x" * 1002 + b"\r\n", 0, (b"", replies.LINE_TOO_LONG)),
    (b"a\rb\r\n", 0, (b"", replies.BARE_LINE_ENDING)),
    (b"a\n.\nMAIL FROM:<x@y>\r\n", 0, (b"", replies.BARE_LINE_ENDING)),
    (b"a\r\n.\nb\r\n", 0, (b"", replies.BARE_LINE_ENDING)),
    (b"a\n.\r\nb\r\n", 0, (b"", replies.BARE_LINE_ENDING)),
])
def test_data_message(text, limit, expected):
    assert data_message(text, limit) == expected
