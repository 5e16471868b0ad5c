"""The text of an Outlook message (``.msg``: a message's properties in an OLE2 compound file), for
documents read with ``eml_text``, shown as ``_eml`` shows an ``.eml`` message: the subject, sender,
recipients and date a line each, a blank line, the body (its plain text; a message with only HTML,
its visible text), the attachments' names on a line, then each message attached whole (an Outlook
item in the message), read so, a blank line apart.

The compound file is read with olefile (the ``dataset`` extra); the properties as [MS-OXMSG] stores
them: strings in streams of their own (``__substg1.0_<id><type>``, UTF-16 or the message's code
page), times in the fixed-size property stream (``__properties_version1.0``), attachments and
their embedded messages in storages of their own. A body kept only as compressed RTF (no plain
text, no HTML: [MS-OXRTFCP], decompressed by compressed-rtf, the ``dataset`` extra) is read as
``_rtf`` reads an RTF document (one that wraps an HTML body, [MS-OXRTFEX], as that HTML's visible
text); one that does not decompress is left out.
An OLE2 file that holds no Outlook message is a bad row saying so.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable
from typing import Any

from ._html import html_text
from ._ole import Unreadable, code_page, ole_text
from ._rtf import rtf_text

_SUBJECT, _SENDER_NAME, _SENDER_ADDRESS, _SENDER_SMTP, _TO, _CC = 0x0037, 0x0C1A, 0x0C1F, 0x5D01, 0x0E04, 0x0E03
_BODY, _HTML, _SENT, _DELIVERED, _CODEPAGE, _INTERNET_CODEPAGE = 0x1000, 0x1013, 0x0039, 0x0E06, 0x3FFD, 0x3FDE
_RTF = 0x1009  # PR_RTF_COMPRESSED
_DATA = 0x3701  # PR_ATTACH_DATA_BIN: an attached file's bytes
_LONG_NAME, _NAME, _DISPLAY_NAME = 0x3707, 0x3704, 0x3001
_EMBEDDED = "__substg1.0_3701000D"  # an attachment that is a message of its own
_PROPERTIES = "__properties_version1.0"
_DEPTH = 8  # attached messages read inside one another, at most

Attachment = Callable[[str, bytes], "str | None"]  # an attachment's (file name, bytes) -> its text, or None


def msg_text(data: bytes, attachment: Attachment | None = None) -> tuple[str | None, str | None]:
    """The text of the Outlook message ``data``, or why it has none; ``attachment``: reads an
    attachment (its name, its bytes), whose text follows the attachments' names (as ``_eml``'s)."""

    def message_text(ole: Any) -> str:  # an olefile.OleFileIO
        if not ole.exists(_PROPERTIES) or not any(p[0].startswith("__substg1.0_") for p in ole.listdir()):
            raise Unreadable("an OLE2 file without an Outlook message (no message properties)")
        return _Message(ole, "", 32, attachment).text(_DEPTH)

    return ole_text(data, "an Outlook message (.msg)", "Outlook message", message_text)


class _Message:
    def __init__(self, ole: Any, prefix: str, header: int,
                 attachment: Attachment | None = None) -> None:  # fmt: skip
        self.ole, self.prefix, self.attachment = ole, prefix, attachment  # ole: an olefile.OleFileIO
        self.fixed = self._fixed(header)
        code = self.fixed.get(_CODEPAGE) or self.fixed.get(_INTERNET_CODEPAGE)
        self.codepage = code_page(code) if isinstance(code, int) else "cp1252"

    def _stream(self, name: str) -> bytes | None:
        path = self.prefix + name
        return self.ole.openstream(path).read() if self.ole.exists(path) else None  # type: ignore[no-any-return]

    def _fixed(self, header: int) -> dict[int, int]:
        """The fixed-size properties (an integer each: times as FILETIME), by property id."""
        raw = self._stream(_PROPERTIES) or b""
        out = {}
        for at in range(header, len(raw) - 15, 16):
            tag, _, value = struct.unpack_from("<IIq", raw, at)
            kind = tag & 0xFFFF
            if kind in (0x0040, 0x0003):  # PT_SYSTIME, PT_LONG
                out[tag >> 16] = value & 0xFFFFFFFF if kind == 0x0003 else value
        return out

    def string(self, prop: int, prefix: str = "") -> str:
        unicode = self._stream(f"{prefix}__substg1.0_{prop:04X}001F")
        if unicode is not None:
            return unicode.decode("utf-16-le", "replace").rstrip("\x00")
        eight = self._stream(f"{prefix}__substg1.0_{prop:04X}001E")
        return eight.decode(self.codepage, "replace").rstrip("\x00") if eight is not None else ""

    def text(self, depth: int) -> str:
        name = " ".join(self.string(_SENDER_NAME).split())
        address = self.string(_SENDER_SMTP) or self.string(_SENDER_ADDRESS)
        sender = f"{name} <{address}>" if name and "@" in address and address != name else name or address
        sent = self.fixed.get(_SENT) or self.fixed.get(_DELIVERED)
        headers = (("Subject", self.string(_SUBJECT)), ("From", sender), ("To", self.string(_TO)),
                   ("Cc", self.string(_CC)), ("Date", _filetime(sent) if sent else ""))  # fmt: skip
        lines = [f"{k}: {' '.join(v.split())}" for k, v in headers if v.strip()]
        blocks = ["\n".join(lines)] if lines else []
        body = self.string(_BODY)
        if not body.strip():
            html = self._stream(f"__substg1.0_{_HTML:04X}0102")
            body = html_text(_decoded(html, self.codepage), title=False) if html else self._rtf_body()
        blocks.append(body.replace("\r\n", "\n").replace("\r", "\n").strip("\n"))
        names: list[str] = []
        texts: list[str] = []  # the attachments' read
        inner: list[str] = []  # the messages attached
        for storage in self._attachments():
            if self.ole.exists(self.prefix + storage + _EMBEDDED) and depth > 1:
                message = _Message(self.ole, f"{self.prefix}{storage}{_EMBEDDED}/", 24, self.attachment)
                inner.append(message.text(depth - 1))
                continue
            name = next((n for p in (_LONG_NAME, _NAME, _DISPLAY_NAME) if (n := self.string(p, storage))), "")
            if name.strip():
                names.append(" ".join(name.split()))
                if self.attachment is not None and (block := attached(
                        self.attachment, names[-1], self._stream(f"{storage}__substg1.0_{_DATA:04X}0102"))):
                    texts.append(block)
        if names:
            blocks.append("Attachments: " + ", ".join(names))
        return "\n\n".join(b for b in (*blocks, *texts, *inner) if b)

    def _rtf_body(self) -> str:
        """The body as its compressed RTF gives it; "" where there is none, or it does not decompress."""
        packed = self._stream(f"__substg1.0_{_RTF:04X}0102")
        if not packed:
            return ""
        try:
            import compressed_rtf
        except ImportError:
            raise Unreadable("an Outlook message whose body is kept as compressed RTF is read with compressed-rtf: "
                             "pip install 'embedrt[dataset]'") from None  # fmt: skip
        try:
            rtf = compressed_rtf.decompress(packed)
        except Exception:  # compressed-rtf raises Exception itself for a bad header, size or CRC
            return ""
        return rtf_text(rtf)[0] or ""

    def _attachments(self) -> list[str]:
        """The message's attachments' storages (``__attach_version1.0_#...``), in order."""
        depth = self.prefix.count("/")
        found = {path[depth] + "/" for path in self.ole.listdir()
                 if len(path) > depth + 1 and "/".join(path).startswith(self.prefix)
                 and path[depth].startswith("__attach_version1.0_#")}  # fmt: skip
        return sorted(found)


def attached(read: Attachment, name: str, data: bytes | None) -> str | None:
    """An attachment's text as it follows a message's, where ``read`` gives it some: its name on a
    line, a blank line, its text (its pages' form feeds taken out: they are not the message's pages)."""
    text = read(name, data) if data else None
    return f"Attachment: {name}\n\n{text.replace(chr(12), '').strip()}" if text and text.strip() else None


def _filetime(value: int) -> str:
    """A FILETIME (100 ns since 1601, UTC) in ISO 8601."""
    when = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(microseconds=value // 10)
    return when.isoformat()


def _decoded(html: bytes, codepage: str) -> str:
    try:
        return html.decode("utf-8")
    except UnicodeDecodeError:
        return html.decode(codepage, "replace")
