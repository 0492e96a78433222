"""The outbound SMTP session against a scripted peer on loopback: with PIPELINING offered, MAIL
and every RCPT arrive before the peer answers any of them (a client waiting for each reply would
time out), and replies sent together in one segment are each matched to their command."""

from __future__ import annotations

import asyncio

import pytest

from courriel.smtp.outbound import OutboundMessage, OutboundRecipient, OutboundSession, SessionLost

RECIPIENTS = ["a@peer.test", "b@peer.test", "c@peer.test"]


async def _scripted_peer(received: list[bytes], extensions: list[bytes]):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        writer.write(b"220 peer.test ESMTP scripted\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-peer.test\r\n" + b"".join(b"250-" + e + b"\r\n" for e in extensions) + b"250 8BITMIME\r\n")
        while True:
            # Nothing is answered until the whole envelope is in: MAIL + one RCPT per recipient.
            first = await asyncio.wait_for(reader.readline(), 5)
            if not first.startswith(b"MAIL"):
                writer.write(b"221 bye\r\n")
                break
            envelope = [first] + [await asyncio.wait_for(reader.readline(), 5) for _ in RECIPIENTS]
            received.extend(envelope)
            # All replies in one write; the second recipient is refused (multi-line reply).
            writer.write(b"250 2.1.0 sender ok\r\n250 2.1.5 ok\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n"
                         b"250 2.1.5 ok\r\n")
            assert await reader.readline() == b"DATA\r\n"
            writer.write(b"354 go ahead\r\n")
            body = b""
            while not body.endswith(b"\r\n.\r\n"):
                body += await reader.readline()
            received.append(body)
            writer.write(b"250 2.0.0 queued as X1\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _deliver(extensions: list[bytes]):
    received: list[bytes] = []
    server = await _scripted_peer(received, extensions)
    port = server.sockets[0].getsockname()[1]
    try:
        session = await OutboundSession.open("peer.test", "127.0.0.1", port, "client.test", timeout=5)
        message = OutboundMessage("s@client.test", tuple(OutboundRecipient(r) for r in RECIPIENTS),
                                  b"Subject: t\r\n\r\n.dot\r\n")
        results = []
        for _ in range(2):  # and again on the same connection
            results.append(await asyncio.wait_for(session.send(message), 10))
        await session.quit()
        return received, results
    finally:
        server.close()
        await server.wait_closed()


def test_pipelined_envelope_and_replies_in_one_segment():
    received, results = asyncio.run(_deliver([b"PIPELINING", b"SIZE 1000000"]))
    assert received[0].startswith(b"MAIL FROM:<s@client.test> SIZE=")
    assert received[1:4] == [b"RCPT TO:<a@peer.test>\r\n", b"RCPT TO:<b@peer.test>\r\n", b"RCPT TO:<c@peer.test>\r\n"]
    assert received[4] == b"Subject: t\r\n\r\n..dot\r\n.\r\n"  # dot-stuffed DATA
    for result in results:
        assert {a: (r.code, r.enhanced_status) for a, r in result.replies.items()} == {
            "a@peer.test": (250, "2.0.0"), "b@peer.test": (550, "5.1.1"), "c@peer.test": (250, "2.0.0")}
        assert result.replies["b@peer.test"].line() == "550 5.1.1 no such 5.1.1 user"
    assert len(received) == 10  # two transactions on one connection


def test_connection_lost_during_pipelined_replies():
    async def scenario():
        async def handle(reader, writer):
            writer.write(b"220 peer.test ESMTP\r\n")
            await reader.readline()
            writer.write(b"250-peer.test\r\n250 PIPELINING\r\n")
            await reader.readline()  # MAIL
            writer.write(b"250 2.1.0 ok\r\n")  # then the connection drops before the RCPT replies
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            session = await OutboundSession.open("peer.test", "127.0.0.1", port, "client.test", timeout=5)
            message = OutboundMessage("s@client.test", (OutboundRecipient("a@peer.test"),), b"x\r\n")
            with pytest.raises(SessionLost):
                await asyncio.wait_for(session.send(message), 10)
            assert not session.usable
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
