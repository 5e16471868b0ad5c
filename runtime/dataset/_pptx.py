"""The text of a PowerPoint deck (``.pptx``, and PowerPoint 97-2003's ``.ppt`` through ``_ppt``), for
documents read with ``pptx_text``: a zip of XML, no text to a model. Read with the standard library
(``zipfile``, ``ElementTree``).

Kept, slide by slide in the deck's order (hidden slides too, as they are numbered): each shape's text
(its paragraphs a line each, the shapes a blank line apart, so that ``chunk_tokens`` windows end at
them), grouped shapes, tables a row a line with their cells a tab apart, SmartArt diagrams' items a
line each, charts as their title, axis titles and data (``_chart_text``), then the slide's speaker
notes. Slides are separated by a form feed on a line of its own,
as a PDF's pages are, so that a window's ``chunk_page`` is the slide it begins on. Left out: the
slide number, date and footer placeholders, the layouts' and masters' text, pictures, and the copy
PowerPoint keeps of newer content for old readers.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.etree import ElementTree

from ._ole import OLE2
from ._pdf_worker import PAGE_BREAK
from ._ppt import ppt_text
from ._xlsx import NumberFormat, format_kind, number_text
from ._zipped import Parts, Unreadable

# documents read as PowerPoint decks (a compression suffix after them too): decks, macro-enabled ones and
# shows, of PowerPoint 2007 on and of PowerPoint 97-2003 (the same formats)
SUFFIXES = (".pptx", ".pptm", ".ppsx", ".ppsm", ".ppt", ".pps")

_P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_DGM = "{http://schemas.openxmlformats.org/drawingml/2006/diagram}"
_C = "{http://schemas.openxmlformats.org/drawingml/2006/chart}"
_NOTES = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/notesSlide"
_RUNS = {_A + "t": None, _A + "br": "\n", _A + "tab": "\t"}
_FURNITURE = frozenset({"sldNum", "dt", "ftr", "hdr", "sldImg"})  # placeholders of every slide, not its content
_SKIP = frozenset({_MC + "Fallback", _P + "nvSpPr", _P + "nvGrpSpPr", _P + "spPr", _P + "grpSpPr", _A + "bodyPr",
                   _A + "lstStyle", _A + "pPr", _A + "rPr", _A + "endParaRPr", _A + "tcPr", _A + "tblPr"})  # fmt: skip


def pptx_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the ``.pptx`` ``data``, its slides separated by ``PAGE_BREAK``; or why it has none. A
    PowerPoint 97-2003 deck (an OLE2 file, as a ``.ppt`` is; an encrypted ``.pptx`` is one too) is read by ``_ppt``."""
    if data.startswith(OLE2):
        return ppt_text(data)
    try:
        parts = Parts(data, "not a PowerPoint deck: neither a zip, as a .pptx is, nor an OLE2 file, as a .ppt is "
                            "(libreoffice --convert-to pptx converts other formats)")  # fmt: skip
        if not parts.has("ppt/presentation.xml"):
            return None, "a zip without ppt/presentation.xml: not a PowerPoint deck"
        slides = []
        for name in _slides(parts):
            text = _shapes_text(parts, name)
            notes = _related(parts, name, _NOTES)
            if notes is not None:  # a notes page: the slide's picture, its notes, its number
                text = "\n\n".join(t for t in (text, _shapes_text(parts, notes)) if t)
            slides.append(text)
    except Unreadable as e:
        return None, str(e)
    if not slides:
        return "", None  # a deck without slides: an empty text, as an empty file
    if not any(slides):
        return None, "no text on any slide (pictures only?)"
    return PAGE_BREAK.join(slides), None


def _slides(parts: Parts) -> list[str]:
    """The slides' part names in the deck's order."""
    rels = parts.rels("ppt/presentation.xml")
    order = parts.xml("ppt/presentation.xml").find(f"{_P}sldIdLst")
    names = [rels[s.get(_R + "id", "")][1] for s in (order if order is not None else ()) if s.get(_R + "id") in rels]
    return [n for n in names if parts.has(n)]


def _related(parts: Parts, name: str, kind: str) -> str | None:
    return next((target for t, target in parts.rels(name).values() if t == kind and parts.has(target)), None)


def _shapes_text(parts: Parts, name: str) -> str:
    """The text of the shapes of a slide (or notes page) ``name``, a blank line between shapes."""
    tree = parts.xml(name).find(f"{_P}cSld/{_P}spTree")
    blocks: list[str] = []
    if tree is not None:
        rels = parts.rels(name)
        _shapes(tree, blocks, lambda rid: rels.get(rid, ("", ""))[1], parts)
    return "\n\n".join(b for b in blocks if b)


