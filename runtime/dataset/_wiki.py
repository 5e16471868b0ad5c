"""Wikitext (MediaWiki's markup: Wikipedia, Wiktionary, Fandom and company wikis) read as the text a
reader of the page sees, for jobs that ask for it (``wiki_text``): documents named ``*.wiki``, rows
whose text is wikitext, and the pages of a MediaWiki XML export (Wikipedia's ``pages-articles`` dumps,
``Special:Export``) read a row per article.

Parsed with mwparserfromhell (the ``dataset`` extra). Kept: the text of paragraphs, lists (an item a
line), headings (a paragraph each), table rows (a line each, cells a tab apart), links' shown text,
bold and italic text, preformatted text, poems and code a line a line, ``nowiki`` text, HTML entities
decoded. Left out: templates
(infoboxes, navboxes, citation templates, parser functions; their output is MediaWiki's to compute),
references (``<ref>``) and the reference list, images and other files, categories, interlanguage
links, comments, formulas (``<math>``), galleries, magic words, and the sections a reader of the text
does not read as the article ("References", "External links", "See also", "Further reading", "Notes"
..., by their titles on the largest Wikipedias: "Einzelnachweise", "Liens externes", "脚注" ...). A paragraph ends in a blank line, as ``chunk_tokens`` windows want.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from typing import Any
from xml.parsers import expat

SUFFIXES = (".wiki", ".mediawiki", ".wikitext")  # documents read as wikitext (a compression suffix after them too)

# a MediaWiki export's page element, and what makes a page an article: the main namespace, not a redirect
PAGE = "page"
_NS = re.compile(rb"<ns>\s*(-?\d+)\s*</ns>")
_REDIRECT = re.compile(rb"<redirect[\s/>]")
_REVISION = b"<revision"
RECORD_HEAD = 64 << 10  # a page is an article or not by its first so many bytes (its title, namespace, redirect)
SITE_HEAD = 1 << 20  # a dump's <siteinfo> (its namespaces' names, its address) is in its first so many bytes

# tags whose content is not the article's text
_DROPPED_TAGS = frozenset({
    "ref", "references", "gallery", "math", "chem", "ce", "score", "timeline", "imagemap", "graph", "mapframe",
    "maplink", "templatedata", "templatestyles", "noinclude", "includeonly", "section", "indicator", "categorytree",
    "inputbox", "hiero", "charinsert", "langconvert", "syntaxhighlight-old",
})  # fmt: skip
_ROW_TAGS = frozenset({"tr"})
_ITEM_TAGS = frozenset({"li", "dt", "dd"})
_LINES_KEPT = frozenset({"pre", "poem", "syntaxhighlight", "source"})  # each line of its text a line
_BLOCK_TAGS = frozenset({"p", "div", "blockquote", "center", "ul", "ol", "dl", *_LINES_KEPT})
_CELL_TAGS = frozenset({"td", "th"})
_BREAK_TAGS = frozenset({"br", "hr"})
# templates that show their first parameter as text, their second, or a quantity and its unit ({{convert|5|km}})
_SHOWN = frozenset({
    "nowrap", "nobr", "small", "smaller", "big", "larger", "sic", "em", "strong", "abbr", "visible anchor", "vanchor",
    "nihongo", "lang-x", "script", "my", "noitalic", "not a typo", "proper name", "linktext", "keypress", "tooltip",
})  # fmt: skip
_TRANSLITERATION = frozenset({"transl", "transliteration"})
_QUANTITY = frozenset({"convert", "cvt"})
_RANGE_WORDS = frozenset({"to", "-", "–", "and", "or", "x", "by", "+", "&"})
# sections (level 2) that hold the article's apparatus, not its text: left out with their subsections;
# by their titles on the largest Wikipedias (their manuals of style, the titles their articles use)
_APPARATUS = frozenset({
    # English
    "references", "external links", "see also", "further reading", "notes", "footnotes", "citations", "sources",
    "notes and references", "references and notes", "works cited", "reference list", "bibliography and references",
    # German, French, Spanish, Italian, Portuguese, Dutch
    "einzelnachweise", "weblinks", "literatur", "siehe auch", "anmerkungen", "belege", "quellen", "fußnoten",
    "notes et références", "références", "liens externes", "voir aussi", "bibliographie", "articles connexes",
    "referencias", "enlaces externos", "véase también", "bibliografía", "notas", "notas y referencias",
    "note", "bibliografia", "voci correlate", "altri progetti", "collegamenti esterni",
    "referências", "ligações externas", "ver também", "leitura adicional",
    "referenties", "externe links", "zie ook", "bronnen", "noten", "literatuur", "bronvermelding",
    # Polish, Czech, Swedish, Russian, Ukrainian, Turkish, Indonesian, Vietnamese
    "przypisy", "linki zewnętrzne", "zobacz też", "uwagi", "reference", "externí odkazy", "související články",
    "literatura", "poznámky", "referenser", "externa länkar", "se även", "källor", "noter", "vidare läsning",
    "примечания", "литература", "ссылки", "см. также", "источники", "примітки", "джерела", "посилання",
    "див. також", "література", "kaynakça", "dış bağlantılar", "ayrıca bakınız", "notlar", "referensi",
    "pranala luar", "lihat pula", "lihat juga", "catatan", "bacaan lanjutan", "tham khảo", "liên kết ngoài",
    "xem thêm", "chú thích",
    # Japanese, Chinese (simplified and traditional), Korean, Arabic, Persian
    "脚注", "参考文献", "外部リンク", "関連項目", "注釈", "出典", "參考文獻", "外部链接", "外部連結", "参见", "參見",
    "注释", "註釋", "参考资料", "參考資料", "延伸阅读", "延伸閱讀", "각주", "참고 문헌", "참고문헌", "외부 링크",
    "같이 보기", "مراجع", "المراجع", "وصلات خارجية", "انظر أيضا", "انظر أيضًا", "مصادر", "منابع", "پیوند به بیرون",
    "جستارهای وابسته", "پانویس",
})  # fmt: skip
# the canonical names of the namespaces whose links are not text (every wiki takes them beside its own)
_FILE_NAMES = ("file", "image", "media")
_CATEGORY_NAMES = ("category",)
_INTERLANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]+)*")
_MAGIC = re.compile(r"__[A-Z]+__")
# Unicode noncharacters (dropped from the page's own text) mark the layout until the end: a paragraph's
# end, a line's; a run of them is one break, a paragraph's if any is
_PARA, _LINE = "\ufdd3", "\ufdd4"
_BREAKS = re.compile(f"[ \t]*[{_PARA}{_LINE}][ \t{_PARA}{_LINE}\n]*")
# references and comments, cut out before parsing (as MediaWiki's preprocessor does): they are a third
# of an article's wikitext, and the parser's tree of their citation templates most of its time. A
# comment alone on its line takes the line with it.
# (each match stops at the first place it could end, so that a page of unclosed tags costs linear time)
_REFS = re.compile(r"<ref\b[^>/]*(?:/(?!>)[^>/]*)*/>|<ref\b[^>]*>[^<]*(?:<(?!/?ref\b)[^<]*)*</ref\s*>", re.I)
_COMMENT_LINES = re.compile(r"\n[ \t]*<!--(?:[^-]|-(?!->))*-->[ \t]*(?=\n)")
_COMMENTS = re.compile(r"<!--.*?(?:-->|$)", re.S)
_MARKS = str.maketrans(dict.fromkeys(map(ord, _PARA + _LINE)))
_NEWLINES = re.compile(r"[ \t]*\n(?:[ \t]*\n)*[ \t]*")
# an HTML tag the parser left as text (not closed, or closed without being opened): not shown
_STRAY_TAGS = re.compile(r"</?(?:div|span|small|big|center|font|br|p|sup|sub|s|u|b|i|tt|code|blockquote|ref|references|"
                         r"poem|nowiki|onlyinclude|includeonly|noinclude)\b[^<>]*>", re.IGNORECASE)
_QUOTES = re.compile(r"'{2,}")  # bold ('''), italic ('')
# what left-out templates leave in the text: "(; born 1900)", "(Greek: X, )", "( )", "word ."
_PAREN_OPEN = re.compile(r"\([ \t]*[,;:][ \t]*")
_PAREN_CLOSE = re.compile(r"[ \t]*[,;:][ \t]*\)")
_EMPTY_PARENS = re.compile(r"[ \t]?\([ \t]*\)")
_SPACE_RUN = re.compile(r"[ \t]{2,}")
_SPACE_PUNCT = re.compile(r"[ \t]+(?=[,.;:!?](?:\s|$))")
_BLANKS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
# siteinfo's names of the file (6), media (-2) and category (14) namespaces
_SITE_NS = re.compile(rb'<namespace key="(-2|6|14)"[^>]*>([^<]+)</namespace>')
_SITE_BASE = re.compile(rb"<base>([^<]+)</base>")


def check_installed() -> None:
    """An ``InputError`` saying how to install mwparserfromhell where it is not."""
    from ._pdf import _installed

    _installed("mwparserfromhell", "wiki_text (--wiki-text) reads wikitext with mwparserfromhell", "dataset")


class Site:
    """What a wiki's pages are read with: the prefixes of links that are not text (its files' and
    categories' namespaces, by their canonical English names and, from a dump's ``<siteinfo>``, the
    wiki's own), and where its pages are on the web (``<base>``: its main page's address)."""

    def __init__(self, files: tuple[str, ...] = (), categories: tuple[str, ...] = (), base: str | None = None) -> None:
        self.files = frozenset(n.casefold() for n in (*_FILE_NAMES, *files))
        self.categories = frozenset(n.casefold() for n in (*_CATEGORY_NAMES, *categories))
        # a page's address is this and its title: https://en.wikipedia.org/wiki/ or .../index.php?title=
        self.prefix: str | None = None
        if base and "?title=" in base:
            self.prefix = base.split("?title=")[0] + "?title="
        elif base:
            self.prefix = base.rsplit("/", 1)[0] + "/"

    @classmethod
    def of_site(cls, head: bytes) -> Site:
        """A dump's site, from the beginning of its file (where ``<siteinfo>`` is)."""
        files: list[str] = []
        categories: list[str] = []
        for key, name in _SITE_NS.findall(head):
            text = html.unescape(name.decode("utf-8", "replace")).strip()
            (categories if key == b"14" else files).append(text)
        base = _SITE_BASE.search(head)
        return cls(tuple(files), tuple(categories), html.unescape(base.group(1).decode("utf-8", "replace")).strip()
                   if base else None)  # fmt: skip

    def url(self, title: str) -> str | None:
        """A page's address, as MediaWiki writes it (spaces as underscores, percent-encoded but the
        characters it leaves), or None where the dump does not say where its wiki is."""
        if self.prefix is None:
            return None
        return self.prefix + urllib.parse.quote(title.replace(" ", "_"), safe=";@$!*(),/~:")

    def hidden(self, target: str) -> bool:
        """Whether a link to ``target`` shows no text of its own in the page: a file shown as an image,
        a category the page is put in, another language's version of it."""
        if target.startswith(":"):  # [[:Category:X]]: a link to the category page, shown as text
            return False
        prefix, colon, _rest = target.partition(":")
        if not colon:
            return False
        name = prefix.strip().replace("_", " ").casefold()
        return name in self.files or name in self.categories or _INTERLANGUAGE.fullmatch(prefix.strip()) is not None


