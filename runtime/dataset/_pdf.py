"""The text of a PDF, for documents read with ``pdf_text``: a PDF's bytes are no text to a model.

Read with PDFium (``pypdfium2``, the ``pdf`` extra), the engine of Chrome's viewer: each page's
text in its reading order, its lines a line each; a word hyphenated at a line's end is joined again
(PDFium marks the hyphen it finds there). Pages are separated by ``PAGE_BREAK``, a form feed on a
line of its own: whitespace to a tokenizer and a paragraph break to ``chunk_tokens`` windows, whose
``chunk_page`` counts them (``_batch.CHUNK_PAGE``). A PDF without a
text layer (scanned pages), one that needs a password or one PDFium cannot read has no text: a bad
row saying which.

PDFium is not thread-safe: one document is read at a time in a process.
"""

from __future__ import annotations

import threading
from typing import Any

from ._storage import uncompressed_name

SUFFIXES = (".pdf",)  # documents read as PDF (a compression suffix after them too)
PAGE_BREAK = "\n\f\n"

_PDFIUM = threading.Lock()
# PDFium's text: CR LF between lines (a lone CR at times), U+FFFE where it took a line's last
# hyphen for a word broken there (the word's halves are joined)
_TEXT = str.maketrans({"\r": "\n", "\ufffe": None, "\f": "\n"})  # a form feed of its own: the pages' mark only


def is_pdf(path: str) -> bool:
    """Whether a document is read as a PDF with ``pdf_text``: its name ends in ``.pdf`` (before a
    compression suffix, as ``paper.pdf.gz``)."""
    return uncompressed_name(path).endswith(SUFFIXES)


def pdfium() -> Any:
    """The ``pypdfium2`` module, or an error saying how to install it."""
    try:
        import pypdfium2
    except ImportError as e:
        from ._sources import InputError

        raise InputError("pdf_text (--pdf-text) reads PDFs with pypdfium2, which is not installed: "
                         "pip install 'embedrt[pdf]'") from e  # fmt: skip
    return pypdfium2


def pdf_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the PDF ``data``, its pages separated by ``PAGE_BREAK``; or why it has none."""
    pdf = pdfium()
    with _PDFIUM:
        try:
            doc = pdf.PdfDocument(data)
        except pdf.PdfiumError as e:
            why = str(e).partition("PDFium: ")[2].rstrip(".)") or str(e)  # "Failed to load document (PDFium: ...)."
            if "password" in why.lower():
                return None, "a PDF that needs a password: decrypt it first (qpdf --decrypt --password=...)"
            return None, f"not a PDF that PDFium reads ({why}): a damaged or truncated file?"
        try:
            pages = [_page_text(doc, i) for i in range(len(doc))]
        finally:
            doc.close()
    if not any(p.strip() for p in pages):
        return None, (f"no text in its {len(pages)} page{'s' * (len(pages) != 1)} (scanned pages? they need OCR "
                      f"first, e.g. ocrmypdf)")  # fmt: skip
    return PAGE_BREAK.join(pages), None


def _page_text(doc: Any, index: int) -> str:
    page = doc[index]
    try:
        text = page.get_textpage()
        try:
            got: str = text.get_text_range()
        finally:
            text.close()
    finally:
        page.close()
    return got.replace("\r\n", "\n").translate(_TEXT).strip()
