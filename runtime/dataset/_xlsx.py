"""The text of an Excel workbook (``.xlsx``, ``.xlsm``), for documents read with ``xlsx_text``: a zip
of XML, no text to a model. Read with the standard library (``zipfile``, ``ElementTree``), each sheet
as a stream of rows (a sheet of a million rows is never a tree in memory).

Kept, sheet by sheet in the workbook's tab order (hidden sheets too): the sheet's name on a line of
its own, then each row a line of its cells a tab apart, as a tab-separated export has them (an
empty cell an empty field, so that columns stay aligned; a gap of more than ``GAP`` empty columns
one field), a run of empty rows a blank line (tables on one sheet are paragraphs of their own, so
that ``chunk_tokens`` windows end between them). Values as Excel shows them in its General format:
shared and inline strings, numbers to 15 significant digits, cells formatted as dates or times in
ISO 8601, TRUE and FALSE, formulas by the value Excel saved with them. Sheets are separated by a
form feed on a line of its own, as a PDF's pages are, so that a window's ``chunk_page`` is the
sheet it begins on. Left out: error values (``#N/A``), formulas saved without a value, number
formats other than dates and times (a currency shows its number), comments, charts, pictures,
headers and footers. A password-protected workbook (not a zip) or an older ``.xls`` is a bad row
saying so.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator
from xml.etree import ElementTree

from ._pdf_worker import PAGE_BREAK
from ._zipped import Parts, Unreadable

SUFFIXES = (".xlsx", ".xlsm")  # documents read as Excel workbooks (a compression suffix after them too)
GAP = 16  # empty columns kept as empty fields between two values; a wider gap is one field

_S = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_BOOK = "xl/workbook.xml"
# built-in number formats that show a date, a time, or both (ECMA-376 18.8.30; 27-36 and 50-58: East Asian dates)
_DATES = frozenset({14, 15, 16, 17, 27, 28, 29, 30, 31, 34, 35, 36, 50, 51, 52, 53, 54, 57, 58})
_TIMES = frozenset({18, 19, 20, 21, 32, 33, 45, 46, 47, 55, 56})
_DATE_TIMES = frozenset({22})
_LITERALS = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]|_.|\*.')  # quoted text, escapes, [colours], paddings
_LAST_SERIAL = 2958465  # 9999-12-31


def xlsx_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the ``.xlsx`` ``data``, its sheets separated by ``PAGE_BREAK``; or why it has none."""
    try:
        parts = Parts(data, "not a .xlsx (not a zip): an older .xls, or a password-protected workbook? save it "
                            "as .xlsx without a password (libreoffice --convert-to xlsx)")  # fmt: skip
        if not parts.has(_BOOK):
            return None, f"a zip without {_BOOK}: not an Excel workbook"
        book = parts.xml(_BOOK)
        pr = book.find(f"{_S}workbookPr")
        epoch = (datetime.datetime(1904, 1, 1) if pr is not None and pr.get("date1904") in ("1", "true")
                 else None)  # fmt: skip
        strings = _shared_strings(parts)
        kinds = _style_kinds(parts)
        sheets = [(name, _rows(parts, part, strings, kinds, epoch) if part else iter(())) for name, part in _sheets(parts, book)]
        return workbook_text(sheets)
    except Unreadable as e:
        return None, str(e)


Rows = Iterator[tuple[int, list[tuple[int, str]]]]  # a sheet's rows: (row number, its cells' (column, value))


def workbook_text(sheets: Iterable[tuple[str, Rows]]) -> tuple[str | None, str | None]:
    """The text of a workbook's ``sheets``, each (its name, its rows), read in order (a sheet's rows
    before the next sheet: one stream of XML may yield them all); or why it has none."""
    pages, any_value = [], False
    for name, rows in sheets:
        lines, last = [name], 0
        for number, cells in rows:
            line = cells_line(cells)
            if line:
                lines += [""] * (bool(last) and number > last + 1)  # empty rows between: a blank line
                lines.append(line)
                last = number
        any_value = any_value or last > 0
        pages.append("\n".join(lines))
    if not pages:
        return "", None  # a workbook without sheets: an empty text, as an empty file
    if not any_value:
        return None, "no value in any cell (charts or pictures only?)"
    return PAGE_BREAK.join(pages), None


def cells_line(cells: list[tuple[int, str]]) -> str:
    """A row's line: its values (column, value; columns from 1, ascending) a tab apart, an empty field
    for each empty column between two (one for a gap of more than ``GAP``)."""
    fields: list[str] = []
    column = 0
    for at, value in cells:
        if not value:
            continue
        gap = at - column - 1
        fields += [""] * (gap if gap <= GAP else 1)
        fields.append(value.replace("\t", " ").replace("\n", " "))
        column = at
    return "\t".join(fields)


