"""XML documents as their text, for documents read with ``xml_text``: a scientific article in JATS
(PubMed Central's ``.nxml``), a TEI edition, a DocBook manual, an RSS or Atom feed, or XML of any
other vocabulary. Its markup is text to a model, and in JATS most of an article's bytes.

The layout follows the document's structure, whatever its vocabulary: an element holding text of its
own (a paragraph, a title) is read as running text, its child elements inline (``M<italic>m</italic>
PPOX`` is ``MmPPOX``); an element holding only elements (a section, a list) is a sequence of
paragraphs, a blank line apart. Whitespace is collapsed as in HTML, but in program listings and
preformatted text. A table's row (``tr``, ``row``) is a line, its cells (``td``, ``th``, ``entry``,
``cell``) a tab apart. A ``label`` (``Figure 1``, ``2.1``) begins the paragraph it labels (one with
nothing after it, a formula's ``(1)``, is left out). Left out: comments, processing instructions, attributes, MathML, SVG and TeX
formulas, and what each known vocabulary holds apart from the text (``_PROFILES``):

- JATS / NLM (an ``article``, ``book`` or ``sub-article`` root without a namespace): of the front
  matter only the title, abstracts and keywords (not the journal's metadata, authors, affiliations,
  dates, licence); the reference list; running heads.
- TEI: of the header only the title; facsimiles; deletions, and of a ``choice`` only the corrected,
  regularised or expanded reading.
- DocBook: of an ``info`` block only the title, subtitle and abstract; index terms and remarks.
- PubMed's records (``PubmedArticle``, ``PubmedBookArticle``: rows of a baseline file, ``record_row``;
  a ``PubmedArticleSet`` document, as PubMed saves a search's results): of each article only the
  title, the abstract (each labelled section ``LABEL: text``) and the keywords.
- RSS and Atom: links, ids and channel plumbing; content that is HTML (RSS ``description`` and
  ``content:encoded``, Atom's ``type="html"``) is read as an HTML page is (``_html``).

The bytes are parsed by expat (in the encoding its declaration names; one expat lacks is decoded by
Python first, UTF-16 without a byte order mark whatever name it declares), which bounds entity
expansion; no external entity or DTD is ever fetched, and an entity no DTD here defines (``&nbsp;``
in a document that names an external DTD) is read as HTML defines it. A document using a prefix it
declares no namespace for (``<itunes:subtitle>`` in a feed) is read without namespaces, by local
names. A document that is not well-formed otherwise is a bad row naming expat's error and where.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from html.entities import html5
from typing import Any
from xml.parsers import expat

from ._html import html_text

SUFFIXES = (".xml", ".nxml", ".dbk")  # documents read as XML (a compression suffix after them too)

_MATHML, _SVG = "http://www.w3.org/1998/Math/MathML", "http://www.w3.org/2000/svg"
_TEI, _DOCBOOK = "http://www.tei-c.org/ns/1.0", "http://docbook.org/ns/docbook"
_ATOM, _RDF = "http://www.w3.org/2005/Atom", "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_SEP = "\x1f"  # between an element's namespace and its local name, as expat reports them
_PRE = frozenset({"preformat", "programlisting", "screen", "literallayout", "synopsis", "codeblock", "pre", "eg"})
_ROWS = frozenset({"tr", "row"})
_CELLS = frozenset({"td", "th", "entry", "cell"})  # in a row
_BREAKS = frozenset({"break", "lb", "br", "sbr"})  # a line break inside running text: a space
_INLINE = frozenset({  # elements that are running text wherever they are, whatever they hold
    "italic", "bold", "sub", "sup", "sc", "underline", "overline", "monospace", "roman", "sans-serif",
    "strike", "named-content", "styled-content", "xref", "ext-link", "uri", "abbrev", "email",
    "i", "b", "em", "strong", "span", "a", "u", "small", "big", "tt", "emph", "hi", "foreign",
    "emphasis", "phrase", "link", "ulink", "literal", "foreignphrase", "firstterm", "citetitle",
    "acronym", "superscript", "subscript", "command", "filename", "varname", "option",
})  # fmt: skip
_SPACES = re.compile(r"[ \t\r\n]+")  # XML's whitespace (a no-break space is text)
_WHITE = " \t\r\n"
_DECLARED = re.compile(rb"""^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


