"""The text of an OpenDocument text (``.odt``), presentation (``.odp``) or spreadsheet (``.ods``), for
documents read with ``odf_text``: LibreOffice's formats, zips of XML. Read with the standard library.

A text document: its headings and paragraphs in order (a blank line after each, so that
``chunk_tokens`` windows end at them), lists, sections, tables a row a line with their cells a tab
apart, text frames where they stand, spaces, tabs and line breaks as written, then its footnotes
and endnotes; the pages as LibreOffice last laid them out (its soft page breaks) separated by a form
feed on a line of its own, as a PDF's pages are, so that a window's ``chunk_page`` is the page it
begins on. A presentation: slide by slide, each shape's paragraphs a line each, shapes a blank line
apart, then the slide's notes; slides separated as pages are. A spreadsheet: sheet by sheet, as an
Excel workbook is read (``_xlsx.workbook_text``: its name, then a row a line, cells a tab apart),
each cell as LibreOffice shows it but dates and times in ISO 8601, a row or cell stored once with a
repeat count written as often (at most ``REPEATS`` times), read as a stream of rows. Left out:
comments, deleted changes, the slide number, date and footer placeholders. A password-protected document, an older
StarOffice file or a zip without ``content.xml`` is a bad row saying which.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from xml.etree import ElementTree

from ._pdf_worker import PAGE_BREAK
from ._xlsx import Rows, workbook_text
from ._zipped import Parts, Unreadable

SUFFIXES = (".odt", ".odp", ".ods")  # documents read as OpenDocument (a compression suffix after them too)
REPEATS = 1000  # a row (a cell) LibreOffice stores once with a repeat count: written at most this many times
_SPREADSHEET = b"application/vnd.oasis.opendocument.spreadsheet"

_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_DRAW = "{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}"
_PRES = "{urn:oasis:names:tc:opendocument:xmlns:presentation:1.0}"
_MANIFEST = "{urn:oasis:names:tc:opendocument:xmlns:manifest:1.0}"

_PAGE = "\f"  # a soft page break, where it stands; made PAGE_BREAK at the end
_BLOCKS = frozenset({_TEXT + "p", _TEXT + "h"})
# comments, deleted changes, declarations, forms, a note's citation mark (its body goes after the text)
_SKIP = frozenset({_OFFICE + "annotation", _OFFICE + "annotation-end", _TEXT + "tracked-changes", _TEXT + "note-citation",
                   _TEXT + "sequence-decls", _TEXT + "variable-decls", _TEXT + "user-field-decls", _OFFICE + "forms",
                   _TABLE + "table-columns", _TABLE + "table-column", _DRAW + "image"})  # fmt: skip
_FURNITURE = frozenset({"page-number", "footer", "header", "date-time"})  # placeholders of every slide


def odf_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the OpenDocument ``data`` (text or presentation), its pages (slides) separated by
    ``PAGE_BREAK``; or why it has none."""
    try:
        parts = Parts(data, "not an OpenDocument file (not a zip): an older StarOffice or .doc file? save it as .odt")
        if not parts.has("content.xml"):
            return None, "a zip without content.xml: not an OpenDocument file"
        if parts.has("META-INF/manifest.xml"):
            for entry in parts.xml("META-INF/manifest.xml").iter(_MANIFEST + "file-entry"):
                if entry.get(_MANIFEST + "full-path") == "content.xml" and entry.find(_MANIFEST + "encryption-data") is not None:
                    return None, "a password-protected document: save it without a password first"
        if parts.has("mimetype") and parts.read("mimetype").strip() == _SPREADSHEET:
            return workbook_text(_sheets(parts))  # rows streamed: a sheet is never a tree
        body = parts.xml("content.xml").find(_OFFICE + "body")
    except Unreadable as e:
        return None, str(e)
    if body is None:
        return None, "content.xml has no office:body: not an OpenDocument file"
    slides = body.find(_OFFICE + "presentation")
    if slides is not None:
        return PAGE_BREAK.join(_slide(page) for page in slides.iter(_DRAW + "page")), None
    blocks: list[str] = []
    notes: list[str] = []
    for kind in body:  # office:text (a drawing or spreadsheet body reads as its paragraphs too)
        _blocks(kind, blocks, notes)
    text = "\n\n".join(b for b in (*blocks, *notes) if b.strip(" \t\n") or b == _PAGE)
    pages = [page.strip("\n") for page in text.split(_PAGE)]
    return PAGE_BREAK.join(pages), None


def _sheets(parts: Parts) -> Iterator[tuple[str, Rows]]:
    """A spreadsheet's sheets from its ``content.xml``, each (its name, its rows), as one stream."""
    events = parts.events("content.xml")
    for event, el in events:
        if event == "start" and el.tag == _TABLE + "table":
            yield el.get(_TABLE + "name", ""), _sheet_rows(events, el)


def _sheet_rows(events: Iterator[tuple[str, ElementTree.Element]], table: ElementTree.Element) -> Rows:
    """The rows of the sheet ``table`` (its start just read from ``events``), up to its end."""
    number = 0
    for event, el in events:
        if event == "end" and el is table:
            return
        if event != "end" or el.tag != _TABLE + "table-row":
            continue
        repeats = int(el.get(_TABLE + "number-rows-repeated", "1") or 1)
        cells, column = [], 0
        for tc in el:
            if tc.tag not in (_TABLE + "table-cell", _TABLE + "covered-table-cell"):
                continue
            spread = int(tc.get(_TABLE + "number-columns-repeated", "1") or 1)
            value = _cell_value(tc)
            cells += [(column + k + 1, value) for k in range(min(spread, REPEATS) if value else 0)]
            column += spread
        el.clear()
        table.clear()  # the rows read (and their attributes, the name taken): never a tree in memory
        for k in range(min(repeats, REPEATS) if any(v for _c, v in cells) else 0):
            yield number + k + 1, cells
        number += repeats


