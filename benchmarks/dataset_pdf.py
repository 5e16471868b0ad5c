"""PDF documents in the corpus job (``documents=True, pdf_text=True``): what reading PDFs costs.

    python -m benchmarks.dataset_pdf BUNDLE PDF-FOLDER [--job-glob 'sub/**/*.pdf'] [--rounds 2] [--machine NAME]

1. Text extraction over every ``**/*.pdf`` under PDF-FOLDER: in this process, one at a time
   (``_pdf_worker.pdf_text``, PDFium), and by the job's reader (``plan_input`` and ``read_slices``
   of every part: worker processes, PDFs read ahead): files, megabytes, pages, characters,
   seconds, bad rows by reason; on the job's PDFs also pypdf's ``extract_text`` where pypdf is importable (the
   pure-Python reader; not a dependency), for its speed beside PDFium's.
2. The job on ``--job-glob`` (default: every PDF), ``chunk_tokens="max"``, in fresh processes:
   the PDFs, against the same texts already extracted as ``.txt`` documents (what a user who
   converts first embeds: the same windows), alternating; seconds, windows, tokens, peak RSS.

Writes ``benchmarks/results/dataset-pdf-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, run_child
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent


def _child(bundle: str, spec: str, out: str, pdf: bool) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    t0 = time.perf_counter()
    s = embed_dataset(spec, out, bundle, documents=True, pdf_text=pdf, chunk_tokens="max", progress=False)
    return {"seconds": time.perf_counter() - t0, "documents": s.rows, "windows": s.written, "tokens": s.tokens,
            "bad_rows": s.bad_rows, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _extract(files: list[Path]) -> tuple[dict[str, Any], dict[Path, str]]:
    from embedrt.dataset._pdf_worker import pdf_text

    texts, why = {}, collections.Counter[str]()
    size = 0
    t0 = time.perf_counter()
    for f in files:
        data = f.read_bytes()
        size += len(data)
        text, bad = pdf_text(data)
        if text is None:
            why[str(bad)] += 1
        else:
            texts[f] = text
    seconds = time.perf_counter() - t0
    pages = sum(t.count("\f") + 1 for t in texts.values())
    chars = sum(len(t) for t in texts.values())
    return {"files": len(files), "megabytes": size / 1e6, "pages": pages, "characters": chars, "seconds": seconds,
            "pages_per_second": pages / seconds, "characters_per_second": chars / seconds,
            "bad_rows": dict(why)}, texts  # fmt: skip


def _reader(folder: Path) -> dict[str, Any]:
    """Every PDF under ``folder`` read as the job reads them: planned, then each part's slices."""
    from embedrt.dataset._readers import read_slices
    from embedrt.dataset._sources import plan_input

    t0 = time.perf_counter()
    plan = plan_input(f"{folder}/**/*.pdf", 100, text="text", id_column="path", keep_columns=("text",),
                      documents=True, as_text=("pdf",))  # fmt: skip
    documents = pages = chars = 0
    for part in plan.parts:
        for table in read_slices(plan, part, "text", "path", ("text",)):
            texts = [t for t in table.column("text").to_pylist() if t is not None]
            documents += table.num_rows
            pages += sum(t.count("\f") + 1 for t in texts)
            chars += sum(map(len, texts))
    seconds = time.perf_counter() - t0
    return {"documents": documents, "pages": pages, "characters": chars, "parts": len(plan.parts),
            "seconds": seconds, "pages_per_second": pages / seconds}  # fmt: skip


def _pypdf(files: list[Path]) -> dict[str, Any] | None:
    try:
        import pypdf
    except ImportError:
        return None
    t0 = time.perf_counter()
    pages = chars = 0
    for f in files:
        reader = pypdf.PdfReader(f)
        pages += len(reader.pages)
        chars += sum(len(p.extract_text()) for p in reader.pages)
    seconds = time.perf_counter() - t0
    return {"version": pypdf.__version__, "pages": pages, "characters": chars, "seconds": seconds,
            "pages_per_second": pages / seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], argv[4] == "1")))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("pdfs")
    p.add_argument("--job-glob", default="**/*.pdf", help="the job's PDFs, under PDF-FOLDER")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    import pypdfium2

    from embedrt.dataset._pdf import WORKERS

    folder = Path(args.pdfs).resolve()
    every, chosen = sorted(folder.glob("**/*.pdf")), sorted(folder.glob(args.job_glob))
    extraction, _ = _extract(every)
    print(f"  extraction, every PDF: {extraction}", flush=True)
    in_workers = _reader(folder)
    print(f"  extraction, every PDF, the job's reader ({WORKERS} worker processes): {in_workers}", flush=True)
    job_extraction, texts = _extract(chosen)
    print(f"  extraction, the job's PDFs: {job_extraction}", flush=True)
    pypdf = _pypdf(chosen)
    print(f"  pypdf, the job's PDFs: {pypdf}", flush=True)
    work = CACHE / f"pdf-{os.getpid()}"
    extracted = work / "texts"
    for f, text in texts.items():  # the same texts as .txt documents: the same windows
        target = extracted / f.relative_to(folder).with_suffix(".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    runs: dict[str, list[dict[str, Any]]] = {"pdf": [], "extracted": []}
    try:
        for r in range(args.rounds):
            for name in runs:
                spec = str(folder / args.job_glob) if name == "pdf" else str(extracted)
                run = run_child("benchmarks.dataset_pdf", [args.bundle, spec, str(work / f"{name}-{r}"), str(int(name == "pdf"))])
                runs[name].append(run)
                print(f"  round {r}, {name}: {run}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-pdf-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_pdf " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "pypdfium2": str(pypdfium2.version.PYPDFIUM_INFO.version), "pdfium": str(pypdfium2.version.PDFIUM_INFO.version),
        "pdfs": str(folder), "extraction": extraction, "workers": WORKERS, "extraction_in_workers": in_workers,
        "job_extraction": job_extraction, "pypdf": pypdf,
        "runs": runs, "best_seconds": best, "pdf_over_extracted": best["pdf"] / best["extracted"],
    })  # fmt: skip
    print(f"  best seconds {best}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
