"""Tokenizing one text at batch 1: ``Tokenizer.encode_batch([text])`` against ``Tokenizer.encode(text)``
where they run in a real batch-1 loop, right after the model's ``session.run`` (whose intra-op threads
are still spinning on the cores the tokenizer's thread pool then wakes up on).

For each of ``--texts`` real sentences (``benchmarks.corpus``, seed 1): one ``session.run``, then one
tokenizer call, the two calls alternating first and second from text to text; ``Embedder.encode([text])``
and ``session.run`` alone are timed beside them for scale. Medians per round, ``--rounds`` rounds.

    python -m benchmarks.batch1_tokenize benchmarks/.cache/artifacts/bundle-int8 \\
        --out benchmarks/results/batch1-tokenize-X.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import corpus
from benchmarks.int8_cpu import cpu_info
from benchmarks.results_file import write_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--texts", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    from embedrt import Embedder

    texts = corpus.load_sentences(args.texts, seed=1)
    e = Embedder(args.bundle, threads=args.threads)
    tk = e.tokenizer
    feeds = [next(iter(e._batches(e.tokenize([t], prompt=""), 1)))[1] for t in texts]
    calls = {
        "encode_batch([text])": lambda t: tk.encode_batch([t], add_special_tokens=True),
        "encode(text)": lambda t: tk.encode(t, add_special_tokens=True),
    }
    for t in texts[:20]:
        e.encode([t])
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):
        ms: dict[str, list[float]] = {k: [] for k in (*calls, "session.run", "Embedder.encode([text])")}
        for i, (t, f) in enumerate(zip(texts, feeds, strict=True)):
            order = list(calls) if i % 2 == 0 else list(calls)[::-1]
            for name in order:
                t0 = time.perf_counter()
                e.session.run(["sentence_embedding"], f)
                t1 = time.perf_counter()
                calls[name](t)
                ms[name].append(1000 * (time.perf_counter() - t1))
                ms["session.run"].append(1000 * (t1 - t0))
            t0 = time.perf_counter()
            e.encode([t])
            ms["Embedder.encode([text])"].append(1000 * (time.perf_counter() - t0))
        rounds.append({k: round(statistics.median(v), 4) for k, v in ms.items()})
        print(rounds[-1], flush=True)
    result: dict[str, Any] = {
        "command": f"python -m benchmarks.batch1_tokenize {args.bundle} --out {args.out} --texts {args.texts} "
        f"--rounds {args.rounds} --threads {args.threads}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_info(),
        "median_ms_per_round": rounds,
        "saved_ms_per_round": [round(r["encode_batch([text])"] - r["encode(text)"], 4) for r in rounds],
    }
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
