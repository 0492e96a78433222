"""IMAP commands over a real socket to the IMAP role process, with imaplib and imapclient.

Each test is a transcript of one command family, error paths and wrong-state commands
included, asserted on the server's answers and on the store.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl

import pytest
from imap_server import imap_server, running_imap_server  # noqa: F401
from imapclient import IMAPClient
from store_fixtures import sample_message

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(imap_server):  # noqa: F811
    imap_server.clear()
    return imap_server


def raw_session(server, lines: list[bytes], expect_tag: bytes, port: int | None = None) -> bytes:
    """Send raw lines, read until the tagged answer `expect_tag` arrives (bounded)."""
    with socket.create_connection(("127.0.0.1", port or server.imap_port), timeout=10) as sock:
        received = sock.recv(4096)
        sock.sendall(b"".join(lines))
        for _ in range(200):
            if re.search(rb"(^|\r\n)" + re.escape(expect_tag) + rb" (OK|NO|BAD)[^\r\n]*\r\n", received):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_capability_greeting_and_wrong_state(server):
    client = server.client()
    caps = client.capabilities
    assert "IMAP4REV1" in caps and "STARTTLS" in caps and "IDLE" in caps and "UIDPLUS" in caps
    # --dev allows plaintext auth: AUTH=PLAIN offered, no LOGINDISABLED.
    assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps
    with pytest.raises(imaplib.IMAP4.error):
        client._simple_command("SELECT", "INBOX")  # not authenticated yet
    typ, _ = client.noop()
    assert typ == "OK"
    with pytest.raises(imaplib.IMAP4.error):
        client.login(server.address, "wrong password")
    client.login(server.address, server.password)
    with pytest.raises(imaplib.IMAP4.error):
        client._simple_command("FETCH", "1", "(FLAGS)")  # not selected
    assert client.logout()[0] == "BYE"


def test_bad_syntax_and_unknown_command(server):
    answer = raw_session(server, [b"a1 FROB\r\n", b"a2 LOGIN\r\n", b"a3 NOOP\r\n"], b"a3")
    assert re.search(rb"a1 BAD", answer) and re.search(rb"a2 BAD", answer) and b"a3 OK" in answer
    # An overlong line is refused with TOOBIG and the connection goes on (line limit).
    answer = raw_session(server, [b"b1 NOOP " + b"x" * 200_000 + b"\r\n", b"b2 NOOP\r\n"], b"b2")
    assert re.search(rb"(b1|\*) BAD \[TOOBIG\]", answer) and b"b2 OK" in answer
    # A literal over the limit outside APPEND is refused before the client sends it.
    answer = raw_session(server, [b"c1 LOGIN {999999999}\r\n", b"c2 NOOP\r\n"], b"c2")
    assert re.search(rb"c1 (BAD|NO) \[TOOBIG\]", answer) and b"\r\n+ " not in answer and b"c2 OK" in answer


def test_authenticate_plain_with_initial_response(server):
    import base64

    token = base64.b64encode(f"\0{server.address}\0{server.password}".encode())
    answer = raw_session(server, [b"a1 AUTHENTICATE PLAIN " + token + b"\r\n", b"a2 SELECT INBOX\r\n"], b"a2")
    assert b"a1 OK" in answer and b"a2 OK [READ-WRITE]" in answer
    bad = base64.b64encode(f"\0{server.address}\0nope".encode())
    answer = raw_session(server, [b"b1 AUTHENTICATE PLAIN " + bad + b"\r\n"], b"b1")
    assert b"b1 NO [AUTHENTICATIONFAILED]" in answer


def test_select_examine_status_and_folders(server):
    server.store.deliver(server.mailbox_id, sample_message(1))
    with IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=10) as client:
        client.login(server.address, server.password)
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 1 and info[b"UIDNEXT"] >= 2 and info[b"UIDVALIDITY"] > 0
        assert b"\\*" in info[b"PERMANENTFLAGS"] and info[b"HIGHESTMODSEQ"] >= 1
        names = {name for _flags, _delim, name in client.list_folders()}
        assert {"INBOX", "Sent", "Drafts", "Trash", "Spam"} <= names
        special = {name: flags for flags, _d, name in client.list_folders()}
        assert b"\\Trash" in special["Trash"]
        client.create_folder("Projects/Été")
        assert ("Projects/Été") in {n for _f, _d, n in client.list_folders("Projects", "*")}
        raw = raw_session(server, [f"a1 LOGIN {server.address} \"{server.password}\"\r\n".encode(),
                                   b'a2 LIST "" "Projects/*"\r\n'], b"a2")
        assert b' Projects/&AMk-t&AOk-\r\n' in raw  # modified UTF-7 on the wire
        with pytest.raises(IMAPClient.Error):
            client.create_folder("Projects/Été")
        with pytest.raises(IMAPClient.Error):
            client.delete_folder("Trash")  # a default folder
        with pytest.raises(IMAPClient.Error):
            client.rename_folder("Sent", "Sent2")
        client.rename_folder("Projects/Été", "Projects/Summer")
        status = client.folder_status("Projects/Summer", ["MESSAGES", "UIDNEXT", "UNSEEN"])
        assert status[b"MESSAGES"] == 0
        client.unsubscribe_folder("Projects/Summer")
        assert "Projects/Summer" not in {n for _f, _d, n in client.list_sub_folders()}
        client.delete_folder("Projects/Summer")
        with pytest.raises(IMAPClient.Error):
            client.select_folder("Nowhere")
        info = client.select_folder("INBOX", readonly=True)
        with pytest.raises(IMAPClient.Error):
            client.add_flags([1], [b"\\Seen"])  # read-only
        assert client.namespace().personal[0][1] == "/"
        assert (b"name", b"Courriel") in client.id_({"name": "test"})


def test_append_fetch_store_search_copy_move_expunge(server):
    with IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=10) as client:
        client.login(server.address, server.password)
        response = client.append("INBOX", sample_message(1, subject="Quarterly report",
                                                         body=b"numbers inside\r\n"), flags=[b"Work"])
        assert b"APPENDUID" in response
        client.append("INBOX", sample_message(2, subject="lunch"))
        with pytest.raises(IMAPClient.Error) as error:
            client.append("Missing", sample_message(3))
        assert "TRYCREATE" in str(error.value)
        client.select_folder("INBOX")
        uids = client.search(["ALL"])
        assert len(uids) == 2
        assert client.search(["SUBJECT", "quarterly"]) == [uids[0]]
        assert client.search(["BODY", "numbers"]) == [uids[0]]
        assert client.search(["KEYWORD", "Work"]) == [uids[0]]
        data = client.fetch(uids[:1], ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE", "INTERNALDATE", "FLAGS",
                                       "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        entry = data[uids[0]]
        assert entry[b"ENVELOPE"].subject == b"Quarterly report"
        assert entry[b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: Quarterly report\r\n\r\n"
        assert b"\\Seen" not in entry[b"FLAGS"]
        body = client.fetch(uids[:1], ["BODY[TEXT]"])[uids[0]][b"BODY[TEXT]"]
        assert body == b"numbers inside\r\n"
        assert b"\\Seen" in client.get_flags(uids[:1])[uids[0]]  # BODY[] sets \Seen
        partial = client.fetch(uids[:1], ["BODY.PEEK[]<0.4>"])[uids[0]]
        assert partial[b"BODY[]<0>"] == b"From"
        client.add_flags(uids[1:], [b"\\Flagged", b"custom"])
        assert set(client.get_flags(uids[1:])[uids[1]]) - {b"\\Recent"} == {b"\\Flagged", b"custom"}
        assert client.search(["FLAGGED"]) == [uids[1]]
        client.copy(uids[:1], "Trash")
        client.move(uids[1:], "Drafts")
        assert client.search(["ALL"]) == [uids[0]]
        client.add_flags(uids[:1], [b"\\Deleted"])
        assert client.expunge() is not None
        assert client.search(["ALL"]) == []
        assert client.folder_status("Trash", ["MESSAGES"])[b"MESSAGES"] == 1
        assert client.folder_status("Drafts", ["MESSAGES"])[b"MESSAGES"] == 1
        client.select_folder("Drafts")
        moved = client.search(["ALL"])
        client.uid_expunge(moved) if hasattr(client, "uid_expunge") else None
        client.unselect_folder()
    drafts = server.store.get_folder(server.mailbox_id, "Drafts")
    assert len(server.store.list_messages(drafts.id)) == 1


def test_uid_commands_and_sequence_errors(server):
    for n in range(3):
        server.store.deliver(server.mailbox_id, sample_message(n))
    client = server.login()
    client.select("INBOX")
    typ, data = client.uid("SEARCH", "ALL")
    uids = data[0].split()
    assert typ == "OK" and len(uids) == 3
    typ, data = client.uid("FETCH", f"{uids[0].decode()}:*", "(UID FLAGS)")
    assert typ == "OK" and len([d for d in data if d]) == 3
    typ, data = client.uid("COPY", uids[1].decode(), "Trash")
    assert typ == "OK"
    _name, [copyuid] = client.response("COPYUID")
    assert re.fullmatch(rb"\d+ %s \d+" % uids[1], copyuid)
    typ, data = client.uid("STORE", uids[0].decode(), "+FLAGS.SILENT", "(\\Deleted)")
    assert typ == "OK" and data == [None]
    typ, data = client.uid("EXPUNGE", uids[0].decode())
    assert typ == "OK"
    with pytest.raises(imaplib.IMAP4.error):
        client.fetch("99", "(FLAGS)")  # no such message number
    typ, _ = client.close()
    assert typ == "OK"
    client.logout()


def test_implicit_tls_and_starttls(server):
    with imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=server.tls_context(), timeout=10) as client:
        assert "STARTTLS" not in client.capabilities
        client.login(server.address, server.password)
        assert client.select("INBOX")[0] == "OK"
    client = server.client()
    client.starttls(ssl_context=server.tls_context())
    assert "STARTTLS" not in client.capabilities
    client.login(server.address, server.password)
    client.logout()


def test_starttls_discards_pipelined_plaintext(server):
    """RFC 3501 §6.2.1: a command pipelined in plaintext after STARTTLS is never executed."""
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=10) as raw:
        raw.recv(4096)
        raw.sendall(b"a1 STARTTLS\r\na2 CREATE Injected\r\n")
        answer = b""
        for _ in range(50):
            answer += raw.recv(4096)
            if b"\r\n" in answer:
                break
        assert answer.startswith(b"a1 OK")
        with server.tls_context().wrap_socket(raw) as tls:
            tls.sendall(b"b1 NOOP\r\n")
            reply = b""
            for _ in range(50):
                reply += tls.recv(4096)
                if b"b1 " in reply:
                    break
            assert b"a2" not in reply and b"b1 OK" in reply
    names = {f.name for f in server.store.list_folders(server.mailbox_id)}
    assert "Injected" not in names


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_refuses_old_versions(server):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.minimum_version = ssl.TLSVersion.TLSv1
    except ValueError:
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", server.imaps_port), timeout=10) as raw, \
            pytest.raises(ssl.SSLError):
        context.wrap_socket(raw).recv(10)


def test_logindisabled_before_tls_and_connection_limits(tmp_path):
    """Production settings: no password before TLS on 143 (RFC 3501 §6.2.3 LOGINDISABLED), and
    the per-user and per-address connection limits from the configuration."""
    settings = {"COURRIEL_TLS_ALLOW_PLAINTEXT_AUTH": "false", "COURRIEL_IMAP_MAX_CONNECTIONS_PER_USER": "2",
                "COURRIEL_IMAP_MAX_CONNECTIONS_PER_IP": "4", "COURRIEL_SMTP_MAX_MESSAGE_SIZE": "4096"}
    with running_imap_server(tmp_path / "strict", **settings) as strict:
        client = strict.client()
        assert "LOGINDISABLED" in client.capabilities and "AUTH=PLAIN" not in client.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            client.login(strict.address, strict.password)
        client.starttls(ssl_context=strict.tls_context())
        assert "LOGINDISABLED" not in client.capabilities and "AUTH=PLAIN" in client.capabilities
        client.login(strict.address, strict.password)
        second = imaplib.IMAP4_SSL("127.0.0.1", strict.imaps_port, ssl_context=strict.tls_context(), timeout=10)
        second.login(strict.address, strict.password)
        third = imaplib.IMAP4_SSL("127.0.0.1", strict.imaps_port, ssl_context=strict.tls_context(), timeout=10)
        with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
            third.login(strict.address, strict.password)
        # Three connections from 127.0.0.1 are open (the refused login keeps its own); a fourth
        # fills the address's quota and a fifth is refused.
        with socket.create_connection(("127.0.0.1", strict.imap_port), timeout=10) as fourth, \
                socket.create_connection(("127.0.0.1", strict.imap_port), timeout=10) as fifth:
            assert fourth.recv(200).startswith(b"* OK")
            assert fifth.recv(200).startswith(b"* BYE")
        second.logout()
        third.login(strict.address, strict.password)  # a slot is free again
        # RFC 7889 APPENDLIMIT from the configured message size: announced, and enforced.
        assert "APPENDLIMIT=4096" in third.capabilities or b"APPENDLIMIT=4096" in third.capability()[1][0]
        typ, data = third.append("INBOX", None, None, sample_message(1, body=b"x" * 5000))
        assert typ == "NO" and b"TOOBIG" in data[0]
        typ, data = third.append("INBOX", None, None, sample_message(2))
        assert typ == "OK"
        assert len(strict.store.list_messages(strict.inbox_id())) == 1
        for session in (client, third):
            session.logout()


class Transcript:
    """One raw connection: send a command, read to its tagged answer, return every line."""

    def __init__(self, server):
        self.sock = socket.create_connection(("127.0.0.1", server.imap_port), timeout=10)
        self.buffer = b""
        self.greeting = self._line()
        self.count = 0

    def _line(self) -> bytes:
        for _ in range(1000):
            if b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                return line
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buffer += chunk
        raise AssertionError("no line")

    def raw(self, data: bytes, tag: bytes) -> list[bytes]:
        self.sock.sendall(data)
        lines = []
        for _ in range(1000):
            line = self._line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines
        raise AssertionError(lines)

    def __call__(self, command: str) -> list[bytes]:
        self.count += 1
        tag = b"t%d" % self.count
        return self.raw(tag + b" " + command.encode() + b"\r\n", tag)

    def close(self) -> None:
        self.sock.close()


def test_command_transcripts(server):
    server.store.deliver(server.mailbox_id, sample_message(1, subject="first"))
    t = Transcript(server)
    try:
        assert t.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
        assert t("CAPABILITY")[0].startswith(b"* CAPABILITY IMAP4rev1")
        assert t("LIST \"\" \"*\"")[-1].startswith(b"t2 BAD")  # not authenticated
        assert t("ID NIL")[0] == b'* ID ("name" "Courriel")'
        # AUTHENTICATE PLAIN without an initial response: an empty challenge, then the response.
        t.count += 1
        import base64
        token = base64.b64encode(f"\0{server.address}\0{server.password}".encode())
        assert t.raw(b"t%d AUTHENTICATE PLAIN\r\n" % t.count, b"+") == [b"+ "]
        assert t.raw(token + b"\r\n", b"t%d" % t.count)[-1].startswith(b"t%d OK [CAPABILITY " % t.count)
        assert t("LOGIN a b")[-1].startswith(b"t%d BAD" % t.count)  # already authenticated
        assert t("NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL'
        assert t("ENABLE X-NOT-OFFERED")[0] == b"* ENABLED"  # not offered: nothing enabled
        lines = t('LIST "" ""')
        assert lines[0] == b'* LIST (\\Noselect) "/" ""'
        lines = t('LIST "" "%" RETURN (SUBSCRIBED STATUS (MESSAGES UNSEEN))')
        assert b'* LIST (\\HasNoChildren \\Subscribed) "/" INBOX' in lines
        assert b"* STATUS INBOX (MESSAGES 1 UNSEEN 1)" in lines
        assert any(line.startswith(b"* LIST (\\HasNoChildren \\Subscribed \\Sent)") for line in lines)
        lines = t('LIST (SPECIAL-USE) "" "*"')
        assert len([line for line in lines if line.startswith(b"* LIST")]) == 4  # Sent Drafts Trash Spam
        assert t("CREATE Archive/2026 (USE (\\Archive))")[-1].startswith(b"t%d NO [USEATTR]" % t.count)
        assert t("CREATE Archive/2026 (USE (\\Junk))")[-1].startswith(b"t%d OK" % t.count)
        assert b'* LIST (\\HasChildren) "/" Archive' in t('LIST "" "Arch%"')
        assert t("CREATE Archive/2026")[-1].startswith(b"t%d NO [ALREADYEXISTS]" % t.count)
        assert t("DELETE Nowhere")[-1].startswith(b"t%d NO [NONEXISTENT]" % t.count)
        assert t("DELETE Archive")[-1].startswith(b"t%d NO" % t.count)  # has inferiors
        assert t("RENAME INBOX Old")[-1].startswith(b"t%d NO [CANNOT]" % t.count)
        assert t("SUBSCRIBE Archive/2026")[-1].startswith(b"t%d OK" % t.count)
        assert b'* LSUB () "/" Archive/2026' in t('LSUB "" "Archive/*"')
        assert t("UNSUBSCRIBE Archive")[-1].startswith(b"t%d OK" % t.count)
        lines = t('LIST (SUBSCRIBED RECURSIVEMATCH) "" "Archive"')
        assert lines[0] == b'* LIST (\\HasChildren) "/" Archive ("CHILDINFO" ("SUBSCRIBED"))'
        assert t('LIST (RECURSIVEMATCH) "" "*"')[-1].startswith(b"t%d BAD" % t.count)
        assert t("STATUS Nowhere (MESSAGES)")[-1].startswith(b"t%d NO [NONEXISTENT]" % t.count)
        assert t("STATUS INBOX (UIDNEXT MESSAGES)")[0].startswith(b"* STATUS INBOX (UIDNEXT ")
        # MULTIAPPEND with LITERAL+ (no continuation needed), one message as a binary literal8.
        one, two = sample_message(2, subject="two"), sample_message(3, subject="three")
        t.count += 1
        lines = t.raw(b"t%d APPEND Archive/2026 (\\Seen) {%d+}\r\n%s ~{%d+}\r\n%s\r\n"
                      % (t.count, len(one), one, len(two), two), b"t%d" % t.count)
        assert re.match(rb"t\d+ OK \[APPENDUID \d+ 1:2\]", lines[-1]), lines
        # A synchronising literal gets "+ " first.
        t.count += 1
        assert t.raw(b"t%d APPEND Archive/2026 {%d}\r\n" % (t.count, len(one)), b"+")[-1].startswith(b"+ ")
        assert t.raw(one + b"\r\n", b"t%d" % t.count)[-1].startswith(b"t%d OK [APPENDUID" % t.count)
        assert t("APPEND Nowhere {1+}\r\nx")[-1].startswith(b"t%d NO [TRYCREATE]" % t.count)
        lines = t("EXAMINE Archive/2026")
        assert b"* 3 EXISTS" in lines and lines[-1].startswith(b"t%d OK [READ-ONLY]" % t.count)
        assert t("STORE 1 +FLAGS (\\Flagged)")[-1].startswith(b"t%d NO" % t.count)
        assert t("FETCH 1 (BODY[])")[0].startswith(b"* 1 FETCH (BODY[] {")
        assert b"\\Seen" not in t("FETCH 3 (FLAGS)")[0]  # EXAMINE never sets \Seen
        lines = t("SELECT Archive/2026")
        assert lines[-1].startswith(b"t%d OK [READ-WRITE]" % t.count)
        assert any(line.startswith(b"* OK [PERMANENTFLAGS (") and b"\\*" in line for line in lines)
        assert t("SEARCH RETURN (MIN MAX COUNT) ALL")[0] == b'* ESEARCH (TAG "t%d") MIN 1 MAX 3 COUNT 3' % t.count
        assert t("SEARCH SEEN")[0] == b"* SEARCH 1"  # MULTIAPPEND flags are per message
        # RFC 5182 SEARCHRES: SAVE sends nothing, `$` reuses the result in FETCH and SEARCH.
        assert t("UID SEARCH RETURN (SAVE) SUBJECT three") == [b"t%d OK SEARCH completed" % t.count]
        assert re.match(rb"\* 2 FETCH \(UID \d+\)", t("FETCH $ (UID)")[0])
        assert t("SEARCH RETURN (SAVE MIN) 2:3")[-1].startswith(b"t%d OK" % t.count)
        assert t("SEARCH $")[0] == b"* SEARCH 2"
        assert t("SEARCH 2:*")[0] == b"* SEARCH 2 3"
        assert t("SEARCH 5:9")[0] == b"* SEARCH"
        assert t("SEARCH CHARSET KOI8-R ALL")[-1].startswith(b"t%d NO [BADCHARSET" % t.count)
        assert t("UID SEARCH SUBJECT three")[0] == b"* SEARCH 2"
        lines = t("FETCH 2 (BINARY.SIZE[1] BINARY.PEEK[1] UID)")
        assert lines[0].startswith(b"* 2 FETCH (BINARY.SIZE[1] ")
        lines = t("FETCH 1:2 (FLAGS) (CHANGEDSINCE 1)")
        assert lines[-1].startswith(b"t%d OK" % t.count) and len(lines) == 3
        assert t("FETCH 9 (FLAGS)")[-1].startswith(b"t%d BAD" % t.count)
        assert t("FETCH 1 (BODY[1.2.3.X])")[-1].startswith(b"t%d BAD" % t.count)
        lines = t("STORE 1:2 -FLAGS (\\Seen)")
        # CHANGEDSINCE above enabled CONDSTORE (RFC 7162 §3.1): FLAGS now come with MODSEQ.
        assert re.fullmatch(rb"\* 1 FETCH \(FLAGS \(\) MODSEQ \(\d+\)\)", lines[0])
        assert re.fullmatch(rb"\* 2 FETCH \(FLAGS \(\) MODSEQ \(\d+\)\)", lines[1])
        lines = t("STORE 1 +FLAGS.SILENT (\\Deleted)")
        assert lines[-1] == b"t%d OK STORE completed" % t.count and b"FLAGS" not in b"".join(lines)
        assert t("STORE 1 +FLAGS (\\Bogus)")[-1].startswith(b"t%d NO" % t.count)
        lines = t("COPY 2 Nowhere")
        assert lines[-1].startswith(b"t%d NO [TRYCREATE]" % t.count)
        lines = t("UID MOVE 2 INBOX")
        assert lines[0].startswith(b"* OK [COPYUID ") and lines[1] == b"* 2 EXPUNGE"
        assert t("CHECK")[-1] == b"t%d OK CHECK completed" % t.count
        lines = t("EXPUNGE")
        assert lines[0] == b"* 1 EXPUNGE"
        assert t("UNSELECT")[-1].startswith(b"t%d OK" % t.count)
        assert t("FETCH 1 (FLAGS)")[-1].startswith(b"t%d BAD" % t.count)  # not selected any more
        t("SELECT Archive/2026")
        assert t("CLOSE")[-1].startswith(b"t%d OK" % t.count)
        assert t("DELETE Archive/2026")[-1].startswith(b"t%d OK" % t.count)
        assert t("STARTTLS")[-1].startswith(b"t%d BAD" % t.count)  # wrong state
        lines = t("LOGOUT")
        assert lines[0].startswith(b"* BYE") and lines[-1].startswith(b"t%d OK" % t.count)
    finally:
        t.close()


def test_pipelined_commands_and_byte_by_byte_input(server):
    server.store.deliver(server.mailbox_id, sample_message(1))
    login = f'p1 LOGIN {server.address} "{server.password}"\r\n'.encode()
    pipelined = login + b"p2 SELECT INBOX\r\np3 FETCH 1 (UID FLAGS)\r\np4 NOOP\r\np5 LOGOUT\r\n"
    answer = raw_session(server, [pipelined], b"p5")
    tags = re.findall(rb"^(p\d) (OK|NO|BAD)", answer, re.MULTILINE)
    assert tags == [(b"p1", b"OK"), (b"p2", b"OK"), (b"p3", b"OK"), (b"p4", b"OK"), (b"p5", b"OK")]
    assert answer.index(b"* 1 FETCH (UID ") < answer.index(b"p3 OK")
    # The same commands fed one byte per write are parsed the same way.
    with socket.create_connection(("127.0.0.1", server.imap_port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = sock.recv(4096)
        for byte in login + b"p2 SELECT INBOX\r\n":
            sock.send(bytes([byte]))
        for _ in range(200):
            if b"p2 OK" in received:
                break
            received += sock.recv(4096)
        assert b"p1 OK" in received and b"p2 OK [READ-WRITE]" in received


HOSTILE = [
    "FETCH 1:4294967295 (FLAGS)", "UID FETCH 1:* (BODY.PEEK[999.999.HEADER])", "UID FETCH 1:* (BINARY[0])",
    "UID FETCH * (BODY.PEEK[]<4294967295.10>)", "UID FETCH 1 (BODY[HEADER.FIELDS ()])", "FETCH 0 (FLAGS)",
    "UID STORE 1:* FLAGS (\\Recent)", "UID STORE 1 +FLAGS (bad]keyword)", "SELECT \"*\"", "CREATE \"a//b\"",
    "CREATE \"/lead\"", "RENAME INBOX/x INBOX", "UID COPY 1:* \"\"", "UID MOVE 1 INBOX",
    "SEARCH " + "NOT " * 40 + "ALL", "SEARCH OR OR OR SEEN UNSEEN DRAFT DELETED", "SEARCH SENTON 31-Feb-2026",
    "SEARCH HEADER \"\" \"\"", "SEARCH LARGER 99999999999999999999", "UID SEARCH UID 4294967295:*",
    "STATUS INBOX (BOGUS)", "APPEND INBOX (\\Deleted \\Recent) \"31-Dec-1969 23:59:59 +0000\" {5+}\r\nabcde",
    "EXAMINE INBOX", "ID (\"a\" \"b\" \"c\")", "ENABLE UTF8=ACCEPT QRESYNC", "IDLE\r\nNOT-DONE",
]


def test_hostile_commands_never_crash_the_session(server):
    server.store.deliver(server.mailbox_id, sample_message(1))
    t = Transcript(server)
    try:
        t(f'LOGIN {server.address} "{server.password}"')
        t("SELECT INBOX")
        for command in HOSTILE:
            lines = t(command)
            assert re.match(rb"t\d+ (OK|NO|BAD)", lines[-1]), (command, lines)
            assert not any(line.startswith(b"* BYE") for line in lines), (command, lines)
        assert t("NOOP")[-1].startswith(b"t%d OK" % t.count)
    finally:
        t.close()
    # The module fixture also fails on any traceback in the server log.


def test_condstore(server):
    """RFC 7162 §3.1: MODSEQ in FETCH once enabled, CHANGEDSINCE, UNCHANGEDSINCE/MODIFIED, SEARCH MODSEQ."""
    for n in range(2):
        server.store.deliver(server.mailbox_id, sample_message(n))
    raw = Transcript(server)
    other = server.login()

    def t(command: str) -> list[bytes]:  # \\Recent depends on earlier tests: leave it out
        return [line.replace(b" \\Recent", b"") for line in raw(command)]

    try:
        t(f'LOGIN {server.address} "{server.password}"')
        assert "CONDSTORE" in t("CAPABILITY")[0].decode()
        assert t("ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE"
        lines = t("SELECT INBOX")
        highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(lines)).group(1))
        lines = t("STORE 1 +FLAGS (\\Flagged)")
        changed = int(re.match(rb"\* 1 FETCH \(FLAGS \(\\Flagged\) MODSEQ \((\d+)\)\)", lines[0]).group(1))
        assert changed > highest
        lines = t(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
        assert len(lines) == 2 and lines[0].startswith(b"* 1 FETCH (FLAGS (\\Flagged) MODSEQ (")
        lines = t(f"STORE 1:2 (UNCHANGEDSINCE {highest}) +FLAGS (\\Seen)")
        assert lines[-1].startswith(b"t%d OK [MODIFIED 1]" % raw.count)
        assert lines[0].startswith(b"* 2 FETCH (FLAGS (\\Seen) MODSEQ (")
        lines = t("STORE 2 +FLAGS.SILENT (\\Draft)")
        assert re.fullmatch(rb"\* 2 FETCH \(MODSEQ \(\d+\)\)", lines[0]) and len(lines) == 2
        assert t(f"SEARCH MODSEQ {changed + 1}")[0] == b"* SEARCH 2 (MODSEQ %d)" % (changed + 2)
        # A change by another session arrives with its MODSEQ.
        other.select("INBOX")
        other.store("2", "+FLAGS", "(\\Answered)")
        lines = t("NOOP")
        assert any(re.match(rb"\* 2 FETCH \(UID \d+ FLAGS \(.*\\Answered.*\) MODSEQ \(\d+\)\)", line)
                   for line in lines), lines
    finally:
        other.logout()
        raw.close()
