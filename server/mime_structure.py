"""MIME part tree of a raw message with byte offsets, and IMAP BODY/BODYSTRUCTURE (ring 0, pure).

Owns: splitting a message into its MIME parts straight from the stored bytes (multipart
nesting, message/rfc822 encapsulation), the per-part facts that BODYSTRUCTURE reports, the
offsets of every part's header and body (so FETCH BODY[section] can read a slice of the
blob file instead of the whole message), and the wire encoder for BODY and BODYSTRUCTURE.

JSON form of one part (a dict; None is NIL):
  type, subtype            as written ("text"/"plain" when Content-Type is absent or broken)
  params                   [[name, value], ...] (RFC 2231 continuations merged)
  id, description          Content-ID, Content-Description (wire form)
  encoding                 Content-Transfer-Encoding, "7bit" when absent
  size                     octets of the body as stored
  lines                    text/* and message/rfc822 only: LF count of the body
  md5, disposition, language, location   extension data (disposition = [type, params] or None)
  offsets                  [header_start, body_start, body_end] in the whole message
  parts                    multipart only: the child parts
  message                  message/rfc822 only: {"envelope": [...], "body": <part>}, the
                           body's offsets being those of the encapsulated message

Standards: RFC 2045 §5-6 (Content-Type and -Transfer-Encoding, defaults), RFC 2046 §5.1.1
(boundary delimiters; the CRLF before a delimiter belongs to it), §5.1.5 (multipart/digest
default message/rfc822), RFC 2183 (Content-Disposition), RFC 3282 (Content-Language),
RFC 2557 (Content-Location), RFC 1864 (Content-MD5), RFC 3501 §7.4.2 / RFC 9051 §7.5.2
(BODY, BODYSTRUCTURE).
Security: parses untrusted input; never raises; nesting depth and part count are bounded
so a hostile message cannot exhaust memory or time. MAX_PARTS counts every node of the tree
(multipart children are counted when their delimiters are found, before they are parsed, so
a tree whose every level is wide cannot multiply the limit); MAX_DEPTH counts multipart and
message/rfc822 levels. Past a limit the tree is truncated, documented and stable:
- a multipart or message/rfc822 deeper than MAX_DEPTH, or met when the budget is spent, is
  reported as a leaf: a multipart with one empty text/plain part, a message/rfc822 with an
  empty envelope and an empty text/plain body (RFC 3501 needs 1*body and an envelope);
- a multipart with more body parts than the budget allows reports the first ones; the rest
  stay inside the multipart's own BODY[n] / BODY[TEXT] bytes, which are never truncated.
BODY[], BODY[TEXT] and the offsets of the reported parts are exact whatever the truncation.
"""

from __future__ import annotations

import re

from courriel.mime_envelope import build_envelope, envelope_bytes, imap_string
from courriel.mime_headers import (
    HeaderField,
    first_value,
    header_end,
    parse_content_type,
    parse_disposition,
    parse_language,
    split_fields,
)

MAX_DEPTH = 64  # nesting levels of multipart / message/rfc822
MAX_PARTS = 10_000  # parts in one message

# RFC 3501 §7.4.2: only message/rfc822 carries an encapsulated envelope and body. RFC 9051
# adds message/global, but an IMAP4rev1 client cannot parse that form, and Dovecot reports
# message/global as a leaf too, so it stays one here.
_ENCAPSULATING = {("message", "rfc822")}


class _Budget:
    """Nodes of the tree so far (each counted once, by whoever creates it)."""

    def __init__(self) -> None:
        self.parts = 1  # the message itself

    @property
    def left(self) -> int:
        return MAX_PARTS - self.parts


def parse_structure(data: bytes) -> dict:
    """The part tree of a whole message (see the module docstring). Never raises."""
    return _parse_part(data, 0, len(data), ("text", "plain"), False, 0, _Budget())


def _mime_fields(fields: list[HeaderField], in_multipart: bool) -> list[HeaderField]:
    """The Content-* fields that apply to an entity.

    RFC 2045 §4: an entity is MIME when it is a body part of a multipart or has a
    MIME-Version field; like Dovecot we also accept a Content-Type field alone. The
    Content-* fields of a non-MIME entity are ignored (it is text/plain, 7bit).
    """
    names = {field.name.lower() for field in fields}
    if in_multipart or "mime-version" in names or "content-type" in names:
        return [field for field in fields if field.name.lower().startswith("content-")]
    return []