@dataclass(frozen=True)
class _Profile:
    skip: frozenset[str] = frozenset()  # elements left out, with all they hold
    only: dict[str, frozenset[str]] = field(default_factory=dict)  # element -> the only children kept
    html: frozenset[str] = frozenset()  # elements whose text is an HTML page's source
    labels: dict[str, str] = field(default_factory=dict)  # element -> its attribute put before its text ("LABEL: ")


_INFO_KEPT = frozenset({"title", "subtitle", "abstract"})
_PROFILES = {
    "jats": _Profile(
        skip=frozenset({"journal-meta", "ref-list", "alt-title", "object-id"}),
        only={"article-meta": frozenset({"title-group", "abstract", "trans-abstract", "kwd-group"}),
              "book-meta": frozenset({"book-title-group", "abstract", "trans-abstract", "kwd-group"}),
              "book-part-meta": frozenset({"title-group", "abstract", "trans-abstract", "kwd-group"})}),
    "tei": _Profile(
        skip=frozenset({"facsimile", "del"}),
        only={"teiHeader": frozenset({"fileDesc"}), "fileDesc": frozenset({"titleStmt"}),
              "titleStmt": frozenset({"title"}), "choice": frozenset({"corr", "reg", "expan"})}),
    "docbook": _Profile(
        skip=frozenset({"indexterm", "remark", "index", "titleabbrev"}),
        only={name: _INFO_KEPT for name in ("info", "articleinfo", "bookinfo", "chapterinfo", "sectioninfo",
                                            "prefaceinfo", "appendixinfo", "partinfo", "setinfo")}),
    "rss": _Profile(
        skip=frozenset({"link", "guid", "comments", "docs", "generator", "image", "cloud", "ttl", "textInput",
                        "skipHours", "skipDays", "enclosure", "id", "icon", "logo", "source"}),
        html=frozenset({"description", "encoded"})),
    "pubmed": _Profile(
        skip=frozenset({"CopyrightInformation"}),
        only={"PubmedArticleSet": frozenset({"PubmedArticle", "PubmedBookArticle"}),
              "PubmedArticle": frozenset({"MedlineCitation"}),
              "MedlineCitation": frozenset({"Article", "OtherAbstract", "KeywordList"}),
              "Article": frozenset({"ArticleTitle", "VernacularTitle", "Abstract"}),
              "PubmedBookArticle": frozenset({"BookDocument"}),
              "BookDocument": frozenset({"ArticleTitle", "VernacularTitle", "Book", "Abstract", "KeywordList"}),
              "Book": frozenset({"BookTitle"})},
        labels={"AbstractText": "Label"}),
    "generic": _Profile(),
}  # fmt: skip


def _profile(ns: str, name: str) -> str:
    """The vocabulary of a document whose root element is ``name`` in the namespace ``ns``."""
    if ns == _TEI or (not ns and name in ("TEI", "teiCorpus")):
        return "tei"
    if ns == _DOCBOOK:
        return "docbook"
    if ns in (_ATOM, _RDF) or (not ns and name == "rss"):
        return "rss"
    if not ns and name in ("PubmedArticle", "PubmedBookArticle", "PubmedArticleSet"):
        return "pubmed"  # a record of PubMed's baseline files, or PubMed's own XML export of a search
    if not ns and name in ("article", "book", "sub-article", "book-part-wrapper"):
        return "jats"  # DocBook 4's article and book have no namespace either: none of JATS' names are DocBook's
    return "generic"


