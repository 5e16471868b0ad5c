"""The text of an RTF document (``.rtf``: Word's, WordPad's and TextEdit's rich text format), for
documents read with ``rtf_text``, shown as ``_docx`` shows a Word document: each paragraph, then a
blank line; tabs and line breaks as they are; tables a row a line, their cells a tab apart (nested
tables too); a field's result without its code; deleted revisions left out; then the footnotes and
endnotes, each a paragraph. Left out: headers, footers, comments, pictures, the fonts', colours',
styles' and document information's tables, and every destination a reader may skip (``{\\*...}``).
Read with the standard library: the control words as the RTF 1.9.1 specification defines them,
characters from ``\\uN`` (Unicode) and ``\\'hh`` (the document's ANSI code page).
RTF that wraps an HTML document (``\\fromhtml1``, as Outlook keeps HTML mail) is read as that
HTML's visible text (``_html``). A file that does not begin as RTF does (``{\\rtf``) is a bad row
saying so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ._doc import CELL, IN_CELL, INNER_CELL, INNER_ROW, PARAGRAPH, ROW, marked_blocks
from ._html import html_text
from ._ole import code_page

SUFFIXES = (".rtf",)  # documents read as RTF (a compression suffix after them too)

_TOKEN = re.compile(rb"\\([a-zA-Z]{1,32})(-?\d{1,10})? ?|\\'([0-9a-fA-F]{2})|\\(.)|([{}])|([\r\n]+)|([^\\{}\r\n]+)", re.S)
# destinations whose text is no text of the document (a group that begins with one is skipped)
_SKIPPED = frozenset(b"""fonttbl colortbl stylesheet info pict object header headerl headerr headerf footer footerl
    footerr footerf annotation atnid atnauthor atndate atnref atrfstart atrfend listtable listoverridetable revtbl
    rsidtbl xmlnstbl themedata colorschememapping datastore latentstyles generator pgdsctbl fldinst bkmkstart
    bkmkend txe xe tc tcn nonesttables shppict nonshppict sp shprslt userprops docvar ftnsep ftnsepc ftncn aftnsep
    aftnsepc aftncn template filetbl mmathPr""".split())
# optional destinations ({\*\name ...}) that hold the document's text: notes (as LibreOffice writes
# them), a shape's instructions (a text box's text, \shptxt, among its properties)
_KEPT = frozenset({b"footnote", b"shpinst"})
# control words that are text
_CHARACTERS = {b"par": PARAGRAPH, b"sect": PARAGRAPH, b"line": "\n", b"page": "\n", b"column": "\n", b"tab": "\t",
               b"emdash": "\u2014", b"endash": "\u2013", b"emspace": " ", b"enspace": " ", b"qmspace": " ",
               b"bullet": "\u2022", b"lquote": "\u2018", b"rquote": "\u2019", b"ldblquote": "\u201c",
               b"rdblquote": "\u201d", b"zwj": "\u200d", b"zwnj": "\u200c"}  # fmt: skip
_SYMBOLS = {b"~": "\xa0", b"_": "-", b"-": "", b"\\": "\\", b"{": "{", b"}": "}", b"\n": PARAGRAPH, b"\r": PARAGRAPH}


@dataclass(frozen=True)
class _Group:
    skip: bool = False  # text here is not the document's
    uc: int = 1  # characters that stand in for a \uN character (its ANSI fallback), skipped after it
    deleted: bool = False  # a deleted revision's text
    notes: bool = False  # a footnote's or endnote's text
    nested_props: bool = False  # a nested table's row properties (which end its row)


@dataclass
class _Note:
    text: list[str] = field(default_factory=list)
    endnote: bool = False  # \ftnalt: endnotes follow the footnotes


def is_rtf(data: bytes) -> bool:
    """Whether ``data`` begins as an RTF document does (``{\\rtf``, after any white space)."""
    return data[:64].lstrip()[:5] == b"{\\rtf"


def rtf_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the RTF ``data``, paragraphs a blank line apart; or why it has none. RTF that wraps
    HTML (``encapsulated_html``) is that HTML's visible text."""
    if not is_rtf(data):
        return None, "not an RTF document: it does not begin with {\\rtf"
    html = encapsulated_html(data)
    if html is not None:
        return html_text(html, title=False), None
    body: list[str] = []
    notes: list[_Note] = []
    stack = [_Group()]
    in_table = False  # the paragraph is in a table (\intbl, \itapN)
    declared = cells = 0  # the cells the table's row defines (\cellx), and those ended so far (\cell)
    first_in_group = False  # the next token is the group's first (a destination's name)

    def emit(text: str, hidden_too: bool = False) -> None:
        group = stack[-1]
        if hidden_too or (not group.skip and not group.deleted):
            (notes[-1].text if group.notes and notes else body).append(text)

    chars = _Characters(emit)
    for m in _TOKEN.finditer(data):
        word, arg, hex_byte, symbol, brace, newline, text = m.groups()
        if hex_byte is not None:
            chars.byte(hex_byte)
            first_in_group = False
            continue
        chars.flush()
        if newline is not None:
            continue
        if brace == b"{":
            stack.append(stack[-1])
            first_in_group = True
            continue
        if brace == b"}":
            if len(stack) > 1:
                stack.pop()
            chars.skip = 0
            first_in_group = False
            continue
        starts = first_in_group
        first_in_group = False
        group = stack[-1]
        if text is not None:
            chars.text(text)
            continue
        if symbol is not None:
            if symbol == b"*":  # an optional destination: skipped, but for _KEPT ones and nested tables' row ends
                stack[-1] = replace(group, skip=True)
                first_in_group = True
            elif symbol in _SYMBOLS:
                emit(_mark(_SYMBOLS[symbol], in_table))
            continue
        name = word
        value = int(arg) if arg is not None else None
        if name == b"nesttableprops":
            stack[-1] = replace(group, skip=True, nested_props=True)
        elif name == b"nestrow" and group.nested_props:
            stack[-1] = replace(group, nested_props=False)
            emit(INNER_ROW, hidden_too=True)  # in a skipped group, which holds nothing else of the text
        elif starts and name in _SKIPPED:
            stack[-1] = replace(group, skip=True)
        elif starts and name in _KEPT:  # {\footnote ...}, or {\*\footnote ...} as LibreOffice writes it
            outer = stack[-2] if len(stack) > 1 else _Group()
            stack[-1] = replace(group, skip=outer.skip, notes=group.notes or name == b"footnote")
            if name == b"footnote" and not outer.skip:
                notes.append(_Note())
        elif name == b"ftnalt" and group.notes and notes:
            notes[-1].endnote = True
        elif name == b"u" and value is not None:
            chars.unicode(value, group.uc)
        elif name == b"uc" and value is not None:
            stack[-1] = replace(group, uc=max(value, 0))
        elif name == b"ansicpg" and value is not None:
            chars.codepage = code_page(value, chars.codepage)
        elif name == b"deleted":
            stack[-1] = replace(group, deleted=value != 0)
        elif name == b"plain":
            stack[-1] = replace(group, deleted=False)
        elif name == b"pard":
            in_table = False
        elif name == b"intbl":
            in_table = True
        elif name == b"itap" and value is not None:
            in_table = value > 0
        elif name == b"trowd" and not group.nested_props:
            declared = 0
        elif name == b"cellx" and not group.nested_props:
            declared += 1
        elif name == b"cell":
            if not declared or cells < declared:  # a cell the row defines (LibreOffice may end a row with one more)
                emit(CELL)
            cells += 1
        elif name == b"nestcell":
            emit(INNER_CELL)
        elif name == b"row":
            emit(ROW)
            cells = 0
        elif name in _CHARACTERS:
            emit(_mark(_CHARACTERS[name], in_table))
    chars.flush()
    blocks = list(marked_blocks("".join(body)))  # a field's code is a skipped destination, its result text
    for note in sorted(notes, key=lambda n: n.endnote):  # the footnotes, then the endnotes, each in order
        blocks += marked_blocks("".join(note.text).lstrip())
    return "\n\n".join(b for b in blocks if b.strip()), None


def encapsulated_html(data: bytes) -> str | None:
    """The HTML that the RTF ``data`` wraps (``\\fromhtml1``: [MS-OXRTFEX], as Outlook keeps an HTML
    message's body), or None where it wraps none. The ``{\\*\\htmltagN ...}`` destinations hold
    the HTML's markup and the text outside them its text, but for ``\\htmlrtf`` ... ``\\htmlrtf0``
    (RTF for RTF readers alone); the other destinations are skipped."""
    if b"\\fromhtml" not in data[:1024]:
        return None
    out: list[str] = []
    stack = [_Html()]
    first_in_group = False

    def emit(text: str) -> None:
        group = stack[-1]
        if not group.skip and (group.tag or not group.rtf_only):
            out.append(text)

    chars = _Characters(emit)
    for m in _TOKEN.finditer(data):
        word, arg, hex_byte, symbol, brace, newline, text = m.groups()
        if hex_byte is not None:
            chars.byte(hex_byte)
            continue
        chars.flush()
        if newline is not None:  # line ends in the RTF source are no text
            continue
        starts, first_in_group = first_in_group, False
        group = stack[-1]
        if brace is not None:
            if brace == b"{":
                stack.append(group)
                first_in_group = True
            elif len(stack) > 1:
                stack.pop()
            chars.skip = 0
        elif text is not None:
            chars.text(text)
        elif symbol is not None:
            if symbol == b"*":  # an optional destination: skipped unless it is an HTML tag's
                stack[-1] = replace(group, skip=True)
                first_in_group = starts
            elif symbol in (b"\\", b"{", b"}"):
                emit(symbol.decode())
        elif word is not None:
            value = int(arg) if arg is not None else None
            outer = stack[-2] if len(stack) > 1 else _Html()
            if starts and word == b"htmltag":
                stack[-1] = replace(group, skip=outer.skip, tag=True)
            elif starts and word in _SKIPPED:
                stack[-1] = replace(group, skip=True)
            elif word == b"htmlrtf":
                stack[-1] = replace(group, rtf_only=value != 0)
            elif word == b"u" and value is not None:
                chars.unicode(value, group.uc)
            elif word == b"uc" and value is not None:
                stack[-1] = replace(group, uc=max(value, 0))
            elif word == b"ansicpg" and value is not None:
                chars.codepage = code_page(value, chars.codepage)
            elif word in (b"par", b"line"):
                emit("\n")
            elif word == b"tab":
                emit("\t")
    chars.flush()
    return "".join(out)


class _Characters:
    """The characters of RTF's text: ``\\'hh`` bytes in the document's code page (decoded together:
    a double-byte code page's characters), ``\\uN`` (a surrogate pair joined, a lone one left out)
    and, after it, its ANSI fallback skipped; each run handed to ``emit``."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.codepage = "cp1252"  # \\ansicpgN's
        self.pending: list[int] = []  # \\'hh bytes not yet decoded
        self.skip = 0  # fallback characters still to skip after a \\uN
        self.high: int | None = None  # a high surrogate's \\uN, waiting for its low one

    def byte(self, hex_byte: bytes) -> None:
        if self.skip:
            self.skip -= 1
        else:
            self.pending.append(int(hex_byte, 16))

    def flush(self) -> None:
        if self.pending:
            self.emit(bytes(self.pending).decode(self.codepage, "replace"))
            self.pending.clear()

    def text(self, raw: bytes) -> None:
        cut = min(self.skip, len(raw))
        self.skip -= cut
        if raw[cut:]:
            self.emit(raw[cut:].decode(self.codepage, "replace"))

    def unicode(self, value: int, fallback: int) -> None:
        """``\\uN`` (N signed 16-bit), then ``fallback`` characters (``\\ucN``) to skip."""
        code = value + 65536 if value < 0 else value
        if 0xD800 <= code < 0xDC00:
            self.high = code
        elif 0xDC00 <= code < 0xE000 and self.high is not None:
            self.emit(chr(0x10000 + ((self.high - 0xD800) << 10) + (code - 0xDC00)))
            self.high = None
        elif not 0xD800 <= code < 0xE000:
            self.emit(chr(code))
        self.skip = fallback


@dataclass(frozen=True)
class _Html:
    skip: bool = False  # a destination that holds none of the HTML
    tag: bool = False  # an \htmltag destination: the HTML's markup
    rtf_only: bool = False  # within \htmlrtf: RTF for RTF readers only
    uc: int = 1


def _mark(text: str, in_table: bool) -> str:
    """A paragraph's end inside a table cell is the cell's own, not the document's."""
    if text == PARAGRAPH and in_table:
        return IN_CELL
    return text


