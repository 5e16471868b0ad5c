"""Documents read as their text rather than as UTF-8: HTML pages (``_html``), PDFs (``_pdf``), Word
documents (``_docx``), PowerPoint decks (``_pptx``), EPUB books (``_epub``), OpenDocument files
(``_odf``), Excel workbooks (``_xlsx``), e-mail messages (``_eml``), RTF documents (``_rtf``),
images (by OCR, in ``_pdf``'s workers), XML documents (``_xml``) and wikitext pages (``_wiki``), each kind by
its file names, as a job asks for it (``html_text``, ``pdf_text``, ``docx_text``, ``pptx_text``, ``epub_text``,
``odf_text``, ``xlsx_text``, ``eml_text``, ``rtf_text``, ``image_text``, ``xml_text``, ``wiki_text``); e-mail attachments of those kinds too,
where asked for (``attachment_reader``). A job's kinds are part of its identity (``{kind: "text"}``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import _archives, _docx, _eml, _epub, _html, _odf, _pdf, _pptx, _rtf, _wiki, _xlsx, _xml
from ._storage import uncompressed_name

Reader = Callable[[bytes], tuple[str | None, str | None]]  # a file's bytes -> its text, or why it has none


@dataclass(frozen=True)
class Kind:
    name: str  # "pdf": the option pdf_text (--pdf-text), the identity's key
    documents: str  # what the option reads: "PDF" documents
    one: str  # one such file, in a bad row's reason: "a PDF"
    binary: bool  # read from its bytes by its reader, not as UTF-8: one of its names that is not UTF-8, read without
    # the option, fails naming the option
    suffixes: tuple[str, ...]  # the documents' names of this kind end so (before a compression suffix)
    reads: Reader | None = None  # a binary kind's reader in the job's process (PDFs are read in workers: ``_pdf``)
    paged: bool = False  # its text's pages (slides) separated by form feeds: windows carry ``chunk_page``
    help: str = ""  # what its CLI option reads, and how

    def takes(self, path: str) -> bool:
        """Whether the document ``path`` is of this kind, by its name (``page.html.gz`` too)."""
        return uncompressed_name(path).endswith(self.suffixes)


KINDS = (
    Kind("html", "HTML", "an HTML page", False, _html.SUFFIXES, help=(
        ".html/.htm/.xhtml documents as their visible text (title, then body; no scripts, styles or markup; "
        "paragraphs as blank lines) instead of their markup")),
    Kind("pdf", "PDF", "a PDF", True, _pdf.SUFFIXES, paged=True, help=(
        ".pdf documents as their text (PDFium: pip install 'embedrt[pdf]'), pages separated by a form feed on a "
        "line of its own (windows name theirs: chunk_page); a scanned PDF (no text) is a bad row but with --ocr")),
    Kind("docx", "Word", "a Word document", True, _docx.SUFFIXES, _docx.docx_text, help=(
        ".docx and .doc (Word; .docm and templates too) documents as their text (paragraphs a blank line apart, table cells a tab apart, "
        "footnotes after the body; no headers, footers, comments or deleted revisions)")),
    Kind("pptx", "PowerPoint", "a PowerPoint deck", True, _pptx.SUFFIXES, _pptx.pptx_text, paged=True, help=(
        ".pptx and .ppt (PowerPoint; .pptm and shows too) decks as their slides' text (charts as their titles and data) and speaker notes, slides separated as PDF pages are "
        "(windows name theirs: chunk_page)")),
    Kind("epub", "EPUB", "an EPUB book", True, _epub.SUFFIXES, _epub.epub_text, help=(
        ".epub books as their title and chapters' text in reading order; a book with DRM is a bad row")),
    Kind("odf", "OpenDocument", "an OpenDocument file", True, _odf.SUFFIXES, _odf.odf_text, paged=True, help=(
        ".odt, .odp and .ods (OpenDocument, LibreOffice) documents as their text, pages (as last laid out), slides "
        "or sheets separated as PDF pages are (windows name theirs: chunk_page)")),
    Kind("xlsx", "Excel", "an Excel workbook", True, _xlsx.SUFFIXES, _xlsx.xlsx_text, paged=True, help=(
        ".xlsx and .xls (Excel) workbooks as their sheets' text (a sheet's name, then a row a line, its cells a tab apart, "
        "dates in ISO 8601), sheets separated as PDF pages are (windows name theirs: chunk_page)")),
    Kind("eml", "e-mail", "an e-mail message", True, _eml.SUFFIXES, _eml.eml_text, help=(
        ".eml and .msg (e-mail, Outlook) messages as their subject, sender, recipients and date, then their body's text (a message "
        "of HTML only: its visible text), their attachments' names and the messages forwarded in them")),
    Kind("rtf", "RTF", "an RTF document", True, _rtf.SUFFIXES, _rtf.rtf_text, help=(
        ".rtf (rich text: Word, WordPad, TextEdit) documents as their text (paragraphs a blank line apart, table cells "
        "a tab apart, footnotes after the body; no headers, footers, comments or deleted revisions)")),
    Kind("image", "image", "an image", True, _pdf.IMAGE_SUFFIXES, paged=True, help=(
        ".png, .jpg, .tif, .bmp, .webp and .gif images (scans, screenshots, photographed pages) as the text OCR reads "
        "in them (RapidOCR: pip install 'embedrt[ocr]'), a TIFF's pages separated as PDF pages are (windows name "
        "theirs: chunk_page)")),
    Kind("xml", "XML", "an XML document", True, _xml.SUFFIXES, _xml.xml_text, help=(
        ".xml, .nxml and .dbk documents as their text instead of their markup (paragraphs a blank line apart, table "
        "cells a tab apart); of JATS articles (PubMed Central), TEI, DocBook and RSS/Atom feeds the text, not their "
        "metadata: an article's title, abstract, keywords and body, no reference list")),
    Kind("wiki", "wikitext", "a wikitext page", False, _wiki.SUFFIXES, help=(
        ".wiki, .mediawiki and .wikitext documents (MediaWiki's markup: Wikipedia, company wikis) as the text a reader "
        "of the page sees: paragraphs, lists, headings, tables, links' text; no templates, references, files, "
        "categories or reference sections (mwparserfromhell, in the dataset extra)")),
)  # fmt: skip
BY_NAME = {k.name: k for k in KINDS}


def asked(**options: bool) -> tuple[str, ...]:
    """The kinds a job's options (``html_text=True`` ...: one per kind) ask for, in ``KINDS`` order."""
    names = {f"{k.name}_text" for k in KINDS}
    if set(options) != names:  # every kind's option, and no other: a kind added is a kind passed
        raise TypeError(f"asked() takes {sorted(names)}, got {sorted(options)}")
    return tuple(k.name for k in KINDS if options[f"{k.name}_text"])


