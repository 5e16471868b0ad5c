"""A folder of documents, a file each, embedded by the corpus job: ``documents=True`` against the
same texts as one JSONL file (what a user converts the folder to without it) and as a JSONL file
per document (the input a part per file makes), then the folder grown and edited and the job run
again.

    python -m benchmarks.dataset_documents BUNDLE [--docs 20000] [--sentences 8] [--rounds 2]
        [--per-file-docs 2000] [--added 50] [--edited 50] [--removed 50] [--check] [--machine NAME]

Documents are ``--sentences`` consecutive texts of the benchmark corpus (``benchmarks.dataset``),
written as ``docs/NNN/NNNNNN.md`` (a thousand a folder). Each job runs with its defaults (parts
of 100 documents on average; of 10,000 JSONL rows) in a fresh process, the
inputs alternating within a round: its seconds, rows per second and peak RSS, and its planning
alone (a dry run, which reads every file but loads no model). The per-file JSONL case takes the
first ``--per-file-docs`` documents only (it writes a part per file) and is compared with the
documents job on the same ones. Then ``--added`` documents are added, ``--edited`` rewritten and
``--removed`` deleted (a fixed seed), and the documents job runs again on its folder: the rows it
embeds, its seconds; ``--check`` compares that folder with a clean run. Writes
``benchmarks/results/dataset-documents-<machine>-<date>.json``.
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

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, generate, run_child, same_table
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent


def _child(bundle: str, src: str, out: str, kind: str, dry: bool) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    kw: dict[str, Any] = {"progress": False, "dry_run": dry}  # the job's defaults: parts of 100 documents, of 10,000 rows
    if kind == "documents":
        kw["documents"] = True
    else:
        kw["id_column"] = "id"
    t0 = time.perf_counter()
    s = embed_dataset(src, out, bundle, **kw)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": s.rows, "rows_embedded": s.rows_embedded, "parts": s.parts,
            "parts_resumed": s.parts_resumed, "parts_moved": s.parts_moved, "tokens": s.tokens,
            "rows_per_second": s.rows / seconds if not dry else None, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _run(bundle: str, src: Path, out: Path, kind: str, dry: bool = False) -> dict[str, Any]:
    return run_child("benchmarks.dataset_documents", [bundle, str(src), str(out), kind, str(int(dry))])


def _write_docs(root: Path, docs: dict[str, str]) -> None:
    for name, text in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _jsonl(path: Path, docs: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": n, "text": t}, ensure_ascii=False) + "\n" for n, t in docs.items()),
                    encoding="utf-8")  # fmt: skip


def _name(i: int) -> str:
    return f"{i // 1000:03d}/{i:06d}.md"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], argv[4], argv[5] == "1")))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--docs", type=int, default=20_000)
    p.add_argument("--sentences", type=int, default=8, help="corpus texts per document")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--per-file-docs", type=int, default=2000, help="documents of the JSONL-file-per-document case")
    p.add_argument("--added", type=int, default=50)
    p.add_argument("--edited", type=int, default=50)
    p.add_argument("--removed", type=int, default=50)
    p.add_argument("--check", action="store_true", help="compare the grown folder's output with a clean run")
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    with generate((args.docs + args.added) * args.sentences).open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    k = args.sentences
    docs = {_name(i): "\n".join(texts[i * k:(i + 1) * k]) + "\n" for i in range(args.docs + args.added)}
    names = list(docs)
    kept, extra = {n: docs[n] for n in names[:args.docs]}, {n: docs[n] for n in names[args.docs:]}
    few = dict(list(kept.items())[:args.per_file_docs])
    work = CACHE / f"documents-{os.getpid()}"
    inputs = {"documents": work / "docs", "jsonl": work / "docs.jsonl", "few_documents": work / "few",
              "few_jsonl_per_file": work / "few-jsonl"}  # fmt: skip
    results: dict[str, Any] = {"runs": {name: [] for name in inputs}, "planning": {name: [] for name in inputs}}
    try:
        _write_docs(inputs["documents"], kept)
        _jsonl(inputs["jsonl"], kept)
        _write_docs(inputs["few_documents"], few)
        for n, t in few.items():
            _jsonl(inputs["few_jsonl_per_file"] / (n.removesuffix(".md") + ".jsonl"), {n: t})
        for r in range(args.rounds):
            for name, src in inputs.items():
                kind = "documents" if "documents" in name else "jsonl"
                out = work / f"out-{name}-{r}"
                results["planning"][name].append(_run(args.bundle, src, out, kind, dry=True)["seconds"])
                run = _run(args.bundle, src, out, kind)
                results["runs"][name].append(run)
                print(f"  round {r}, {name}: planning {results['planning'][name][-1]:.2f} s, {run}", flush=True)
        rng = random.Random(0)
        folder, out = inputs["documents"], work / f"out-documents-{args.rounds - 1}"
        touched = rng.sample(list(kept), args.edited + args.removed)
        for n in touched[:args.edited]:
            (folder / n).write_text(kept[n] + "An added line.\n", encoding="utf-8")
        for n in touched[args.edited:]:
            (folder / n).unlink()
        for n, t in extra.items():  # new documents land among the others (their names sort in between)
            at = rng.randrange(args.docs)
            _write_docs(folder, {_name(at).replace(".md", f"-new{n[-9:-3]}.md"): t})
        again = _run(args.bundle, folder, out, "documents")
        results["after_edits"] = again
        print(f"  after the edits: {again}", flush=True)
        if args.check:
            clean = _run(args.bundle, folder, work / "clean", "documents")
            results["clean_run"] = clean
            results["same_table_as_clean_run"] = same_table(out, work / "clean")
            print(f"  clean run {clean}; the same table: {results['same_table_as_clean_run']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {name: min(r["seconds"] for r in runs) for name, runs in results["runs"].items()}
    results["best_seconds"] = best
    results["documents_vs_jsonl"] = best["jsonl"] / best["documents"]
    results["documents_vs_jsonl_per_file"] = best["few_jsonl_per_file"] / best["few_documents"]
    print(f"  best seconds {best}", flush=True)
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-documents-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_documents " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "docs": args.docs, "sentences": args.sentences, "per_file_docs": args.per_file_docs, "added": args.added,
        "edited": args.edited, "removed": args.removed, **results,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
