"""The text of an EPUB book (``.epub``), for documents read with ``epub_text``: a zip of XHTML
chapters. Read with the standard library (``zipfile``, ``ElementTree``) and the HTML pages' reader
(``_html``).

Kept: the book's title (its metadata's), then each document of the reading order (the package's
spine, non-linear ones too: notes, answers) as its visible text, a blank line apart; a chapter's
``<title>`` is left out (most books repeat their own title there), and so is the navigation
document (a table of contents) where a book lists it in its reading order. An EPUB without its container
or package file, a spine naming no document, or encrypted chapters (DRM) is a bad row saying which;
fonts obfuscated as the EPUB specification allows are not text, and do not matter.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from xml.etree import ElementTree

from ._html import html_text
from ._zipped import Parts, Unreadable

SUFFIXES = (".epub",)  # documents read as EPUB books (a compression suffix after them too)

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_ENC = "{http://www.w3.org/2001/04/xmlenc#}"


def epub_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the EPUB ``data``: its title, then its reading order's documents, a blank line
    apart; or why it has none."""
    try:
        parts = Parts(data, "not an EPUB (not a zip): a damaged or cut file?")
        if not parts.has("META-INF/container.xml"):
            return None, "a zip without META-INF/container.xml: not an EPUB"
        root = parts.xml("META-INF/container.xml").find(f"{_CONTAINER}rootfiles/{_CONTAINER}rootfile")
        opf = "" if root is None else root.get("full-path", "")
        if not parts.has(opf):
            return None, f"the EPUB's package file {opf!r}, named by META-INF/container.xml, is not in the zip"
        package = parts.xml(opf)
        folder = posixpath.dirname(opf)
        items = {i.get("id"): i for i in package.iter(_OPF + "item")}
        chapters = []
        for ref in package.iter(_OPF + "itemref"):
            item = items.get(ref.get("idref"))
            href = None if item is None else item.get("href")
            if item is not None and href and "html" in item.get("media-type", "html") and not _is_nav(item):
                chapters.append(posixpath.normpath(posixpath.join(folder, urllib.parse.unquote(href.split("#")[0]))))
        if not chapters:
            return None, f"the spine of {opf} names no document: not a book of text"
        locked = _encrypted(parts) & set(chapters)
        if locked:
            return None, (f"its chapters are encrypted (DRM: {len(locked)} of {len(chapters)}, e.g. {min(locked)}): "
                          "only a book without DRM can be read")  # fmt: skip
        texts = [html_text(_decoded(parts.read(c), c), title=False) for c in chapters if parts.has(c)]
    except Unreadable as e:
        return None, str(e)
    title = package.find(f"{_OPF}metadata/{_DC}title")
    heading = " ".join((title.text or "").split()) if title is not None else ""
    body = "\n\n".join(t for t in texts if t)
    if heading and not body.startswith(heading):
        body = f"{heading}\n\n{body}" if body else heading
    return body, None


def _is_nav(item: ElementTree.Element) -> bool:
    """Whether a manifest item is EPUB 3's navigation document (a table of contents, not the book's text)."""
    return "nav" in (item.get("properties") or "").split()


def _encrypted(parts: Parts) -> set[str]:
    """The parts that META-INF/encryption.xml says are encrypted (fonts, or DRM's chapters)."""
    if not parts.has("META-INF/encryption.xml"):
        return set()
    refs = parts.xml("META-INF/encryption.xml").iter(_ENC + "CipherReference")
    return {posixpath.normpath(urllib.parse.unquote(r.get("URI", ""))) for r in refs}


def _decoded(data: bytes, name: str) -> str:
    """An XHTML document's text: UTF-8 (EPUB's rule), or UTF-16 with its byte order mark."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Unreadable(f"{name} is not UTF-8 (invalid byte at {e.start}): a damaged book?") from None
