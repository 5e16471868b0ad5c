"""The text of a PowerPoint 97-2003 deck (``.ppt``: records in an OLE2 compound file), for documents
read with ``pptx_text``, shown as ``_pptx`` shows a ``.pptx``: slide by slide in the deck's order
(hidden slides too), each shape's paragraphs a line each, the shapes a blank line apart, grouped
shapes, tables a row a line with their cells a tab apart, then the slide's speaker notes; slides
separated by a form feed on a line of its own. Left out: the slide number, date, header and footer
placeholders (and the fields in a text that stand for them), the masters' text and pictures.

The compound file is read with olefile (the ``dataset`` extra); the records as [MS-PPT] lays them
out: the current edit (``Current User``) leads to the persist directory, which places the document,
its slide list (``SlideListWithText``: the deck's order, and the text PowerPoint keeps there for
placeholders) and each slide's and notes page's drawing, whose shapes hold their text or point into
the slide list.

A password-protected deck and an OLE2 file holding no PowerPoint deck are bad rows saying which.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from ._ole import Unreadable, ole_text, streams_of
from ._pdf_worker import PAGE_BREAK

_PLAIN, _ENCRYPTED = 0xE391C05F, 0xF3D1C4DF  # the current user's header token
# record types
_DOCUMENT, _SLIDE, _SLIDE_ATOM, _NOTES, _SLIDE_LIST, _SLIDE_PERSIST = 0x03E8, 0x03EE, 0x03EF, 0x03F0, 0x0FF0, 0x03F3
_USER_EDIT, _PERSIST_DIRECTORY, _DRAWING = 0x0FF5, 0x1772, 0x040C
_TEXT_HEADER, _TEXT_CHARS, _TEXT_BYTES, _OUTLINE_TEXT_REF = 0x0F9F, 0x0FA0, 0x0FA8, 0x0F9E
_GROUP, _SHAPE, _CLIENT_TEXT, _CLIENT_DATA, _CHILD_ANCHOR, _PLACEHOLDER = 0xF003, 0xF004, 0xF00D, 0xF011, 0xF00F, 0x0BC3
_TERTIARY_OPTIONS, _TABLE_PROPERTIES = 0xF122, 0x03A0
# a field's character in a text: slide number, dates and times, header, footer
_FIELDS = frozenset({0x0FD8, 0x0FF7, 0x0FF8, 0x0FF9, 0x0FFA, 0x0FFB, 0x1015})
# placeholders of every slide or notes page, not its content: the notes page's picture of the slide,
# date, slide number, footer, header
_FURNITURE = frozenset({0x05, 0x07, 0x08, 0x09, 0x0A, 0x0B})
_SHOWN = str.maketrans({"\r": "\n", "\x0b": "\n"})  # paragraphs and line breaks a line each


def ppt_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the ``.ppt`` ``data``, its slides separated by ``PAGE_BREAK``; or why it has none."""
    return ole_text(data, "a PowerPoint 97-2003 deck (.ppt)", "PowerPoint 97-2003 deck", _deck_text)


def _deck_text(ole: Any) -> str:  # an olefile.OleFileIO
    slides = _slides(ole)
    if slides and not any(slides):
        raise Unreadable("no text on any slide (pictures only?)")
    return PAGE_BREAK.join(slides)  # a deck without slides: an empty text, as an empty file


def _slides(ole: Any) -> list[str]:  # an olefile.OleFileIO
    """Each slide's text, then its notes', in the deck's order."""
    streams = streams_of(ole, "PowerPoint Document", "PowerPoint deck", ".pptx")
    if "Current User" not in streams:
        raise Unreadable("a PowerPoint deck without its Current User stream: PowerPoint 95 or older? save it as .pptx")
    user = ole.openstream("Current User").read()
    token, edit = struct.unpack_from("<II", user, 12)
    if token == _ENCRYPTED:
        raise Unreadable("a password-protected .ppt deck: save it without a password to embed it")
    if token != _PLAIN:
        raise Unreadable(f"not a PowerPoint 97-2003 deck (its current user's token is {token:#010x})")
    deck = _Deck(ole.openstream("PowerPoint Document").read(), edit)
    return [deck.slide_text(slide) for slide in deck.slides]


