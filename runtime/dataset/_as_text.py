"""Documents read as their text rather than as UTF-8: HTML pages (``_html``), PDFs (``_pdf``) and
Word documents (``_docx``), each kind by its file names, as a job asks for it (``html_text``,
``pdf_text``, ``docx_text``). A job's kinds are part of its identity (``{kind: "text"}``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._docx import is_docx
from ._html import is_html
from ._pdf import is_pdf


@dataclass(frozen=True)
class Kind:
    name: str  # "pdf": the option pdf_text (--pdf-text), the identity's key
    documents: str  # what the option reads: "PDF" documents
    one: str  # one such file, in a bad row's reason: "a PDF"
    binary: bool  # not text at all: a file of its names read as UTF-8 fails, naming the option
    takes: Callable[[str], bool]  # whether a document's name is of this kind


KINDS = (
    Kind("html", "HTML", "an HTML page", False, is_html),
    Kind("pdf", "PDF", "a PDF", True, is_pdf),
    Kind("docx", "Word", "a Word document", True, is_docx),
)


def asked(html_text: bool, pdf_text: bool, docx_text: bool) -> tuple[str, ...]:
    """The kinds a job's options ask for, in ``KINDS`` order."""
    return tuple(k.name for k, on in zip(KINDS, (html_text, pdf_text, docx_text), strict=True) if on)


def kind_of(path: str, names: tuple[str, ...]) -> str | None:
    """Which of the kinds ``names`` the document ``path`` is read as (None: as UTF-8 text)."""
    return next((k.name for k in KINDS if k.name in names and k.takes(path)), None)


def binary_kind(path: str) -> Kind | None:
    """The binary kind a document's name says it is, whether asked for or not."""
    return next((k for k in KINDS if k.binary and k.takes(path)), None)
