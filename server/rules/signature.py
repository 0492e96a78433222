"""Signatures, pure (ring 0): append a mailbox's signature to a text or HTML body.

Standards: RFC 3676 §4.3 (the "-- " line that separates a plain-text signature).
Security: the HTML signature is the mailbox owner's own markup, inserted as given; the
plain-text signature is never interpreted.
"""

from __future__ import annotations

import html as html_module

SEPARATOR = "-- "  # RFC 3676 §4.3: dash, dash, space, alone on its line


def append_signature(text: str, signature: str) -> str:
    """`text` followed by the RFC 3676 signature separator and `signature` (unchanged when empty
    or when the body already ends with that signature)."""
    signature = (signature or "").strip("\r\n")
    if not signature.strip():
        return text
    block = f"{SEPARATOR}\n{signature}\n"
    body = text if text.endswith("\n") or not text else text + "\n"
    if body.endswith(block):
        return text
    return f"{body}{block}"


def append_signature_html(html: str, signature_html: str, signature_text: str = "") -> str:
    """An HTML body with the signature appended before `</body>` (or at the end); a text-only
    signature is escaped and kept in a <pre> block."""
    if signature_html and signature_html.strip():
        block = f'<div class="signature">-- <br>{signature_html}</div>'
    elif signature_text and signature_text.strip():
        block = f'<pre class="signature">-- \n{html_module.escape(signature_text)}</pre>'
    else:
        return html
    lowered = html.lower()
    at = lowered.rfind("</body>")
    return html[:at] + block + html[at:] if at >= 0 else html + block
