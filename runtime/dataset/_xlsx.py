"""The text of an Excel workbook (``.xlsx``, ``.xlsm``; an older ``.xls`` is read by ``_xls``), for
documents read with ``xlsx_text``: a zip of XML, no text to a model. Read with the standard library
(``zipfile``, ``ElementTree``), each sheet as a stream of rows (a sheet of a million rows is never a
tree in memory).

Kept, sheet by sheet in the workbook's tab order (hidden sheets too): the sheet's name on a line of
its own, then each row a line of its cells a tab apart, as a tab-separated export has them (an
empty cell an empty field, so that columns stay aligned; a gap of more than ``GAP`` empty columns
one field), a run of empty rows a blank line (tables on one sheet are paragraphs of their own, so
that ``chunk_tokens`` windows end between them). Values as Excel shows them: shared and inline
strings, numbers in their cell's number format (``NumberFormat``; else as Excel's General format
shows them, to 15 significant digits), cells formatted as dates or times in ISO 8601, TRUE and
FALSE, formulas by the value Excel saved with them. Sheets are separated by a form feed on a line
of its own, as a PDF's pages are, so that a window's ``chunk_page`` is the sheet it begins on. Left
out: error values (``#N/A``), formulas saved without a value, comments, charts, pictures, headers
and footers. A password-protected workbook (an OLE2 file: ``_xls`` says so), or a file that only
bears the name, is a bad row.
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from xml.etree import ElementTree

from ._ole import OLE2
from ._pdf_worker import PAGE_BREAK
from ._zipped import Parts, Unreadable

SUFFIXES = (".xlsx", ".xlsm", ".xls")  # documents read as Excel workbooks (a compression suffix after them too)
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
    """The text of the ``.xlsx`` ``data``, its sheets separated by ``PAGE_BREAK``; or why it has none.
    An Excel 97-2003 workbook (an OLE2 file, as a ``.xls`` is) is read by ``_xls``."""
    if data.startswith(OLE2):
        from ._xls import xls_text

        return xls_text(data)
    try:
        parts = Parts(data, "not an Excel workbook: neither a zip, as a .xlsx is, nor an OLE2 file, as a .xls (or "
                            "a password-protected .xlsx) is; a web page or XML saved under an Excel name? save it "
                            "as .xlsx")  # fmt: skip
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


def _style_kinds(parts: Parts) -> list[str | NumberFormat]:
    """Each cell style's kind of number format: "date", "time", "datetime", a ``NumberFormat``, or ""
    (shown as Excel's General format shows a number)."""
    name = "xl/styles.xml"
    if not parts.has(name):
        return []
    styles = parts.xml(name)
    codes = {int(f.get("numFmtId", "0")): f.get("formatCode", "") for f in styles.iter(f"{_S}numFmt")
             if (f.get("numFmtId") or "").isdigit()}  # fmt: skip
    xfs = styles.find(f"{_S}cellXfs")
    out: list[str | NumberFormat] = []
    for xf in xfs if xfs is not None else ():
        fmt = int(xf.get("numFmtId", "0")) if (xf.get("numFmtId") or "0").isdigit() else 0
        out.append(format_kind(fmt, codes.get(fmt)))
    return out


def format_kind(fmt: int, code: str | None) -> str | NumberFormat:
    """A style's kind of number format: "date", "time", "datetime", a ``NumberFormat``, or "" (General)."""
    if code is None:
        if fmt in _BUILT_IN_NUMBERS:
            return NumberFormat.parse(_BUILT_IN_NUMBERS[fmt]) or ""
        return "date" if fmt in _DATES else "time" if fmt in _TIMES else "datetime" if fmt in _DATE_TIMES else ""
    bare = _LITERALS.sub("", code.split(";")[0]).lower()  # the format of positive numbers, its literal text out
    if "general" in bare or not bare:
        return ""
    time = "h" in bare or "s" in bare
    date = "y" in bare or "d" in bare or ("m" in bare and not time)
    if date or time:
        return "datetime" if date and time else "date" if date else "time"
    return NumberFormat.parse(code) or ""


# built-in number formats that are the same in every locale (ECMA-376 18.8.30; 5-8, the currencies, are not)
_BUILT_IN_NUMBERS = {1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00", 9: "0%", 10: "0.00%", 11: "0.00E+00",
                     37: "#,##0 ;(#,##0)", 38: "#,##0 ;[Red](#,##0)", 39: "#,##0.00;(#,##0.00)",
                     40: "#,##0.00;[Red](#,##0.00)", 48: "##0.0E+0"}  # fmt: skip
_TOKENS = re.compile(r'"(?P<quoted>[^"]*)"|\\(?P<escaped>.)|\[\$(?P<currency>[^\]-]*)[^\]]*\]|(?P<bracket>\[[^\]]*\])'
                     r"|_.|\*.|(?P<exponent>[eE][+-][0#?]+)|(?P<char>.)")  # fmt: skip


@dataclass(frozen=True)
class _Section:
    """One section of a number format: the text before and after its digits, how they are shown."""

    before: str
    after: str
    integers: int  # "0"s before the decimal point: digits always shown
    grouped: bool  # thousands separated by commas
    decimals: int  # placeholders after the point
    fixed: int  # of those, "0"s: decimals always shown
    scale: float  # 100 per "%", 1/1000 per comma after the last digit
    exponent: str | None  # scientific notation: "+00" or "-0" (the sign shown always or when negative)
    digits: bool = True  # False: text alone (a zero section's "-", a negative one's "n/a")

    def show(self, x: float) -> str:
        if not self.digits:
            return self.before
        if self.scale != 1.0:  # to Excel's 15 digits: 0.145 as a percent is 14.5, not 14.499999999999998
            x = float(f"{x * self.scale:.15g}")
            if not math.isfinite(x):
                raise OverflowError(f"{x} once scaled")
        if self.exponent is not None:
            power = math.floor(math.log10(abs(x))) if x else 0
            mantissa = _fixed(abs(x) / 10**power, self.decimals)
            if mantissa.startswith("10"):  # 9.996 rounded up to 10.00
                power += 1
                mantissa = _fixed(abs(x) / 10**power, self.decimals)
            sign = "-" if power < 0 else "+" if self.exponent[0] == "+" else ""
            body = f"{self._digits(mantissa)}E{sign}{abs(power):0{len(self.exponent) - 1}d}"
        else:
            body = _fixed(abs(x), self.decimals, self.grouped)
            if self.integers != 1 or self.fixed != self.decimals:  # else "0", "#,##0.00": as formatted
                body = self._digits(body)
        return f"{self.before}{body}{self.after}"

    def _digits(self, fixed: str) -> str:
        whole, _, frac = fixed.partition(".")
        if len(whole) < self.integers or whole == "0":
            whole = whole.lstrip("0").rjust(self.integers, "0")  # "00000" shows 501 as "00501", "#" 0 as ""
        if self.fixed < self.decimals:
            frac = frac.rstrip("0").ljust(self.fixed, "0")  # "#" and "?" places: no trailing zeros
        return whole + ("." + frac if self.decimals else "")  # Excel keeps the point: "0.##" shows 5 as "5."


_WIDE = decimal.Context(prec=400)  # every float's digits and decimals: 1e300 with two places is 303 digits


def _fixed(x: float, decimals: int, grouped: bool = False) -> str:
    """``x`` (not negative) with ``decimals`` places (thousands grouped), its shortest decimal form's
    halves rounded away from zero, as Excel rounds. Python's formatting rounds the binary value,
    which differs only where that form ends in a 5 just past the last place (2.25 to "2.2")."""
    shortest = repr(x)
    point = shortest.find(".")
    if "e" not in shortest and (point < 0 or len(shortest) - point - 2 != decimals or shortest[-1] != "5"):
        return f"{x:,.{decimals}f}" if grouped else f"{x:.{decimals}f}"
    exact = decimal.Decimal(shortest).quantize(decimal.Decimal(1).scaleb(-decimals), rounding=decimal.ROUND_HALF_UP,
                                               context=_WIDE)  # fmt: skip
    return f"{exact:,.{decimals}f}" if grouped else f"{exact:.{decimals}f}"


@dataclass(frozen=True)
class NumberFormat:
    """An Excel number format of digits (``0``, ``#``, ``?``, ``.``, ``,``, ``%``, ``E+00``) and literal
    text (quoted, escaped, a currency's ``[$€-407]``), in up to three sections (positive; negative;
    zero). Formats it cannot show as Excel would (fractions, conditions, text) are not parsed."""

    positive: _Section
    negative: _Section | None  # None: the positive section with a minus sign
    zero: _Section | None

    @classmethod
    def parse(cls, code: str) -> NumberFormat | None:
        sections = []
        for text in _split(code)[:3]:
            section = _section(text)
            if section is None:
                return None
            sections.append(section)
        if not sections or not sections[0].digits:
            return None
        return cls(sections[0], sections[1] if len(sections) > 1 else None, sections[2] if len(sections) > 2 else None)

    def show(self, x: float) -> str:
        if x == 0 and self.zero is not None:
            return self.zero.show(0.0)
        if x < 0 and self.negative is not None:
            return self.negative.show(-x)
        shown = self.positive.show(abs(x))
        return "-" + shown if x < 0 and any(ch in "123456789" for ch in shown) else shown


def _split(code: str) -> list[str]:
    """A format's sections: split at ``;`` outside quotes, escapes and brackets."""
    out, at, quoted, bracket, k = [], 0, False, False, 0
    while k < len(code):
        ch = code[k]
        if ch == "\\" and not quoted:
            k += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "[]":
            bracket = ch == "["
        elif ch == ";" and not quoted and not bracket:
            out.append(code[at:k])
            at = k + 1
        k += 1
    out.append(code[at:])
    return out


def _section(text: str) -> _Section | None:
    """One section parsed, or None where it holds what ``NumberFormat`` does not show (a fraction, a
    condition, a date part, text, no digit at all)."""
    before: list[str] = []
    after: list[str] = []
    pattern: list[str] = []
    exponent = None
    percent = 0
    for m in _TOKENS.finditer(text):
        literal = m.group("quoted") if m.group("quoted") is not None else m.group("escaped") or m.group("currency")
        if m.group("bracket") is not None:
            if not re.fullmatch(r"\[(black|blue|cyan|green|magenta|red|white|yellow|color ?\d+)\]", m.group("bracket"), re.I):
                return None  # a condition ([>100]) or an elapsed time ([h])
            continue
        ch = m.group("char")
        if m.group("exponent") is not None:
            if not pattern or exponent is not None:
                return None
            exponent = m.group("exponent")[1:]
            continue
        if literal is None and ch is None:
            continue  # a padding (_x) or a fill (*x)
        if ch is not None and ch in "0#?.,":
            if after and ch != ",":
                return None  # digits after text that followed digits
            if not pattern and ch == ",":
                before.append(ch)
                continue
            pattern.append(ch)
            continue
        if ch is not None and (ch.isalpha() or ch in "/@"):
            return None  # a fraction, a date part, text
        if ch == "%":
            percent += 1
        (after if pattern else before).append(literal if literal is not None else ch or "")
    if not pattern:
        return _Section("".join(before), "", 0, False, 0, 0, 1.0, None, digits=False)  # "0;;": zero shows nothing
    if not any(c in "0#?" for c in pattern):
        return None
    body = "".join(pattern).rstrip(",")
    thousands = len("".join(pattern)) - len(body)  # commas after the last digit: thousands scaled away
    whole, _, frac = body.partition(".")
    if "." in frac or "," in frac:
        return None
    fixed = len(frac) - len(frac.lstrip("0")) if frac.startswith("0") else 0
    return _Section("".join(before), "".join(after), whole.count("0"), "," in whole, len(frac), fixed,
                    100.0**percent / 1000.0**thousands, exponent)


def _rows(parts: Parts, part: str, strings: list[str], kinds: list[str | NumberFormat],
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


def _value(c: ElementTree.Element, strings: list[str], kinds: list[str | NumberFormat], epoch: datetime.datetime | None) -> str:
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
    return number_text(number, kinds[style] if style < len(kinds) else "", epoch)


def number_text(number: float, kind: str | NumberFormat, epoch: datetime.datetime | None) -> str:
    """A number as Excel shows it in a cell whose number format is of ``kind`` (``format_kind``)."""
    if isinstance(kind, NumberFormat) and math.isfinite(number):
        try:
            return kind.show(number)
        except (OverflowError, ValueError, decimal.InvalidOperation):
            pass  # past a float's range once scaled (1e307 as a percent): as General
    if isinstance(kind, str) and kind and 0 <= number <= _LAST_SERIAL:
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
