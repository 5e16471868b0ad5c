"""PDF documents for the corpus job's ``pdf_text``: a PDF's bytes are no text to a model.

The text is PDFium's (``pypdfium2``, the ``pdf`` extra; ``_pdf_worker.pdf_text``): each page's
text, pages separated by ``_pdf_worker.PAGE_BREAK``, a form feed on a line of its own: whitespace to a tokenizer
and a paragraph break to ``chunk_tokens`` windows, whose ``chunk_page`` counts them
(``_batch.CHUNK_PAGE``). A PDF without a text layer (scanned pages), one that needs a password or
one PDFium cannot read is a bad row saying which.

PDFium is not thread-safe, so the job reads PDFs in worker processes (``WORKERS`` at most, started
when the first PDF comes and kept for the next), several at once; a PDF that crashes PDFium or
keeps it busy past ``PDF_SECONDS`` costs its worker, which is replaced, and is a bad row: the job
goes on. Subprocesses, not ``multiprocessing``: its spawn and forkserver import the caller's main
module again (a script without a ``__main__`` guard would run in every worker), and fork copies a
process whose threads may hold locks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ._pdf_worker import HEADER, end_workers, read_exact

__all__ = ["PDF_SECONDS", "WORKERS", "check_ocr", "check_pdfium", "pdf_text_later"]

SUFFIXES = (".pdf",)  # documents read as PDF (a compression suffix after them too)
# documents read as images, by OCR in the same workers
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")
WORKERS = min(8, os.cpu_count() or 1)
PDF_SECONDS = 600.0  # one PDF's longest reading (with OCR, one page's): a worker still busy then is stopped

# runs the worker's file as a script, with neither the working folder nor the package's folder on its path
_START = "import runpy, sys; sys.path.pop(0); runpy.run_path(sys.argv.pop(1), run_name='__main__')"


def check_pdfium() -> None:
    """An error saying how to install ``pypdfium2`` where it is not (the workers import it: this
    process need not load PDFium)."""
    _installed("pypdfium2", "pdf_text (--pdf-text) reads PDFs with pypdfium2", "pdf")


def check_ocr(what: str = "ocr (--ocr) reads scanned pages") -> None:
    """An error saying how to install RapidOCR where it is not (the workers import it)."""
    _installed("rapidocr", f"{what} with RapidOCR", "ocr")


def _installed(module: str, what: str, extra: str) -> None:
    """An ``InputError`` where ``module`` is not installed: ``what`` needs it, the ``extra`` has it."""
    if importlib.util.find_spec(module) is None:
        from ._sources import InputError

        raise InputError(f"{what}, which is not installed: pip install 'embedrt[{extra}]'")


class _Worker:
    """A worker process (``_pdf_worker``) and its pipes; ``ocr``: it reads pages without text by OCR."""

    def __init__(self, ocr: bool = False) -> None:
        path = str(Path(__file__).with_name("_pdf_worker.py"))
        # a session of its own: a terminal's Ctrl-C interrupts the job, not its workers (which end
        # when the job closes their input, or ends)
        self.proc = subprocess.Popen([sys.executable, "-c", _START, path, *(["--ocr"] if ocr else [])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                     start_new_session=True)  # fmt: skip
        self.stopped = False  # past its time

    def _stop(self) -> None:
        self.stopped = True
        self.proc.kill()

    def text(self, data: bytes, seconds: float) -> tuple[str | None, str | None] | None:
        """The PDF's (text, reason); None if the worker ended or was stopped, silent for ``seconds``
        (a page read by OCR starts the clock again)."""
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        timer = threading.Timer(seconds, self._stop)
        timer.start()
        try:
            proc.stdin.write(HEADER.pack(len(data)) + data)
            while True:
                header = read_exact(proc.stdout, HEADER.size)
                size = None if header is None else HEADER.unpack(header)[0]
                if size != 0:
                    break
                timer.cancel()
                timer = threading.Timer(seconds, self._stop)
                timer.start()
            body = None if size is None else read_exact(proc.stdout, size)
        except OSError:  # its input closed: it ended
            body = None
        finally:
            timer.cancel()
        if body is None:
            return None
        text, reason = json.loads(body.decode("utf-8", "surrogatepass"))
        return text, reason

    def close(self) -> None:
        end_workers([self.proc])


class _Pool:
    """Up to ``WORKERS`` workers, each reading one PDF at a time; ``ocr``: pages without text by OCR."""

    def __init__(self, size: int, ocr: bool = False) -> None:
        self.size, self.ocr = size, ocr
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self.started = 0
        self.lock = threading.Lock()
        self.threads = ThreadPoolExecutor(size, thread_name_prefix="embedrt-pdf")

    def _take(self) -> _Worker:
        with self.lock:
            if self.started < self.size and self.idle.empty():
                worker = _Worker(self.ocr)
                self.started += 1
                return worker
        return self.idle.get()

    def text(self, data: bytes) -> tuple[str | None, str | None]:
        worker = self._take()
        got = worker.text(data, PDF_SECONDS)
        if got is not None:
            self.idle.put(worker)
            return got
        worker.close()
        with self.lock:
            self.started -= 1  # a new one in its place, when next needed
        if worker.stopped:
            if self.ocr:
                return None, f"PDFium or OCR read it for over {PDF_SECONDS:g} s without a page done: stopped (a malformed PDF?)"
            return None, f"PDFium read it for over {PDF_SECONDS:g} s: stopped (a malformed PDF?)"
        return None, f"PDFium crashed reading it (its worker ended with code {worker.proc.returncode}): a malformed PDF?"

    def close(self) -> None:
        self.threads.shutdown()
        while not self.idle.empty():
            self.idle.get().close()


_pools: dict[bool, _Pool] = {}  # without OCR, with it
_pool_lock = threading.Lock()


def pdf_text_later(data: bytes, ocr: bool = False) -> Future[tuple[str | None, str | None]]:
    """The PDF's (text, reason), to come: read in a worker process while the caller goes on; ``ocr``:
    its pages without text read by OCR, and ``data`` may be an image's (read by OCR)."""
    with _pool_lock:
        if ocr not in _pools:
            check_pdfium()  # the workers import it
            if ocr:
                check_ocr()
            _pools[ocr] = _Pool(WORKERS, ocr)
        pool = _pools[ocr]
    return pool.threads.submit(pool.text, data)