_DEFAULT = Site()


def wikitext_text(source: str, title: str | None = None, site: Site = _DEFAULT) -> str:
    """The text of a page of wikitext (as the module says), after its ``title`` where given."""
    import mwparserfromhell

    source = _COMMENTS.sub("", _REFS.sub("", _COMMENT_LINES.sub("", source.translate(_MARKS))))
    # bold and italic quotes are left as text and dropped from it (``_QUOTES``): parsed as tags, one
    # left open would hold the rest of the page (its headings too) inside it
    code = mwparserfromhell.parse(source, skip_style_tags=True)
    walk = _Walk(site)
    walk.nodes(code.nodes)
    body = _tidy(_BREAKS.sub(_break, "".join(walk.out)))
    return f"{title}\n\n{body}".strip() if title else body


class _Walk:
    """The text of parsed wikitext's nodes, in order, into ``out``."""

    def __init__(self, site: Site) -> None:
        from mwparserfromhell import nodes  # the dataset extra's: imported where wikitext is read

        self.n = nodes
        self.site = site
        self.out: list[str] = []
        self.skipping = 0  # the level of the apparatus section being left out, else 0
        self.item = False  # in a list item: its line ends at the next line break
        self.lines = 0  # inside preformatted text, a poem, a code listing: its line breaks are kept

    def nodes(self, nodes: Any) -> None:
        n = self.n
        for node in nodes:
            if isinstance(node, n.Heading):  # at any depth: a tag left open holds what follows it
                self.heading(node)
            elif self.skipping:
                continue
            elif isinstance(node, n.Text):
                self.text(_STRAY_TAGS.sub("", _QUOTES.sub("", _MAGIC.sub("", node.value))))
            elif isinstance(node, n.Wikilink):
                target = str(node.title).strip()
                if self.site.hidden(target):
                    continue
                if node.text is not None:
                    self.nodes(node.text.nodes)
                else:
                    self.out.append(target.lstrip(":").split("#", 1)[0] or target.lstrip(":#"))
            elif isinstance(node, n.ExternalLink):
                if node.title is not None:
                    self.nodes(node.title.nodes)
                elif not node.brackets:  # a bare URL in running text
                    self.out.append(str(node.url))
            elif isinstance(node, n.Tag):
                self.tag(node)
            elif isinstance(node, n.HTMLEntity):
                self.out.append(node.normalize())
            elif isinstance(node, n.Template):
                self.template(node)
            # template arguments ({{{1}}}), comments: no text of the page's own

    def template(self, node: Any) -> None:
        """The few templates whose output is their own text (a word in another language, a quantity);
        the others (infoboxes, citations, navigation, parser functions) show none."""
        name = " ".join(str(node.name).replace("_", " ").split()).casefold()
        if name == "lang" or name in _TRANSLITERATION:
            self.param(node, 2)
        elif name.startswith("lang-") or name in _SHOWN:
            self.param(node, 1)
        elif name in _QUANTITY:
            self.param(node, 1)
            rest = [str(p.value).strip() for p in node.params if not p.showkey][1:4]
            if rest and rest[0] in _RANGE_WORDS and len(rest) > 2:
                self.out.append(f" {rest[0]} {rest[1]} {rest[2]}")
            elif rest and rest[0] and rest[0] not in _RANGE_WORDS:
                self.out.append(f" {rest[0]}")

    def param(self, node: Any, k: int) -> None:
        if node.has(str(k)):
            self.nodes(node.get(str(k)).value.nodes)

    def text(self, value: str) -> None:
        """Running text: a blank line ends a paragraph; a line break is a space, but at a list item's end
        and in preformatted text."""
        if self.lines:
            self.out.append(value.replace("\n", _LINE))
            return
        if self.item and "\n" in value:
            line, value = value.split("\n", 1)
            self.out.append(line + _LINE)
            self.item = False
        self.out.append(_NEWLINES.sub(lambda m: _PARA if m.group(0).count("\n") > 1 else " ", value))

    def heading(self, node: Any) -> None:
        if self.skipping and node.level > self.skipping:
            return  # a subsection of the section left out
        self.skipping = 0
        title = self.inline(node.title)
        if node.level <= 2 and title.casefold().rstrip(":") in _APPARATUS:
            self.skipping = node.level
        else:
            self.out.append(f"{_PARA}{title}{_PARA}")

    def tag(self, node: Any) -> None:
        tag = str(node.tag).strip().lower()
        if tag in _DROPPED_TAGS:
            return
        if tag in _BREAK_TAGS:
            self.out.append(_LINE)
        elif tag in _ITEM_TAGS:  # a list's item (*, #), a term (;) or an indented line (:): its line
            self.out.append(_LINE)
            self.item = True
            if node.contents is not None:
                self.nodes(node.contents.nodes)
        elif tag in _ROW_TAGS:
            cells = [self.inline(cell.contents) for cell in (node.contents.nodes if node.contents is not None else ())
                     if getattr(cell, "contents", None) is not None and str(cell.tag).strip().lower() in _CELL_TAGS]
            self.out.append(_LINE + "\t".join(cells) + _LINE)
        elif tag == "table":
            self.out.append(_PARA)
            if node.contents is not None:
                self.nodes(node.contents.nodes)
            self.out.append(_PARA)
        elif tag == "caption":
            self.out.append(_LINE + (self.inline(node.contents) if node.contents is not None else "") + _LINE)
        elif tag in _BLOCK_TAGS:
            self.out.append(_PARA)
            lines = tag in _LINES_KEPT
            self.lines += lines
            if node.contents is not None:
                self.nodes(node.contents.nodes)
            self.lines -= lines
            self.out.append(_PARA)
        elif node.contents is not None:  # lists' content, spans, divs, nowiki, pre, blockquote ...
            self.nodes(node.contents.nodes)

    def inline(self, code: Any) -> str:
        """A heading's or a cell's text, on one line."""
        held, self.out = self.out, []
        try:
            self.nodes(code.nodes)
            return " ".join(_BREAKS.sub(" ", "".join(self.out)).split())
        finally:
            self.out = held