def paged(names: tuple[str, ...]) -> bool:
    """Whether any of the kinds ``names`` has pages (its windows carry ``chunk_page``)."""
    return any(BY_NAME[n].paged for n in names)


def kind_of(path: str, names: tuple[str, ...]) -> Kind | None:
    """Which of the kinds ``names`` the document ``path`` is read as (None: as UTF-8 text)."""
    return next((k for k in KINDS if k.name in names and k.takes(path)), None)


def attachment_reader(names: tuple[str, ...], ocr: bool = False,
                      archives: bool = False) -> _eml.Attachment:  # fmt: skip
    """Reads an e-mail attachment (its file name, its bytes) of the kinds ``names`` as a document of
    its name is read (a PDF or an image in the workers, waited for; ``ocr``: a PDF's scanned pages
    too); None for an attachment of another kind, or without text. ``archives``: an attached zip or
    tar archive is its files of those kinds, each under a line ``File: NAME`` (``_archives.files_in``)."""

    def read(name: str, data: bytes) -> str | None:
        if archives and _archives.is_archive(name):
            texts = [(member, read_one(member, content)) for member, content in _archives.files_in(name, data)]
            return "\n\n".join(f"File: {m}\n\n{t.strip()}" for m, t in texts if t and t.strip()) or None
        return read_one(name, data)

    def read_one(name: str, data: bytes) -> str | None:
        kind = kind_of(name, names)
        if kind is None or kind.name == "eml":  # attached messages are read as forwarded ones, or not at all
            return None
        if not kind.binary:  # HTML, wikitext
            return markup_bytes(kind.name, data)
        if kind.reads is None:  # PDFs and images: their workers' reading, waited for
            return _pdf.pdf_text_later(data, ocr or kind.name == "image").result()[0]
        try:
            return kind.reads(data)[0]
        except Exception:  # the reader's fault or the file's: the attachment has no text, the message still does
            return None

    return read


def markup_text(name: str, text: str) -> str:
    """The text of a document of the kind ``name`` that is text itself (HTML, wikitext)."""
    return _wiki.wikitext_text(text) if name == "wiki" else _html.html_text(text)


def markup_bytes(name: str, data: bytes) -> str:
    """``markup_text`` of a document's bytes: an HTML page in the encoding a browser reads it in
    (``_html.decoded``: its ``<meta>`` declaration ...), wikitext as UTF-8."""
    if name == "html":
        return _html.html_text(_html.decoded(data))
    return markup_text(name, data.decode("utf-8", "replace").removeprefix("\ufeff"))


def binary_kind(path: str) -> Kind | None:
    """The binary kind a document's name says it is, whether asked for or not."""
    return next((k for k in KINDS if k.binary and k.takes(path)), None)
