"""SMTP smuggling (the 2023 end-of-data confusion): over a real loopback socket, DATA that hides
`<LF>.<LF>`, `<CR>.<CR>`, `<LF>.<CR><LF>` or `<CR><LF>.<LF>` followed by a second transaction must
not produce a second message, and is refused as a whole because bare CR or LF is not a line ending
(RFC 5321 §2.3.8, §4.1.1.4)."""

from __future__ import annotations

import pytest
from smtp_harness import smtp_world_fixture  # noqa: F401 - pytest fixture "smtp_world"

HIDDEN = (b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
          b"From: admin@example.org\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n"])
def test_smuggled_second_message_is_refused(smtp_world, fake_end):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("MAIL FROM:<bob@remote.test>")[0] == 250
        assert client.command("RCPT TO:<alice@example.org>")[0] == 250
        assert client.command("DATA")[0] == 354
        client.send(b"From: bob@remote.test\r\nSubject: first\r\n\r\nfirst" + fake_end + HIDDEN + b".\r\n")
        code, text = client.reply()
        assert code == 550, text
        # The session goes on: the hidden commands were message text, not commands.
        assert client.command("NOOP")[0] == 250
    assert smtp_world.queued() == []


def test_crlf_message_still_accepted(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("MAIL FROM:<bob@remote.test>")[0] == 250
        assert client.command("RCPT TO:<alice@example.org>")[0] == 250
        assert client.command("DATA")[0] == 354
        client.send(b"From: bob@remote.test\r\nSubject: ok\r\n\r\n..dot\r\nbody\r\n.\r\n")
        assert client.reply()[0] == 250
    assert len(smtp_world.queued()) == 1
