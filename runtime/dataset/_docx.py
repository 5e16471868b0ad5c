"""The text of a Word document (``.docx``, and Word 97-2003's ``.doc`` through ``_doc``), for
documents read with ``docx_text``: a ``.docx`` is a zip of XML, no text to a model. Read with the
standard library (``zipfile``, ``ElementTree``).

Kept, in the body's order: each paragraph's text (a blank line after it, so that ``chunk_tokens``
windows end at paragraphs), tabs and line breaks as they are, a non-breaking hyphen as ``-``;
tables a row a line, their cells a tab apart; text boxes and content controls where they stand;
inserted revisions; then the footnotes and endnotes, each a paragraph. Left out: deleted
revisions, field codes (their results are kept), headers, footers and comments, and the fallback
copy Word keeps of a text box for old readers.
A file that is neither a zip nor an OLE2 file (an RTF document under a Word name, say) or a zip
without ``word/document.xml`` has no text: a bad row saying which.
"""

from __future__ import annotations

from xml.etree import ElementTree

from ._doc import doc_text
from ._ole import OLE2
from ._rtf import is_rtf
from ._zipped import Parts, Unreadable

# documents read as Word documents (a compression suffix after them too): documents, macro-enabled ones
# and templates, of Word 2007 on and of Word 97-2003 (the same formats)
SUFFIXES = (".docx", ".docm", ".dotx", ".dotm", ".doc", ".dot")

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_TEXT = {_W + "t": None, _W + "tab": "\t", _W + "ptab": "\t", _W + "br": "\n", _W + "cr": "\n",
         _W + "noBreakHyphen": "-"}  # fmt: skip
# properties (a paragraph's tab stops are w:tab too), deleted text, field codes, a text box's copy
_SKIP = frozenset({_W + "pPr", _W + "rPr", _W + "tblPr", _W + "trPr", _W + "tcPr", _W + "sectPr", _W + "del",
                   _W + "delText", _W + "instrText", _W + "moveFrom", _MC + "Fallback"})  # fmt: skip


def docx_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the ``.docx`` ``data``, paragraphs a blank line apart; or why it has none. A Word
    97-2003 document (an OLE2 file, as a ``.doc`` is; an encrypted ``.docx`` is one too) is read by ``_doc``."""
    if data.startswith(OLE2):
        return doc_text(data)
    if is_rtf(data):
        return None, "an RTF document under a Word name: rename it .rtf and pass --rtf-text (rtf_text=True)"
    try:
        parts = Parts(data, "not a Word document: neither a zip, as a .docx is, nor an OLE2 file, as a .doc is "
                            "(libreoffice --convert-to docx converts other formats)")  # fmt: skip
        if not parts.has("word/document.xml"):
            return None, "a zip without word/document.xml: not a Word document"
        root = parts.xml("word/document.xml")
        body = root.find(_W + "body")
        blocks: list[str] = []
        _blocks(body if body is not None else root, blocks)
        for name, tag in (("word/footnotes.xml", "footnote"), ("word/endnotes.xml", "endnote")):
            if parts.has(name):  # after the body, as a printed document's notes end it
                for note in parts.xml(name).iter(_W + tag):
                    if note.get(_W + "type", "normal") == "normal":  # not the separator lines
                        _blocks(note, blocks)
    except Unreadable as e:
        return None, str(e)
    return "\n\n".join(b for b in blocks if b.strip()), None


def _blocks(parent: ElementTree.Element, out: list[str]) -> None:
    """The paragraphs and tables under ``parent``, each a block of text."""
    for el in parent:
        if el.tag == _W + "p":
            out.append(_inline(el).strip())
        elif el.tag == _W + "tbl":
            rows = ["\t".join(" ".join(_cell(tc)) for tc in tr.findall(_W + "tc")) for tr in el.findall(_W + "tr")]
            out.append("\n".join(r for r in rows if r.strip()))
        elif el.tag not in _SKIP:  # content controls, inserted revisions, custom XML around paragraphs
            _blocks(el, out)


def _cell(tc: ElementTree.Element) -> list[str]:
    found: list[str] = []
    _blocks(tc, found)
    return [b for b in found if b]


def _inline(el: ElementTree.Element) -> str:
    out: list[str] = []
    _runs(el, out)
    return "".join(out)


def _runs(el: ElementTree.Element, out: list[str]) -> None:
    for child in el:
        tag = child.tag
        if tag in _TEXT:
            out.append(_TEXT[tag] or child.text or "")
        elif tag == _W + "p":  # a paragraph of a text box, inside a run
            out.append("\n")
            _runs(child, out)
            out.append("\n")
        elif tag not in _SKIP:
            _runs(child, out)