@dataclass
class _Element:
    name: str
    only: frozenset[str] | None
    pre: bool
    html: bool
    role: str  # "row" (a table's), "cell" (a row's), "inline" (running text wherever it is), "label" or ""
    items: list[tuple[str, object]] = field(default_factory=list)  # ("text", str) | ("inline", str) | ("blocks", [...])
    pending: list[str] = field(default_factory=list)  # its text since its last item (expat gives it in pieces)

    def flush(self) -> None:
        if self.pending:
            self.items.append(("text", "".join(self.pending)))
            self.pending.clear()


Block = tuple[str, bool]  # a paragraph's text, and whether it is a table's row (rows are a line apart)


class _Reader:
    def __init__(self, names: frozenset[str] = frozenset()) -> None:
        self.stack: list[_Element] = []
        self.skipping = 0  # depth inside an element left out
        self.profile: _Profile | None = None
        self.blocks: list[Block] = []
        self.done = False  # the root element ended
        self.names = names  # columns of a record (``record_row``): attributes of its root, else elements' text
        self.found: dict[str, str] = {}
        self.captures: list[tuple[str, int, list[str]]] = []  # (name, depth, text) of the elements read as columns
        self.depth = 0

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        ns, _, name = tag.rpartition(_SEP)
        name = name.rpartition(":")[2]  # read without namespaces: a prefixed name's local part
        self.depth += 1
        if self.names:
            self._capture(name, attrs)
        if self.skipping:
            self.skipping += 1
            return
        if self.profile is None:
            self.profile = _PROFILES[_profile(ns, name)]
        parent = self.stack[-1] if self.stack else None
        if (ns in (_MATHML, _SVG) or name == "tex-math" or name in self.profile.skip
                or (parent is not None and parent.only is not None and name not in parent.only)):  # fmt: skip
            self.skipping = 1
            return
        if parent is not None:
            if name in _BREAKS:
                parent.pending.append(" ")
            parent.flush()
        html = name in self.profile.html or attrs.get("type") in ("html", "text/html")
        role = ("row" if name in _ROWS else "cell" if name in _CELLS and parent is not None and parent.role == "row"
                else "inline" if name in _INLINE else "label" if name == "label" else "")  # fmt: skip
        pre = name in _PRE or bool(parent and parent.pre)
        self.stack.append(_Element(name, self.profile.only.get(name), pre, html, role))
        label = attrs.get(self.profile.labels.get(name, ""), "").strip(_WHITE)
        if label:
            self.stack[-1].pending.append(f"{label}: ")

    def _capture(self, name: str, attrs: dict[str, str]) -> None:
        if self.depth == 1:  # the record's own attributes
            for key, value in attrs.items():
                column = key.rpartition(_SEP)[2].rpartition(":")[2]
                if column in self.names:
                    self.found.setdefault(column, value)
        if name in self.names and name not in self.found and all(c[0] != name for c in self.captures):
            self.captures.append((name, self.depth, []))

    def end(self, tag: str) -> None:
        if self.captures and self.captures[-1][1] == self.depth:
            name, _, pieces = self.captures.pop()
            self.found[name] = _collapsed("".join(pieces))
        self.depth -= 1
        if self.skipping:
            self.skipping -= 1
            return
        element = self.stack.pop()
        element.flush()
        result = _laid_out(element)
        if self.stack:
            self.stack[-1].items.append(result)
        else:
            self.blocks, self.done = _as_blocks(result), True

    def text(self, data: str) -> None:
        for capture in self.captures:
            capture[2].append(data)
        if not self.skipping and self.stack:
            self.stack[-1].pending.append(data)

    def entity(self, name: str, is_parameter: bool) -> None:
        if not is_parameter:
            self.text(html5.get(f"{name};", f"&{name};"))


def _collapsed(text: str) -> str:
    return _SPACES.sub(" ", text).strip(_WHITE)