class _Deck:
    def __init__(self, stream: bytes, edit: int) -> None:
        self.stream = stream
        self.persist, document = _persist_directory(stream, edit)
        self.slides: list[tuple[int, list[str]]] = []  # each slide's persist id, and its texts in the slide list
        notes: dict[int, int] = {}  # a notes page's id -> its persist id
        for rec in _children(stream, self._at(document)):
            if rec.type == _SLIDE_LIST and rec.instance == 0:
                self.slides = [(ref, texts) for ref, _, texts in self._slide_list_ids(rec)]
            elif rec.type == _SLIDE_LIST and rec.instance == 2:
                notes = {slide_id: ref for ref, slide_id, _ in self._slide_list_ids(rec)}
        self.notes = notes

    def _at(self, ref: int) -> int:
        if ref not in self.persist:
            raise Unreadable(f"a PowerPoint deck whose record {ref} is missing from its persist directory")
        return self.persist[ref]

    def _slide_list_ids(self, rec: _Record) -> Iterator[tuple[int, int, list[str]]]:
        """(persist id, slide id, the texts kept for it) for each slide a slide list names."""
        current: tuple[int, int, list[str]] | None = None
        for child in _children(self.stream, rec.at):
            if child.type == _SLIDE_PERSIST:
                if current is not None:
                    yield current
                ref, _, _, slide_id = struct.unpack_from("<4I", self.stream, child.body)
                current = (ref, slide_id, [])
            elif current is not None and child.type == _TEXT_HEADER:
                current[2].append("")
            elif current is not None and child.type in (_TEXT_CHARS, _TEXT_BYTES) and current[2]:
                current[2][-1] = self._chars(child)
        if current is not None:
            yield current

    def _chars(self, rec: _Record) -> str:
        raw = self.stream[rec.body : rec.end]
        return raw.decode("utf-16-le", "replace") if rec.type == _TEXT_CHARS else raw.decode("latin-1")

    def slide_text(self, slide: tuple[int, list[str]]) -> str:
        """A slide's shapes' text, then its notes' (shapes a blank line apart)."""
        ref, texts = slide
        blocks: list[str] = []
        notes_id = None
        for rec in _children(self.stream, self._at(ref)):
            if rec.type == _SLIDE_ATOM:
                notes_id = struct.unpack_from("<I", self.stream, rec.body + 16)[0]  # after geom, types, master
            elif rec.type == _DRAWING:
                blocks += self._drawing(rec, texts)
        if notes_id and notes_id in self.notes:
            for rec in _children(self.stream, self._at(self.notes[notes_id])):
                if rec.type == _DRAWING:
                    blocks += self._drawing(rec, [])
        return "\n\n".join(b for b in blocks if b)

    def _drawing(self, rec: _Record, texts: list[str]) -> list[str]:
        """The text of a drawing's shapes, a block each, in the drawing's order."""
        out: list[str] = []
        for child in _walk(self.stream, rec):
            if child.type == _GROUP:
                self._group(child, texts, out)
                break  # the drawing's top group holds every shape
        return out

    def _group(self, rec: _Record, texts: list[str], out: list[str]) -> None:
        children = list(_children(self.stream, rec.at))
        if children and children[0].type == _SHAPE and self._is_table(children[0]):
            out.append(self._table(children[1:], texts))
            return
        for child in children:
            if child.type == _GROUP:
                self._group(child, texts, out)
            elif child.type == _SHAPE:
                text = self._shape(child, texts)[0]
                if text:
                    out.append(text)

    def _is_table(self, shape: _Record) -> bool:
        """Whether a group's own shape says the group is a table (its ``tableProperties``)."""
        for rec in _children(self.stream, shape.at):
            if rec.type == _TERTIARY_OPTIONS:
                for k in range(rec.instance):  # the options: 6 bytes each, the property id in the low 14 bits
                    if struct.unpack_from("<H", self.stream, rec.body + 6 * k)[0] & 0x3FFF == _TABLE_PROPERTIES:
                        return True
        return False

    def _table(self, cells: list[_Record], texts: list[str]) -> str:
        """A table's cells (shapes placed in the group) as rows, top to bottom, cells left to right."""
        placed: dict[int, list[tuple[int, str]]] = {}
        for cell in cells:
            if cell.type != _SHAPE:
                continue
            text, anchor = self._shape(cell, texts)
            if text is not None and anchor is not None:
                placed.setdefault(anchor[1], []).append((anchor[0], text.replace("\n", " ")))
        rows = ["\t".join(t for _, t in sorted(placed[top])) for top in sorted(placed)]
        return "\n".join(r for r in rows if r.strip())

    def _shape(self, rec: _Record, texts: list[str]) -> tuple[str | None, tuple[int, int] | None]:
        """A shape's text (None: it has none, or it is a placeholder every slide has) and its place
        in its group (left, top), if it has one."""
        text = None
        anchor = None
        fields: list[int] = []
        for child in _children(self.stream, rec.at):
            if child.type == _CLIENT_DATA:
                for atom in _children(self.stream, child.at):
                    if atom.type == _PLACEHOLDER and self.stream[atom.body + 4] in _FURNITURE:
                        return None, None
            elif child.type == _CHILD_ANCHOR:
                left, top = struct.unpack_from("<2i", self.stream, child.body)
                anchor = (left, top)
            elif child.type == _CLIENT_TEXT:
                for atom in _children(self.stream, child.at):
                    if atom.type == _TEXT_HEADER:
                        text = ""
                    elif atom.type in (_TEXT_CHARS, _TEXT_BYTES):
                        text = self._chars(atom)
                    elif atom.type == _OUTLINE_TEXT_REF:
                        index = struct.unpack_from("<I", self.stream, atom.body)[0]
                        text = texts[index] if index < len(texts) else ""
                    elif atom.type in _FIELDS:
                        fields.append(struct.unpack_from("<I", self.stream, atom.body)[0])
        if text is not None and fields:  # a field's character (a '*') where the slide number or date goes
            text = "".join(c for i, c in enumerate(text) if i not in fields)
        return (None if text is None else text.translate(_SHOWN).strip()), anchor


