"""The text of an Excel 97-2003 workbook (``.xls``: BIFF records in an OLE2 compound file), for
documents read with ``xlsx_text``: read with xlrd (the ``dataset`` extra), shown as ``_xlsx`` shows
a ``.xlsx`` workbook (``_xlsx.workbook_text``: each worksheet's name, then a row a line, cells a tab
apart; numbers in their cell's number format, dates and times in ISO 8601, TRUE and FALSE,
formulas by the value Excel saved with them; error values left out), worksheets separated by a form
feed as a PDF's pages are. Left out as in ``.xlsx``: charts and chart sheets, pictures, comments,
headers and footers. An encrypted workbook (a password to open), an encrypted ``.xlsx`` (an OLE2
file too) and a file that only bears the name (a web page or XML saved as ``.xls``) are bad rows
saying so.
"""

from __future__ import annotations

import datetime
import io
from typing import Any

from ._xlsx import NumberFormat, Rows, format_kind, number_text, workbook_text

_BUILT_IN = 164  # number formats below this are Excel's built-ins, whose codes depend on the locale (_xlsx)
_INSTALL = "an Excel 97-2003 workbook (.xls) is read with xlrd: pip install 'embedrt[dataset]'"


def xls_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the ``.xls`` ``data``, its worksheets separated by ``PAGE_BREAK``; or why it has none."""
    try:
        import xlrd
    except ImportError:
        return None, _INSTALL
    log = io.StringIO()  # xlrd writes its warnings to stdout otherwise (a job's --json summary goes there)
    try:
        book = xlrd.open_workbook(file_contents=data, formatting_info=True, on_demand=True, logfile=log)
    except Exception as e:  # xlrd.XLRDError, struct.error, IndexError, ...: a file it cannot read, named
        return None, _unreadable(e)
    try:
        kinds = _format_kinds(book)
        epoch = datetime.datetime(1904, 1, 1) if book.datemode == 1 else None
        names = book.sheet_names()  # worksheets only: xlrd skips chart sheets and macro sheets
        return workbook_text((name, _rows(book, i, kinds, epoch)) for i, name in enumerate(names))
    except Exception as e:  # a record cut short inside a sheet
        return None, _unreadable(e)
    finally:
        book.release_resources()


def _unreadable(e: Exception) -> str:
    said = " ".join(str(e).split())[:200]
    if "encrypted" in said.lower():
        return "a password-protected .xls workbook: save it without a password to embed it"
    if "workbook in ole2" in said.lower():  # an OLE2 file without a Workbook stream
        return (f"an OLE2 file without an Excel workbook ({said}): a password-protected .xlsx? save it without a "
                "password")  # fmt: skip
    return f"not a readable Excel 97-2003 workbook ({type(e).__name__}: {said})"


def _format_kinds(book: Any) -> dict[int, str | NumberFormat]:
    """Each number format's kind (``_xlsx.format_kind``) by its key: a built-in by its number, as a
    ``.xlsx``'s (xlrd fills in US English codes for the built-ins a file does not list), a custom
    one by its code."""
    return {key: format_kind(key, None if key < _BUILT_IN else fmt.format_str) for key, fmt in book.format_map.items()}


def _rows(book: Any, index: int, kinds: dict[int, str | NumberFormat], epoch: datetime.datetime | None) -> Rows:
    """A worksheet's rows: (row number from 1, its cells' (column from 1, value)); the sheet is loaded
    when its rows are asked for and unloaded after them (one sheet in memory at a time)."""
    import xlrd

    sheet = book.sheet_by_index(index)
    xfs = book.xf_list
    try:
        for r in range(sheet.nrows):
            cells = []
            for c, cell in enumerate(sheet.row(r)):
                kind = kinds.get(xfs[cell.xf_index].format_key, "") if cell.xf_index < len(xfs) else ""
                text = _value(xlrd, cell, kind, epoch)
                if text:
                    cells.append((c + 1, text))
            yield r + 1, cells
    finally:
        book.unload_sheet(index)


def _value(xlrd: Any, cell: Any, kind: str | NumberFormat, epoch: datetime.datetime | None) -> str:
    t = cell.ctype
    if t == xlrd.XL_CELL_TEXT:
        return str(cell.value)
    if t in (xlrd.XL_CELL_NUMBER, xlrd.XL_CELL_DATE):  # a date by its format: the kind decides, as in .xlsx
        return number_text(float(cell.value), kind, epoch)
    if t == xlrd.XL_CELL_BOOLEAN:
        return "TRUE" if cell.value else "FALSE"
    return ""  # empty, blank (formatted only) or an error value (#N/A)
