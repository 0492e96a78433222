"""Values that SEARCH and SORT compare: decoded headers, base subject, sort keys, body text (ring 0, pure).

Owns: the decoded (RFC 2047) Subject/From/To/Cc strings that the store caches in SQL
columns, the base-subject extraction that SORT (SUBJECT) and THREAD (ORDEREDSUBJECT,
REFERENCES) compare, the address sort keys of SORT FROM/TO/CC and DISPLAYFROM/DISPLAYTO,
the decoded text of a message's text parts for SEARCH BODY/TEXT, and the message ids
that THREAD=REFERENCES links.

Standards: RFC 2047 (encoded words), RFC 5256 §2.1 (base subject), §3 (SORT keys),
RFC 5957 §3 (DISPLAYFROM, DISPLAYTO), RFC 5256 §2.2 and RFC 5322 §3.6.4 (references),
RFC 3501 §6.4.4 (SEARCH BODY/TEXT match the decoded content), RFC 2045 §6 (transfer
encodings), RFC 2046 §4.1.2 (charset).
Security: parses untrusted input; never raises; every loop shortens the text; body text
is bounded by `limit` characters, and each part is decoded (base64, quoted-printable) only
as far as the characters still wanted can need (4 octets a character at most), in
DECODE_CHUNK pieces, so a large encoded part costs no more memory than the text kept.
"""

from __future__ import annotations

import re

from courriel.mime_headers import decode_words, header_end, last_values, split_fields
from courriel.mime_sections import BinaryDecoder, UnknownTransferEncoding

# Indexes of the address fields in an ENVELOPE list (see mime_envelope).
FROM, SENDER, REPLY_TO, TO, CC, BCC = 2, 3, 4, 5, 6, 7

_BLOB = r"\[[^\[\]]*\][ \t]*"  # subj-blob = "[" *BLOBCHAR "]" *WSP
_REFWD = r"(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:"  # subj-refwd
_LEADER = re.compile(r"(?:(?:" + _BLOB + r")*" + _REFWD + r"|[ \t])", re.IGNORECASE)  # subj-leader
_BLOB_PREFIX = re.compile(_BLOB)
_TRAILER = re.compile(r"(?:\(fwd\)|[ \t])$", re.IGNORECASE)  # subj-trailer
_FWD_HDR = "[fwd:"


# The stdlib's RFC 2047 decoder is quadratic in the number of encoded words (a 1.4 MB Subject
# of 100,000 words took 20 s; split_fields allows a 1 MiB field), and the base-subject loops
# below copy the text once per leader or trailer removed (50 KB of "[a]" took 11 s): values
# are cut before decoding and before base-subject extraction. Real values are far shorter;
# SEARCH and SORT look only at the first MAX_DECODED_INPUT / MAX_BASE_SUBJECT characters.
MAX_DECODED_INPUT = 16 * 1024
MAX_BASE_SUBJECT = 4096


def decoded(value: str | None) -> str:
    """RFC 2047-decoded text of a raw header value ('' when absent), for SQL columns; only
    its first MAX_DECODED_INPUT characters are decoded."""
    if not value:
        return ""
    text = decode_words(value[:MAX_DECODED_INPUT])
    return re.sub(r"[\r\n]+[ \t]*", " ", text).strip()


def base_subject(subject: str | None) -> str:
    """RFC 5256 §2.1: the base subject of a raw or decoded Subject value."""
    return _extract_base_subject(subject)[0]


def is_reply_or_forward(subject: str | None) -> bool:
    """RFC 5256 §2.1: whether extracting the base subject removed a reply/forward marker
    (a "Re:"/"Fwd:" leader, a "(fwd)" trailer or a "[fwd: ...]" wrapper); used by THREAD."""
    return _extract_base_subject(subject)[1]


def _extract_base_subject(subject: str | None) -> tuple[str, bool]:
    if not subject:
        return "", False
    marked = False
    # (1) decode encoded words, tabs and folding to spaces, runs of spaces to one (bounded: see
    # MAX_BASE_SUBJECT; a longer subject is compared on its first characters).
    text = re.sub(r"[ \t\r\n]+", " ", decode_words(subject[:MAX_DECODED_INPUT]))[:MAX_BASE_SUBJECT]
    while True:
        # (2) remove trailers: "(fwd)" and blanks.
        while True:
            trimmed = _TRAILER.sub("", text)
            if trimmed == text:
                break
            marked = marked or not text.endswith((" ", "\t"))
            text = trimmed
        # (3)-(5) remove leaders and blobs until neither matches.
        while True:
            before = text
            match = _LEADER.match(text)
            if match and match.end() > 0:
                marked = marked or match.group(0) not in (" ", "\t")
                text = text[match.end():]
            match = _BLOB_PREFIX.match(text)
            if match and text[match.end():].strip():
                text = text[match.end():]
            if text == before:
                break
        # (6) "[fwd: ... ]" wrapper: unwrap and start again at (2).
        if text.lower().startswith(_FWD_HDR) and text.endswith("]"):
            text = text[len(_FWD_HDR):-1]
            marked = True
            continue
        return text, marked