def _parse_part(data: bytes, start: int, end: int, default: tuple[str, str], in_multipart: bool, depth: int,
                budget: _Budget) -> dict:
    body_start = header_end(data, start, end)
    # Content-* fields: the first of a repeated field is used (as Dovecot does).
    fields = _mime_fields(split_fields(data, start, body_start), in_multipart)
    content_type = parse_content_type(first_value(fields, "Content-Type"))
    if content_type is None:
        # RFC 2045 §5.2: absent or unusable Content-Type means text/plain; charset=us-ascii
        # (or message/rfc822 inside multipart/digest, RFC 2046 §5.1.5).
        maintype, subtype = default
        params: list[tuple[str, str]] = []
    else:
        maintype, subtype, params = content_type.maintype, content_type.subtype, content_type.params
    kind = (maintype.lower(), subtype.lower())
    if kind[0] == "text" and not any(name.lower() == "charset" for name, _ in params):
        params = [*params, ("charset", "us-ascii")]
    node: dict = {
        "type": maintype,
        "subtype": subtype,
        "params": [list(param) for param in params],
        "id": first_value(fields, "Content-ID"),
        "description": first_value(fields, "Content-Description"),
        "encoding": first_value(fields, "Content-Transfer-Encoding") or "7bit",
        "size": end - body_start,
        "md5": first_value(fields, "Content-MD5"),
        "disposition": _disposition(fields),
        "language": parse_language(first_value(fields, "Content-Language")),
        "location": first_value(fields, "Content-Location"),
        "offsets": [start, body_start, end],
    }
    if node["encoding"]:
        node["encoding"] = node["encoding"].strip()
    can_nest = depth < MAX_DEPTH and budget.left > 0
    if kind[0] == "multipart":
        boundary = next((value for name, value in params if name.lower() == "boundary"), None)
        child_default = ("message", "rfc822") if kind[1] == "digest" else ("text", "plain")
        ranges, end = (_split_multipart(data, body_start, end, boundary, budget.left) if boundary and can_nest
                       else ([], end))
        budget.parts += len(ranges)  # reserved before any child is parsed (see Security above)
        node["size"] = end - body_start
        node["offsets"][2] = end
        parts = [_parse_part(data, s, e, child_default, True, depth + 1, budget) for s, e in ranges]
        if not parts:
            # A multipart without a usable boundary or without parts still has one part
            # (RFC 3501 BODYSTRUCTURE needs 1*body): an empty text/plain, as Dovecot reports.
            parts = [_empty_part(end)]
        node["parts"] = parts
    elif kind in _ENCAPSULATING and can_nest:
        budget.parts += 1
        inner = _parse_part(data, body_start, end, ("text", "plain"), False, depth + 1, budget)
        end = inner["offsets"][2]  # may have grown by a close delimiter's line ending
        if end < len(data) and not _header_terminated(data, body_start, inner["offsets"][1]):
            # The encapsulated header runs to the end of the part (no blank line): the line
            # ending the enclosing multipart took for its delimiter also ends this header,
            # and, like Dovecot, we count it in this part's body.
            end += 2 if data.startswith(b"\r\n", end) else 1 if data.startswith(b"\n", end) else 0
        node["size"] = end - body_start
        node["offsets"][2] = end
        inner_fields = split_fields(data, body_start, inner["offsets"][1])
        node["message"] = {"envelope": build_envelope(inner_fields), "body": inner}
        node["lines"] = data.count(b"\n", body_start, end)
    elif kind in _ENCAPSULATING:
        # Too deep to parse: RFC 3501 body-type-msg still needs an envelope, a body and a
        # line count, so an empty envelope and an empty text/plain body stand in.
        node["message"] = {"envelope": [None] * 10, "body": _empty_part(body_start)}
        node["lines"] = data.count(b"\n", body_start, end)
    elif kind[0] == "text":
        node["lines"] = data.count(b"\n", body_start, end)
    return node


def _header_terminated(data: bytes, start: int, body_start: int) -> bool:
    """Whether the header block data[start:body_start] ends with its blank line."""
    block_tail = data[max(start, body_start - 3):body_start]
    return data[start:body_start] in (b"\r\n", b"\n") or block_tail.endswith((b"\n\r\n", b"\n\n"))


def _empty_part(at: int) -> dict:
    return {
        "type": "text", "subtype": "plain", "params": [["charset", "us-ascii"]], "id": None,
        "description": None, "encoding": "7bit", "size": 0, "lines": 0, "md5": None,
        "disposition": None, "language": None, "location": None, "offsets": [at, at, at],
    }


def _disposition(fields: list[HeaderField]) -> list | None:
    parsed = parse_disposition(first_value(fields, "Content-Disposition"))
    if parsed is None:
        return None
    kind, params = parsed
    return [kind, [list(param) for param in params]]