def _cell_value(tc: ElementTree.Element) -> str:
    """A cell's value as shown (its paragraphs), but dates and times in ISO 8601."""
    kind = tc.get(_OFFICE + "value-type")
    if kind == "date":
        return (tc.get(_OFFICE + "date-value") or "").split(".")[0].replace("T", " ")
    if kind == "time":
        found = re.fullmatch(r"PT(\d+)H(\d+)M(\d+)(?:\.\d+)?S", tc.get(_OFFICE + "time-value") or "")
        if found:
            return ":".join(f"{int(n):02d}" for n in found.groups())
    if kind == "boolean":
        return "TRUE" if tc.get(_OFFICE + "boolean-value") == "true" else "FALSE"
    return " ".join(_inline(p, []).strip() for p in tc if p.tag in _BLOCKS)


def _blocks(parent: ElementTree.Element, out: list[str], notes: list[str]) -> None:
    """The paragraphs, lists, sections and tables under ``parent``, each a block; a page break a
    block of its own."""
    for el in parent:
        tag = el.tag
        if tag in _BLOCKS:
            text = _inline(el, notes)
            head, *rest = text.split(_PAGE)  # a page break inside the paragraph
            out.append(head.strip(" "))
            for piece in rest:
                out += [_PAGE, piece.strip(" ")]
        elif tag == _TEXT + "soft-page-break":
            out.append(_PAGE)
        elif tag == _TABLE + "table":  # its rows a line each, a page break between two where it falls
            rows: list[str] = []
            _rows(el, rows, notes)
            for i, run in enumerate("\n".join(rows).split(_PAGE)):
                out += [_PAGE] * bool(i) + ["\n".join(r for r in run.split("\n") if r.strip())]
        elif tag not in _SKIP:  # lists, list items, sections, index bodies, frames
            _blocks(el, out, notes)


def _rows(table: ElementTree.Element, out: list[str], notes: list[str]) -> None:
    """A table's rows (header rows, row groups), each a line of its cells a tab apart; a page break
    between rows as ``_PAGE``."""
    for el in table:
        if el.tag == _TABLE + "table-row":
            cells = (tc for tc in el if tc.tag in (_TABLE + "table-cell", _TABLE + "covered-table-cell"))
            out.append("\t".join(" ".join(b.replace("\n", " ") for b in _cell(tc, notes) if b.strip()) for tc in cells))
        elif el.tag == _TEXT + "soft-page-break":
            out.append(_PAGE)
        elif el.tag in (_TABLE + "table-header-rows", _TABLE + "table-rows", _TABLE + "table-row-group"):
            _rows(el, out, notes)


def _cell(tc: ElementTree.Element, notes: list[str]) -> list[str]:
    found: list[str] = []
    _blocks(tc, found, notes)
    return [b for b in found if b != _PAGE]


def _inline(el: ElementTree.Element, notes: list[str]) -> str:
    out: list[str] = [el.text or ""]
    for child in el:
        tag = child.tag
        if tag == _TEXT + "s":
            out.append(" " * int(child.get(_TEXT + "c", "1") or 1))
        elif tag == _TEXT + "tab":
            out.append("\t")
        elif tag == _TEXT + "line-break":
            out.append("\n")
        elif tag == _TEXT + "soft-page-break":
            out.append(_PAGE)
        elif tag == _TEXT + "note":  # a footnote's body: after the text, as a printed document has it
            body = child.find(_TEXT + "note-body")
            if body is not None:
                found: list[str] = []
                _blocks(body, found, notes)
                notes.append("\n\n".join(b for b in found if b.strip() and b != _PAGE))
        elif tag == _DRAW + "frame":  # a text frame (or a picture) anchored in the paragraph
            found = []
            _blocks(child, found, notes)
            out.append("".join(f"\n{b}\n" for b in found if b.strip() and b != _PAGE))
        elif tag not in _SKIP:  # spans, links, bookmarks, fields (their text)
            out.append(_inline(child, notes))
        out.append(child.tail or "")
    return "".join(out)


def _slide(page: ElementTree.Element) -> str:
    """A slide's shapes' text (a blank line apart), then its notes'."""
    shapes: list[str] = []
    notes: list[str] = []
    _shapes(page, shapes, notes)
    speaker = page.find(_PRES + "notes")
    if speaker is not None:
        _shapes(speaker, notes, notes)
    return "\n\n".join(b for b in (*shapes, *notes) if b)


def _shapes(parent: ElementTree.Element, out: list[str], notes: list[str]) -> None:
    for el in parent:
        if el.tag == _PRES + "notes" or el.get(_PRES + "class") in _FURNITURE:
            continue
        if el.tag in (_DRAW + "text-box", _DRAW + "custom-shape", _DRAW + "rect", _DRAW + "ellipse") or (
                el.tag == _DRAW + "frame" and el.find(_TABLE + "table") is not None):  # fmt: skip
            found: list[str] = []
            _blocks(el, found, notes)
            out.append("\n".join(b for b in found if b.strip() and b != _PAGE))
        elif el.tag != _DRAW + "page-thumbnail":  # frames, groups
            _shapes(el, out, notes)
