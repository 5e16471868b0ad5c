"""Documents read as their text rather than as UTF-8: HTML pages (``_html``), PDFs (``_pdf``), Word
documents (``_docx``), PowerPoint decks (``_pptx``) and EPUB books (``_epub``), each kind by its
file names, as a job asks for it (``html_text``, ``pdf_text``, ``docx_text``, ``pptx_text``,
``epub_text``). A job's kinds are part of its identity (``{kind: "text"}``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._docx import docx_text, is_docx
from ._epub import epub_text, is_epub
from ._html import is_html
from ._pdf import is_pdf
from ._pptx import is_pptx, pptx_text

Reader = Callable[[bytes], tuple[str | None, str | None]]  # a file's bytes -> its text, or why it has none


@dataclass(frozen=True)
class Kind:
    name: str  # "pdf": the option pdf_text (--pdf-text), the identity's key
    documents: str  # what the option reads: "PDF" documents
    one: str  # one such file, in a bad row's reason: "a PDF"
    binary: bool  # not text at all: a file of its names read as UTF-8 fails, naming the option
    takes: Callable[[str], bool]  # whether a document's name is of this kind
    reads: Reader | None = None  # a binary kind's reader in the job's process (PDFs are read in workers: ``_pdf``)
    paged: bool = False  # its text's pages (slides) separated by form feeds: windows carry ``chunk_page``


KINDS = (
    Kind("html", "HTML", "an HTML page", False, is_html),
    Kind("pdf", "PDF", "a PDF", True, is_pdf, paged=True),
    Kind("docx", "Word", "a Word document", True, is_docx, docx_text),
    Kind("pptx", "PowerPoint", "a PowerPoint deck", True, is_pptx, pptx_text, paged=True),
    Kind("epub", "EPUB", "an EPUB book", True, is_epub, epub_text),
)
BY_NAME = {k.name: k for k in KINDS}


def asked(html_text: bool, pdf_text: bool, docx_text: bool, pptx_text: bool, epub_text: bool) -> tuple[str, ...]:
    """The kinds a job's options ask for, in ``KINDS`` order."""
    on = (html_text, pdf_text, docx_text, pptx_text, epub_text)
    return tuple(k.name for k, yes in zip(KINDS, on, strict=True) if yes)


def paged(names: tuple[str, ...]) -> bool:
    """Whether any of the kinds ``names`` has pages (its windows carry ``chunk_page``)."""
    return any(BY_NAME[n].paged for n in names)


def kind_of(path: str, names: tuple[str, ...]) -> str | None:
    """Which of the kinds ``names`` the document ``path`` is read as (None: as UTF-8 text)."""
    return next((k.name for k in KINDS if k.name in names and k.takes(path)), None)


def binary_kind(path: str) -> Kind | None:
    """The binary kind a document's name says it is, whether asked for or not."""
    return next((k for k in KINDS if k.binary and k.takes(path)), None)
