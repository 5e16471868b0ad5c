"""The text of a Word 97-2003 document (``.doc``: the Word binary format in an OLE2 compound file),
for documents read with ``docx_text``, shown as ``_docx`` shows a ``.docx``: each paragraph, then a
blank line; tabs and line breaks as they are; tables a row a line, their cells a tab apart; a
field's result without its code; inserted revisions kept and deleted ones left out; then the text
boxes' text, then the footnotes and endnotes, each a paragraph. Headers, footers and comments are
left out, as in a ``.docx``.

The compound file is read with olefile (the ``dataset`` extra); the text as [MS-DOC] stores it: the
piece table (the ``Clx`` in the table stream) maps the document's characters to 8-bit (cp1252) or
UTF-16 runs of the ``WordDocument`` stream; the character properties (``PlcBteChpx``) mark deleted
text, the paragraph properties (``PlcBtePapx``) mark table cells and row ends.

A password-protected document, a Word 6.0/95 document (an older format) and an OLE2 file that
holds no Word document (an encrypted ``.docx`` is one) are bad rows saying which.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

from ._ole import Unreadable, ole_text, streams_of

_WORD97 = 0x00C1  # nFib of Word 97; Word 6.0/95 files have lower ones and another layout
_ENCRYPTED, _OBFUSCATED = 0x0100, 0x8000  # FibBase flags
_FC_CLX, _FC_CHPX, _FC_PAPX = 0x01A2, 0x00FA, 0x0102  # (fc, lcb) pairs of FibRgFcLcb97
_CCP = 0x004C  # FibRgLw97's character counts: text, footnotes, headers, macros, comments, endnotes, text boxes
_DELETED = 0x0800  # sprmCFRMarkDel
# sprmPFInTable, sprmPFTtp (a row's end), sprmPFInnerTableCell and sprmPFInnerTtp (a nested table's cell and row ends)
_IN_TABLE, _ROW_END, _INNER_CELL_END, _INNER_ROW_END = 0x2416, 0x2417, 0x244B, 0x244C
_IN_A_TABLE, _ENDS_ROW, _ENDS_INNER_ROW, _ENDS_INNER_CELL = 1, 2, 4, 8  # a paragraph's kind, from those
_OPERAND = {0: 1, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2, 7: 3}  # a sprm's operand bytes by its spra (6: variable)
_TABLE_DEFINITION = 0xD608  # sprmTDefTable: its variable operand's size takes two bytes

# characters of the text stream: a paragraph's end, a cell's (or a row's) end, and what stands for
# no text (a picture, a drawing, a note's reference, a comment's mark); field marks handled apart
# the marks of a text whose paragraphs and tables ``marked_blocks`` makes blocks of (the RTF reader's too)
PARAGRAPH, CELL, ROW = "\r", "\x07", "\x1c"  # ROW: a row's end, told apart by its paragraph
IN_CELL = "\u2029"  # a paragraph's end inside a table cell: the cell's paragraphs are joined by a space
INNER_CELL, INNER_ROW = "\ue000", "\ue001"  # a nested table's cell and row ends (paragraph marks in .doc)
_SHOWN = str.maketrans({"\x0b": "\n", "\x0c": "\n", "\x0e": "\n", "\x1e": "-", "\x1f": None, "\xad": None,
                        **{chr(c): None for c in (1, 2, 3, 4, 5, 6, 8, 0x0f, 0x10, 0x11, 0x12, 0x16, 0x17,
                                                  0x18, 0x19, 0x1a, 0x1b, 0x1d)}})  # fmt: skip
_MARKS = re.compile("[\r\x07\x1c]")
_FIELDS = re.compile("[\x13\x14\x15]")


def doc_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the ``.doc`` ``data``, paragraphs a blank line apart; or why it has none."""
    return ole_text(data, "a Word 97-2003 document (.doc)", "Word 97-2003 document", _text)


