"""A reranker over a pairs corpus: the corpus job (``embed_dataset(..., query_column=...)``) against
sentence-transformers' ``CrossEncoder.predict`` and embedrt's ``Reranker.predict`` of the same pairs.

    python -m benchmarks.dataset_pairs [--rows 2000] [--rounds 3] [--machine NAME]

The cross-encoder is the MiniLM-L6-sized one ``benchmarks.kinds_speed`` builds (all-MiniLM-L6-v2's
encoder, a random one-label head: the shape and cost of cross-encoder/ms-marco-MiniLM-L6-v2; its
scores mean nothing), exported once. Pairs: ``--rows`` rows of JSONL, each a benchmark sentence as
the query (its first 12 words) and a corpus text (``benchmarks.dataset``'s corpus) as the document.
Each measurement is a fresh process: the job end to end (read JSONL, score, write Parquet; the job's
default streams) and the two ``predict`` calls on the pairs already in memory (only the call timed;
batch 32, 2 threads), alternating, ``--rounds`` times. Writes
``benchmarks/results/dataset-pairs-<machine>-<date>.json`` with texts/s (pairs/s) and peak RSS.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cached_jsonl, cpu_flags, cpu_model, generate
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent
KINDS = HERE / ".cache" / "kinds"


def pairs_corpus(rows: int) -> Path:
    """``rows`` (query, text) rows as JSONL, made once and cached."""

    def pairs() -> Iterator[dict[str, Any]]:
        from benchmarks.corpus import load_sentences

        queries = [" ".join(s.split()[:12]) for s in load_sentences(500, seed=1)]
        with generate(rows).open(encoding="utf-8") as src:
            for i, row in enumerate(map(json.loads, src)):
                yield {"id": row["id"], "query": queries[(i * 31) % len(queries)], "text": row["text"]}

    return cached_jsonl(CACHE / f"pairs-{rows}.jsonl", pairs)


def _child(kind: str, model: str, corpus: str, threads: int) -> dict[str, Any]:
    result: dict[str, Any] = {"kind": kind}
    if kind == "job":
        from embedrt.dataset import embed_dataset

        out = CACHE / f"out-pairs-{os.getpid()}"
        t0 = time.perf_counter()
        s = embed_dataset(corpus, out, model, query_column="query", id_column="id", threads=threads, progress=False)
        result["seconds"] = time.perf_counter() - t0
        result["rows"] = s.written
        shutil.rmtree(out, ignore_errors=True)
    else:
        with open(corpus, encoding="utf-8") as f:
            pairs = [(r["query"], r["text"]) for r in map(json.loads, f)]
        if kind == "ce":
            import torch
            from sentence_transformers import CrossEncoder

            torch.set_num_threads(threads)
            predict = CrossEncoder(model, device="cpu").predict
        else:
            from embedrt import Reranker

            predict = Reranker(model, threads=threads).predict
        t0 = time.perf_counter()
        scores = predict(pairs, batch_size=32)
        result["seconds"] = time.perf_counter() - t0
        result["rows"] = len(scores)
    result["pairs_per_s"] = result["rows"] / result["seconds"]
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], int(argv[4]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    from benchmarks.kinds_speed import _build, _export

    KINDS.mkdir(parents=True, exist_ok=True)
    ce_dir = _build(KINDS)[0]
    bundle = _export(ce_dir, KINDS / "ce-bundle-minilm")
    corpus = pairs_corpus(args.rows)
    systems = {"job": str(bundle), "predict": str(bundle), "ce": str(ce_dir)}
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for kind, model in systems.items():
            load = os.getloadavg()[0]
            cmd = [sys.executable, "-m", "benchmarks.dataset_pairs", "_child", kind, model, str(corpus), str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
            run = {**json.loads(out.stdout.strip().splitlines()[-1]), "round": r, "load_before": round(load, 2)}
            runs.append(run)
            print(f"  round {r} {kind:>7}: {run['pairs_per_s']:8.1f} pairs/s, peak RSS {run['peak_rss_mb']:6.0f} MB "
                  f"(load {load:.1f})", flush=True)  # fmt: skip
    best = {k: max(x["pairs_per_s"] for x in runs if x["kind"] == k) for k in systems}
    summary = {"best_pairs_per_s": best, "job_over_crossencoder": best["job"] / best["ce"],
               "job_over_predict": best["job"] / best["predict"]}  # fmt: skip
    print(json.dumps(summary, indent=1))
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-pairs-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_pairs " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "rows": args.rows, "threads": args.threads, "runs": runs, **summary,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
