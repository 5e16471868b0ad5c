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
_SPACES = re.compile(r"[ \t\n\r\f]+")
# Unicode noncharacters (never assigned, dropped from a page's text) mark the layout until the end:
_PARA, _LINE_BREAK = "\ufdd3", "\ufdd4"  # where it breaks; a run of them is one break, a paragraph's if any is
_BREAKS = re.compile(f"[ \t]*[{_PARA}{_LINE_BREAK}][ \t{_PARA}{_LINE_BREAK}]*")
# and a <pre>'s line breaks, spaces and tabs, kept out of the layout's whitespace rules
_KEPT = str.maketrans({"\n": "\ufdd0", " ": "\ufdd1", "\t": "\ufdd2"})
_RESTORED = str.maketrans({"\ufdd0": "\n", "\ufdd1": " ", "\ufdd2": "\t"})
_MARKS = str.maketrans(dict.fromkeys(map(ord, "\ufdd0\ufdd1\ufdd2\ufdd3\ufdd4")))  # removed from the page's own text


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
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


def html_text(page: str, title: bool = True) -> str:
    """The visible text of ``page``: its title (unless ``title`` is false), a blank line, then its
    body's text."""
    parser = _Text()
    parser.feed(page)
    parser.close()
    body = _BREAKS.sub(lambda m: "\n\n" if _PARA in m.group() else "\n", "".join(parser.out))
    lines = [line.strip(" ").lstrip("\t").rstrip(" \t") for line in body.split("\n")]
    body = "\n".join(lines).strip("\n").translate(_RESTORED)
    heading = " ".join("".join(parser.title).split()) if title else ""
    if heading and not body.startswith(heading):
        return f"{heading}\n\n{body}" if body else heading
    return body

