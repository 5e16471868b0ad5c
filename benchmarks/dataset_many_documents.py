"""A folder of very many small documents (a crawl, a wiki export: a file a page) through the corpus
job: what planning and the job's own records cost per document, in time, peak RSS and bytes.

    python -m benchmarks.dataset_many_documents BUNDLE [--docs 200000] [--sentences 2] [--edited 100]
        [--before PYTHONPATH] [--machine NAME]

The folder holds ``--docs`` Markdown files of ``--sentences`` consecutive texts of the benchmark
corpus (``benchmarks.dataset``), a thousand a folder, made once and kept in the benchmarks'
cache, and read once before the first step (so that no variant pays for the disk alone). Each step
runs in a fresh process with the job's defaults (``documents=True``): a dry run
into a new output (planning alone: the walk, a hash of every file), the job, the job again (a
resume with nothing left to do: every file's stamp read, the scan record and the manifest read
and written), then ``--edited`` documents rewritten (a fixed seed) and the job again (their parts
embedded anew). Each step's seconds and peak RSS; the sizes of the manifest, the scan record and
the journal. With ``--before PYTHONPATH`` (a folder holding an older ``embedrt`` package) that
version runs each step too, alternating with this one. The edited documents are restored at the
end. Writes ``benchmarks/results/dataset-many-documents-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, generate, run_child
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent
_RECORDS = ("_manifest.json", "_input_scan.arrow", "_input_scan.json", "_parts.jsonl")


def _child(bundle: str, src: str, out: str, dry: bool) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    t0 = time.perf_counter()
    s = embed_dataset(src, out, bundle, documents=True, progress=False, dry_run=dry)
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "rows_embedded": s.rows_embedded, "parts": s.parts,
            "parts_resumed": s.parts_resumed, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _folder(docs: int, sentences: int) -> Path:
    """The documents, written once (a temporary folder, then renamed: a folder that is there is whole)."""
    folder = CACHE / f"many-documents-{docs}-{sentences}"
    if folder.is_dir():
        return folder
    with generate(docs * sentences).open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for i in range(docs):
        sub = tmp / f"{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"{i:07d}.md").write_text("\n\n".join(texts[i * sentences:(i + 1) * sentences]) + "\n", encoding="utf-8")
    os.replace(tmp, folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], argv[4] == "1")))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--docs", type=int, default=200_000)
    p.add_argument("--sentences", type=int, default=2, help="corpus texts per document")
    p.add_argument("--edited", type=int, default=100)
    p.add_argument("--before", default=None, help="PYTHONPATH of an older embedrt, run alternating with this one")
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    folder = _folder(args.docs, args.sentences)
    variants = ["now", *(["before"] if args.before else [])]
    work = CACHE / f"many-documents-out-{os.getpid()}"
    results: dict[str, Any] = {v: {} for v in variants}

    def step(variant: str, name: str, dry: bool = False) -> None:
        out = work / variant
        run = run_child("benchmarks.dataset_many_documents", [args.bundle, str(folder), str(out), str(int(dry))],
                        pythonpath=args.before if variant == "before" else None)  # fmt: skip
        if not dry:
            run["bytes"] = {n: (out / n).stat().st_size for n in _RECORDS if (out / n).exists()}
        results[variant][name] = run
        print(f"  {variant} {name}: {run}", flush=True)

    names = sorted(str(f.relative_to(folder)) for f in folder.rglob("*.md"))
    for n in names:  # in the page cache before the first step, as for the later ones
        (folder / n).read_bytes()
    touched = random.Random(0).sample(names, args.edited)
    originals = {n: (folder / n).read_bytes() for n in touched}
    try:
        for v in variants:  # a dry run first: the output folder is new
            step(v, "dry_run", dry=True)
        for name in ("run", "again"):
            for v in variants:
                step(v, name)
        time.sleep(4)  # the job keeps no findings of a file written within 3 s of its scan
        for n in touched:
            (folder / n).write_bytes(originals[n] + b"An added line.\n")
        for v in variants:
            step(v, "after_edits")
    finally:
        for n, data in originals.items():
            (folder / n).write_bytes(data)
        shutil.rmtree(work, ignore_errors=True)
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-many-documents-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_many_documents " + " ".join(argv), "cpu": cpu_model(),
        "flags": cpu_flags(), "docs": args.docs, "sentences": args.sentences, "edited": args.edited, **results,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