class _Record:
    __slots__ = ("at", "body", "end", "instance", "type", "version")

    def __init__(self, stream: bytes, at: int) -> None:
        head, self.type, size = struct.unpack_from("<HHI", stream, at)
        self.version, self.instance = head & 0xF, head >> 4
        self.at, self.body, self.end = at, at + 8, at + 8 + size
        if self.end > len(stream):
            raise Unreadable(f"a PowerPoint deck whose record at byte {at} runs past its stream")


def _children(stream: bytes, at: int) -> Iterator[_Record]:
    """The records in the container at ``at``."""
    parent = _Record(stream, at)
    if parent.version != 0xF:
        return
    i = parent.body
    while i + 8 <= parent.end:
        rec = _Record(stream, i)
        yield rec
        i = rec.end


def _walk(stream: bytes, rec: _Record) -> Iterator[_Record]:
    """The records in ``rec``, depth first."""
    for child in _children(stream, rec.at):
        yield child
        if child.version == 0xF:
            yield from _walk(stream, child)


def _persist_directory(stream: bytes, edit: int) -> tuple[dict[int, int], int]:
    """Each persist id's record offset, the newest edit's over older ones, and the document's id."""
    edits = []
    seen: set[int] = set()
    while edit and edit not in seen:
        seen.add(edit)
        rec = _Record(stream, edit)
        if rec.type != _USER_EDIT:
            raise Unreadable(f"a PowerPoint deck whose edit at byte {edit} is not where its header says")
        last, directory, document = struct.unpack_from("<3I", stream, rec.body + 8)
        edits.append((directory, document))
        edit = last
    if not edits:
        raise Unreadable("a PowerPoint deck without an edit record")
    persist: dict[int, int] = {}
    for directory, _ in reversed(edits):  # the oldest first: later edits replace what they changed
        rec = _Record(stream, directory)
        i = rec.body
        while i + 4 <= rec.end:
            entry = struct.unpack_from("<I", stream, i)[0]
            first, count = entry & 0xFFFFF, entry >> 20
            offsets = struct.unpack_from(f"<{count}I", stream, i + 4)
            persist.update(zip(range(first, first + count), offsets, strict=True))
            i += 4 + 4 * count
    return persist, edits[0][1]
