"""The corpus job on a corpus that repeats its texts all through the file (a query log), with the
repeat cache at each size asked for and without it.

    python -m benchmarks.dataset_repeats BUNDLE --rows 100000 --distinct 200000 --zipf 1.0 --cache-mb 0 16 64 --rounds 2

- Corpus: ``--rows`` rows drawn (seed 0) from ``--distinct`` distinct texts, the text of rank r
  with a probability in proportion to 1 / r ** ``--zipf`` (query logs and titles are about Zipf
  1.0); the texts are the frozen benchmark sentences (``benchmarks/corpus.py``), made distinct by a
  numbered suffix, in a shuffled order of ranks. JSONL with a string id, written once into
  ``benchmarks/.cache``.
- ``--sentences K`` makes each distinct text a document of K benchmark sentences drawn at random
  (seeded by its number: documents share no run of sentences; a document dump whose files recur), and ``--chunk-tokens N`` embeds rows in windows (the cache then
  holds windows; "texts embedded" counts windows then).
- Each run is ``embed_dataset`` with its defaults (parts of 10,000 rows, two streams on two threads)
  but ``repeat_cache_mb``, in a fresh process (peak RSS from ``VmHWM``), the sizes alternating,
  ``--rounds`` times: seconds, rows/s, repeated rows (not embedded), tokens embedded. With
  ``--ray N`` the job runs on a local Ray with N actors of one CPU each, a cache each (their RSS is
  not in the driver's).
- Also written: how many texts the model would embed with repeats found within a part only (the
  sum of each part's distinct texts) and how many distinct texts the corpus has (the least any
  cache can do).

Writes ``benchmarks/results/dataset-repeats-<machine>-<date>.json`` with the CPU flags.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.dataset import CACHE, cpu_flags, cpu_model
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent
PART = 10_000  # embed_dataset's default rows_per_part


def generate(rows: int, distinct: int, zipf: float, sentences: int = 1) -> tuple[Path, dict[str, int]]:
    """The query-log corpus (made once) and its counts of distinct texts: whole and summed per part."""
    rng = np.random.default_rng(0)
    p = 1 / np.arange(1, distinct + 1) ** zipf
    ranks = rng.choice(distinct, size=rows, p=p / p.sum())
    counts = {"distinct_in_corpus": len(np.unique(ranks)),
              "distinct_per_part_summed": sum(len(np.unique(ranks[i : i + PART])) for i in range(0, rows, PART))}  # fmt: skip
    path = CACHE / f"queries-{rows}-{distinct}-{zipf}{f'-x{sentences}' if sentences > 1 else ''}.jsonl"
    if path.is_file():
        return path, counts
    from benchmarks.corpus import load_sentences

    pool = load_sentences(2000, seed=0)
    text_of = rng.permutation(distinct)  # rank -> text number: frequent texts of every length
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for i, r in enumerate(ranks.tolist()):
            k = int(text_of[r])
            body = pool[k % len(pool)] if sentences == 1 else " ".join(
                pool[j] for j in np.random.default_rng(k).choice(len(pool), sentences, replace=False))
            f.write(json.dumps({"id": f"row-{i}", "text": f"{body} (#{k})"}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path, counts


def _child(bundle: str, corpus: str, cache_mb: float, actors: int, chunk_tokens: int = 0) -> dict[str, Any]:
    from embedrt.dataset import RayOptions, embed_dataset

    out = CACHE / f"out-repeats-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    ray = {"backend": "ray", "ray": RayOptions(num_actors=actors, cpus_per_actor=1)} if actors else {}
    t0 = time.perf_counter()
    chunks = {"chunk_tokens": chunk_tokens} if chunk_tokens else {}
    s = embed_dataset(corpus, out, bundle, id_column="id", progress=False, repeat_cache_mb=cache_mb, **ray, **chunks)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"cache_mb": cache_mb, "seconds": round(seconds, 2), "rows": s.written, "rows_per_s": round(s.written / seconds, 1),
            "repeated_rows": s.repeats, "embedded_texts": s.written - s.repeats, "tokens_embedded": s.tokens,
            "rows_read": s.rows,
            "peak_rss_mb": round(peak_rss_mb(), 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], float(argv[3]), int(argv[4]), int(argv[5]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--distinct", type=int, default=200_000)
    p.add_argument("--zipf", type=float, default=1.0)
    p.add_argument("--cache-mb", type=float, nargs="+", default=[0, 16, 64])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--ray", type=int, default=0, metavar="N", help="run on a local Ray with N actors of one CPU")
    p.add_argument("--sentences", type=int, default=1, metavar="K", help="each distinct text K sentences long")
    p.add_argument("--chunk-tokens", type=int, default=0, metavar="N", help="embed in windows of N tokens")
    p.add_argument("--machine", default=platform.node())
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    corpus, counts = generate(args.rows, args.distinct, args.zipf, args.sentences)
    print(f"{args.rows} rows, {counts['distinct_in_corpus']} distinct texts, "
          f"{counts['distinct_per_part_summed']} distinct per part summed", flush=True)  # fmt: skip
    runs = []
    for r in range(args.rounds):
        for mb in args.cache_mb:
            load = os.getloadavg()[0]
            cmd = [sys.executable, "-m", "benchmarks.dataset_repeats", "_child", args.bundle, str(corpus), str(mb),
                   str(args.ray), str(args.chunk_tokens)]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, check=False)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            run = {**json.loads(done.stdout.strip().splitlines()[-1]), "round": r, "load_before": round(load, 2)}
            runs.append(run)
            print(f"  round {r} cache {mb:>5} MB: {run['seconds']:7.1f} s, {run['rows_per_s']:7.1f} rows/s, "
                  f"{run['embedded_texts']} texts embedded, peak RSS {run['peak_rss_mb']:.0f} MB (load {load:.1f})",
                  flush=True)  # fmt: skip
    best = {mb: min(x["seconds"] for x in runs if x["cache_mb"] == mb) for mb in args.cache_mb}
    base = best.get(0.0, best[args.cache_mb[0]])
    result = {
        "command": "python -m benchmarks.dataset_repeats " + " ".join(argv),
        "machine": args.machine, "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpus": os.cpu_count(),
        "bundle": args.bundle, "ray_actors": args.ray, "rows": args.rows, "distinct": args.distinct, "zipf": args.zipf,
        "sentences": args.sentences, "chunk_tokens": args.chunk_tokens, **counts,
        "runs": runs, "best_seconds": best, "speedup_over_first": {mb: round(base / s, 3) for mb, s in best.items()},
    }  # fmt: skip
    out = args.out or HERE / "results" / f"dataset-repeats-{args.machine}-{time.strftime('%Y%m%d')}.json"
    write_json(out, result)
    print(json.dumps(result["speedup_over_first"]), "->", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