_MSG_ID = re.compile(r"<([^<>\s]*)>")


def message_ids(value: str | None) -> list[str]:
    """RFC 5322 §3.6.4 msg-ids of a References / In-Reply-To / Message-ID value, without the
    angle brackets, in order (RFC 5256 §2.2 step 1: invalid ones are skipped)."""
    if not value:
        return []
    return [found for found in _MSG_ID.findall(value) if found]


def thread_references(data: bytes) -> tuple[str | None, list[str]]:
    """RFC 5256 §2.2 (THREAD=REFERENCES) inputs: (the message's own id, its parent ids in
    order). Parents come from References, or else from the first id of In-Reply-To."""
    fields = split_fields(data, 0, header_end(data, 0, len(data)))
    values = last_values(fields, {"message-id", "references", "in-reply-to"})
    own = message_ids(values.get("message-id"))
    parents = message_ids(values.get("references")) or message_ids(values.get("in-reply-to"))[:1]
    return (own[0] if own else None), parents


def _first_address(envelope: list | None, field: int) -> list | None:
    """The first address structure of an envelope field. RFC 5256 §3 and RFC 5957 §3 take the
    first one as it is: for a group ("team: a@b, c@d;") that is the group start marker, whose
    addr-mailbox is the group name (RFC 3501 §7.4.2), as Dovecot does too."""
    if not envelope or not envelope[field]:
        return None
    address = envelope[field][0]
    return address if isinstance(address, list) and len(address) >= 4 else None


def sort_mailbox(envelope: list | None, field: int) -> str:
    """RFC 5256 §3 SORT FROM/TO/CC: the addr-mailbox of the first address ('' if none).

    Compared by the caller with i;ascii-casemap."""
    address = _first_address(envelope, field)
    return address[2] or "" if address else ""


def sort_display(envelope: list | None, field: int) -> str:
    """RFC 5957 §3 DISPLAYFROM/DISPLAYTO sort value of the first address: its decoded addr-name
    when that is not empty, else addr-mailbox@addr-host, else addr-mailbox (a group's name), else ''."""
    address = _first_address(envelope, field)
    if address is None:
        return ""
    name = decoded(address[0]) if address[0] else ""
    if name:
        return name
    if address[2] is not None and address[3] is not None:
        return f"{address[2]}@{address[3]}"
    return address[2] or ""


def body_text(data: bytes, tree: dict, limit: int = 10_000_000) -> str:
    """Decoded text of the text/* parts (encapsulated messages included), for SEARCH BODY.

    Transfer encodings are removed and charsets decoded (unknown ones as UTF-8, then
    Latin-1); parts are joined by newlines; at most `limit` characters.
    """
    out: list[str] = []
    size = 0
    stack = [tree]
    while stack and size < limit:
        node = stack.pop()
        if "parts" in node:
            stack.extend(reversed(node["parts"]))
            continue
        if "message" in node:
            stack.append(node["message"]["body"])
            continue
        if node["type"].lower() != "text":
            continue
        _start, body_start, end = node["offsets"]
        wanted = limit - size
        content = _decoded_prefix(data, body_start, end, node, wanted * 4)
        charset = next((value for name, value in node["params"] if name.lower() == "charset"), "us-ascii")
        text = _decode_body(content, charset)[:wanted]
        out.append(text)
        size += len(text)
    return "\n".join(out)


DECODE_CHUNK = 256 * 1024


def _decoded_prefix(data: bytes, start: int, end: int, node: dict, octets: int) -> bytes:
    """The transfer-decoded content of data[start:end], at least its first `octets` octets
    (all of it when shorter), decoded a chunk at a time (RFC 2045 §6.7, §6.8)."""
    try:
        decoder = BinaryDecoder(node)
    except UnknownTransferEncoding:
        return data[start:min(end, start + octets)]
    pieces: list[bytes] = []
    got = 0
    position = start
    while position < end and got < octets:
        piece = decoder.feed(data[position:min(end, position + DECODE_CHUNK)])
        position += DECODE_CHUNK
        pieces.append(piece)
        got += len(piece)
    if position >= end:
        pieces.append(decoder.finish())
    return b"".join(pieces)


def _decode_body(content: bytes, charset: str) -> str:
    try:
        return content.decode(charset.strip().strip('"') or "us-ascii")
    except (LookupError, UnicodeDecodeError, ValueError):
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError:
            return content.decode("latin-1")