def _break(m: re.Match[str]) -> str:
    return "\n\n" if _PARA in m.group(0) else "\n"


def _tidy(text: str) -> str:
    """The text without what the left-out markup leaves behind: empty parentheses (of a pronunciation
    template), runs of spaces, spaces before punctuation, spaces at lines' ends and starts, runs of
    blank lines."""
    text = _PAREN_CLOSE.sub(")", _PAREN_OPEN.sub("(", text))
    text = _SPACE_PUNCT.sub("", _SPACE_RUN.sub(" ", _EMPTY_PARENS.sub("", text)))
    text = "\n".join(line.strip(" \t") for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


def reads_pages(as_text: tuple[str, ...], xml_records: tuple[str, ...]) -> bool:
    """Whether a job's rows are a MediaWiki export's articles (``page_row``): wikitext asked for, and
    the records of an XML input its ``page`` elements."""
    return "wiki" in as_text and xml_records == (PAGE,)


def is_article(record: bytes) -> bool:
    """Whether a MediaWiki export's ``<page>`` record is an article: in the main namespace (0) and not a
    redirect, as what precedes its first revision in its first ``RECORD_HEAD`` bytes says."""
    head = record[:RECORD_HEAD]
    end = head.find(_REVISION)
    head = head if end < 0 else head[:end]
    ns = _NS.search(head)
    return ns is not None and int(ns.group(1)) == 0 and _REDIRECT.search(head) is None


class _Page:
    """A ``<page>`` record's title, its last revision's text, and the columns ``names``: each an
    attribute of the page element, else the text of its first element of that name."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.found: dict[str, Any] = {}
        self.path: list[str] = []
        self.title: str | None = None
        self.text: str | None = None
        self.open: list[tuple[int, str, list[str]]] = []  # the elements whose text is being read: (depth, name, text)

    def _wanted(self, name: str) -> bool:
        depth = len(self.path)
        return ((name == "text" and depth == 3 and self.path[1] == "revision") or (name == "title" and depth == 2)
                or (name in self.names and name not in self.found))  # fmt: skip

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if not self.path:
            self.found.update((k, v) for k, v in attrs.items() if k in self.names)
        self.path.append(name)
        if self._wanted(name):
            self.open.append((len(self.path), name, []))

    def end(self, name: str) -> None:
        if self.open and self.open[-1][0] == len(self.path):
            depth, _name, pieces = self.open.pop()
            value = "".join(pieces)
            if name == "text" and depth == 3:
                self.text = value  # the last revision's (a history dump's page has several)
            if name == "title" and depth == 2:
                self.title = value.strip()
            if name in self.names and name not in self.found:
                self.found[name] = " ".join(value.split())
        self.path.pop()

    def chars(self, data: str) -> None:
        for _depth, _name, pieces in self.open:
            pieces.append(data)


def page_row(raw: bytes, names: frozenset[str] = frozenset(),
             site: Site = _DEFAULT) -> tuple[dict[str, Any], str | None]:  # fmt: skip
    """A MediaWiki export's ``<page>`` record read as a row: ``text``, its title and the text of its last
    revision's wikitext (``wikitext_text``), and the columns ``names`` (``id``: the page's, ``title``,
    ``ns``, ``timestamp`` ...; ``url``: its address on ``site``); or why it is not a row."""
    from ._xml import _malformed

    page = _Page(names)
    parser = expat.ParserCreate("utf-8")
    parser.buffer_text = True
    parser.StartElementHandler = page.start
    parser.EndElementHandler = page.end
    parser.CharacterDataHandler = page.chars
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as e:
        if page.path or page.text is None:  # the page's element not closed: the record is cut or broken
            return {**dict.fromkeys(names), **page.found}, _malformed(e)
    values = {**dict.fromkeys(names), **page.found}
    if "url" in names and values["url"] is None and page.title:
        values["url"] = site.url(page.title)
    if page.text is None:
        return values, "a page without the text of a revision (<revision><text>)"
    try:
        values["text"] = wikitext_text(page.text, page.title, site)
    except Exception as e:  # mwparserfromhell's own failure on a page: that page is a bad row
        return values, f"wikitext the parser could not read ({type(e).__name__}: {e})"
    return values, None
