"""The text of an e-mail message (``.eml``: RFC 5322 with MIME parts; Outlook's ``.msg`` through
``_msg``), for documents read with ``eml_text``: a message as its reader sees it, not its raw source (encoded headers, base64 and
quoted-printable bodies, attachments' data). Read with the standard library (``email``).

Kept: the ``Subject``, ``From``, ``To``, ``Cc`` and ``Date`` headers a line each (``Subject: ...``;
the date in ISO 8601), a blank line, the body (its plain text; a message with only HTML, its visible
text as ``_html`` reads a page), then the names of its attachments on a line (``Attachments: a.pdf,
b.xlsx``), then each forwarded message attached whole (``message/rfc822``), read so, a blank line
apart. Left out: the other headers, the attachments' contents. The files in Outlook's TNEF attachment
(``winmail.dat``: ``_tnef``) stand for it, as Outlook shows them.
A file without a message's header lines is a bad row saying so.

Parsed with the ``compat32`` policy, whose headers are strings decoded here when read: the default
policy parses every header it is asked for into objects, each time (``Content-Type`` a dozen times
a message while its body and attachments are found), which made reading 6x slower.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import EmailMessage, MIMEPart
from pathlib import PurePosixPath

from ._html import html_text
from ._msg import Attachment, attached, msg_text
from ._ole import OLE2
from ._tnef import is_tnef, tnef_files

SUFFIXES = (".eml", ".msg")  # documents read as e-mail messages (a compression suffix after them too)

_HEADERS = ("Subject", "From", "To", "Cc", "Date")
_ADDRESSES = ("From", "To", "Cc")
_MESSAGE_FIELDS = (*_HEADERS, "Message-ID", "Received", "MIME-Version", "Content-Type")  # one makes a message
_FIELD_NAMES = frozenset(name.lower().encode() for name in _MESSAGE_FIELDS)
_FIELD = re.compile(rb"([!-9;-~]+):")  # a header line's field name (printable ASCII but ':') and colon
HEAD = 8192  # the bytes ``looks_like_message`` is given
_DEPTH = 8  # forwarded messages read inside one another, at most


def eml_text(data: bytes, attachment: Attachment | None = None) -> tuple[str | None, str | None]:
    """The text of the message ``data``, or why it has none. An Outlook message (an OLE2 file, as a
    ``.msg`` is) is read by ``_msg``. ``attachment``: reads an attachment, whose text (where it
    gives one) follows the attachments' names."""
    if data.startswith(OLE2):
        return msg_text(data, attachment)
    message, why = parsed(data)
    return (None, why) if message is None else (message_text(message, attachment=attachment), None)


def unnamed_message(path: str) -> bool:
    """Whether a document may be a message whose name does not say so: a file without a suffix (the
    Enron corpus' ``1.``), or one in a Maildir's ``cur`` or ``new`` folder (``1700000000.M1P2.host:2,S``)."""
    parts = PurePosixPath(path).parts
    return not PurePosixPath(parts[-1]).suffix or (len(parts) > 1 and parts[-2] in ("cur", "new"))


def looks_like_message(head: bytes) -> bool:
    """Whether ``head`` (a file's first ``HEAD`` bytes, or all of them) begins with a message's header
    lines, up to a blank line or the end, one of them a field a message has (``parsed``'s)."""
    lines = head.split(b"\n")
    if len(head) >= HEAD:
        lines.pop()  # cut short: not known whole
    seen = False
    for k, line in enumerate(lines):
        line = line.rstrip(b"\r")
        if not line:
            return seen
        if (k == 0 and line.startswith(b"From ")) or (k and line[:1] in (b" ", b"\t")):
            continue  # an mbox's envelope line; a folded line
        field = _FIELD.match(line)
        if field is None:
            return False
        seen = seen or field.group(1).lower() in _FIELD_NAMES
    return seen


def parsed(data: bytes) -> tuple[EmailMessage | None, str | None]:
    """The RFC 5322 message ``data``, or why it is none (no header a message has)."""
    message = email.message_from_bytes(data, _Message, policy=email.policy.compat32)
    assert isinstance(message, EmailMessage)
    if not any(name in message for name in _MESSAGE_FIELDS):
        return None, ("not an e-mail message: no Subject, From, To, Date, Message-ID, Received or Content-Type header "
                      "at its start")  # fmt: skip
    return message, None


