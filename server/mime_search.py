"""Header values for SEARCH and SORT: decoded text and the RFC 5256 base subject (ring 0, pure).

Owns: the decoded (RFC 2047) Subject/From/To/Cc strings that the store caches in SQL
columns, and the base-subject extraction that SORT (SUBJECT) and THREAD (ORDEREDSUBJECT,
REFERENCES) compare.

Standards: RFC 2047 (encoded words), RFC 5256 §2.1 (base subject), RFC 5256 §2.1 step 1
(whitespace normalisation).
Security: parses untrusted input; never raises; every loop shortens the text.
"""

from __future__ import annotations

import re

from courriel.mime_headers import decode_words

_BLOB = r"\[[^\[\]]*\][ \t]*"  # subj-blob = "[" *BLOBCHAR "]" *WSP
_REFWD = r"(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:"  # subj-refwd
_LEADER = re.compile(r"(?:(?:" + _BLOB + r")*" + _REFWD + r"|[ \t])", re.IGNORECASE)  # subj-leader
_BLOB_PREFIX = re.compile(_BLOB)
_TRAILER = re.compile(r"(?:\(fwd\)|[ \t])$", re.IGNORECASE)  # subj-trailer
_FWD_HDR = "[fwd:"


def decoded(value: str | None) -> str:
    """RFC 2047-decoded text of a raw header value ('' when absent), for SQL columns."""
    if not value:
        return ""
    text = decode_words(value)
    return re.sub(r"[\r\n]+[ \t]*", " ", text).strip()


def base_subject(subject: str | None) -> str:
    """RFC 5256 §2.1: the base subject of a raw or decoded Subject value."""
    if not subject:
        return ""
    # (1) decode encoded words, tabs and folding to spaces, runs of spaces to one.
    text = re.sub(r"[ \t\r\n]+", " ", decode_words(subject))
    while True:
        # (2) remove trailers: "(fwd)" and blanks.
        while True:
            trimmed = _TRAILER.sub("", text)
            if trimmed == text:
                break
            text = trimmed
        # (3)-(5) remove leaders and blobs until neither matches.
        while True:
            before = text
            match = _LEADER.match(text)
            if match and match.end() > 0:
                text = text[match.end():]
            match = _BLOB_PREFIX.match(text)
            if match and text[match.end():].strip():
                text = text[match.end():]
            if text == before:
                break
        # (6) "[fwd: ... ]" wrapper: unwrap and start again at (2).
        if text.lower().startswith(_FWD_HDR) and text.endswith("]"):
            text = text[len(_FWD_HDR):-1]
            continue
        return text
