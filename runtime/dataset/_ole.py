"""Reading an OLE2 compound file (Word 97-2003 ``.doc``, PowerPoint 97-2003 ``.ppt``, Outlook
``.msg``) with olefile (the ``dataset`` extra): one way to know it, open it, close it, and to say why a
file gives no text, for the readers of those formats; and the Windows code pages that their 8-bit
text (and RTF's) is in."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a compound file's first bytes: .doc, .ppt, .xls, .msg, an encrypted .docx


class Unreadable(Exception):
    """A file a reader cannot take, with the reason its bad row gives."""


def ole_text(data: bytes, one: str, kind: str, read: Callable[[Any], str]) -> tuple[str | None, str | None]:
    """``read`` (of an ``olefile.OleFileIO``) of the compound file ``data``, or why it gives no text:
    olefile missing, the file cut short or damaged, or what ``read`` raised as ``Unreadable``.
    ``one``: such a file, as a bad row names it ("a Word 97-2003 document (.doc)"); ``kind``: its
    format ("Word 97-2003 document")."""
    try:
        import olefile
    except ImportError:
        return None, f"{one} is read with olefile: pip install 'embedrt[dataset]'"
    try:
        ole = olefile.OleFileIO(data)
    except Exception as e:  # olefile's own errors: a compound file cut short
        return None, _unreadable(kind, e)
    try:
        return read(ole), None
    except Unreadable as e:
        return None, str(e)
    except Exception as e:  # struct.error, KeyError, ...: a record cut short, an offset out of its stream
        return None, _unreadable(kind, e)
    finally:
        ole.close()


def streams_of(ole: Any, stream: str, kind: str, ooxml: str) -> set[str]:
    """The streams of ``ole`` (paths ``a/b``), which must hold ``stream`` for a ``kind`` ("Word
    document"): else an encrypted Office Open XML file (``ooxml``: ".docx", which is then an OLE2 file)
    or an OLE2 file of another kind, ``Unreadable`` saying which."""
    streams = {"/".join(path) for path in ole.listdir()}
    if stream in streams:
        return streams
    if "EncryptedPackage" in streams:
        raise Unreadable(f"a password-protected {kind} ({ooxml} in an encrypted OLE2 file): save it without a "
                         "password to embed it")  # fmt: skip
    raise Unreadable(f"an OLE2 file without a {kind} (no {stream} stream)")


def code_page(number: int, fallback: str = "cp1252") -> str:
    """The Python codec of the Windows code page ``number`` (65001 is UTF-8), or ``fallback``."""
    try:
        return codecs.lookup(f"cp{number}").name
    except LookupError:
        return fallback


def _unreadable(kind: str, e: Exception) -> str:
    said = " ".join(str(e).split())[:200]
    return f"not a readable {kind} ({type(e).__name__}: {said})"
