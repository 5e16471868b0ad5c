"""The text of an e-mail message (``.eml``: RFC 5322 with MIME parts; Outlook's ``.msg`` through
``_msg``), for documents read with ``eml_text``: a message as its reader sees it, not its raw source (encoded headers, base64 and
quoted-printable bodies, attachments' data). Read with the standard library (``email``).

Kept: the ``Subject``, ``From``, ``To``, ``Cc`` and ``Date`` headers a line each (``Subject: ...``;
the date in ISO 8601), a blank line, the body (its plain text; a message with only HTML, its visible
text as ``_html`` reads a page), then the names of its attachments on a line (``Attachments: a.pdf,
b.xlsx``), then each forwarded message attached whole (``message/rfc822``), read so, a blank line
apart. Left out: the other headers, the attachments' contents.
A file without a message's header lines is a bad row saying so.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from email.message import EmailMessage, MIMEPart

from ._html import html_text
from ._msg import msg_text
from ._ole import OLE2

SUFFIXES = (".eml", ".msg")  # documents read as e-mail messages (a compression suffix after them too)

_HEADERS = ("Subject", "From", "To", "Cc", "Date")
_DEPTH = 8  # forwarded messages read inside one another, at most


def eml_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the message ``data``, or why it has none. An Outlook message (an OLE2 file, as a
    ``.msg`` is) is read by ``_msg``."""
    if data.startswith(OLE2):
        return msg_text(data)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # the default policy's message class
    if not any(name in message for name in (*_HEADERS, "Message-ID", "Received", "MIME-Version", "Content-Type")):
        return None, ("not an e-mail message: no Subject, From, To, Date, Message-ID, Received or Content-Type header "
                      "at its start")  # fmt: skip
    return _message_text(message, _DEPTH), None


def _message_text(message: EmailMessage, depth: int) -> str:
    lines = [f"{name}: {value}" for name in _HEADERS if (value := _header(message, name))]
    blocks = ["\n".join(lines)] if lines else []
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        text = _content(body).replace("\r\n", "\n").replace("\r", "\n")  # lines as sent over the wire: CRLF
        if body.get_content_subtype() == "html":
            text = html_text(text, title=False)  # a page's title in a message is no text of it
        blocks.append(text.strip("\n"))
    names: list[str] = []
    forwarded: list[str] = []
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        if part.get_content_type() == "message/rfc822" and depth > 1:
            inner = part.get_payload(0) if part.is_multipart() else None
            if isinstance(inner, EmailMessage):
                forwarded.append(_message_text(inner, depth - 1))
                continue
        name = part.get_filename()
        if name:
            names.append(" ".join(name.split()))
    if names:
        blocks.append("Attachments: " + ", ".join(names))
    return "\n\n".join(b for b in (*blocks, *forwarded) if b)


def _header(message: EmailMessage, name: str) -> str:
    """A header's value as its reader sees it (encoded words decoded, folded lines joined); a date
    in ISO 8601 where it parses."""
    try:
        value = message.get(name)
    except Exception:  # a header the policy cannot parse: its raw value
        value = message.get_all(name, failobj=[None])[0]
    if value is None:
        return ""
    text = str(value)
    if "\ufffd" in text:  # raw 8-bit bytes in the header, which the parser replaced: read them as sent
        raw = next((str(v) for k, v in message.raw_items() if k.lower() == name.lower()), text)
        text = _unescaped(raw)
    text = " ".join(text.split())
    if name == "Date":
        try:
            return email.utils.parsedate_to_datetime(text).isoformat()
        except (TypeError, ValueError, IndexError):
            return text
    return text


def _unescaped(text: str) -> str:
    """A header's raw 8-bit bytes (which the parser keeps as surrogates) read as UTF-8, else Latin-1."""
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _content(part: MIMEPart) -> str:
    """A text part's content, decoded from its transfer encoding and its charset (an unknown charset
    as Latin-1, so that nothing fails)."""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):  # a charset Python does not know, or bytes that are not in it
        payload = part.get_payload(decode=True)
        return payload.decode("latin-1") if isinstance(payload, bytes) else str(payload or "")
    return content if isinstance(content, str) else content.decode("latin-1")
