"""A PDF's text with PDFium (``pypdfium2``), an image's by OCR, and the loop of the worker process
that reads them for the corpus job (``_pdf``). Standalone: the standard library and pypdfium2 (and,
to OCR scanned pages and images, RapidOCR and the OpenCV it brings), so that a worker starts in a
fraction of a second without the package's imports.

Each page's text in its reading order, its lines a line each; a word hyphenated at a line's end is
joined again (PDFium marks the hyphen it finds there with U+FFFE). Pages are separated by
``PAGE_BREAK``, a form feed on a line of its own. A PDF without a text layer (scanned pages), one
that needs a password or one PDFium cannot read has no text, and a reason instead. With OCR, a page
without text is rendered (``OCR_DPI``) and read by RapidOCR (PP-OCR's detection and recognition
models on ONNX Runtime, one thread a worker), in reading order (``ocr_text``: columns one after
the other, lines top to bottom, a line's pieces left to right). An image (PNG, JPEG, TIFF, BMP,
WebP, GIF: told by its first bytes) is read by OCR as such a page, each page of a TIFF (a scanner's
multi-page file) one after the other, separated as a PDF's pages are.

The worker's protocol, on its standard input and output: a request is a PDF's (or an image's) bytes after their
length (8 bytes, big-endian); the reply is the JSON ``[text, reason]`` (one of them null) after its
length. With OCR, a length of 0 before the reply says that a page was read (the job's clock for the
PDF starts again). The worker ends at the end of its input (the job closed it, or ended).
"""

from __future__ import annotations

import json
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

PAGE_BREAK = "\n\f\n"
HEADER = struct.Struct(">Q")

_PDFIUM = threading.Lock()  # PDFium is not thread-safe: one document at a time in a process
# PDFium's text: CR LF between lines (a lone CR at times), U+FFFE where it took a line's last
# hyphen for a word broken there (the word's halves are joined); a form feed of a page's own is a
# line break (form feeds mark the pages)
_TEXT = str.maketrans({"\r": "\n", "\ufffe": None, "\f": "\n"})


OCR_DPI = 150  # a scanned page rendered for OCR: PP-OCR read more of LaTeX manuals' words at 150 than at 200


def pdf_text(data: bytes, ocr: Callable[[Any], str] | None = None) -> tuple[str | None, str | None]:
    """The text of the PDF ``data``, its pages separated by ``PAGE_BREAK``; or why it has none.
    ``ocr``: reads a page without text (``Ocr``)."""
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
            pages = [_page_text(doc, i, ocr) for i in range(len(doc))]
        finally:
            doc.close()
    if not any(p.strip() for p in pages):
        many = f"{len(pages)} page{'s' * (len(pages) != 1)}"
        if ocr is not None:
            return None, f"no text in its {many}, by OCR either (blank pages, or pictures without words?)"
        return None, f"no text in its {many} (scanned pages? pass --ocr, or OCR them first with ocrmypdf)"
    return PAGE_BREAK.join(pages), None


_IMAGES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"GIF87a", b"GIF89a")


