"""The visible text of an HTML page, for documents read with ``html_text``: markup is text to a
model, and on a documentation site it is most of a page's bytes and tokens.

Kept: the text of the body (and the title, first), character references decoded, whitespace
collapsed as a browser lays it out (``<pre>`` kept as it is), a line break at the end of a line-level
element (``<br>``, ``<li>``, ``<tr>``, ``<dt>`` ...) and a blank line after a paragraph-level one
(``<p>``, headings, lists, tables ...), so that the windows of ``chunk_tokens`` end at paragraphs
as they do in plain text. Left out: scripts, styles, ``<head>`` (but its title), ``<template>``,
``<noscript>``, SVG and MathML, comments. Table cells are separated by a tab. A page is parsed with
the standard library's tolerant parser: unclosed or misnested tags do not fail.
"""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

SUFFIXES = (".html", ".htm", ".xhtml")  # documents read as HTML (a compression suffix after them too)

_HIDDEN = frozenset({"script", "style", "head", "template", "noscript", "svg", "math", "iframe", "object"})
_PARAGRAPH = frozenset({
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "ul", "ol", "dl", "table", "section",
    "article", "aside", "header", "footer", "nav", "main", "figure", "form", "fieldset", "details", "address",
    "hr", "hgroup", "menu",
})  # fmt: skip
_LINE = frozenset({"br", "li", "tr", "dt", "dd", "div", "caption", "figcaption", "summary", "legend", "option"})
_CELL = frozenset({"td", "th"})
# a page's own declaration of its encoding, in its first 1,024 bytes as browsers prescan them:
# <meta charset="..."> or <meta http-equiv="Content-Type" content="text/html; charset=...">
_META_CHARSET = re.compile(rb"<meta\b[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# labels the WHATWG Encoding Standard reads as a superset (what browsers decode them as), by Python's codec names
# (a page's declaration of UTF-16 is read as UTF-8: a page in UTF-16 begins with its byte order mark)
_AS_BROWSERS = {"iso8859-1": "cp1252", "ascii": "cp1252", "iso8859-9": "cp1254", "iso8859-11": "cp874",
                "tis-620": "cp874", "gb2312": "gb18030", "gbk": "gb18030", "shift_jis": "cp932", "x-sjis": "cp932",
                "euc_kr": "cp949", "big5": "big5hkscs", "utf-16": "utf-8", "utf-16-le": "utf-8", "utf-16-be": "utf-8"}  # fmt: skip
_SPACES = re.compile(r"[ \t\n\r\f]+")
# Unicode noncharacters (never assigned, dropped from a page's text) mark the layout until the end:
_PARA, _LINE_BREAK = "\ufdd3", "\ufdd4"  # where it breaks; a run of them is one break, a paragraph's if any is
_BREAKS = re.compile(f"[ \t]*[{_PARA}{_LINE_BREAK}][ \t{_PARA}{_LINE_BREAK}]*")
# and a <pre>'s line breaks, spaces and tabs, kept out of the layout's whitespace rules
_KEPT = str.maketrans({"\n": "\ufdd0", " ": "\ufdd1", "\t": "\ufdd2"})
_RESTORED = str.maketrans({"\ufdd0": "\n", "\ufdd1": " ", "\ufdd2": "\t"})
_MARKS = str.maketrans(dict.fromkeys(map(ord, "\ufdd0\ufdd1\ufdd2\ufdd3\ufdd4")))  # removed from the page's own text
# (a page that has none, nearly every one, is not translated; character references to them decode to
# nothing: noncharacters, which html.unescape drops)
_MARKED = re.compile("[\ufdd0-\ufdd4]")


class _Text(HTMLParser):
    def __init__(self, marked: bool = True) -> None:
        super().__init__(convert_charrefs=True)
        self.marked = marked  # the page holds characters of the marks
        self.out: list[str] = []
        self.title: list[str] = []
        self.hidden: list[str] = []  # the hidden elements open around the parser
        self.pre = 0
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not {"svg", "math"} & set(self.hidden):  # not an SVG image's title
            self.in_title = True
        if tag in _HIDDEN:
            if tag != "head" or not self.hidden:  # a <head> inside anything hidden changes nothing
                self.hidden.append(tag)
            return
        if tag == "pre":
            self.pre += 1
        self._break(tag, True)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HIDDEN:
            self._break(tag, True)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _HIDDEN:
            if tag in self.hidden:  # close it and whatever was left open inside it
                del self.hidden[len(self.hidden) - 1 - self.hidden[::-1].index(tag):]
            return
        if tag == "body" and "head" in self.hidden:  # a page without </head>
            self.hidden.clear()
        if tag == "pre" and self.pre:
            self.pre -= 1
        self._break(tag, False)

    def handle_data(self, data: str) -> None:
        if self.marked:
            data = data.translate(_MARKS)
        if self.in_title:  # a title is the page's name, not its text, wherever it stands
            self.title.append(data)
            return
        if self.hidden:
            if self.hidden == ["head"] and not self.in_title and data.strip():
                self.hidden.clear()  # text after the head without </head> or <body>: the body began
            else:
                return
        self.out.append(data.translate(_KEPT) if self.pre else _SPACES.sub(" ", data))

    def _break(self, tag: str, start: bool) -> None:
        if self.hidden:
            if tag == "body":
                self.hidden.clear()
            return
        if tag in _PARAGRAPH:
            self.out.append(_PARA)
        elif tag in _LINE:
            self.out.append(_LINE_BREAK)
        elif tag in _CELL and start:  # between a row's cells (the row's first is stripped)
            self.out.append("\t")


def encoding(label: str | bytes | None) -> str | None:
    """The Python codec a declared charset label names (``"ISO-8859-1"`` -> ``"cp1252"``: read as
    browsers read it), or None for a label that names no text encoding."""
    if label is None:
        return None
    name = (label.decode("ascii", "replace") if isinstance(label, bytes) else label).strip().strip("\"'").lower()
    if name in _AS_BROWSERS:  # a label Python does not know
        return _AS_BROWSERS[name]
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True):  # base64, rot13, zlib ...: not a page's encoding
        return None
    return _AS_BROWSERS.get(info.name, info.name)


def decoded(data: bytes, charset: str | None = None, html: bool = True) -> str:
    """A web page's (``html``) or text file's bytes as text, in the encoding a browser would read:
    the one its byte order mark says, else ``charset`` (the HTTP ``Content-Type``'s), else (a page)
    its ``<meta>`` declaration in its first 1,024 bytes, else UTF-8 where the bytes are UTF-8, else
    windows-1252 (the web's legacy default). Bytes the encoding has no character for are U+FFFD."""
    for bom, by_mark in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(by_mark, "replace")
    name = encoding(charset)
    if name is None and html:
        declared = _META_CHARSET.search(data, 0, 1024)
        name = encoding(declared.group(1)) if declared else None
    if name is None:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            name = "cp1252"
    return data.decode(name, "replace")


def html_text(page: str, title: bool = True) -> str:
    """The visible text of ``page``: its title (unless ``title`` is false), a blank line, then its
    body's text."""
    parser = _Text(_MARKED.search(page) is not None)
    parser.feed(page)
    parser.close()
    body = _BREAKS.sub(lambda m: "\n\n" if _PARA in m.group() else "\n", "".join(parser.out))
    lines = [line.strip(" ").lstrip("\t").rstrip(" \t") for line in body.split("\n")]
    body = "\n".join(lines).strip("\n").translate(_RESTORED)
    heading = " ".join("".join(parser.title).split()) if title else ""
    if heading and not body.startswith(heading):
        return f"{heading}\n\n{body}" if body else heading
    return body