def _as_blocks(item: tuple[str, object]) -> list[Block]:
    kind, value = item
    if kind == "blocks":
        return value  # type: ignore[return-value]
    text = _collapsed(str(value))
    return [(text, False)] if text else []


def _flat(item: tuple[str, object]) -> str:
    """An item as one line of running text (a table's cell, an inline element)."""
    kind, value = item
    if kind == "blocks":
        return " ".join(t for t, _ in value)  # type: ignore[attr-defined]
    return str(value)


def _mixed(items: list[tuple[str, object]]) -> bool:
    """Whether an element's own text makes it running text: text other than whitespace, or a space
    between two of its elements on one line (``<italic>E. coli</italic> <bold>growth</bold>``), not the
    indentation of elements a line each."""
    for i, (kind, value) in enumerate(items):
        if kind != "text":
            continue
        text = str(value)
        if text.strip(_WHITE) or (text and "\n" not in text and "\r" not in text and 0 < i < len(items) - 1):
            return True
    return False


def _laid_out(element: _Element) -> tuple[str, object]:
    """An element's text: ("inline", running text) for its parent to place, or ("blocks", paragraphs)."""
    items = element.items
    if element.html:
        text = html_text("".join(str(v) for k, v in items if k != "blocks")).strip()
        return "blocks", [(text, False)] if text else []
    if element.pre:
        text = "".join(_flat(item) if item[0] == "blocks" else str(item[1]) for item in items).strip("\r\n")
        return "blocks", [(text, False)] if text.strip() else []
    if element.role == "row":
        cells = [_collapsed(_flat(item)) for item in items if item[0] != "text"]
        return "blocks", [("\t".join(cells), True)] if any(cells) else []
    if element.role in ("cell", "inline"):  # running text, what it holds side by side
        return "inline", _flat(_structure(items, True))
    if element.role == "label":  # "Figure 1", "2.1": put before the paragraph that follows it
        return "label", _collapsed(_flat(_structure(items, True)))
    return _structure(items, _mixed(items))


def _structure(items: list[tuple[str, object]], running: bool) -> tuple[str, object]:
    held = [item for item in items if item[0] != "text"]
    if running:  # running text, its elements in it; a list or a table inside cuts it around itself
        blocks: list[Block] = []
        run: list[str] = []
        for kind, value in items:
            if kind == "blocks" and value:
                blocks.extend(_as_blocks(("inline", "".join(run))))
                blocks.extend(value)  # type: ignore[arg-type]
                run = []
            elif kind != "blocks":
                run.append(f"{value} " if kind == "label" else str(value))
        if not blocks:
            return "inline", "".join(run)
        blocks.extend(_as_blocks(("inline", "".join(run))))
        return "blocks", blocks
    if len(held) == 1 and held[0][0] == "inline":  # <sub><italic>R</italic></sub>: its one element's text
        return held[0]
    blocks = []
    label = ""  # a label waiting for its paragraph (a label with none after it, a formula's "(1)", is left out)
    for item in held:
        if item[0] == "label":
            label = f"{label} {item[1]}".strip(_WHITE)
            continue
        more = _as_blocks(item)
        if label and more:
            more = [(f"{label} {more[0][0]}", more[0][1]), *more[1:]]
            label = ""
        blocks.extend(more)
    return ("blocks", blocks) if blocks else ("inline", "")  # nothing: nothing to cut running text around


def _joined(blocks: list[Block]) -> str:
    out: list[str] = []
    for i, (text, row) in enumerate(blocks):
        if i:
            out.append("\n" if row and blocks[i - 1][1] else "\n\n")
        out.append(text)
    return "".join(out)


