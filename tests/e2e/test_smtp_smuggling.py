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


def _bdat_session(client, chunks: list[bytes]) -> tuple[int, str]:
    """EHLO, MAIL, RCPT, then the chunks with BDAT (the last one with LAST); the final reply."""
    assert client.command("EHLO client.example")[0] == 250
    assert client.command("MAIL FROM:<bob@remote.test>")[0] == 250
    assert client.command("RCPT TO:<alice@example.org>")[0] == 250
    for chunk in chunks[:-1]:
        client.send(f"BDAT {len(chunk)}\r\n".encode() + chunk)
        assert client.reply()[0] == 250
    client.send(f"BDAT {len(chunks[-1])} LAST\r\n".encode() + chunks[-1])
    return client.reply()


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\rlone CR"])
def test_bdat_text_hiding_an_end_of_data_is_refused_like_data(smtp_world, fake_end):
    """RFC 3030 chunks carry no end of data, but the text is relayed onwards with DATA: the same rule."""
    smtp_world.add_mailbox("alice@example.org")
    text = b"From: bob@remote.test\r\nSubject: first\r\n\r\nfirst" + fake_end + HIDDEN
    with smtp_world.raw("mx") as client:
        assert _bdat_session(client, [text]) == (
            550, "5.6.0 Bare CR or bare end of data in message text (RFC 5321 §2.3.8)")
        assert client.command("NOOP")[0] == 250  # the transaction is over, the session goes on
        assert client.command("RCPT TO:<alice@example.org>")[0] == 503
    assert smtp_world.queued() == []


def test_bdat_fake_end_split_across_chunks_is_refused(smtp_world):
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        reply = _bdat_session(client, [b"From: bob@remote.test\r\nSubject: split\r\n\r\nfirst\n", b".\n" + HIDDEN])
        assert reply[0] == 550
    assert smtp_world.queued() == []


def test_bdat_bare_lf_without_a_dot_line_is_accepted_like_data(smtp_world):
    """A bare LF alone is sloppy but not smuggling: DATA accepts it (normalised on delivery), BDAT too."""
    smtp_world.add_mailbox("alice@example.org")
    with smtp_world.raw("mx") as client:
        assert _bdat_session(client, [b"From: bob@remote.test\r\nSubject: lf\r\n\r\nline one\nline two\r\n",
                                      b".leading dot is text in BDAT\r\n"])[0] == 250
    with smtp_world.raw("mx") as client:
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("MAIL FROM:<bob@remote.test>")[0] == 250
        assert client.command("RCPT TO:<alice@example.org>")[0] == 250
        assert client.command("DATA")[0] == 354
        client.send(b"From: bob@remote.test\r\nSubject: lf\r\n\r\nline one\nline two\r\n.\r\n")
        assert client.reply()[0] == 250
    assert len(smtp_world.queued()) == 2
