"""Scanned PDFs in the corpus job (``pdf_text=True, ocr=True``): how fast OCR reads them, and how much
of their text it gets right.

    python -m benchmarks.dataset_ocr PDF-FOLDER [--glob 'latex/tools/*.pdf'] [--pages-per-pdf 3]
        [--pdfs 12] [--machine NAME]

Scans are made from PDFs that have a text layer, so that the right text is known: the first
``--pages-per-pdf`` pages of the first ``--pdfs`` PDFs of ``--glob``, each page rendered at 150 dpi
in grey and saved as a picture-only PDF (what a scanner or a fax gives), the reference being
PDFium's text of the same pages.

1. Reading: each scan by ``_pdf_worker.pdf_text`` with OCR in this process (one thread, as each
   worker runs it), then all of them by the job's reader (``plan_input`` and ``read_slices``:
   ``WORKERS`` worker processes); seconds, pages a second.
2. Right text: per PDF, the reference's words found by OCR in the same order (``difflib``'s
   matching blocks over the word sequences: recall, and precision over OCR's words), in all and
   the worst PDF's.

Writes ``benchmarks/results/dataset-ocr-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import importlib.metadata
import io
import sys
import time
from pathlib import Path

from benchmarks.dataset import CACHE, cpu_flags, cpu_model
from benchmarks.results_file import write_json

HERE = Path(__file__).resolve().parent


def _scans(files: list[Path], pages: int, out: Path) -> list[tuple[Path, str, int]]:
    """Each PDF's first ``pages`` pages as a picture-only PDF in ``out``: (its path, the reference
    text, its pages)."""
    import pypdfium2

    from embedrt.dataset._pdf_worker import pdf_text

    made = []
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        doc = pypdfium2.PdfDocument(f.read_bytes())
        keep = list(range(min(pages, len(doc))))
        first, scan = pypdfium2.PdfDocument.new(), pypdfium2.PdfDocument.new()
        first.import_pages(doc, keep)
        for i in keep:
            picture = doc[i].render(scale=150 / 72).to_pil().convert("L")
            page = io.BytesIO()
            picture.save(page, "PDF", resolution=150)
            scan.import_pages(pypdfium2.PdfDocument(page.getvalue()))
        saved, text_layer = io.BytesIO(), io.BytesIO()
        scan.save(saved)
        first.save(text_layer)
        reference, _why = pdf_text(text_layer.getvalue())
        target = out / f"{f.stem}.pdf"
        target.write_bytes(saved.getvalue())
        made.append((target, reference or "", len(keep)))
    return made


def _agreement(reference: str, read: str) -> tuple[int, int, int]:
    """(the reference's words, OCR's words, those in both in the same order)."""
    ref, got = reference.split(), read.split()
    same = sum(b.size for b in difflib.SequenceMatcher(None, ref, got, autojunk=False).get_matching_blocks())
    return len(ref), len(got), same


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pdfs")
    p.add_argument("--glob", default="**/*.pdf")
    p.add_argument("--pages-per-pdf", type=int, default=3)
    p.add_argument("--pdfs", dest="count", type=int, default=12)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    import onnxruntime
    import pypdfium2

    from embedrt.dataset._pdf import WORKERS
    from embedrt.dataset._pdf_worker import OCR_DPI, Ocr, pdf_text
    from embedrt.dataset._readers import read_slices
    from embedrt.dataset._sources import plan_input

    folder = Path(args.pdfs).resolve()
    files = sorted(folder.glob(args.glob))[: args.count]
    work = CACHE / "ocr-scans"
    scans = _scans(files, args.pages_per_pdf, work)
    pages = sum(n for _, _, n in scans)
    print(f"  {len(scans)} scans, {pages} pages, in {work}", flush=True)

    ocr = Ocr()
    ocr_texts: dict[str, str] = {}
    t0 = time.perf_counter()
    for path, _ref, _n in scans:
        text, why = pdf_text(path.read_bytes(), ocr)
        ocr_texts[path.name] = text or ""
        assert text is not None, why
    one = time.perf_counter() - t0
    print(f"  one at a time, one thread: {one:.1f} s, {one / pages:.2f} s a page (the models' loading included)", flush=True)

    t0 = time.perf_counter()
    plan = plan_input(str(work), 100, text="text", id_column="path", keep_columns=("text",), documents=True,
                      as_text=("pdf",), ocr=True)  # fmt: skip
    read = {}
    for part in plan.parts:
        for table in read_slices(plan, part, "text", "path", ("text",)):
            read.update(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))
    job = time.perf_counter() - t0
    print(f"  the job's reader, {WORKERS} workers: {job:.1f} s, {pages / job:.2f} pages a second", flush=True)
    assert read == ocr_texts, "the job's reader and the worker function differ"

    per_pdf = []
    for path, ref, n in scans:
        words, found, same = _agreement(ref, ocr_texts[path.name])
        per_pdf.append({"pdf": path.name, "pages": n, "reference_words": words, "ocr_words": found, "same": same,
                        "recall": same / max(words, 1), "precision": same / max(found, 1)})  # fmt: skip
        print(f"    {path.name}: recall {same / max(words, 1):.3f}, precision {same / max(found, 1):.3f}", flush=True)
    words = sum(r["reference_words"] for r in per_pdf)
    found = sum(r["ocr_words"] for r in per_pdf)
    same = sum(r["same"] for r in per_pdf)
    summary = {"recall": same / words, "precision": same / found, "worst_recall": min(r["recall"] for r in per_pdf)}
    print(f"  words: {summary}", flush=True)
    result = {
        "benchmark": "dataset_ocr", "date": datetime.date.today().isoformat(), "machine": args.machine,
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "onnxruntime": onnxruntime.__version__,
        "rapidocr": importlib.metadata.version("rapidocr"),
        "pypdfium2": str(pypdfium2.version.PYPDFIUM_INFO.version), "pdfium": str(pypdfium2.version.PDFIUM_INFO.version), "ocr_dpi": OCR_DPI, "scan_dpi": 150, "workers": WORKERS,
        "command": "python -m benchmarks.dataset_ocr " + " ".join(sys.argv[1:] if argv is None else argv),
        "pdfs": len(scans), "pages": pages,
        "one_at_a_time": {"seconds": one, "seconds_per_page": one / pages},
        "job_reader": {"seconds": job, "pages_per_second": pages / job},
        "words": summary, "per_pdf": per_pdf,
    }  # fmt: skip
    out = HERE / "results" / f"dataset-ocr-{args.machine}-{datetime.date.today():%Y%m%d}.json"
    write_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
