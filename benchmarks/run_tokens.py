"""Tokens per model run on the CPU: 32 texts of one length through ``Embedder.encode`` with several
``max_batch_tokens`` budgets, alternating in one process (best of ``--rounds``), per bundle.

    python -m benchmarks.run_tokens --bundle fp32=benchmarks/.cache/artifacts/bundle-fp32 \\
        --bundle int8=benchmarks/.cache/artifacts/bundle-int8 --out benchmarks/results/run-tokens-X.json

A budget of B tokens runs the 32 texts of L tokens in runs of max(1, B // L) rows; ``none`` runs
them in one.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import bundle_args
from benchmarks.results_file import write_json

LENGTHS = (16, 64, 128, 256, 512)
BUDGETS: tuple[int | None, ...] = (None, 4096, 2048, 1024, 512)


def main() -> None:
    args, header = bundle_args.parse(__doc__, "run_tokens")
    from benchmarks import corpus
    from benchmarks.run import fixed_length_texts
    from embedrt import Embedder

    bundles = args.bundles
    words = [w for p in corpus.load_corpus()["en_passages"] for w in p.split()]
    out: dict[str, Any] = {
        **header,
        "unit": "tokens/s, best of the rounds; 32 texts per length",
        "results": {},
    }
    for name, path in bundles.items():
        models = {b: Embedder(path, threads=args.threads, max_batch_tokens=b) for b in BUDGETS}
        for m in models.values():
            m.tokenizer.enable_truncation(max_length=max(LENGTHS))
        texts = {n: fixed_length_texts(next(iter(models.values())).tokenizer, words, n, 32) for n in LENGTHS}
        rates: dict[str, dict[str, list[float]]] = {str(n): {str(b): [] for b in BUDGETS} for n in LENGTHS}
        for n in LENGTHS:
            for m in models.values():
                m.encode(texts[n], batch_size=32)  # warm-up
            for _ in range(args.rounds):
                for b, m in models.items():
                    t = time.perf_counter()
                    m.encode(texts[n], batch_size=32)
                    rates[str(n)][str(b)].append(32 * n / (time.perf_counter() - t))
            best = {b: max(r) for b, r in rates[str(n)].items()}
            print(name, n, " ".join(f"{b}:{v:.0f}" for b, v in best.items()), flush=True)
        out["results"][name] = {
            n: {b: {"best": round(max(r)), "all": [round(x) for x in r]} for b, r in per.items()}
            for n, per in rates.items()
        }
    write_json(args.out, out)


if __name__ == "__main__":
    main()
