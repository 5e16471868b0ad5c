"""A PDF's text with PDFium (``pypdfium2``), and the loop of the worker process that reads PDFs for
the corpus job (``_pdf``). Standalone: the standard library and pypdfium2, so that a worker starts
in a fraction of a second without the package's imports.

Each page's text in its reading order, its lines a line each; a word hyphenated at a line's end is
joined again (PDFium marks the hyphen it finds there with U+FFFE). Pages are separated by
``PAGE_BREAK``, a form feed on a line of its own. A PDF without a text layer (scanned pages), one
that needs a password or one PDFium cannot read has no text, and a reason instead.

The worker's protocol, on its standard input and output: a request is a PDF's bytes after their
length (8 bytes, big-endian); the reply is the JSON ``[text, reason]`` (one of them null) after its
length. The worker ends at the end of its input (the job closed it, or ended).
"""

from __future__ import annotations

import json
import struct
import sys
import threading
from typing import IO, Any

PAGE_BREAK = "\n\f\n"
HEADER = struct.Struct(">Q")

_PDFIUM = threading.Lock()  # PDFium is not thread-safe: one document at a time in a process
# PDFium's text: CR LF between lines (a lone CR at times), U+FFFE where it took a line's last
# hyphen for a word broken there (the word's halves are joined); a form feed of a page's own is a
# line break (form feeds mark the pages)
_TEXT = str.maketrans({"\r": "\n", "\ufffe": None, "\f": "\n"})


def pdf_text(data: bytes) -> tuple[str | None, str | None]:
    """The text of the PDF ``data``, its pages separated by ``PAGE_BREAK``; or why it has none."""
    import pypdfium2 as pdf

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


def read_exact(f: IO[bytes], n: int) -> bytes | None:
    """``n`` bytes of ``f``, or None at its end (before or inside them)."""
    chunks, left = [], n
    while left:
        got = f.read(left)
        if not got:
            return None
        chunks.append(got)
        left -= len(got)
    return b"".join(chunks)


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer each PDF of ``requests`` with its text on ``replies``, until ``requests`` ends."""
    while True:
        header = read_exact(requests, HEADER.size)
        data = None if header is None else read_exact(requests, HEADER.unpack(header)[0])
        if data is None:
            return
        try:
            answer = pdf_text(data)
        except Exception as e:  # anything else PDFium's binding raises: the document's, not the worker's
            answer = (None, f"PDFium failed on it ({type(e).__name__}: {e})")
        body = json.dumps(answer, ensure_ascii=False).encode("utf-8", "surrogatepass")
        replies.write(HEADER.pack(len(body)) + body)
        replies.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