def _parse(data: bytes, encoding: str | None, namespaces: bool = True, reader: _Reader | None = None) -> _Reader:
    reader = reader if reader is not None else _Reader()
    parser = expat.ParserCreate(encoding, namespace_separator=_SEP if namespaces else None)
    parser.UseForeignDTD(True)  # an entity no DTD here declares is skipped (to ``entity``), not an error
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    parser.SkippedEntityHandler = reader.entity
    parser.Parse(data, True)
    return reader


def record_row(raw: bytes, names: frozenset[str] = frozenset()) -> tuple[dict[str, Any], str | None]:
    """One record of an XML file read a row per record (``raw``: UTF-8, from the line that opens it up to the
    next record's): ``text``, the record laid out as ``xml_text`` lays out a document (in its vocabulary's
    profile: PubMed's ``PubmedArticle``, a JATS ``article`` ...), and the columns ``names``: each an
    attribute of the record's element, else the text of the first element of that name in it
    (whitespace collapsed), None where it has neither. What follows the record's element (the file's
    closing tag after its last record) is not read. Or why it is not a record (then the columns read
    before what made it so)."""
    for namespaces in (True, False):
        reader = _Reader(names)
        try:
            _parse(raw, "utf-8", namespaces, reader)
        except expat.ExpatError as e:
            if namespaces and _error(e, expat.errors.XML_ERROR_UNBOUND_PREFIX):
                continue  # its prefixes were declared on the file's root, which a record is read without
            if not reader.done:  # its columns read before the error (its id, mostly) kept
                return {**dict.fromkeys(names), **reader.found}, _malformed(e)
        break
    return {**dict.fromkeys(names), **reader.found, "text": _joined(reader.blocks)}, None


def records_opening(tags: tuple[str, ...]) -> re.Pattern[bytes]:
    """Matches a line that opens one of the records ``tags`` (elements' names, a prefix allowed before
    them), after its indentation: ``  <PubmedArticle>``."""
    names = b"|".join(re.escape(t.encode()) for t in tags)
    return re.compile(rb"^[ \t]*<(?:[A-Za-z_][\w.-]*:)?(?:" + names + rb")(?=[\s/>])", re.MULTILINE)


def _error(e: expat.ExpatError, message: str) -> bool:
    return e.code == expat.errors.codes[message]


def _malformed(e: expat.ExpatError) -> str:
    return f"not well-formed XML ({expat.errors.messages[e.code]}: line {e.lineno}, column {e.offset + 1})"


def xml_text(data: bytes) -> tuple[str | None, str | None]:
    """An XML document's text (as the module says), or why it has none."""
    encoding: str | None = None
    namespaces = True
    while True:
        try:
            return _joined(_parse(data, encoding, namespaces).blocks), None
        except expat.ExpatError as e:
            if namespaces and _error(e, expat.errors.XML_ERROR_UNBOUND_PREFIX):
                namespaces = False  # a prefix no namespace was declared for: read by local names
                continue
            if encoding is not None or not _error(e, expat.errors.XML_ERROR_UNKNOWN_ENCODING):
                return None, _malformed(e)
        except (ValueError, LookupError):  # a multi-byte encoding expat cannot take; a name Python lacks
            if encoding is not None:
                raise
        name = _sniffed(data) or declared_encoding(data) or "?"
        try:
            codec = codecs.lookup(name)
        except LookupError:
            return None, f"an XML document in an encoding Python does not know ({name!r})"
        data, encoding = data.decode(codec.name, "replace").encode("utf-8"), "utf-8"  # then read as UTF-8


def _sniffed(data: bytes) -> str | None:
    """UTF-16 without a byte order mark, as XML's autodetection knows it (whatever name it declares)."""
    return "utf-16-be" if data.startswith(b"\x00<\x00?") else "utf-16-le" if data.startswith(b"<\x00?\x00") else None


def declared_encoding(data: bytes) -> str | None:
    """The encoding an XML document's declaration names (``data``: its first bytes), if it names one."""
    declared = _DECLARED.match(data[:1024])
    return declared.group(1).decode("ascii") if declared else None