def is_image(data: bytes) -> bool:
    """Whether ``data`` begins as an image file does (PNG, JPEG, TIFF, BMP, GIF, WebP)."""
    return data.startswith(_IMAGES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def image_text(data: bytes, ocr: Ocr) -> tuple[str | None, str | None]:
    """The text OCR reads in the image ``data``, a TIFF's pages separated by ``PAGE_BREAK``; or why
    it has none."""
    import cv2
    import numpy as np

    try:
        ok, pages = cv2.imdecodemulti(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        ok, pages = False, []
    if not ok or not pages:
        return None, "not an image OpenCV reads (a damaged or truncated file?)"
    texts = [ocr.read(page) for page in pages]
    if not any(t.strip() for t in texts):
        many = f" in its {len(pages)} pages" if len(pages) > 1 else ""
        return None, f"no text found by OCR{many} (a picture without words?)"
    return PAGE_BREAK.join(texts), None


def _page_text(doc: Any, index: int, ocr: Callable[[Any], str] | None) -> str:
    page = doc[index]
    try:
        text = page.get_textpage()
        try:
            got: str = text.get_text_range()
        finally:
            text.close()
        got = got.replace("\r\n", "\n").translate(_TEXT).strip()
        if not got and ocr is not None:
            got = ocr(page)
    finally:
        page.close()
    return got


class Ocr:
    """Reads a page's text from its picture: RapidOCR, loaded at the first page that needs it.
    ``tick``: called after each page."""

    def __init__(self, tick: Callable[[], None] = lambda: None) -> None:
        self.tick = tick
        self.engine: Any = None

    def __call__(self, page: Any) -> str:
        """A PDF page's text, from its picture at ``OCR_DPI``."""
        bitmap = page.render(scale=OCR_DPI / 72)
        try:
            return self.read(bitmap.to_numpy())
        finally:
            bitmap.close()

    def read(self, picture: Any) -> str:
        """The text of a picture (an array of rows of BGR pixels), in reading order (``ocr_text``)."""
        if self.engine is None:
            from rapidocr import RapidOCR

            # a thread a worker (the job runs a worker a core); lines recognized one at a time, not
            # padded to the widest of a batch (a fifth faster on LaTeX manuals' pages); text found on
            # the page at most 1280 pixels a side (the lines are read from the page as rendered):
            # the same words on those pages, a quarter faster, 200 MB less at its peak; no angle
            # classifier: it turned upright lines over (92.0% of those pages' words against 90.8%,
            # 91.5% against 81.6% on Helvetica pages) and read no upside-down page either way
            self.engine = RapidOCR(params={"Global.log_level": "error", "Global.use_cls": False, "Rec.rec_batch_num": 1,
                                           "Det.limit_type": "max", "Det.limit_side_len": 1280,
                                           "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                                           "EngineConfig.onnxruntime.inter_op_num_threads": 1})  # fmt: skip
        import numpy as np

        found = self.engine(picture)
        if _sideways(found):  # lines running up or down the page: read it turned a quarter to the left
            picture = np.ascontiguousarray(np.rot90(picture))
            found = self.engine(picture)
        confidence = _confidence(found)
        if confidence is not None and confidence < UPRIGHT:  # upside down: read it turned over too
            turned = self.engine(np.ascontiguousarray(picture[::-1, ::-1]))
            if (_confidence(turned) or 0.0) > confidence:
                found = turned
        self.tick()
        if found.boxes is None or not found.txts:
            return ""
        return ocr_text([(float(b[:, 1].min()), float(b[:, 1].max()), float(b[:, 0].min()), float(b[:, 0].max()), t)
                         for b, t in zip(found.boxes, found.txts, strict=True)])  # fmt: skip


# a page whose lines OCR reads with less confidence than this (their scores' mean, by characters) is
# read turned over too, and the reading more confident kept: upright pages of README words at 150 dpi
# score 0.99, the same upside down 0.64-0.65, read as noise
UPRIGHT = 0.8


def _sideways(found: Any) -> bool:
    """Whether most of the text OCR found (by characters) is in boxes taller than wide: a page turned
    on its side."""
    import numpy as np

    if found.boxes is None or not found.txts:
        return False
    tall = sum(len(t) for b, t in zip(found.boxes, found.txts, strict=True) if np.ptp(b[:, 1]) > np.ptp(b[:, 0]))
    return 2 * tall > sum(len(t) for t in found.txts)


def _confidence(found: Any) -> float | None:
    """The mean of OCR's scores for the lines it read, each by its characters; None where it read none."""
    if found.boxes is None or not found.txts:
        return None
    sizes = [max(len(t), 1) for t in found.txts]
    return sum(float(s) * n for s, n in zip(found.scores, sizes, strict=True)) / sum(sizes)


Piece = tuple[float, float, float, float, str]  # a piece of text OCR found: its box's top, bottom, left, right


def ocr_text(pieces: list[Piece]) -> str:
    """The pieces of a page in reading order, by cuts through the page's blank bands (XY-cut): where
    a blank column between boxes (at least a line high) is wider than every blank row, the page's
    columns are read one after the other, left to right; else its blocks top to bottom, cut at the
    widest blank row; a block that is one line, or that no blank cuts, is read as lines
    (``ocr_lines``). On scans of LaTeX manuals (``benchmarks.dataset_ocr``), a two-column page's
    words came out in order 0.56 of them by lines alone, 0.85 so."""
    if not pieces:
        return ""
    height = sorted(p[1] - p[0] for p in pieces)[len(pieces) // 2]
    blocks, todo = [], [pieces]
    while todo:
        block = todo.pop()
        lines = ocr_lines([(p[0], p[1], p[2]) for p in block], [p[4] for p in block])
        rows, columns = _widest_blank([(p[0], p[1]) for p in block]), _widest_blank([(p[2], p[3]) for p in block])
        if "\n" in lines and columns[0] >= height and columns[0] > rows[0]:
            todo += [[p for p in block if p[3] > columns[1]], [p for p in block if p[3] <= columns[1]]]
        elif "\n" in lines and rows[0] > 0:
            todo += [[p for p in block if p[1] > rows[1]], [p for p in block if p[1] <= rows[1]]]
        else:
            blocks.append(lines)
    return "\n".join(blocks)


def _widest_blank(spans: list[tuple[float, float]]) -> tuple[float, float]:
    """The widest gap between the union of ``spans`` (its width, its middle); (0, 0) if none."""
    spans = sorted(spans)
    end, best = spans[0][1], (0.0, 0.0)
    for start, stop in spans[1:]:
        if start - end > best[0]:
            best = (start - end, (end + start) / 2)
        end = max(end, stop)
    return best


def ocr_lines(boxes: list[tuple[float, float, float]], texts: list[str]) -> str:
    """Pieces of text, each with its box's (top, bottom, left), as lines: pieces whose boxes overlap
    by half the lower one's height are a line, left to right; lines top to bottom."""
    lines: list[tuple[float, float, list[tuple[float, str]]]] = []
    for (top, bottom, left), text in sorted(zip(boxes, texts, strict=True)):
        if lines:
            line_top, line_bottom, pieces = lines[-1]
            if min(bottom, line_bottom) - max(top, line_top) >= 0.5 * min(bottom - top, line_bottom - line_top):
                pieces.append((left, text))
                lines[-1] = (line_top, max(bottom, line_bottom), pieces)
                continue
        lines.append((top, bottom, [(left, text)]))
    return "\n".join(" ".join(t.strip() for _, t in sorted(pieces)) for _, _, pieces in lines).strip()


def end_workers(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """End worker processes (this module's, the planning scan's): their pipes closed (a worker ends at
    the end of its input), then each waited for 5 s and killed if still busy."""
    import subprocess

    for proc in procs:
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def serve(requests: IO[bytes], replies: IO[bytes], ocr: bool = False) -> None:
    """Answer each PDF of ``requests`` with its text on ``replies``, until ``requests`` ends; ``ocr``:
    reading pages without text by OCR, each followed by a length of 0."""

    def tick() -> None:
        replies.write(HEADER.pack(0))
        replies.flush()

    reader = Ocr(tick) if ocr else None
    while True:
        header = read_exact(requests, HEADER.size)
        data = None if header is None else read_exact(requests, HEADER.unpack(header)[0])
        if data is None:
            return
        try:
            answer = image_text(data, reader) if reader is not None and is_image(data) else pdf_text(data, reader)
        except Exception as e:  # anything else PDFium's binding raises: the document's, not the worker's
            answer = (None, f"{'PDFium or OCR' if ocr else 'PDFium'} failed on it ({type(e).__name__}: {e})")
        body = json.dumps(answer, ensure_ascii=False).encode("utf-8", "surrogatepass")
        replies.write(HEADER.pack(len(body)) + body)
        replies.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, ocr="--ocr" in sys.argv)