def _text(ole: Any) -> str:  # an olefile.OleFileIO
    streams = streams_of(ole, "WordDocument", "Word document", ".docx")
    word = ole.openstream("WordDocument").read()
    ident, fib, _, _, _, flags = struct.unpack_from("<6H", word, 0)  # wIdent, nFib, ..., the flags at 0x0A
    if ident != 0xA5EC:
        raise Unreadable(f"not a Word document (its WordDocument stream starts with {ident:#06x}, not 0xa5ec)")
    if flags & (_ENCRYPTED | _OBFUSCATED):
        raise Unreadable("a password-protected .doc document: save it without a password to embed it")
    if fib < _WORD97:
        raise Unreadable(f"a Word 6.0/95 document (nFib {fib:#x}), an older format than Word 97: save it as .docx")
    table_name = "1Table" if flags & 0x0200 else "0Table"
    if table_name not in streams:
        raise Unreadable(f"a Word document without its {table_name} stream")
    table = ole.openstream(table_name).read()
    doc = _Document(word, table)
    # the stories, one after the other: body, footnotes, headers and footers, macros, comments, endnotes, text boxes
    body, notes, headers, macros, comments, endnotes, boxes = struct.unpack_from("<7i", word, _CCP)
    endnotes_at = body + notes + headers + macros + comments
    boxes_at = endnotes_at + endnotes
    blocks = doc.blocks(0, body)
    blocks += doc.blocks(boxes_at, boxes_at + boxes)  # after the body: a .doc keeps them in a story of their own
    blocks += doc.blocks(body, body + notes)
    blocks += doc.blocks(endnotes_at, boxes_at)
    return "\n\n".join(b for b in blocks if b.strip())