def _sheets(parts: Parts, book: ElementTree.Element) -> list[tuple[str, str | None]]:
    """(name, worksheet part or None: a chart sheet) of each sheet, in tab order."""
    rels = {i: target for i, (kind, target) in parts.rels(_BOOK).items() if kind.endswith("/worksheet")}
    listed = book.find(f"{_S}sheets")
    return [(s.get("name", ""), rels.get(s.get(f"{_R}id", ""))) for s in (listed if listed is not None else ())]


def _shared_strings(parts: Parts) -> list[str]:
    """The workbook's shared strings, rich text runs joined, phonetic guides left out."""
    name = "xl/sharedStrings.xml"
    if not parts.has(name):
        return []
    out = []
    for si in parts.xml(name).iter(f"{_S}si"):
        pieces = [si.findtext(f"{_S}t") or ""]
        pieces += [r.findtext(f"{_S}t") or "" for r in si.iter(f"{_S}r")]
        out.append("".join(pieces))
    return out


def _style_kinds(parts: Parts) -> list[str]:
    """Each cell style's kind of number format: "date", "time", "datetime" or "" (shown as a number)."""
    name = "xl/styles.xml"
    if not parts.has(name):
        return []
    styles = parts.xml(name)
    codes = {int(f.get("numFmtId", "0")): f.get("formatCode", "") for f in styles.iter(f"{_S}numFmt")
             if (f.get("numFmtId") or "").isdigit()}  # fmt: skip
    xfs = styles.find(f"{_S}cellXfs")
    out = []
    for xf in xfs if xfs is not None else ():
        fmt = int(xf.get("numFmtId", "0")) if (xf.get("numFmtId") or "0").isdigit() else 0
        out.append(_format_kind(fmt, codes.get(fmt)))
    return out


def _format_kind(fmt: int, code: str | None) -> str:
    if code is None:
        return "date" if fmt in _DATES else "time" if fmt in _TIMES else "datetime" if fmt in _DATE_TIMES else ""
    bare = _LITERALS.sub("", code.split(";")[0]).lower()  # the format of positive numbers, its literal text out
    if "general" in bare or not bare:
        return ""
    time = "h" in bare or "s" in bare
    date = "y" in bare or "d" in bare or ("m" in bare and not time)
    return "datetime" if date and time else "date" if date else "time" if time else ""


def _rows(parts: Parts, part: str, strings: list[str], kinds: list[str],
          epoch: datetime.datetime | None) -> Rows:  # fmt: skip
    """A worksheet's rows as a stream: (row number, its cells' (column, value))."""
    data = None
    last = 0
    for event, el in parts.events(part):
        if event == "start":
            if el.tag == f"{_S}sheetData":
                data = el
            continue
        if el.tag != f"{_S}row":
            continue
        number = el.get("r") or ""
        last = int(number) if number.isdigit() else last + 1
        cells, column = [], 0
        for c in el.iter(f"{_S}c"):
            column = _column(c.get("r", "")) or column + 1
            cells.append((column, _value(c, strings, kinds, epoch)))
        if data is not None:
            data.clear()  # the rows read: a sheet is never a tree in memory
        yield last, cells


def _column(ref: str) -> int:
    """The 1-based column of a cell reference ("AB12" -> 28); 0 if it has none."""
    n = 0
    for ch in ref:
        if "A" <= ch <= "Z":
            n = n * 26 + ord(ch) - 64
        else:
            break
    return n


def _value(c: ElementTree.Element, strings: list[str], kinds: list[str], epoch: datetime.datetime | None) -> str:
    t = c.get("t", "n")
    if t == "inlineStr":
        inline = c.find(f"{_S}is")
        return "".join(x.text or "" for x in inline.iter(f"{_S}t")) if inline is not None else ""
    v = c.findtext(f"{_S}v")
    if v is None or t == "e":
        return ""
    if t == "s":
        return strings[int(v)] if v.isdigit() and int(v) < len(strings) else ""
    if t == "b":
        return "TRUE" if v.strip() in ("1", "true") else "FALSE"
    if t in ("str", "d"):
        return v
    try:
        number = float(v)
    except ValueError:
        return v
    style = int(c.get("s", "0")) if (c.get("s") or "0").isdigit() else 0
    kind = kinds[style] if style < len(kinds) else ""
    if kind and 0 <= number <= _LAST_SERIAL:
        return _when(number, kind, epoch)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.15g}"


def _when(serial: float, kind: str, epoch: datetime.datetime | None) -> str:
    """A date serial as ISO 8601: days since 1899-12-30 (Excel's 1900 system, whose 29 February 1900
    did not exist: serials before it count from a day later) or since 1904-01-01."""
    base = epoch or datetime.datetime(1899, 12, 30 if serial >= 61 else 31)
    when = base + datetime.timedelta(seconds=round(serial * 86400))
    if kind == "time":
        return when.strftime("%H:%M:%S")
    if kind == "date":
        return when.date().isoformat()
    return when.strftime("%Y-%m-%d %H:%M:%S")
