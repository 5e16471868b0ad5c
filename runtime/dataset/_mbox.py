"""Mailboxes (``.mbox``): one e-mail message a row.

An mbox file holds messages one after another, each opened by a line beginning ``From `` (the
envelope's sender and date, as the delivering program wrote them); a line of a message that began
so was written ``>From ``, and mboxrd writers quote ``>From `` lines once more (``>>From ``).
Thunderbird's local folders, Gmail's Takeout export, Apple Mail's export, mutt and Mailman's
archives are such files. As Python's ``mailbox`` does, every line beginning ``From `` opens a
message; each message is read as ``_eml`` reads an ``.eml`` file, one quoting ``>`` taken off its
``From `` lines first.

A row's columns (``COLUMNS``): ``text`` (the message as ``eml_text`` reads it: the Subject, From,
To, Cc and Date lines, the body, the attachments' names, forwarded messages), ``body`` (the body
alone), the headers ``subject``, ``from``, ``to``, ``cc`` and ``date`` (ISO 8601 where it parses)
as a reader sees them, ``message_id``, ``in_reply_to`` and ``references`` (as written, ``<...>``:
a thread's messages), and Gmail's ``labels`` (``X-Gmail-Labels``, a comma apart) and
``thread_id`` (``X-GM-THRID``) as Takeout writes them; a header the message lacks is null.
"""

from __future__ import annotations

import re
from typing import Any

from ._eml import Attachment, body_text, header, header_value, message_text, parsed

OPENS = b"From "  # a line beginning so opens a message
SUFFIXES = (".mbox", ".mbx")
COLUMNS = ("text", "body", "subject", "from", "to", "cc", "date", "message_id", "in_reply_to", "references", "labels",
           "thread_id")  # fmt: skip
_HEADERS = {"subject": "Subject", "from": "From", "to": "To", "cc": "Cc", "date": "Date", "message_id": "Message-ID",
            "in_reply_to": "In-Reply-To", "references": "References", "labels": "X-Gmail-Labels",
            "thread_id": "X-GM-THRID"}  # fmt: skip
_LABELS = "X-Gmail-Labels"  # names a comma apart, each its own encoded word where it is not ASCII
_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)


def message_row(raw: bytes, attachment: Attachment | None = None) -> tuple[dict[str, Any], str | None]:
    """The columns of one message (``raw``: its lines after its ``From `` line), or why it is not a
    message (then no columns); ``attachment``: reads its attachments into its text (``eml_text``)."""
    message, why = parsed(_QUOTED.sub(rb"\1", raw))
    if message is None:
        return {}, why
    headers = {name: header(message, name) for name in _HEADERS.values() if name != _LABELS}
    headers[_LABELS] = ",".join(header_value(label) for label in header(message, _LABELS, raw=True).split(","))
    row: dict[str, Any] = {c: _clean(headers[name]) or None for c, name in _HEADERS.items()}
    row["text"] = _clean(message_text(message, headers, attachment))
    row["body"] = _clean(body_text(message))
    return row, None


def _clean(text: str) -> str:
    """``text`` as UTF-8 can hold it: a lone surrogate (a raw byte the parser kept) as U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")
