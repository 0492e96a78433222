"""Autoconfig over a real HTTPS server on loopback (trustme CA): a redirect to another https URL
is followed, a redirect to http:// is refused (no request reaches the plain server), and a
document offering only PLAIN (no TLS) selects nothing."""

from __future__ import annotations

import http.server
import ssl
import threading
from typing import ClassVar

import pytest

from courriel.imapsync import discovery

trustme = pytest.importorskip("trustme")

SSL_DOC = b"""<clientConfig version="1.1"><emailProvider id="example.net">
  <incomingServer type="imap"><hostname>imap.example.net</hostname><port>993</port>
    <socketType>SSL</socketType></incomingServer></emailProvider></clientConfig>"""
PLAIN_DOC = SSL_DOC.replace(b"993", b"143").replace(b"SSL", b"PLAIN")


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict] = {}
    hits: ClassVar[list] = []

    def do_GET(self):
        self.hits.append(self.path)
        status, headers, body = self.routes.get(self.path.split("?")[0], (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(tls: ssl.SSLContext | None):
    handler = type("Handler", (_Handler,), {"routes": {}, "hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return server, handler, thread


@pytest.fixture
def servers():
    ca = trustme.CA()
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    https, https_handler, t1 = _serve(server_tls)
    plain, plain_handler, t2 = _serve(None)
    yield https, https_handler, plain, plain_handler, client_tls
    for server, thread in ((https, t1), (plain, t2)):
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_redirects_only_to_https(servers):
    https, https_handler, plain, plain_handler, client_tls = servers
    base = f"https://127.0.0.1:{https.server_address[1]}"
    https_handler.routes.update({
        "/mail/config-v1.1.xml": (302, {"Location": f"{base}/moved.xml"}, b""),
        "/moved.xml": (200, {"Content-Type": "text/xml"}, SSL_DOC),
        "/downgrade.xml": (302, {"Location": f"http://127.0.0.1:{plain.server_address[1]}/evil.xml"}, b""),
        "/plain.xml": (200, {"Content-Type": "text/xml"}, PLAIN_DOC),
    })
    plain_handler.routes["/evil.xml"] = (200, {}, PLAIN_DOC)
    found = discovery.from_autoconfig("jo@example.net", url=f"{base}/mail/config-v1.1.xml", context=client_tls)
    assert (found.host, found.port, found.security) == ("imap.example.net", 993, "ssl")
    assert discovery.from_autoconfig("jo@example.net", url=f"{base}/downgrade.xml", context=client_tls) is None
    assert plain_handler.hits == []  # the http:// URL was never requested
    assert discovery.from_autoconfig("jo@example.net", url=f"{base}/plain.xml", context=client_tls) is None
    # Without the test CA the certificate is refused.
    assert discovery.from_autoconfig("jo@example.net", url=f"{base}/moved.xml",
                                     context=ssl.create_default_context(cafile=None, capath="/nonexistent")) is None