class _Document:
    def __init__(self, word: bytes, table: bytes) -> None:
        self.word = word
        self.pieces = _pieces(word, table)
        self.chpx = _runs(word, table, _FC_CHPX, _chpx_deleted)
        self.papx = _runs(word, table, _FC_PAPX, _papx_kind)

    def blocks(self, start: int, end: int) -> list[str]:
        """The paragraphs and tables of the characters ``[start, end)``, each a block of text."""
        if end <= start:
            return []
        return list(marked_blocks(_fields(self._marked(start, end))))

    def _marked(self, start: int, end: int) -> str:
        """The characters ``[start, end)`` without deleted text, a row's end mark as ``ROW`` and
        a paragraph mark inside a table cell as ``IN_CELL``."""
        out: list[str] = []
        for cp0, cp1, pos, width in self.pieces:
            lo, hi = max(cp0, start), min(cp1, end)
            if lo >= hi:
                continue
            at = pos + (lo - cp0) * width  # the first character's byte in WordDocument
            raw = self.word[at : at + (hi - lo) * width]
            if len(raw) != (hi - lo) * width:
                raise Unreadable("a Word document whose text runs past its WordDocument stream")
            chars = raw.decode("cp1252", "replace") if width == 1 else raw.decode("utf-16-le", "replace")
            for i, j in self._kept(at, len(chars), width):
                out.append(self._ends(chars[i:j], at + i * width, width))
        return "".join(out)

    def _kept(self, at: int, n: int, width: int) -> Iterator[tuple[int, int]]:
        """The spans of the ``n`` characters from byte ``at`` that are not deleted revisions."""
        starts, ends, deleted = self.chpx
        i = 0
        k = max(bisect.bisect_right(starts, at) - 1, 0)
        while i < n:
            byte = at + i * width
            while k < len(starts) and ends[k] <= byte:
                k += 1
            if k < len(starts) and starts[k] <= byte:
                stop = min(n, i + -(-(ends[k] - byte) // width))
                if not deleted[k]:
                    yield i, stop
                i = stop
            else:  # no properties here: plain text up to the next run
                stop = n if k >= len(starts) else min(n, i + max(1, -(-(starts[k] - byte) // width)))
                yield i, stop
                i = stop

    def _ends(self, chars: str, at: int, width: int) -> str:
        """``chars`` with its cell ends told from row ends, and paragraph marks in cells as ``IN_CELL``."""
        if "\x07" not in chars and "\r" not in chars:
            return chars
        starts, ends, kinds = self.papx

        def mark(m: re.Match[str]) -> str:
            k = bisect.bisect_right(starts, at + m.start() * width) - 1
            kind = kinds[k] if k >= 0 and ends[k] > at + m.start() * width else 0
            if m.group() == "\x07":
                return ROW if kind & _ENDS_ROW else CELL
            if kind & _ENDS_INNER_ROW:
                return INNER_ROW
            return INNER_CELL if kind & _ENDS_INNER_CELL else IN_CELL if kind & _IN_A_TABLE else PARAGRAPH

        return _MARKS.sub(mark, chars)


def _pieces(word: bytes, table: bytes) -> list[tuple[int, int, int, int]]:
    """The piece table: (first character, end, byte in WordDocument, bytes a character)."""
    fc, lcb = struct.unpack_from("<II", word, _FC_CLX)
    clx = table[fc : fc + lcb]
    if lcb == 0 or len(clx) != lcb:
        raise Unreadable("a Word document without its piece table")
    i = 0
    while i < len(clx) and clx[i] == 1:  # Prc: property changes of a fast-saved file, skipped
        i += 3 + struct.unpack_from("<h", clx, i + 1)[0]
    if i >= len(clx) or clx[i] != 2:
        raise Unreadable("a Word document whose piece table is not where its header says")
    size = struct.unpack_from("<I", clx, i + 1)[0]
    n = (size - 4) // 12
    cps = struct.unpack_from(f"<{n + 1}I", clx, i + 5)
    out = []
    for k in range(n):
        _, fc_compressed, _ = struct.unpack_from("<HIH", clx, i + 5 + 4 * (n + 1) + 8 * k)
        if fc_compressed & 0x40000000:  # 8-bit characters at half the offset
            out.append((cps[k], cps[k + 1], (fc_compressed & 0x3FFFFFFF) // 2, 1))
        else:
            out.append((cps[k], cps[k + 1], fc_compressed & 0x3FFFFFFF, 2))
    return out


def _runs(word: bytes, table: bytes, at: int, read: Callable[[bytes, int, int], int]) -> tuple[list[int], list[int], list[int]]:
    """A property table's runs of WordDocument bytes, sorted: starts, ends and what ``read`` makes of
    each run's properties (formatted disk pages of 512 bytes, found through the table stream's
    ``PlcBte``)."""
    fc, lcb = struct.unpack_from("<II", word, at)
    n = (lcb - 4) // 8 if lcb >= 12 else 0
    pages = struct.unpack_from(f"<{n}I", table, fc + 4 * (n + 1)) if n else ()
    runs: dict[int, tuple[int, int]] = {}
    for pn in pages:
        page = word[(pn & 0x3FFFFF) * 512 : (pn & 0x3FFFFF) * 512 + 512]
        if len(page) != 512:
            raise Unreadable("a Word document whose formatting runs past its WordDocument stream")
        count = page[511]
        fcs = struct.unpack_from(f"<{count + 1}I", page, 0)
        for r in range(count):
            runs[fcs[r]] = (fcs[r + 1], read(page, count, r))
    starts = sorted(runs)
    return starts, [runs[s][0] for s in starts], [runs[s][1] for s in starts]


def _chpx_deleted(page: bytes, count: int, r: int) -> int:
    """Whether the ``r``-th run of a character-properties page is a deleted revision."""
    offset = page[4 * (count + 1) + r] * 2
    if offset == 0:
        return 0
    size = page[offset]
    return int(any(sprm == _DELETED and value for sprm, value in _sprms(page[offset + 1 : offset + 1 + size])))


def _papx_kind(page: bytes, count: int, r: int) -> int:
    """A paragraph-properties run's kind: the flags ``_IN_A_TABLE``, ``_ENDS_ROW`` (its mark ends a
    row), ``_ENDS_INNER_ROW`` and ``_ENDS_INNER_CELL`` (a nested table's)."""
    offset = page[4 * (count + 1) + 13 * r] * 2
    if offset == 0:
        return 0
    cb = page[offset]
    size, start = (2 * page[offset + 1], offset + 2) if cb == 0 else (2 * cb - 1, offset + 1)
    kind = 0
    for sprm, value in _sprms(page[start + 2 : start + size]):  # after the style's index
        if sprm == _IN_TABLE and value:
            kind |= _IN_A_TABLE
        elif sprm == _ROW_END and value:
            kind |= _ENDS_ROW
        elif sprm == _INNER_ROW_END and value:
            kind |= _ENDS_INNER_ROW
        elif sprm == _INNER_CELL_END and value:
            kind |= _ENDS_INNER_CELL
    return kind


def _sprms(grpprl: bytes) -> Iterator[tuple[int, int]]:
    """(sprm, its operand's first byte) for each property modifier of ``grpprl``."""
    i = 0
    while i + 2 <= len(grpprl):
        sprm = struct.unpack_from("<H", grpprl, i)[0]
        i += 2
        spra = sprm >> 13
        if spra == 6:
            if sprm == _TABLE_DEFINITION and i + 2 <= len(grpprl):
                size = struct.unpack_from("<H", grpprl, i)[0] + 1  # two size bytes, the count one less
            elif i < len(grpprl):
                size = grpprl[i] + 1
            else:
                return
        else:
            size = _OPERAND[spra]
        yield sprm, grpprl[i] if i < len(grpprl) else 0
        i += size


def _fields(text: str) -> str:
    """``text`` with each field's code left out and its result kept (fields nest)."""
    if "\x13" not in text:
        return text
    out: list[str] = []
    stack: list[bool] = []  # per open field: whether its result has begun
    last = 0
    for m in _FIELDS.finditer(text):
        if not stack or all(stack):  # text shown so far
            out.append(text[last : m.start()])
        last = m.end()
        c = m.group()
        if c == "\x13":
            stack.append(False)
        elif c == "\x14" and stack:
            stack[-1] = True
        elif c == "\x15" and stack:
            stack.pop()
    if not stack or all(stack):
        out.append(text[last:])
    return "".join(out)


def _nested(cell: str) -> str:
    """A cell's text with each nested table as one of its paragraphs: the nested cells a tab apart,
    its rows a line each."""
    if INNER_ROW not in cell:
        return cell.replace(INNER_CELL, "\t")
    blocks: list[str] = []
    rows: list[str] = []
    *ended, rest = cell.split(INNER_ROW)
    for segment in ended:  # paragraphs, then the row this mark ends
        *paragraphs, row = segment.split(IN_CELL)
        if paragraphs:  # the paragraphs before this row end the table before them
            if rows:
                blocks.append("\n".join(rows))
            blocks += paragraphs
            rows = []
        rows.append("\t".join(c.strip() for c in row.rstrip(INNER_CELL).split(INNER_CELL)))
    blocks.append("\n".join(rows))
    blocks += rest.split(IN_CELL)
    return IN_CELL.join(blocks)


def marked_blocks(text: str) -> Iterator[str]:
    """The paragraphs (a block each) and tables (a block each: a row a line, cells a tab apart) of
    ``text`` as ``_Document._marked`` gives it."""
    rows: list[str] = []
    cells: list[str] = []
    last = 0
    for m in _MARKS.finditer(text):
        piece = text[last : m.start()].translate(_SHOWN)
        last = m.end()
        if m.group() == CELL:
            cells.append(" ".join(p.strip() for p in _nested(piece).split(IN_CELL) if p.strip()))
        elif m.group() == ROW:
            if any(c for c in cells):
                rows.append("\t".join(cells))
            cells = []
        else:
            if rows or cells:  # a paragraph after a table ends it
                if cells:
                    rows.append("\t".join(cells))
                yield "\n".join(rows)
                rows, cells = [], []
            yield piece.strip()
    tail = text[last:].translate(_SHOWN).strip()
    if rows or cells:
        yield "\n".join(rows + (["\t".join(cells)] if cells else []))
    if tail:
        yield tail
