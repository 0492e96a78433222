"""TLS and plaintext-AUTH policy over real loopback sockets: the submission listener refuses AUTH
before STARTTLS (RFC 4954 §4, RFC 8314 §3) and the server context allows TLS 1.2+ only, without
compression (CRIME) and without weak ciphers."""

from __future__ import annotations

import base64
import ssl

from smtp_harness import smtp_world_fixture  # noqa: F401 - pytest fixture "smtp_world"

from courriel import tls


def test_auth_refused_before_starttls(smtp_world):
    smtp_world.add_mailbox("alice@example.org", password="Sekrit horse 42 zq")
    blob = base64.b64encode(b"\0alice@example.org\0Sekrit horse 42 zq").decode()
    with smtp_world.raw("submission") as client:
        code, text = client.command("EHLO client.example")
        assert code == 250, text
        assert "AUTH" not in [line.split()[0].upper() for line in text.split("\n")[1:] if line]
        code, _ = client.command(f"AUTH PLAIN {blob}")
        assert code >= 500


def test_server_context_is_tls12_plus_without_compression(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.make_self_signed(cert, key, "mx.example.org")
    context = tls.server_context(cert, key)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    names = [cipher["name"] for cipher in context.get_ciphers()]
    assert names and not [n for n in names if any(w in n for w in ("RC4", "3DES", "NULL", "EXPORT", "MD5"))]


def test_huge_auth_login_response_is_bounded(smtp_world):
    """A multi-megabyte base64 answer to the AUTH LOGIN challenge is refused (or the connection
    dropped) without authenticating, and the server keeps serving."""
    smtp_world.add_mailbox("alice@example.org", password="Sekrit horse 42 zq")
    with smtp_world.raw("submissions") as client:
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("AUTH LOGIN")[0] == 334
        try:
            client.send(b"QUFB" * 500_000 + b"\r\n")
            code, _ = client.reply()
            assert code >= 500
        except (ConnectionError, ssl.SSLError):
            pass
    with smtp_world.raw("submissions") as client:
        assert client.command("EHLO client.example")[0] == 250
        blob = base64.b64encode(b"\0alice@example.org\0Sekrit horse 42 zq").decode()
        assert client.command(f"AUTH PLAIN {blob}")[0] == 235