def _split_multipart(data: bytes, start: int, end: int, boundary: str,
                     max_parts: int = MAX_PARTS) -> tuple[list[tuple[int, int]], int]:
    """Byte ranges of the body parts of a multipart body (RFC 2046 §5.1.1), and its end;
    at most `max_parts` ranges (the first ones: see the module's Security note).

    A delimiter is a line "--boundary" (optionally followed by "--" for the close
    delimiter, and by blanks); the line ending before it belongs to the delimiter. A part
    after the last delimiter without a close delimiter runs to the end (truncated mail).

    When the close delimiter is the last line of the range, the line ending that the
    enclosing multipart took for its own next delimiter also ends this close delimiter
    line; like Dovecot we count it in this body (the end returned grows by it), so that
    BODY[n] of a nested multipart or message/rfc822 ends with its close delimiter line.
    """
    marker = b"--" + boundary.encode("utf-8", "surrogateescape")
    delimiter = re.compile(re.escape(marker) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    ranges: list[tuple[int, int]] = []
    part_start = None
    pos = start
    while pos < end:
        found = data.find(marker, pos, end)
        if found < 0:
            break
        match = delimiter.match(data, found, end)
        if match is None or (found > start and data[found - 1:found] != b"\n"):
            pos = found + 1
            continue
        if part_start is not None:
            part_end = found
            if part_end > part_start and data[part_end - 1:part_end] == b"\n":
                part_end -= 1
                if part_end > part_start and data[part_end - 1:part_end] == b"\r":
                    part_end -= 1
            ranges.append((part_start, part_end))
        if match.group(1):  # close delimiter: what follows is the epilogue
            if match.end() == end and not match.group(0).endswith(b"\n"):
                if data.startswith(b"\r\n", end):
                    end += 2
                elif data.startswith(b"\n", end):
                    end += 1
            return ranges, end
        if len(ranges) >= max_parts:
            return ranges, end
        part_start = match.end()
        pos = match.end()
    if part_start is not None and len(ranges) < max_parts:
        ranges.append((part_start, end))
    return ranges, end


# --------------------------------------------------------------------------- wire encoding


def _params_bytes(params: list | None) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(imap_string(name) + b" " + imap_string(value) for name, value in params) + b")"


def _disposition_bytes(disposition: list | None) -> bytes:
    if disposition is None:
        return b"NIL"
    return b"(" + imap_string(disposition[0]) + b" " + _params_bytes(disposition[1]) + b")"


def _language_bytes(language: list | None) -> bytes:
    if not language:
        return b"NIL"
    return b"(" + b" ".join(imap_string(tag) for tag in language) + b")"


def body_bytes(node: dict, extensible: bool = True) -> bytes:
    """RFC 3501 §7.4.2: BODYSTRUCTURE (extensible=True) or BODY (False) of a part tree."""
    if "parts" in node:
        out = b"(" + b"".join(body_bytes(part, extensible) for part in node["parts"])
        out += b" " + imap_string(node["subtype"])
        if extensible:
            # body-ext-mpart: parameters, disposition, language, location
            out += b" " + b" ".join([
                _params_bytes(node["params"]), _disposition_bytes(node["disposition"]),
                _language_bytes(node["language"]), imap_string(node["location"]),
            ])
        return out + b")"
    items = [
        imap_string(node["type"]), imap_string(node["subtype"]), _params_bytes(node["params"]),
        imap_string(node["id"]), imap_string(node["description"]), imap_string(node["encoding"]),
        b"%d" % node["size"],
    ]
    if "message" in node:
        items.append(envelope_bytes(node["message"]["envelope"]))
        items.append(body_bytes(node["message"]["body"], extensible))
        items.append(b"%d" % node["lines"])
    elif "lines" in node:
        items.append(b"%d" % node["lines"])
    if extensible:
        # body-ext-1part: MD5, disposition, language, location
        items += [
            imap_string(node["md5"]), _disposition_bytes(node["disposition"]),
            _language_bytes(node["language"]), imap_string(node["location"]),
        ]
    return b"(" + b" ".join(items) + b")"


def bodystructure_bytes(node: dict) -> bytes:
    return body_bytes(node, extensible=True)


def header_fields_of(data: bytes, node: dict) -> list[HeaderField]:
    """The header fields of a part, read from the message bytes at the part's offsets."""
    start, body_start, _end = node["offsets"]
    return split_fields(data, start, body_start)



def iter_nodes(tree: dict):
    """Every node of a part tree in document order (multiparts, message/rfc822 parts and
    their encapsulated bodies, leaves), without recursion (the tree is already bounded)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if "parts" in node:
            stack.extend(reversed(node["parts"]))
        elif "message" in node:
            stack.append(node["message"]["body"])


def filename_of(node: dict) -> str | None:
    """The file name of a part: Content-Disposition filename, else Content-Type name (as the
    stdlib's get_filename; RFC 2183 §2.3, RFC 2231 continuations already merged)."""
    disposition = node.get("disposition")
    candidates = [("filename", disposition[1] if disposition else []), ("name", node.get("params") or [])]
    for wanted, params in candidates:
        for name, value in params:
            if name.lower() == wanted and value:
                return value
    return None