def message_text(message: EmailMessage, headers: dict[str, str] | None = None,
                 attachment: Attachment | None = None) -> str:  # fmt: skip
    """A message's text as ``eml_text`` gives it; ``headers``: its ``header`` values already read."""
    return _message_text(message, _DEPTH, headers, attachment)


def body_text(message: EmailMessage) -> str:
    """A message's body: its plain text, else its HTML's visible text ("" for neither)."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    text = _content(body).replace("\r\n", "\n").replace("\r", "\n")  # lines as sent over the wire: CRLF
    if body.get_content_subtype() == "html":
        text = html_text(text, title=False)  # a page's title in a message is no text of it
    return text.lstrip("\n").rstrip()  # a body's trailing blank or white-space lines are none of its text


def _message_text(message: EmailMessage, depth: int, headers: dict[str, str] | None = None,
                  attachment: Attachment | None = None) -> str:  # fmt: skip
    read = headers or {}
    lines = [f"{name}: {value}" for name in _HEADERS if (value := read[name] if name in read else header(message, name))]
    blocks = ["\n".join(lines)] if lines else []
    blocks.append(body_text(message))
    names: list[str] = []
    texts: list[str] = []  # the attachments' read
    forwarded: list[str] = []
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        if part.get_content_type() == "message/rfc822" and depth > 1:
            inner = part.get_payload(0) if part.is_multipart() else None
            if isinstance(inner, EmailMessage):
                forwarded.append(_message_text(inner, depth - 1, attachment=attachment))
                continue
        name = part.get_filename()
        if not name:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        files = tnef_files(data) if is_tnef(data) else []  # Outlook's winmail.dat: the files it holds
        for inner, content in files or [(" ".join(_decoded(name).split()), data)]:
            names.append(inner)
            if attachment is not None and (block := attached(attachment, inner, content)):
                texts.append(block)
    if names:
        blocks.append("Attachments: " + ", ".join(names))
    return "\n\n".join(b for b in (*blocks, *texts, *forwarded) if b)


def header(message: EmailMessage, name: str, raw: bool = False) -> str:
    """A header's value as its reader sees it (encoded words decoded, folded lines joined); a date
    in ISO 8601 where it parses; ``raw``: folded lines joined only."""
    value = next((v for k, v in message.raw_items() if k.lower() == name.lower()), None)
    if value is None:
        return ""
    text = " ".join(_unescaped(str(value)).split())
    if raw:
        return text
    if name in _ADDRESSES:
        return _addresses(text)
    text = _decoded(text)
    if name == "Date":
        try:
            return email.utils.parsedate_to_datetime(text).isoformat()
        except (TypeError, ValueError, IndexError):
            return text
    return text


def _addresses(text: str) -> str:
    """An address header as a mail client shows it: ``Name <address>`` or ``address``, a comma
    apart (a name in a comment, ``a@b (Name)``, or in quotes, shown so too); as written where it
    does not parse."""
    pairs = email.utils.getaddresses([text])
    if not any(address for _name, address in pairs):
        return _decoded(text)
    return ", ".join(f"{_decoded(name)} <{address}>" if name and address else address or _decoded(name)
                     for name, address in pairs)  # fmt: skip


def header_value(text: str) -> str:
    """A header's text (``header(raw=True)``, or a piece of it) with its encoded words decoded."""
    return _decoded(text.strip())


def _decoded(text: str) -> str:
    """``text`` with its RFC 2047 encoded words (``=?utf-8?q?...?=``) decoded; as it is where one
    cannot be (a charset Python does not know, broken base64)."""
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
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
    """A text part's content, decoded from its transfer encoding and its charset (none given: UTF-8,
    else Latin-1; an unknown one as Latin-1, so that nothing fails)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(payload or "")
    charset = part.get_content_charset()
    if charset is None:
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode("latin-1")
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return payload.decode("latin-1")


class _Message(EmailMessage):
    """``EmailMessage``'s ways of finding a body and attachments, on ``compat32``'s string headers."""

    def is_attachment(self) -> bool:
        return self.get_content_disposition() == "attachment"