def _shapes(parent: ElementTree.Element, out: list[str], target: Callable[[str], str], parts: Parts) -> None:
    for el in parent:
        tag = el.tag
        if tag == _P + "sp":
            ph = el.find(f"{_P}nvSpPr/{_P}nvPr/{_P}ph")
            if ph is not None and ph.get("type") in _FURNITURE:
                continue
            body = el.find(_P + "txBody")
            if body is not None:
                out.append(_paragraphs(body))
        elif tag == _A + "tbl":
            rows = ["\t".join(_paragraphs(tc.find(_A + "txBody")).replace("\n", " ") for tc in tr.findall(_A + "tc"))
                    for tr in el.findall(_A + "tr")]  # fmt: skip
            out.append("\n".join(r for r in rows if r.strip()))
        elif tag == _DGM + "relIds":  # a SmartArt diagram: its items are in a part of their own
            data = target(el.get(_R + "dm", ""))
            if data and parts.has(data):
                out.append(_diagram_text(parts.xml(data)))
        elif tag == _C + "chart":  # a chart: its title, labels and data are in a part of their own
            chart = target(el.get(_R + "id", ""))
            if chart and parts.has(chart):
                out.append(_chart_text(parts.xml(chart)))
        elif tag not in _SKIP:  # groups, frames, alternate content
            _shapes(el, out, target, parts)


def _diagram_text(model: ElementTree.Element) -> str:
    """A SmartArt diagram's items (its data model's points of the type "node"), a line each."""
    items = (p.find(_DGM + "t") for p in model.iter(_DGM + "pt") if p.get("type", "node") == "node")
    return "\n".join(t for t in (_paragraphs(i).replace("\n", " ").strip() for i in items) if t)


def _chart_text(space: ElementTree.Element) -> str:
    """A chart's text as its reader sees it: its title, its axes' titles, a line each, then its data
    as a table, the categories a tab apart on the first line and each series a line of its name and
    values (as the chart's cache holds them, in their number format), as a spreadsheet of the data
    would show them. Several plots of one chart (a bar and a line) are a table each."""
    chart = space.find(_C + "chart")
    if chart is None:
        return ""
    lines = [_title(chart.find(_C + "title"))]
    plot = chart.find(_C + "plotArea")
    for el in plot if plot is not None else ():
        if el.tag in (_C + "catAx", _C + "valAx", _C + "dateAx", _C + "serAx"):
            lines.append(_title(el.find(_C + "title")))
    for el in plot if plot is not None else ():
        series = el.findall(_C + "ser")
        if not series:
            continue
        table: list[list[str]] = []
        for ser in series:
            cats = _cached(ser.find(_C + "cat")) or _cached(ser.find(_C + "xVal"))
            if cats and not table:
                table.append(["", *cats])
            table.append([" ".join(_cached(ser.find(_C + "tx"))), *(_cached(ser.find(_C + "val"))
                                                                     or _cached(ser.find(_C + "yVal")))])  # fmt: skip
        lines += ["\t".join(row).rstrip("\t") for row in table]
    return "\n".join(line for line in lines if line.strip())


def _title(title: ElementTree.Element | None) -> str:
    """A chart's or an axis's title: its rich text, or the cell text it refers to."""
    if title is None:
        return ""
    rich = title.find(f"{_C}tx/{_C}rich")
    return _paragraphs(rich).replace("\n", " ") if rich is not None else " ".join(_cached(title.find(_C + "tx")))


def _cached(ref: ElementTree.Element | None) -> list[str]:
    """The values a chart's reference (``c:tx``, ``c:cat``, ``c:val`` ...) holds in its cache, by
    index (a point left out is empty): strings as they are, numbers in the cache's number format; of
    categories on several levels, the innermost."""
    if ref is None:
        return []
    cache = next((c for c in ref.iter() if c.tag in (_C + "strCache", _C + "numCache", _C + "strLit", _C + "numLit",
                                                     _C + "lvl")), None)  # fmt: skip
    if cache is None:
        value = ref.findtext(_C + "v")  # a series name given as it is
        return [value] if value else []
    code = cache.findtext(_C + "formatCode") if cache.tag in (_C + "numCache", _C + "numLit") else None
    kind = format_kind(0, code) if code is not None else None
    count = cache.find(_C + "ptCount")
    points = cache.findall(_C + "pt")
    n = int(count.get("val", "0")) if count is not None and (count.get("val") or "").isdigit() else len(points)
    out = [""] * max(n, len(points))
    for k, pt in enumerate(points):
        at = int(pt.get("idx", k)) if (pt.get("idx") or "").isdigit() else k
        if at < len(out):
            out[at] = _shown(pt.findtext(_C + "v") or "", kind)
    return out


def _shown(value: str, kind: str | NumberFormat | None) -> str:
    """A cached point: a string as it is (on one line), a number in its format (``kind``)."""
    if kind is None:
        return value.replace("\t", " ").replace("\n", " ")
    try:
        return number_text(float(value), kind, None)
    except ValueError:
        return value


def _paragraphs(body: ElementTree.Element | None) -> str:
    """A text body's paragraphs, a line each."""
    if body is None:
        return ""
    lines = []
    for p in body.iter(_A + "p"):
        out: list[str] = []
        _runs(p, out)
        lines.append("".join(out).strip())
    return "\n".join(lines).strip("\n")


def _runs(el: ElementTree.Element, out: list[str]) -> None:
    for child in el:
        tag = child.tag
        if tag in _RUNS:
            out.append(_RUNS[tag] or child.text or "")
        elif tag not in _SKIP:  # runs, fields (their text is kept), text in alternate content
            _runs(child, out)
